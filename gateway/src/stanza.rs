//! A stanza parsed once: its kind, type, addresses as parsed JIDs, the
//! element view and the bytes it arrived as. Everything after the c2s
//! checks takes a [`Stanza`]; nothing downstream parses it again.

use std::borrow::Cow;
use std::sync::Arc;

use crate::jid::Jid;
use crate::xml::Element;

/// The three stanza kinds (RFC 6120 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    pub fn of(name: &str) -> Option<Kind> {
        Some(match name {
            "message" => Kind::Message,
            "presence" => Kind::Presence,
            "iq" => Kind::Iq,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Presence => "presence",
            Kind::Iq => "iq",
        }
    }

    /// The kind of serialized XML, from its first bytes (outgoing queues
    /// hold strings; nonzas and stream elements are `None`).
    pub fn of_xml(xml: &str) -> Option<Kind> {
        // Byte prefixes, not a char scan: this runs for every written stanza.
        let b = xml.as_bytes();
        let (kind, len) = match b.get(1)? {
            b'm' if b.starts_with(b"<message") => (Kind::Message, 8),
            b'p' if b.starts_with(b"<presence") => (Kind::Presence, 9),
            b'i' if b.starts_with(b"<iq") => (Kind::Iq, 3),
            _ => return None,
        };
        match b.get(len) {
            None | Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r') => Some(kind),
            Some(_) => None,
        }
    }
}

/// A stanza from a client, checked and addressed.
pub struct Stanza {
    pub kind: Kind,
    /// The sender: for a client's stanza, its session's full JID (a `from`
    /// it sent was checked to be exactly that, RFC 6120 §8.1.2.1).
    pub from: Arc<Jid>,
    /// `from` as text (the session keeps it: stamping costs no formatting).
    pub from_full: Arc<str>,
    /// `None` when the stanza had no `to` (addressed to the account itself).
    pub to: Option<Jid>,
    pub el: Element,
}

impl Stanza {
    /// The `type` attribute.
    pub fn typ(&self) -> Option<&str> {
        self.el.attr("type")
    }

    pub fn id(&self) -> Option<&str> {
        self.el.attr("id")
    }

    /// The bytes as received.
    pub fn raw(&self) -> &str {
        self.el.raw()
    }

    /// The destination: `to`, or the sender's bare JID when absent
    /// (RFC 6120 §10.3.1).
    pub fn destination(&self) -> Cow<'_, Jid> {
        match &self.to {
            Some(to) => Cow::Borrowed(to),
            None => Cow::Owned(self.from.to_bare()),
        }
    }

    /// The XML to forward: `from` stamped with the sender, and `to` stamped
    /// with the destination when the client left it out.
    pub fn forwardable(&self) -> String {
        let stamped_to = self.to.is_none().then(|| self.from.to_bare().to_string());
        crate::xml::rewrite_from_to(&self.el, Some(&self.from_full), stamped_to.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_serialized_xml() {
        assert_eq!(Kind::of_xml("<message to='a'/>"), Some(Kind::Message));
        assert_eq!(Kind::of_xml("<iq>"), Some(Kind::Iq));
        assert_eq!(Kind::of_xml("<presence/>"), Some(Kind::Presence));
        assert_eq!(Kind::of_xml("<a xmlns='urn:xmpp:sm:3' h='1'/>"), None);
        assert_eq!(Kind::of_xml("</stream:stream>"), None);
        assert_eq!(Kind::of_xml("<messages/>"), None);
        assert_eq!(Kind::of_xml("<message"), Some(Kind::Message));
        assert_eq!(Kind::of_xml("<iq\ttype='get'/>"), Some(Kind::Iq));
        assert_eq!(Kind::of_xml(""), None);
    }

    #[test]
    fn forwardable_stamps_sender_and_missing_to() {
        let el = Element::parse("<message type='chat'><body>x</body></message>").expect("el");
        let s = Stanza {
            kind: Kind::Message,
            from: Arc::new(Jid::parse("a@h/r").expect("jid")),
            from_full: "a@h/r".into(),
            to: None,
            el,
        };
        let out = s.forwardable();
        assert!(
            out.contains("from='a@h/r'") && out.contains("to='a@h'"),
            "{out}"
        );
        assert_eq!(s.destination().to_string(), "a@h");
    }
}
