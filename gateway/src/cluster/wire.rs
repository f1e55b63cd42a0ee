//! What nodes say to each other over NATS.
//!
//! Subjects, under the cluster's `name`:
//! - `NAME.registry`: every node publishes its session changes there
//!   ([`RegistryMsg`], JSON) and every node applies the others';
//! - `NAME.node.NODE`: stanzas and requests for one node's sessions
//!   ([`Directed`]: a one-line JSON header, then the stanza's XML as is,
//!   so a stanza is never escaped into a JSON string). Several of them
//!   queued at once travel as one NATS message ([`Batch`]): one publish,
//!   one wake-up of nats-server and of the receiving node, for all.

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
        /// When it was taken, µs since the epoch (the sync time).
        #[serde(default)]
        ts: i64,
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
    /// The node stops: its sessions are gone. `acks`: per sending node,
    /// the last stanza it handled (every one before it too), so that the
    /// others place again only what it never saw.
    Down {
        node: String,
        #[serde(default)]
        acks: std::collections::BTreeMap<String, u64>,
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
            | RegistryMsg::Down { node, .. } => node,
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
    /// Close that session with this stream error (a conflict, an
    /// administrator's kick): its condition, text and application element.
    Close {
        id: u64,
        condition: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app: Option<String>,
    },
    /// `from` is done with every stanza up to `upto` this node sent it,
    /// except those in `except` (ascending; held by a stalled session).
    Ack {
        from: String,
        upto: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        except: Vec<u64>,
    },
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

/// A batch: `#`, then per frame its length in decimal, `\n`, the frame.
/// (A single frame starts with `{`: the two never mix up.)
const BATCH_MARK: u8 = b'#';

/// Frames for one node, gathered into one NATS message.
#[derive(Default)]
pub struct Batch {
    buf: Vec<u8>,
    frames: usize,
    /// The first frame, kept as it is while it is alone.
    first: Option<Vec<u8>>,
}

/// A batch no larger than this (NATS's default payload limit is 1 MiB);
/// a bigger frame travels alone.
pub const BATCH_BYTES: usize = 64 * 1024;

impl Batch {
    /// Whether `frame` still fits (an empty batch takes anything).
    pub fn fits(&self, frame: &[u8]) -> bool {
        self.frames == 0 || self.len() + frame.len() + 12 <= BATCH_BYTES
    }

    fn len(&self) -> usize {
        self.first.as_ref().map_or(self.buf.len(), |f| f.len())
    }

    pub fn push(&mut self, frame: Vec<u8>) {
        if self.frames == 0 {
            self.first = Some(frame);
        } else {
            if let Some(first) = self.first.take() {
                self.buf.push(BATCH_MARK);
                put_frame(&mut self.buf, &first);
            }
            put_frame(&mut self.buf, &frame);
        }
        self.frames += 1;
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// The NATS payload; the batch is empty again.
    pub fn take(&mut self) -> Vec<u8> {
        self.frames = 0;
        match self.first.take() {
            Some(f) => f,
            None => std::mem::take(&mut self.buf),
        }
    }
}

fn put_frame(buf: &mut Vec<u8>, frame: &[u8]) {
    buf.extend_from_slice(frame.len().to_string().as_bytes());
    buf.push(b'\n');
    buf.extend_from_slice(frame);
}

/// The frames of a NATS payload (one, or a batch's). A malformed batch
/// yields the frames before the damage, then `None`s: it stops.
pub fn frames(payload: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    let batched = payload.first() == Some(&BATCH_MARK);
    let mut rest = if batched { &payload[1..] } else { payload };
    let mut single = !batched;
    std::iter::from_fn(move || {
        if single {
            single = false;
            return Some(Some(std::mem::take(&mut rest)));
        }
        if rest.is_empty() {
            return None;
        }
        let frame = (|| {
            let nl = rest.iter().take(12).position(|b| *b == b'\n')?;
            let len: usize = std::str::from_utf8(&rest[..nl]).ok()?.parse().ok()?;
            let frame = rest.get(nl + 1..nl + 1 + len)?;
            rest = &rest[nl + 1 + len..];
            Some(frame)
        })();
        if frame.is_none() {
            rest = &[];
        }
        Some(frame)
    })
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
    fn a_batch_carries_its_frames_in_order_and_one_frame_travels_as_is() {
        let frame = |n: u64| {
            let h = Directed::Ack {
                from: "n1".into(),
                upto: n,
                except: if n == 2 { vec![1] } else { vec![] },
            };
            encode_directed(&h, "<x/>\n<y/>")
        };
        let mut b = Batch::default();
        b.push(frame(1));
        assert_eq!(b.frames(), 1);
        let one = b.take();
        assert_eq!(one, frame(1), "alone: no batch framing");
        assert!(b.is_empty());
        let got: Vec<_> = frames(&one).collect();
        assert_eq!(got, vec![Some(&frame(1)[..])]);

        for n in 1..=3 {
            assert!(b.fits(&frame(n)));
            b.push(frame(n));
        }
        let payload = b.take();
        let got: Vec<_> = frames(&payload).map(|f| f.expect("intact")).collect();
        assert_eq!(got, vec![&frame(1)[..], &frame(2)[..], &frame(3)[..]]);
        for (n, f) in got.iter().enumerate() {
            let (h, xml) = decode_directed(f).expect("decodes");
            assert_eq!(
                h,
                Directed::Ack {
                    from: "n1".into(),
                    upto: n as u64 + 1,
                    except: if n == 1 { vec![1] } else { vec![] },
                }
            );
            assert_eq!(xml, "<x/>\n<y/>");
        }
    }

    #[test]
    fn a_damaged_batch_stops_where_the_damage_is() {
        let mut b = Batch::default();
        b.push(b"{\"a\":1}\n<x/>".to_vec());
        b.push(b"{\"a\":2}\n<y/>".to_vec());
        let mut payload = b.take();
        payload.truncate(payload.len() - 2);
        let got: Vec<_> = frames(&payload).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_some());
        assert_eq!(got[1], None);
        // A length that runs past the end, or is not a number.
        assert_eq!(frames(b"#99\nabc").collect::<Vec<_>>(), vec![None]);
        assert_eq!(frames(b"#x\nabc").collect::<Vec<_>>(), vec![None]);
        assert_eq!(frames(b"#").count(), 0);
    }

    #[test]
    fn a_batch_stays_under_its_byte_limit() {
        let mut b = Batch::default();
        let big = vec![b'x'; BATCH_BYTES / 2];
        assert!(b.fits(&big));
        b.push(big.clone());
        assert!(b.fits(&big[..100]));
        b.push(big[..100].to_vec());
        assert!(
            !b.fits(&big),
            "a third large frame waits for the next batch"
        );
        // An empty batch takes even an oversized frame: it travels alone.
        let e = Batch::default();
        assert!(e.fits(&vec![b'x'; BATCH_BYTES * 2]));
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
