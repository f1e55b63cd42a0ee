//! Stanzas taken in from other nodes, and when to acknowledge them.
//!
//! A sending node keeps every stanza until the receiving node acknowledges
//! it, and places again what a dead node never acknowledged. So this node
//! acknowledges a stanza only once it has left its hands: written to the
//! client's transport, stored offline, or refused. Until then a
//! [`Receipt`] travels with it (in the session's mailbox); its drop marks
//! the stanza done. A node killed with stanzas still queued for a slow
//! session has not acknowledged them, and the sender places them again.
//!
//! Stanzas of one sender arrive in sequence order but finish in any order
//! (different sessions): the acknowledgement is the highest sequence below
//! which every stanza is done.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::registry::Outgoing;
use super::wire::{self, Directed};
use crate::router::{Receipt, ReceiptSink};

/// An acknowledgement goes out once this many stanzas are done since the
/// last one (and on the link's tick, whichever first).
pub const ACK_EVERY: u64 = 64;

/// Every sending node's [`Inbound`]; a node's entry is replaced when it
/// restarts (its sequence numbers start again), so a late receipt of its
/// previous run lands in the old entry and changes nothing.
#[derive(Default)]
pub struct Inbounds {
    all: Mutex<HashMap<String, Arc<Inbound>>>,
}

impl Inbounds {
    /// The tracker for stanzas from `from`.
    pub fn of(&self, me: &str, from: &str, out: &mpsc::Sender<Outgoing>) -> Arc<Inbound> {
        let mut all = self.all.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = all.get(from) {
            return i.clone();
        }
        let i = Arc::new(Inbound {
            me: me.to_string(),
            from: from.to_string(),
            out: out.clone(),
            state: Mutex::new(State::default()),
        });
        all.insert(from.to_string(), i.clone());
        i
    }

    pub fn get(&self, from: &str) -> Option<Arc<Inbound>> {
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(from)
            .cloned()
    }

    pub fn forget(&self, from: &str) {
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(from);
    }

    fn each(&self) -> Vec<Arc<Inbound>> {
        self.all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Sends what is done and not yet acknowledged, to every node.
    pub fn ack_due(&self) {
        for i in self.each() {
            let due = {
                let mut s = i.lock();
                let upto = s.done_upto();
                (upto > s.acked).then(|| {
                    s.acked = upto;
                    upto
                })
            };
            if let Some(upto) = due {
                i.send_ack(upto);
            }
        }
    }

    /// Per node, every sequence done (what a leaving node's `Down` says).
    pub fn all_done(&self) -> std::collections::BTreeMap<String, u64> {
        self.each()
            .into_iter()
            .map(|i| {
                let upto = i.lock().done_upto();
                (i.from.clone(), upto)
            })
            .collect()
    }
}

/// Stanzas from one node.
pub struct Inbound {
    me: String,
    from: String,
    out: mpsc::Sender<Outgoing>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Received and not yet known done, in sequence order: (seq, done).
    open: VecDeque<(u64, bool)>,
    /// The highest sequence received.
    seq: u64,
    /// The highest acknowledged to the sender.
    acked: u64,
    /// Smoothed transit time of its stanzas, µs (the lag operators see).
    transit_us: Option<f64>,
}

impl State {
    fn done_upto(&self) -> u64 {
        self.open.front().map_or(self.seq, |(seq, _)| seq - 1)
    }
}

impl Inbound {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stanza `seq` arrived after `transit_us` on its way; its receipt
    /// says when it is done. None for a sequence already seen (nothing to
    /// acknowledge twice).
    pub fn received(self: &Arc<Self>, seq: u64, transit_us: i64) -> Option<Receipt> {
        let mut s = self.lock();
        let t = transit_us as f64;
        s.transit_us = Some(s.transit_us.map_or(t, |avg| avg + (t - avg) / 16.0));
        if seq <= s.seq {
            return None;
        }
        s.seq = seq;
        s.open.push_back((seq, false));
        drop(s);
        Some(Receipt::new(self.clone(), seq))
    }

    /// The smoothed transit time, ms.
    pub fn transit_ms(&self) -> Option<f64> {
        self.lock().transit_us.map(|us| (us / 10.0).round() / 100.0)
    }

    fn send_ack(&self, upto: u64) {
        let payload = wire::encode_directed(
            &Directed::Ack {
                from: self.me.clone(),
                upto,
            },
            "",
        );
        // A full queue loses this one; the tick sends a later one.
        let _ = self.out.try_send(Outgoing::Directed {
            node: self.from.clone(),
            payload,
        });
    }
}

impl ReceiptSink for Inbound {
    fn done(&self, seq: u64) {
        let due = {
            let mut s = self.lock();
            if let Ok(i) = s.open.binary_search_by_key(&seq, |(q, _)| *q) {
                s.open[i].1 = true;
            }
            while s.open.front().is_some_and(|(_, done)| *done) {
                s.open.pop_front();
            }
            let upto = s.done_upto();
            (upto >= s.acked + ACK_EVERY).then(|| {
                s.acked = upto;
                upto
            })
        };
        if let Some(upto) = due {
            self.send_ack(upto);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Inbounds, mpsc::Receiver<Outgoing>, mpsc::Sender<Outgoing>) {
        let (tx, rx) = mpsc::channel(1000);
        (Inbounds::default(), rx, tx)
    }

    fn acks(rx: &mut mpsc::Receiver<Outgoing>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(Outgoing::Directed { payload, .. }) = rx.try_recv() {
            if let Some((Directed::Ack { upto, .. }, _)) = wire::decode_directed(&payload) {
                out.push(upto);
            }
        }
        out
    }

    /// A stanza still held (queued for a slow session) holds back the
    /// acknowledgement of everything after it, however many are done.
    #[test]
    fn a_held_stanza_holds_back_the_acknowledgement() {
        let (all, mut rx, tx) = setup();
        let n1 = all.of("n2", "n1", &tx);
        let held = n1.received(1, 100).expect("new");
        let rest: Vec<Receipt> = (2..=200)
            .map(|s| n1.received(s, 100).expect("new"))
            .collect();
        drop(rest);
        assert_eq!(acks(&mut rx), Vec::<u64>::new());
        assert_eq!(all.all_done()["n1"], 0);
        all.ack_due();
        assert_eq!(acks(&mut rx), Vec::<u64>::new());
        drop(held);
        // Everything is done at once: one acknowledgement covers it.
        assert_eq!(acks(&mut rx), vec![200]);
        assert_eq!(all.all_done()["n1"], 200);
    }

    /// In order, an acknowledgement goes out every ACK_EVERY stanzas, and
    /// the tick sends the remainder.
    #[test]
    fn acknowledged_in_steps_and_the_remainder_on_the_tick() {
        let (all, mut rx, tx) = setup();
        let n1 = all.of("n2", "n1", &tx);
        for seq in 1..=(ACK_EVERY * 2 + 5) {
            drop(n1.received(seq, 100));
        }
        assert_eq!(acks(&mut rx), vec![ACK_EVERY, ACK_EVERY * 2]);
        all.ack_due();
        assert_eq!(acks(&mut rx), vec![ACK_EVERY * 2 + 5]);
        all.ack_due();
        assert_eq!(acks(&mut rx), Vec::<u64>::new());
    }

    /// A restarted node starts its sequence again: a receipt of its
    /// previous run, dropped late, changes nothing in the new run.
    #[test]
    fn a_restart_starts_afresh_and_old_receipts_are_ignored() {
        let (all, mut rx, tx) = setup();
        let old = all.of("n2", "n1", &tx);
        let late = old.received(7, 100);
        all.forget("n1");
        let new = all.of("n2", "n1", &tx);
        let first = new.received(1, 100);
        assert!(new.received(1, 100).is_none(), "a repeated sequence");
        drop(late);
        all.ack_due();
        assert_eq!(acks(&mut rx), Vec::<u64>::new());
        drop(first);
        all.ack_due();
        assert_eq!(acks(&mut rx), vec![1]);
        assert_eq!(new.transit_ms(), Some(0.1));
    }
}
