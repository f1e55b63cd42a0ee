//! What nodes say to each other over NATS.
//!
//! Subjects, under the cluster's `name`:
//! - `NAME.registry`: every node publishes its session changes there
//!   ([`RegistryMsg`], JSON) and every node applies the others';
//! - `NAME.node.NODE`: stanzas and requests for one node's sessions
//!   ([`Directed`]: a one-line JSON header, then the stanza's XML as is,
//!   so a stanza is never escaped into a JSON string).

use serde::{Deserialize, Serialize};

pub fn registry_subject(cluster: &str) -> String {
    format!("{cluster}.registry")
}

pub fn node_subject(cluster: &str, node: &str) -> String {
    format!("{cluster}.node.{node}")
}

/// One session as the other nodes see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub full: String,
    /// When it bound, in ms since the epoch: the newer of two sessions
    /// with one full JID wins (RFC 6120 §7.7.2.2).
    pub started: i64,
    pub available: bool,
    pub priority: i8,
    /// The last broadcast presence (probes are answered from it).
    pub last: Option<String>,
    /// Asked for the roster (gets roster pushes).
    pub roster: bool,
}

/// A change to one node's part of the registry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum RegistryMsg {
    /// A node (re)starts or reconnects: everyone answers with a snapshot.
    Hello {
        node: String,
        started: i64,
    },
    /// Every session of `node`: replaces what others knew of it.
    Snapshot {
        node: String,
        started: i64,
        sessions: Vec<Entry>,
    },
    Join {
        node: String,
        entry: Entry,
    },
    Update {
        node: String,
        entry: Entry,
    },
    Leave {
        node: String,
        id: u64,
    },
    /// The node stops: its sessions are gone.
    Down {
        node: String,
    },
}

impl RegistryMsg {
    pub fn node(&self) -> &str {
        match self {
            RegistryMsg::Hello { node, .. }
            | RegistryMsg::Snapshot { node, .. }
            | RegistryMsg::Join { node, .. }
            | RegistryMsg::Update { node, .. }
            | RegistryMsg::Leave { node, .. }
            | RegistryMsg::Down { node } => node,
        }
    }
}

/// The header of a message to one node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Directed {
    /// The XML after the header goes to the session `full` (`id` when it
    /// was routed; a newer session with that full JID takes it too).
    Deliver {
        id: u64,
        full: String,
        /// When the sending node queued it, µs since the epoch (transit time).
        #[serde(default)]
        ts: i64,
        /// The sending node and its sequence number for this node: the
        /// receiver acknowledges up to it ([`Directed::Ack`]); until then
        /// the sender keeps the stanza, to place it again if this node dies.
        #[serde(default)]
        from: String,
        #[serde(default)]
        seq: u64,
        /// W3C `traceparent` of the routing span, when traced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tp: Option<String>,
    },
    /// Close that session with this stream error condition (conflict).
    Close { id: u64, condition: String },
    /// `from` has handled every stanza up to `upto` this node sent it.
    Ack { from: String, upto: u64 },
}

/// `header\nxml`.
pub fn encode_directed(header: &Directed, xml: &str) -> Vec<u8> {
    let mut out = serde_json::to_vec(header).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(xml.as_bytes());
    out
}

pub fn decode_directed(payload: &[u8]) -> Option<(Directed, &str)> {
    let nl = payload.iter().position(|b| *b == b'\n')?;
    let header = serde_json::from_slice(&payload[..nl]).ok()?;
    let xml = std::str::from_utf8(&payload[nl + 1..]).ok()?;
    Some((header, xml))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directed_round_trip_keeps_the_xml_as_is() {
        let h = Directed::Deliver {
            id: 7,
            full: "a@x/r".into(),
            ts: 1,
            from: "n1".into(),
            seq: 9,
            tp: None,
        };
        let xml = "<message to='a@x/r'><body>line\none \"q\"</body></message>";
        let bytes = encode_directed(&h, xml);
        let (back, x) = decode_directed(&bytes).expect("decodes");
        assert_eq!(back, h);
        assert_eq!(x, xml);
    }

    #[test]
    fn registry_messages_are_tagged_json() {
        let m = RegistryMsg::Leave {
            node: "n1".into(),
            id: 3,
        };
        let text = serde_json::to_string(&m).expect("json");
        assert_eq!(text, r#"{"t":"leave","node":"n1","id":3}"#);
        assert_eq!(serde_json::from_str::<RegistryMsg>(&text).expect("back"), m);
    }
}
