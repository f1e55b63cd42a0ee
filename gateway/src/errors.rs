//! Stream errors (fatal to the stream, RFC 6120 §4.9) and stanza errors
//! (answer one stanza, RFC 6120 §8.3), each next to its wire name. The
//! wire name is also the `condition` label of `xmpp_stream_error` and
//! `xmpp_stanza_error` (`service-unavailable`, as on the wire and in the RFC).

use crate::xml::{El, Element};

pub const NS_STREAMS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_STANZAS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

macro_rules! conditions {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($variant:ident => $wire:literal),* $(,)? }) => {
        $(#[$m])*
        $vis enum $name { $($variant),* }
        impl $name {
            /// The element name on the wire.
            pub fn wire_name(&self) -> &'static str {
                match self { $(Self::$variant => $wire),* }
            }
            /// Every condition, for the event catalogue and docs.
            pub const ALL: &'static [$name] = &[$(Self::$variant),*];
        }
    };
}

conditions! {
    /// Stream error conditions (RFC 6120 §4.9.3). Each closes the stream.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StreamCondition {
        BadFormat => "bad-format",
        BadNamespacePrefix => "bad-namespace-prefix",
        Conflict => "conflict",
        ConnectionTimeout => "connection-timeout",
        HostUnknown => "host-unknown",
        InternalServerError => "internal-server-error",
        InvalidFrom => "invalid-from",
        InvalidNamespace => "invalid-namespace",
        NotAuthorized => "not-authorized",
        NotWellFormed => "not-well-formed",
        PolicyViolation => "policy-violation",
        ResourceConstraint => "resource-constraint",
        RestrictedXml => "restricted-xml",
        SystemShutdown => "system-shutdown",
        UndefinedCondition => "undefined-condition",
        UnsupportedEncoding => "unsupported-encoding",
        UnsupportedFeature => "unsupported-feature",
        UnsupportedStanzaType => "unsupported-stanza-type",
        UnsupportedVersion => "unsupported-version",
    }
}

impl StreamCondition {
    /// Maps an XML-layer failure to its stream condition.
    pub fn from_wire(name: &str) -> StreamCondition {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.wire_name() == name)
            .unwrap_or(StreamCondition::UndefinedCondition)
    }
}

/// A stream error ready to send: the condition and an optional human text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub condition: StreamCondition,
    pub text: Option<String>,
    /// An application-specific condition element (RFC 6120 §4.9.4).
    pub app: Option<String>,
}

impl StreamError {
    pub fn new(condition: StreamCondition) -> Self {
        StreamError {
            condition,
            text: None,
            app: None,
        }
    }

    pub fn with_text(condition: StreamCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
            app: None,
        }
    }

    /// Adds an application-specific condition (serialized XML).
    pub fn with_app(mut self, app: String) -> Self {
        self.app = Some(app);
        self
    }

    /// `<stream:error>…</stream:error>`
    pub fn to_xml(&self) -> String {
        let mut err = El::new("stream:error")
            .child(El::new(self.condition.wire_name()).xmlns(NS_STREAMS_ERR));
        if let Some(t) = &self.text {
            err = err.child(El::new("text").xmlns(NS_STREAMS_ERR).text(t));
        }
        if let Some(app) = &self.app {
            err = err.raw_child(app);
        }
        err.to_string()
    }
}

/// The `type` attribute of a stanza error: what the sender may do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn wire_name(&self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

conditions! {
    /// Stanza error conditions (RFC 6120 §8.3.3).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StanzaCondition {
        BadRequest => "bad-request",
        Conflict => "conflict",
        FeatureNotImplemented => "feature-not-implemented",
        Forbidden => "forbidden",
        InternalServerError => "internal-server-error",
        ItemNotFound => "item-not-found",
        JidMalformed => "jid-malformed",
        NotAcceptable => "not-acceptable",
        NotAllowed => "not-allowed",
        NotAuthorized => "not-authorized",
        PolicyViolation => "policy-violation",
        RecipientUnavailable => "recipient-unavailable",
        RemoteServerNotFound => "remote-server-not-found",
        ResourceConstraint => "resource-constraint",
        ServiceUnavailable => "service-unavailable",
        UnexpectedRequest => "unexpected-request",
    }
}

impl StanzaCondition {
    /// The error type RFC 6120 §8.3.3 gives with each condition.
    pub fn default_type(&self) -> ErrorType {
        use StanzaCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation => ErrorType::Modify,
            Forbidden | NotAuthorized => ErrorType::Auth,
            RecipientUnavailable | ResourceConstraint | UnexpectedRequest => ErrorType::Wait,
            _ => ErrorType::Cancel,
        }
    }
}

/// A stanza error to send back to the sender of a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub condition: StanzaCondition,
    pub text: Option<String>,
    /// Overrides the condition's default type (a XEP may ask for another).
    pub typ: Option<ErrorType>,
    /// An application-specific condition (serialized XML), after the
    /// defined one (RFC 6120 §8.3.2), e.g. XEP-0191's `<blocked/>`.
    pub app: Option<String>,
}

impl StanzaError {
    pub fn new(condition: StanzaCondition) -> Self {
        StanzaError {
            condition,
            text: None,
            typ: None,
            app: None,
        }
    }

    pub fn with_text(condition: StanzaCondition, text: impl Into<String>) -> Self {
        StanzaError {
            text: Some(text.into()),
            ..StanzaError::new(condition)
        }
    }

    pub fn typed(mut self, typ: ErrorType) -> Self {
        self.typ = Some(typ);
        self
    }

    pub fn with_app(mut self, app: String) -> Self {
        self.app = Some(app);
        self
    }

    /// `<error type='…'><condition/>[<text/>]</error>`
    pub fn error_element(&self) -> El {
        let typ = self.typ.unwrap_or_else(|| self.condition.default_type());
        let mut e = El::new("error")
            .attr("type", typ.wire_name())
            .child(El::new(self.condition.wire_name()).xmlns(NS_STANZAS_ERR));
        if let Some(t) = &self.text {
            e = e.child(El::new("text").xmlns(NS_STANZAS_ERR).text(t));
        }
        if let Some(app) = &self.app {
            e = e.raw_child(app);
        }
        e
    }

    /// The error reply to `original`: same element name and id, addresses
    /// swapped, the original payload kept (RFC 6120 §8.3.1), then `<error/>`.
    /// `from` is who answers (the server or the addressee), `to` the sender.
    pub fn reply_to(&self, original: &Element, from: &str, to: &str) -> String {
        let mut reply = El::new(original.name())
            .attr("type", "error")
            .attr_opt("id", original.attr("id"))
            .attr("from", from)
            .attr("to", to);
        let raw = original.raw();
        for child in original.node().children().filter(|c| c.is_element()) {
            if child.tag_name().name() == "error" {
                continue;
            }
            if let Some(slice) = raw.get(child_range(original, child)) {
                reply = reply.raw_child(slice);
            }
        }
        reply.child(self.error_element()).to_string()
    }
}

/// The byte range of `child` within `original.raw()`.
fn child_range(original: &Element, child: roxmltree::Node<'_, '_>) -> std::ops::Range<usize> {
    let base = original.node().range().start;
    let r = child.range();
    r.start.saturating_sub(base)..r.end.saturating_sub(base)
}

/// Errors that end a client session, with the stream error to send (if any).
#[derive(Debug, thiserror::Error)]
pub enum SessionEnd {
    #[error("stream error: {}", .0.condition.wire_name())]
    Stream(StreamError),
    #[error("peer closed the stream")]
    PeerClosed,
    /// The transport ended without a closed stream (a dropped TCP
    /// connection): XEP-0198 may keep the session for a resume.
    #[error("connection dropped")]
    Dropped,
    /// A resume on another connection took the session over: this stream
    /// gets `<conflict/>` (XEP-0198 §5) and the session detaches for it.
    #[error("session taken over by a resume")]
    TakenOver,
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
}

impl SessionEnd {
    /// A bounded label for why the connection ended.
    pub fn reason(&self) -> &'static str {
        match self {
            SessionEnd::Stream(e) => match e.condition {
                StreamCondition::SystemShutdown => "shutdown",
                StreamCondition::Conflict => "replaced",
                _ => "stream_error",
            },
            SessionEnd::PeerClosed | SessionEnd::Dropped => "peer_closed",
            SessionEnd::TakenOver => "replaced",
            // Many clients drop TLS without close_notify: still a hang-up.
            SessionEnd::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => "peer_closed",
            SessionEnd::Io(_) => "io_error",
        }
    }
}

impl From<StreamError> for SessionEnd {
    fn from(e: StreamError) -> Self {
        SessionEnd::Stream(e)
    }
}
