//! The stanzas a stream-managed session wrote and the client has not yet
//! acknowledged, in order, in one buffer: a written stanza costs a copy,
//! not an allocation of its own.

use std::collections::VecDeque;

/// Above this, an emptied buffer is freed rather than kept for reuse (an
/// idle session holds no large buffer).
const KEEP_CAPACITY: usize = 16 * 1024;

#[derive(Default)]
pub(super) struct Unacked {
    buf: String,
    /// Where each stanza ends in `buf`.
    ends: VecDeque<usize>,
    /// Where the oldest stanza starts.
    head: usize,
}

impl Unacked {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn push(&mut self, xml: &str) {
        self.buf.push_str(xml);
        self.ends.push_back(self.buf.len());
    }

    /// Drops the `n` oldest (all of them if there are fewer).
    pub fn ack(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if n >= self.ends.len() {
            self.clear();
            return;
        }
        self.head = self.ends[n - 1];
        self.ends.drain(..n);
        // Moving the rest to the front costs at most what was acknowledged
        // since the last move: linear overall.
        if self.head >= self.buf.len() / 2 {
            self.buf.drain(..self.head);
            for e in self.ends.iter_mut() {
                *e -= self.head;
            }
            self.head = 0;
        }
    }

    /// Every stanza, oldest first; the queue is left empty.
    pub fn take_all(&mut self) -> Vec<String> {
        let mut start = self.head;
        let all = self
            .ends
            .iter()
            .map(|&end| {
                let s = self.buf[start..end].to_string();
                start = end;
                s
            })
            .collect();
        self.clear();
        all
    }

    fn clear(&mut self) {
        self.ends.clear();
        self.head = 0;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = String::new();
        } else {
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Unacked;

    #[test]
    fn keeps_order_through_acks_and_compaction() {
        let mut q = Unacked::default();
        for i in 0..10 {
            q.push(&format!("<m{i}/>"));
        }
        q.ack(3);
        assert_eq!(q.len(), 7);
        q.ack(4);
        q.push("<late/>");
        assert_eq!(q.take_all(), vec!["<m7/>", "<m8/>", "<m9/>", "<late/>"]);
        assert!(q.is_empty());
        q.push("<a/>");
        q.ack(5);
        assert!(q.is_empty());
        assert!(q.take_all().is_empty());
    }
}
