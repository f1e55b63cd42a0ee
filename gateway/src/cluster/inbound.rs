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
//! (different sessions). An acknowledgement says "every stanza up to
//! `upto` is done, except these": the exceptions are stanzas held for more
//! than [`STUCK`] (a session whose client stopped reading), so one stalled
//! session never holds back the acknowledgement of the rest of the
//! traffic, while what it holds stays with the sender.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::registry::Outgoing;
use super::wire::{self, Directed};
use crate::router::{Receipt, ReceiptSink};

/// An acknowledgement goes out once this many stanzas are done since the
/// last one (and on the link's tick, whichever first).
pub const ACK_EVERY: u64 = 64;

/// A stanza held longer than this is named as an exception, so that what
/// came after it can be acknowledged.
pub const STUCK: Duration = Duration::from_secs(1);

/// At most this many exceptions per sending node. Beyond it the oldest
/// are given up on: acknowledged although still held (a node killed then
/// loses them, as it did before receipts), so that stalled sessions never
/// hold back the rest of the traffic, and acknowledgements stay small.
const MAX_EXCEPT: usize = 1024;

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
        let now = Instant::now();
        for i in self.each() {
            let due = i.lock().due(now);
            if let Some((upto, except)) = due {
                i.send_ack(upto, except);
            }
        }
    }

    /// Held stanzas acknowledged anyway since the last call, all nodes.
    pub fn take_given_up(&self) -> u64 {
        self.each()
            .iter()
            .map(|i| std::mem::take(&mut i.lock().given_up))
            .sum()
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
    /// Received and not yet done: sequence → when it arrived. (Arrival
    /// follows sequence order, so the oldest come first.)
    open: BTreeMap<u64, Instant>,
    /// The highest sequence received.
    seq: u64,
    /// Done since an acknowledgement was last considered.
    fresh: u64,
    /// The `upto` of the last acknowledgement, and how many exceptions it
    /// named.
    acked: u64,
    excepted: usize,
    /// Smoothed transit time of its stanzas, µs (the lag operators see).
    transit_us: Option<f64>,
    /// Held stanzas acknowledged anyway (past [`MAX_EXCEPT`]), not yet
    /// counted as `limit_hit{limit="cluster_held"}`.
    given_up: u64,
}

impl State {
    /// Every sequence up to this one is done.
    fn done_upto(&self) -> u64 {
        self.open.keys().next().map_or(self.seq, |first| first - 1)
    }

    /// The acknowledgement to send now: `upto`, and the stanzas up to it
    /// still held (each held for longer than [`STUCK`]; the newest
    /// [`MAX_EXCEPT`] of them, the older given up on).
    fn ack(&mut self, now: Instant) -> (u64, Vec<u64>) {
        let mut except = Vec::new();
        let mut upto = self.seq;
        for (&seq, &since) in &self.open {
            if now.duration_since(since) < STUCK {
                upto = seq - 1;
                break;
            }
            except.push(seq);
        }
        if except.len() > MAX_EXCEPT {
            let given_up = except.len() - MAX_EXCEPT;
            for seq in except.drain(..given_up) {
                self.open.remove(&seq);
            }
            self.given_up += given_up as u64;
        }
        (upto, except)
    }

    /// The acknowledgement to send, if it says something new: `upto`
    /// moved, or an exception is done at last.
    fn due(&mut self, now: Instant) -> Option<(u64, Vec<u64>)> {
        let (upto, except) = self.ack(now);
        if upto <= self.acked && except.len() >= self.excepted {
            return None;
        }
        self.acked = upto;
        self.excepted = except.len();
        Some((upto, except))
    }
}

impl Inbound {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn from(&self) -> &str {
        &self.from
    }

    /// Stanza `seq` arrived (at `now`) after `transit_us` on its way; its receipt
    /// says when it is done. None for a sequence already seen (nothing to
    /// acknowledge twice).
    pub fn received(self: &Arc<Self>, seq: u64, transit_us: i64, now: Instant) -> Option<Receipt> {
        let mut s = self.lock();
        let t = transit_us as f64;
        s.transit_us = Some(s.transit_us.map_or(t, |avg| avg + (t - avg) / 16.0));
        if seq <= s.seq {
            return None;
        }
        s.seq = seq;
        s.open.insert(seq, now);
        drop(s);
        Some(Receipt::new(self.clone(), seq))
    }

    /// The smoothed transit time, ms.
    pub fn transit_ms(&self) -> Option<f64> {
        self.lock().transit_us.map(|us| (us / 10.0).round() / 100.0)
    }

    fn send_ack(&self, upto: u64, except: Vec<u64>) {
        let payload = wire::encode_directed(
            &Directed::Ack {
                from: self.me.clone(),
                upto,
                except,
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
            if s.open.remove(&seq).is_none() {
                return;
            }
            s.fresh += 1;
            if s.fresh < ACK_EVERY {
                return;
            }
            s.fresh = 0;
            s.due(Instant::now())
        };
        if let Some((upto, except)) = due {
            self.send_ack(upto, except);
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

    fn acks(rx: &mut mpsc::Receiver<Outgoing>) -> Vec<(u64, Vec<u64>)> {
        let mut out = Vec::new();
        while let Ok(Outgoing::Directed { payload, .. }) = rx.try_recv() {
            if let Some((Directed::Ack { upto, except, .. }, _)) = wire::decode_directed(&payload) {
                out.push((upto, except));
            }
        }
        out
    }

    /// A stanza still held (queued for a session whose client reads
    /// slowly) holds back the acknowledgement of what came after it only
    /// until it counts as stuck; then it is named as an exception and the
    /// rest is acknowledged. Done at last, it is acknowledged too.
    #[test]
    fn a_held_stanza_becomes_an_exception_once_stuck() {
        let (all, mut rx, tx) = setup();
        let n1 = all.of("n2", "n1", &tx);
        let held = n1.received(1, 100, Instant::now()).expect("new");
        let rest: Vec<Receipt> = (2..=200)
            .map(|s| n1.received(s, 100, Instant::now()).expect("new"))
            .collect();
        drop(rest);
        // Not stuck yet: 199 done, nothing to acknowledge.
        all.ack_due();
        assert_eq!(acks(&mut rx), vec![]);
        assert_eq!(all.all_done()["n1"], 0);
        // Stuck: everything but it is acknowledged.
        let later = Instant::now() + STUCK;
        assert_eq!(n1.lock().ack(later), (200, vec![1]));
        n1.lock().open.insert(1, Instant::now() - STUCK);
        all.ack_due();
        assert_eq!(acks(&mut rx), vec![(200, vec![1])]);
        drop(n1.received(201, 100, Instant::now()));
        all.ack_due();
        assert_eq!(acks(&mut rx), vec![(201, vec![1])]);
        drop(held);
        all.ack_due();
        assert_eq!(acks(&mut rx), vec![(201, vec![])]);
        assert_eq!(all.all_done()["n1"], 201);
    }

    /// In order, an acknowledgement goes out every ACK_EVERY stanzas, and
    /// the tick sends the remainder.
    #[test]
    fn acknowledged_in_steps_and_the_remainder_on_the_tick() {
        let (all, mut rx, tx) = setup();
        let n1 = all.of("n2", "n1", &tx);
        for seq in 1..=(ACK_EVERY * 2 + 5) {
            drop(n1.received(seq, 100, Instant::now()));
        }
        assert_eq!(
            acks(&mut rx),
            vec![(ACK_EVERY, vec![]), (ACK_EVERY * 2, vec![])]
        );
        all.ack_due();
        assert_eq!(acks(&mut rx), vec![(ACK_EVERY * 2 + 5, vec![])]);
        all.ack_due();
        assert_eq!(acks(&mut rx), vec![]);
    }

    /// A restarted node starts its sequence again: a receipt of its
    /// previous run, dropped late, changes nothing in the new run.
    #[test]
    fn a_restart_starts_afresh_and_old_receipts_are_ignored() {
        let (all, mut rx, tx) = setup();
        let old = all.of("n2", "n1", &tx);
        let late = old.received(7, 100, Instant::now());
        all.forget("n1");
        let new = all.of("n2", "n1", &tx);
        let first = new.received(1, 100, Instant::now());
        assert!(
            new.received(1, 100, Instant::now()).is_none(),
            "a repeated sequence"
        );
        drop(late);
        all.ack_due();
        assert_eq!(acks(&mut rx), vec![]);
        drop(first);
        all.ack_due();
        assert_eq!(acks(&mut rx), vec![(1, vec![])]);
        assert_eq!(new.transit_ms(), Some(0.1));
    }

    /// Many stuck stanzas: the newest MAX_EXCEPT stay exceptions, the
    /// older are given up on (acknowledged), so `upto` still moves on;
    /// their late receipts change nothing.
    #[test]
    fn exceptions_are_capped_and_the_oldest_given_up() {
        let (all, _rx, tx) = setup();
        let n1 = all.of("n2", "n1", &tx);
        let last = MAX_EXCEPT as u64 + 10;
        let held: Vec<Receipt> = (1..=last)
            .map(|s| n1.received(s, 100, Instant::now()).expect("new"))
            .collect();
        drop(n1.received(last + 1, 100, Instant::now()));
        let (upto, except) = n1.lock().ack(Instant::now() + STUCK);
        assert_eq!(upto, last + 1);
        assert_eq!(except, (11..=last).collect::<Vec<u64>>());
        drop(held);
        assert_eq!(all.all_done()["n1"], last + 1);
        assert_eq!(all.take_given_up(), 10, "counted once");
        assert_eq!(all.take_given_up(), 0);
    }
}
