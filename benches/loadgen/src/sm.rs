//! Stream management (XEP-0198, `urn:xmpp:sm:3`), the client's side of
//! acknowledgements: the count `h` of stanzas received since `<enabled/>`
//! (mod 2^32), an `<a h='N'/>` after every `every` of them, and one at
//! once for each `<r/>` from the server.
//!
//! Enabling (with resume) happens at login, right after bind (see
//! [`crate::client::ConnectOptions::stream_management`]); the count is kept
//! by whoever reads the stream ([`crate::client::Client`] before a split,
//! [`crate::client::Reader`] after), and the last `h` is acknowledged before
//! `</stream:stream>` so that the server has nothing left unacknowledged
//! (a managed session that closes with unacknowledged stanzas has them
//! kept offline, which would feed the next run stale messages).

use crate::scan;

pub const NS_SM: &str = "urn:xmpp:sm:3";

/// What the client sends to enable stream management with resume.
pub const ENABLE: &str = "<enable xmlns='urn:xmpp:sm:3' resume='true'/>";

/// The default `--sm-ack-every`.
pub const DEFAULT_ACK_EVERY: u32 = 8;

/// The received-stanza count of one managed session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmCounter {
    /// Stanzas received since `<enabled/>`, mod 2^32 (XEP-0198 §4).
    h: u32,
    /// Stanzas received since the last acknowledgement sent.
    since_ack: u32,
    /// An unsolicited `<a/>` after this many stanzas; 0 = only on `<r/>`
    /// (and at close).
    every: u32,
}

impl SmCounter {
    pub fn new(every: u32) -> SmCounter {
        SmCounter::starting_at(0, every)
    }

    /// A counter that has already counted `h` (tests: the wrap at 2^32).
    pub fn starting_at(h: u32, every: u32) -> SmCounter {
        SmCounter {
            h,
            since_ack: 0,
            every,
        }
    }

    /// Stanzas received since `<enabled/>`, mod 2^32.
    pub fn h(&self) -> u32 {
        self.h
    }

    /// Takes one top-level element received after `<enabled/>`: counts it
    /// if it is a stanza (message, presence, iq). Returns the `h` to
    /// acknowledge now: every `every` stanzas, and at once for an `<r/>`.
    pub fn on_element(&mut self, el: &[u8]) -> Option<u32> {
        match scan::tag_name(el) {
            b"message" | b"presence" | b"iq" => {
                self.h = self.h.wrapping_add(1);
                self.since_ack += 1;
                if self.every > 0 && self.since_ack >= self.every {
                    Some(self.acked())
                } else {
                    None
                }
            }
            b"r" if is_sm(el) => Some(self.acked()),
            _ => None,
        }
    }

    /// The current `h`, noting that it is being acknowledged.
    pub fn acked(&mut self) -> u32 {
        self.since_ack = 0;
        self.h
    }
}

/// `<a xmlns='urn:xmpp:sm:3' h='N'/>`.
pub fn ack(h: u32) -> Vec<u8> {
    format!("<a xmlns='{NS_SM}' h='{h}'/>").into_bytes()
}

/// Whether an element is in the stream management namespace.
pub fn is_sm(el: &[u8]) -> bool {
    scan::attr(el, "xmlns") == Some(NS_SM.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"<message from='a@l/x' to='b@l/y' type='chat' id='L1'><body>x</body></message>";
    const R: &[u8] = b"<r xmlns='urn:xmpp:sm:3'/>";

    #[test]
    fn counts_stanzas_only() {
        let mut c = SmCounter::new(100);
        for el in [
            MSG,
            b"<presence from='a@l/x'/>".as_slice(),
            b"<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
            // Nonzas and anything else are not stanzas.
            b"<a xmlns='urn:xmpp:sm:3' h='3'/>",
            b"<enabled xmlns='urn:xmpp:sm:3' id='x' resume='true'/>",
            b"<stream:features/>",
        ] {
            assert_eq!(c.on_element(el), None);
        }
        assert_eq!(c.h(), 3);
    }

    #[test]
    fn acks_every_n() {
        let mut c = SmCounter::new(8);
        let acks: Vec<(usize, u32)> = (1..=20)
            .filter_map(|i| c.on_element(MSG).map(|h| (i, h)))
            .collect();
        assert_eq!(acks, vec![(8, 8), (16, 16)]);
        assert_eq!(c.h(), 20);
    }

    #[test]
    fn answers_r_at_once_and_restarts_the_interval() {
        let mut c = SmCounter::new(8);
        for _ in 0..5 {
            assert_eq!(c.on_element(MSG), None);
        }
        assert_eq!(c.on_element(R), Some(5));
        // Counted from the answer: the next unsolicited ack is 8 later.
        let next = (6..=20).find(|_| c.on_element(MSG).is_some());
        assert_eq!(next, Some(13));
        assert_eq!(c.h(), 13);
        // An <r/> of another namespace is not ours.
        assert_eq!(c.on_element(b"<r xmlns='urn:example'/>"), None);
    }

    #[test]
    fn every_zero_acks_only_on_request() {
        let mut c = SmCounter::new(0);
        assert!((0..1000).all(|_| c.on_element(MSG).is_none()));
        assert_eq!(c.on_element(R), Some(1000));
    }

    #[test]
    fn wraps_at_2_pow_32() {
        let mut c = SmCounter::starting_at(u32::MAX - 2, 4);
        assert_eq!(c.on_element(MSG), None); // MAX - 1
        assert_eq!(c.on_element(MSG), None); // MAX
        assert_eq!(c.on_element(MSG), None); // 0
        assert_eq!(c.on_element(MSG), Some(1));
        assert_eq!(c.on_element(R), Some(1));
    }

    #[test]
    fn ack_format() {
        assert_eq!(ack(0), b"<a xmlns='urn:xmpp:sm:3' h='0'/>");
        assert_eq!(ack(u32::MAX), b"<a xmlns='urn:xmpp:sm:3' h='4294967295'/>");
        assert!(is_sm(&ack(7)));
        assert_eq!(scan::attr(&ack(7), "h"), Some(b"7".as_slice()));
        assert!(is_sm(ENABLE.as_bytes()));
    }
}
