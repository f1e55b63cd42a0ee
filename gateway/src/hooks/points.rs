//! The hook points: one trait per point, and the context each is given.
//! Points on the per-delivery path ([`DeliverHook`], [`WriteHook`],
//! [`FeaturesHook`]) are synchronous; the others may await storage.

use std::sync::Arc;

use async_trait::async_trait;

use super::Flow;
use crate::errors::{SessionEnd, StanzaError};
use crate::jid::Jid;
use crate::router::{Routed, SessionHandle};
use crate::server::Ctx;
use crate::session::{Extensions, Session};
use crate::stanza::{Kind, Stanza};
use crate::xml::{El, Element};

// --- stream features ------------------------------------------------------

/// The stream a feature list is for.
pub struct FeaturesCx<'a> {
    pub ctx: &'a Ctx,
    pub host: &'a str,
    /// After SASL (the restarted stream), when bind and session features go out.
    pub authenticated: bool,
    pub tls: bool,
}

pub trait FeaturesHook: Send + Sync {
    fn features(&self, cx: &FeaturesCx<'_>, out: &mut Vec<El>);
}

// --- nonzas ---------------------------------------------------------------

/// A top-level element outside `jabber:client` (XEP-0198, XEP-0352…),
/// after authentication. `session` is `None` before a resource is bound.
pub struct NonzaCx<'a> {
    pub ctx: &'a Arc<Ctx>,
    pub el: &'a Element,
    pub session: Option<&'a mut Session>,
    /// The authenticated account (bare JID).
    pub account: &'a Jid,
    /// Nonzas to send back, in order (written after the hook returns).
    pub replies: Vec<String>,
}

/// What a nonza handler did.
pub enum Nonza {
    /// Done; `replies` are sent.
    Handled,
    /// A detached session taken over by this stream (XEP-0198 resume):
    /// `replies` go first, then the session runs on this transport.
    Resume(Box<Session>),
}

#[async_trait]
pub trait NonzaHook: Send + Sync {
    async fn nonza(&self, cx: &mut NonzaCx<'_>) -> Result<Nonza, SessionEnd>;
}

// --- a user sends a stanza ------------------------------------------------

pub struct SendCx<'a> {
    pub ctx: &'a Arc<Ctx>,
    pub session: &'a mut Session,
}

#[async_trait]
pub trait SendHook: Send + Sync {
    /// A cheap test, outside the instrumented call: `false` when the hook
    /// has nothing to do with this stanza (e.g. no answer awaited).
    fn active(&self, _stanza: &Stanza) -> bool {
        true
    }

    async fn send(&self, cx: &mut SendCx<'_>, stanza: &Stanza) -> Flow;
}

// --- routing --------------------------------------------------------------

/// A stanza on its way through the router.
pub struct Route<'a> {
    pub from: &'a Jid,
    pub to: &'a Jid,
    pub kind: Kind,
    pub typ: Option<&'a str>,
    /// Serialized, `from` stamped: what recipients get. Owned when the
    /// router may hand it on without a copy.
    pub xml: std::borrow::Cow<'a, str>,
    /// The parsed stanza when it came from a local client.
    pub stanza: Option<&'a Stanza>,
    /// What a hook leaves for the later hooks of this route.
    pub notes: Notes,
}

/// Values a hook leaves for later hooks of the same route, one per type
/// (e.g. an amend hook's decision, for its after-hook). Empty, it costs no
/// allocation.
#[derive(Default)]
pub struct Notes(Vec<Box<dyn std::any::Any + Send + Sync>>);

impl Notes {
    /// Replaces the note of this type.
    pub fn put<T: std::any::Any + Send + Sync>(&mut self, value: T) {
        self.0.retain(|n| !n.is::<T>());
        self.0.push(Box::new(value));
    }

    pub fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.iter().find_map(|n| n.downcast_ref())
    }
}

#[async_trait]
pub trait RouteHook: Send + Sync {
    /// A cheap test, outside the instrumented call: `false` when the hook
    /// has nothing to do at all now (e.g. nobody enabled carbons).
    fn active(&self, _route: &Route<'_>) -> bool {
        true
    }

    /// Before routing `outcome` is `None`; after, the router's result.
    async fn route(
        &self,
        ctx: &Ctx,
        route: &Route<'_>,
        outcome: Option<&Result<Routed, StanzaError>>,
    ) -> Flow;
}

/// After the before-hooks let a stanza through, before it is routed: a
/// module may change what recipients get (XEP-0359's stanza-id). Only
/// `route.xml` is to be changed.
#[async_trait]
pub trait AmendHook: Send + Sync {
    /// A cheap test, outside the instrumented call.
    fn active(&self, _route: &Route<'_>) -> bool {
        true
    }

    async fn amend(&self, ctx: &Ctx, route: &mut Route<'_>);
}

/// An available presence a user broadcasts (to contacts and own
/// resources, and kept for probes), before it goes out: a module may add
/// to it (XEP-0153's avatar hash). `xml` is the stanza, `from` stamped.
#[async_trait]
pub trait PresenceHook: Send + Sync {
    async fn broadcast(&self, ctx: &Ctx, owner: &Jid, xml: &mut String);
}

// --- delivery to one session ----------------------------------------------

/// Before a stanza is queued to a session (any task may be calling).
pub trait DeliverHook: Send + Sync {
    fn deliver(&self, ctx: &Ctx, to: &SessionHandle, xml: &str, kind: Option<Kind>) -> Flow;
}

/// Before a queued stanza is written, in the session's own task.
pub struct WriteCx<'a> {
    pub ext: &'a mut Extensions,
    pub xml: &'a str,
    /// `None` for nonzas and stream-level elements.
    pub kind: Option<Kind>,
    /// Stanzas to write before this one (e.g. a CSI buffer flushed by a
    /// message); they pass the hooks after this one.
    pub prepend: Vec<String>,
    /// Set to end the session with this stream error once what is being
    /// written has gone out (e.g. XEP-0198's unacknowledged limit).
    pub close: Option<crate::errors::StreamError>,
}

pub trait WriteHook: Send + Sync {
    /// A cheap test, outside the instrumented call: `false` when the hook
    /// has nothing to do for this session (e.g. CSI while active).
    fn active(&self, _ext: &Extensions) -> bool {
        true
    }

    /// `Handled` keeps the stanza back (the hook owns it now), `Drop`
    /// discards it, `Continue` writes it.
    fn write(&self, cx: &mut WriteCx<'_>) -> Flow;
}

// --- undeliverable messages ----------------------------------------------

/// A message for a local account with no session that can take it now
/// (RFC 6121 §8.5.2.1.1): kept for later (XEP-0160) or refused. Without
/// such a module, the message bounces with `service-unavailable`.
#[async_trait]
pub trait OfflineHook: Send + Sync {
    async fn store(&self, ctx: &Ctx, to: &Jid, xml: &str) -> Result<Routed, StanzaError>;
    /// The next batch kept for `owner` (removed from the store), oldest
    /// first, ready to write; empty when there is none.
    async fn take(&self, ctx: &Ctx, owner: &Jid) -> Vec<String>;
}

// --- session life ---------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// Bound and in the session table.
    Bound,
    /// Taken over by a new transport.
    Resumed,
    /// Its transport is gone; a module keeps it for a while.
    Detached,
    /// Ended for good: out of the table, before its queue is drained.
    Closed,
}

#[async_trait]
pub trait SessionHook: Send + Sync {
    async fn session(&self, ctx: &Arc<Ctx>, session: &mut Session, event: SessionEvent);
}

/// A session whose transport broke without a clean close: a module may
/// take it (returns `Ok`), else it is handed back and closed.
pub trait DetachHook: Send + Sync {
    fn detach(&self, ctx: &Arc<Ctx>, session: Box<Session>) -> Result<(), Box<Session>>;
}

/// The server's own life: `started` once the context exists (a module
/// spawns its background tasks there, on `ctx.tasks` or its own), and
/// `stopping` after every session task ended, before storage closes (a
/// module writes out what it still holds).
#[async_trait]
pub trait ServerHook: Send + Sync {
    fn started(&self, ctx: &Arc<Ctx>);
    async fn stopping(&self, ctx: &Ctx);
}

// --- IQ -------------------------------------------------------------------

/// Who an IQ request is for.
pub enum Target<'a> {
    /// The server itself (`to` is a served domain).
    Server,
    /// The sender's own account (no `to`, or its bare JID).
    OwnAccount,
    /// Another local account's bare JID (answered on its behalf).
    OtherAccount(&'a Jid),
}

/// An IQ get/set to be answered by a module.
pub struct IqRequest<'a> {
    pub ctx: &'a Ctx,
    pub me: &'a Arc<SessionHandle>,
    pub el: &'a Element,
    pub set: bool,
    pub target: Target<'a>,
    pub payload: roxmltree::Node<'a, 'a>,
}

/// `Ok(Some(child))` becomes the child of the result.
pub type IqResult = Result<Option<El>, StanzaError>;

/// An answer that is more than a child element: e.g. XEP-0237's empty
/// result (no `<query/>`) is `Ok(None)` already, so one type serves all.
#[async_trait]
pub trait IqHandler: Send + Sync {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult;
}

/// Which IQ types a handler answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
    Both,
}

// --- IQ before authentication --------------------------------------------

/// An IQ get/set on a stream that has not authenticated (XEP-0077 in-band
/// registration): there is no session and no JID yet, only the stream.
pub struct PreAuthIqCx<'a> {
    pub ctx: &'a Ctx,
    /// The `<iq/>` itself.
    pub el: &'a Element,
    /// Its one payload (the first child element).
    pub payload: roxmltree::Node<'a, 'a>,
    pub set: bool,
    /// The domain the stream is for (its header's `to`).
    pub host: &'a str,
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// Whether the stream is TLS-protected (STARTTLS done, or direct TLS).
    pub tls: bool,
}

/// Answers an IQ before authentication, by payload namespace. What it
/// returns is sent as the result (`Ok`) or the error (`Err`); the stream
/// stays unauthenticated either way.
#[async_trait]
pub trait PreAuthIqHook: Send + Sync {
    async fn pre_auth_iq(&self, cx: &PreAuthIqCx<'_>) -> IqResult;
}

// --- disco and accounts ---------------------------------------------------

#[derive(Debug, Clone)]
pub struct Identity {
    pub category: &'static str,
    pub typ: &'static str,
    pub name: Option<&'static str>,
}

#[async_trait]
pub trait AccountHook: Send + Sync {
    /// The account is gone from storage; drop what the module keeps of it.
    async fn removed(&self, ctx: &Ctx, host: &str, user: &str);
}
