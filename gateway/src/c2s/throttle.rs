//! Login throttling: repeated failed logins from one address or for one
//! account are slowed down, each attempt alone, without blocking anyone else.
//!
//! The delay is applied before the credentials are checked, so a client that
//! gives up early cannot tell a success from a slowed-down failure.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Failures older than this are forgotten.
const WINDOW: Duration = Duration::from_secs(600);
/// First delay once throttling starts; it doubles with each further failure.
const BASE_DELAY: Duration = Duration::from_millis(250);
/// Above this many tracked keys, stale ones are swept (memory bound).
const SWEEP_ABOVE: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    Account(u64),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

pub struct Throttle {
    after: u32,
    max_delay: Duration,
    failures: DashMap<Key, Failures>,
}

impl Throttle {
    pub fn new(after_failures: u32, max_delay: Duration) -> Self {
        Throttle {
            after: after_failures,
            max_delay,
            failures: DashMap::new(),
        }
    }

    /// How long to hold this attempt before checking it (zero when not throttled).
    pub fn delay(&self, addr: IpAddr, account: &str) -> Duration {
        let count = [Key::Addr(addr), account_key(account)]
            .iter()
            .filter_map(|k| self.failures.get(k).map(|f| *f))
            .filter(|f| f.last.elapsed() < WINDOW)
            .map(|f| f.count)
            .max()
            .unwrap_or(0);
        if count < self.after {
            return Duration::ZERO;
        }
        let exp = (count - self.after).min(16);
        BASE_DELAY.saturating_mul(1 << exp).min(self.max_delay)
    }

    /// Records a failed attempt.
    pub fn failed(&self, addr: IpAddr, account: &str) {
        if self.failures.len() > SWEEP_ABOVE {
            self.failures.retain(|_, f| f.last.elapsed() < WINDOW);
        }
        let now = Instant::now();
        for key in [Key::Addr(addr), account_key(account)] {
            let mut e = self.failures.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            });
            if e.last.elapsed() >= WINDOW {
                e.count = 0;
            }
            e.count = e.count.saturating_add(1);
            e.last = now;
        }
    }

    /// A successful login clears the account's record (not the address's:
    /// one good password must not unlock guessing at others).
    pub fn succeeded(&self, account: &str) {
        self.failures.remove(&account_key(account));
    }
}

/// Accounts are keyed by a hash, so the table holds no user names.
fn account_key(account: &str) -> Key {
    use std::hash::{BuildHasher, Hasher};
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let mut h = STATE.get_or_init(Default::default).build_hasher();
    h.write(account.as_bytes());
    Key::Account(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_after_threshold_and_caps() {
        let t = Throttle::new(3, Duration::from_secs(5));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.delay(a, "alice@h"), Duration::ZERO);
            t.failed(a, "alice@h");
        }
        assert_eq!(t.delay(a, "alice@h"), BASE_DELAY);
        t.failed(a, "alice@h");
        assert_eq!(t.delay(a, "alice@h"), BASE_DELAY * 2);
        for _ in 0..20 {
            t.failed(a, "alice@h");
        }
        assert_eq!(t.delay(a, "alice@h"), Duration::from_secs(5));
    }

    #[test]
    fn others_are_not_slowed() {
        let t = Throttle::new(1, Duration::from_secs(5));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        t.failed(a, "alice@h");
        // Same account from elsewhere: slowed (account key); other account elsewhere: not.
        assert!(t.delay(b, "alice@h") > Duration::ZERO);
        assert_eq!(t.delay(b, "bob@h"), Duration::ZERO);
        t.succeeded("alice@h");
        assert_eq!(t.delay(b, "alice@h"), Duration::ZERO);
        assert!(
            t.delay(a, "bob@h") > Duration::ZERO,
            "the address stays throttled"
        );
    }
}
