//! The bookkeeping: every message the soak sends gets a sequence number
//! (its id is `{run}.{seq}`); the ledger knows, for each one, to whom it
//! went and whether it has arrived, so that a loss, a duplicate or a
//! message delivered to the wrong account is counted, not guessed.
//!
//! A message is *pending* from just before it is written until its first
//! arrival (live or from offline storage). Its second arrival is a
//! duplicate. A bounce (`type='error'` back to the sender) settles it as
//! bounced. A write that failed leaves it *unconfirmed*: it may or may not
//! have reached the server, so it is not a loss if it never arrives (and is
//! an ordinary delivery if it does). What is still pending after the final
//! drain is lost.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What an arriving message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// First arrival, at its addressee.
    Delivered,
    /// It had arrived before.
    Duplicate,
    /// First arrival, but at another account than the one it was sent to.
    Misrouted,
    /// A sequence number this run never sent.
    Unknown,
}

/// The totals, at any time or at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sent: u64,
    /// First arrivals (including misrouted ones).
    pub delivered: u64,
    /// Of `delivered`, those that came from offline storage (with a delay stamp).
    pub delivered_offline: u64,
    pub duplicates: u64,
    pub misrouted: u64,
    /// Sent back to the sender as an error.
    pub bounced: u64,
    /// Writes that failed and whose message never arrived (not counted lost).
    pub unconfirmed: u64,
    /// Ids of this run the ledger never issued.
    pub unknown: u64,
    /// Messages of another run (left in offline storage by an earlier soak).
    pub stale: u64,
    /// Sent, not yet arrived nor bounced.
    pub pending: u64,
}

struct Pending {
    to: u32,
    sent: Instant,
}

#[derive(Default)]
struct Inner {
    next: u64,
    pending: HashMap<u64, Pending>,
    /// Written, but the write failed.
    unconfirmed: HashMap<u64, u32>,
    /// One bit per sequence number: arrived (or bounced) at least once.
    settled: Vec<u64>,
    counts: Counts,
}

impl Inner {
    fn is_settled(&self, seq: u64) -> bool {
        self.settled
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    fn settle(&mut self, seq: u64) {
        let word = (seq / 64) as usize;
        if self.settled.len() <= word {
            self.settled.resize(word + 1, 0);
        }
        self.settled[word] |= 1 << (seq % 64);
    }
}

/// Shared by every session task; one lock, held for a map operation.
pub struct Ledger {
    run: String,
    inner: Mutex<Inner>,
}

impl Ledger {
    /// `run` tags this run's ids (so that an earlier run's messages still in
    /// offline storage are recognised and set aside).
    pub fn new(run: impl Into<String>) -> Ledger {
        Ledger {
            run: run.into(),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a message to account `to` about to be written; its id.
    pub fn send(&self, to: u32) -> (u64, String) {
        let mut l = self.lock();
        let seq = l.next;
        l.next += 1;
        l.pending.insert(
            seq,
            Pending {
                to,
                sent: Instant::now(),
            },
        );
        l.counts.sent += 1;
        drop(l);
        (seq, self.id(seq))
    }

    /// The write of `seq` failed: it may never have reached the server.
    pub fn send_failed(&self, seq: u64) {
        let mut l = self.lock();
        if let Some(p) = l.pending.remove(&seq) {
            l.unconfirmed.insert(seq, p.to);
        }
    }

    /// The message id of `seq`.
    pub fn id(&self, seq: u64) -> String {
        format!("{}.{seq}", self.run)
    }

    /// Reads an id: `Some(Some(seq))` for this run, `Some(None)` for a
    /// soak id of another run, `None` for anything else.
    pub fn parse_id(&self, id: &[u8]) -> Option<Option<u64>> {
        let id = std::str::from_utf8(id).ok()?;
        let (run, seq) = id.rsplit_once('.')?;
        let seq: u64 = seq.parse().ok()?;
        if run == self.run {
            Some(Some(seq))
        } else if run.len() == self.run.len() && run.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(None)
        } else {
            None
        }
    }

    /// A message of another run arrived.
    pub fn stale(&self) {
        self.lock().counts.stale += 1;
    }

    /// Message `seq` arrived at account `at` (`offline`: it carried a
    /// delay stamp).
    pub fn received(&self, seq: u64, at: u32, offline: bool) -> Receipt {
        let mut l = self.lock();
        let to = match l.pending.remove(&seq) {
            Some(p) => p.to,
            None => match l.unconfirmed.remove(&seq) {
                Some(to) => to,
                None if l.is_settled(seq) => {
                    l.counts.duplicates += 1;
                    return Receipt::Duplicate;
                }
                None => {
                    l.counts.unknown += 1;
                    return Receipt::Unknown;
                }
            },
        };
        l.settle(seq);
        l.counts.delivered += 1;
        if offline {
            l.counts.delivered_offline += 1;
        }
        if to != at {
            l.counts.misrouted += 1;
            return Receipt::Misrouted;
        }
        Receipt::Delivered
    }

    /// Message `seq` came back to its sender as an error. A bounce of a
    /// message that already arrived (or bounced) counts as a duplicate.
    pub fn bounced(&self, seq: u64) {
        let mut l = self.lock();
        if l.pending.remove(&seq).is_some() || l.unconfirmed.remove(&seq).is_some() {
            l.settle(seq);
            l.counts.bounced += 1;
        } else if l.is_settled(seq) {
            l.counts.duplicates += 1;
        } else {
            l.counts.unknown += 1;
        }
    }

    /// The totals so far (`pending` as of now; `unconfirmed` counts the
    /// failed writes not arrived yet).
    pub fn counts(&self) -> Counts {
        let l = self.lock();
        Counts {
            pending: l.pending.len() as u64,
            unconfirmed: l.unconfirmed.len() as u64,
            ..l.counts
        }
    }

    /// Pending messages that should have arrived by now: their addressee
    /// has been online (`online_since(to)`: since when, `None` when not
    /// online) for longer than `after`, counted from the later of its login
    /// and the send.
    pub fn overdue(
        &self,
        now: Instant,
        after: Duration,
        online_since: impl Fn(u32) -> Option<Instant>,
    ) -> u64 {
        let l = self.lock();
        l.pending
            .values()
            .filter(|p| {
                online_since(p.to)
                    .is_some_and(|since| now.saturating_duration_since(since.max(p.sent)) > after)
            })
            .count() as u64
    }

    /// Pending messages per addressee (to find who holds them).
    pub fn pending_by_addressee(&self) -> HashMap<u32, u64> {
        let mut m = HashMap::new();
        for p in self.lock().pending.values() {
            *m.entry(p.to).or_insert(0) += 1;
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_once_is_delivered_twice_is_a_duplicate() {
        let l = Ledger::new("ab12");
        let (a, id_a) = l.send(7);
        let (b, _) = l.send(8);
        assert_eq!(id_a, format!("ab12.{a}"));
        assert_eq!(l.counts().pending, 2);
        assert_eq!(l.received(a, 7, false), Receipt::Delivered);
        assert_eq!(l.received(a, 7, true), Receipt::Duplicate);
        assert_eq!(l.received(b, 8, true), Receipt::Delivered);
        let c = l.counts();
        assert_eq!(
            (
                c.sent,
                c.delivered,
                c.delivered_offline,
                c.duplicates,
                c.pending
            ),
            (2, 2, 1, 1, 0)
        );
    }

    #[test]
    fn what_never_arrives_stays_pending() {
        let l = Ledger::new("ab12");
        let seqs: Vec<u64> = (0..100).map(|i| l.send(i % 5).0).collect();
        for &s in &seqs[..97] {
            assert_eq!(l.received(s, (s % 5) as u32, false), Receipt::Delivered);
        }
        let c = l.counts();
        assert_eq!(
            (c.sent, c.delivered, c.pending, c.duplicates),
            (100, 97, 3, 0)
        );
        let by = l.pending_by_addressee();
        assert_eq!(by.values().sum::<u64>(), 3);
        assert_eq!(by.get(&(97 % 5)), Some(&1));
    }

    #[test]
    fn wrong_addressee_unknown_and_stale_ids() {
        let l = Ledger::new("ab12");
        let (a, _) = l.send(1);
        assert_eq!(l.received(a, 2, false), Receipt::Misrouted);
        assert_eq!(l.received(a, 1, false), Receipt::Duplicate);
        assert_eq!(l.received(999, 1, false), Receipt::Unknown);
        let c = l.counts();
        assert_eq!(
            (c.delivered, c.misrouted, c.duplicates, c.unknown),
            (1, 1, 1, 1)
        );

        assert_eq!(l.parse_id(b"ab12.42"), Some(Some(42)));
        assert_eq!(l.parse_id(b"ff00.42"), Some(None), "another run's id");
        assert_eq!(l.parse_id(b"bind1"), None);
        assert_eq!(l.parse_id(b"x.1"), None);
        assert_eq!(l.parse_id(b"ab12.x"), None);
        assert_eq!(l.parse_id(&[0xff, b'.', b'1']), None);
    }

    #[test]
    fn bounces_and_failed_writes() {
        let l = Ledger::new("ab12");
        let (a, _) = l.send(1);
        let (b, _) = l.send(1);
        let (c, _) = l.send(1);
        l.bounced(a);
        l.bounced(a);
        // A failed write that never arrives is not pending (not a loss)…
        l.send_failed(b);
        // …and one that does arrive is an ordinary delivery.
        l.send_failed(c);
        assert_eq!(l.received(c, 1, false), Receipt::Delivered);
        let n = l.counts();
        assert_eq!(
            (
                n.sent,
                n.bounced,
                n.duplicates,
                n.unconfirmed,
                n.delivered,
                n.pending
            ),
            (3, 1, 1, 1, 1, 0)
        );
    }

    #[test]
    fn overdue_counts_only_addressees_online_long_enough() {
        let l = Ledger::new("ab12");
        l.send(1); // addressee online for long: overdue
        l.send(2); // addressee offline: waiting for its login
        l.send(3); // addressee just logged in: not yet
        let now = Instant::now() + Duration::from_secs(60);
        let since = |u: u32| match u {
            1 => Some(now - Duration::from_secs(30)),
            3 => Some(now - Duration::from_secs(1)),
            _ => None,
        };
        assert_eq!(l.overdue(now, Duration::from_secs(10), since), 1);
        assert_eq!(l.overdue(now, Duration::from_secs(40), since), 0);
    }

    #[test]
    fn sequence_bits_grow_across_words() {
        let l = Ledger::new("ab12");
        let seqs: Vec<u64> = (0..200).map(|_| l.send(0).0).collect();
        for &s in seqs.iter().rev() {
            assert_eq!(l.received(s, 0, false), Receipt::Delivered);
        }
        for &s in &seqs {
            assert_eq!(l.received(s, 0, false), Receipt::Duplicate);
        }
        assert_eq!(l.counts().duplicates, 200);
    }
}
