//! Login throttling: repeated failed logins from one address, or for one
//! account, slow down that address's or that account's further attempts —
//! each attempt alone, without blocking anyone else.
//!
//! The two keys are counted apart, each with its own policy
//! (`[auth.throttle.address]`, `[auth.throttle.account]`): failures within a
//! sliding window; from `after_failures` of them on, each attempt is held
//! `first_delay`, doubling with each further failure up to `max_delay`.
//!
//! - A successful login clears its address (someone who mistyped and then
//!   got in is not slowed any further) and its account. It does not touch
//!   any other account: owning one valid account does not unlock guessing
//!   at another, which stays throttled under its own key.
//! - A client falling back through mechanisms with one password (slixmpp
//!   tries SCRAM-SHA-256, SCRAM-SHA-1, then PLAIN) fails once, not three
//!   times: see [`StreamFailures`].
//!
//! The delay is applied before the credentials are checked, so a client that
//! gives up early cannot tell a success from a slowed-down failure.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::sasl::Mechanism;

/// Above this many tracked keys, stale ones are swept (memory bound).
const SWEEP_ABOVE: usize = 100_000;

/// One key's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures within `window` before delays start.
    pub after_failures: u32,
    /// How long a failure counts.
    pub window: Duration,
    /// The first delay; it doubles with each further failure.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Policy {
    pub fn from_config(c: &crate::config::ThrottleScope) -> Policy {
        Policy {
            after_failures: c.after_failures,
            window: Duration::from_secs(c.window),
            first_delay: Duration::from_secs_f64(c.first_delay),
            max_delay: Duration::from_secs_f64(c.max_delay),
        }
    }

    /// The delay after `failures` recent failures.
    fn delay(&self, failures: usize) -> Duration {
        let Some(over) = failures.checked_sub(self.after_failures as usize) else {
            return Duration::ZERO;
        };
        let exp = over.min(31) as u32;
        self.first_delay
            .saturating_mul(1 << exp)
            .min(self.max_delay)
    }

    /// How many recent failures are worth remembering: beyond them the delay
    /// is at its longest anyway.
    fn keep(&self) -> usize {
        let mut doublings = 0;
        while doublings < 31 && self.first_delay.saturating_mul(1 << doublings) < self.max_delay {
            doublings += 1;
        }
        self.after_failures as usize + doublings
    }
}

/// Which key an attempt was throttled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Address,
    Account,
}

impl Scope {
    /// The `scope` label of `c2s_login_throttled`.
    pub fn label(self) -> &'static str {
        match self {
            Scope::Address => "address",
            Scope::Account => "account",
        }
    }
}

/// An attempt to hold back: for how long, and because of which key (the
/// one asking for the longer delay; the address on a tie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub scope: Scope,
    pub delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Addr(IpAddr),
    Account(u64),
}

pub struct Throttle {
    address: Policy,
    account: Policy,
    /// Each key's recent failures, oldest first (at most `Policy::keep`).
    failures: DashMap<Key, VecDeque<Instant>>,
}

impl Throttle {
    pub fn new(address: Policy, account: Policy) -> Self {
        Throttle {
            address,
            account,
            failures: DashMap::new(),
        }
    }

    pub fn from_config(c: &crate::config::LoginThrottle) -> Self {
        Throttle::new(
            Policy::from_config(&c.address),
            Policy::from_config(&c.account),
        )
    }

    /// Whether to hold this attempt before checking it, and for how long.
    pub fn check(&self, addr: IpAddr, account: &str) -> Option<Verdict> {
        self.check_at(addr, account, Instant::now())
    }

    /// Records a failed attempt (once per guess: see [`StreamFailures`]).
    pub fn failed(&self, addr: IpAddr, account: &str) {
        self.failed_at(addr, account, Instant::now())
    }

    /// A successful login clears its address and its account (and no other
    /// account).
    pub fn succeeded(&self, addr: IpAddr, account: &str) {
        self.failures.remove(&Key::Addr(addr));
        self.failures.remove(&account_key(account));
    }

    fn policy(&self, key: &Key) -> &Policy {
        match key {
            Key::Addr(_) => &self.address,
            Key::Account(_) => &self.account,
        }
    }

    fn recent(&self, key: &Key, now: Instant) -> usize {
        let window = self.policy(key).window;
        self.failures.get(key).map_or(0, |f| {
            f.iter()
                .rev()
                .take_while(|t| now.saturating_duration_since(**t) < window)
                .count()
        })
    }

    fn check_at(&self, addr: IpAddr, account: &str, now: Instant) -> Option<Verdict> {
        let by_addr = self.address.delay(self.recent(&Key::Addr(addr), now));
        let by_account = self.account.delay(self.recent(&account_key(account), now));
        let (scope, delay) = if by_account > by_addr {
            (Scope::Account, by_account)
        } else {
            (Scope::Address, by_addr)
        };
        (!delay.is_zero()).then_some(Verdict { scope, delay })
    }

    fn failed_at(&self, addr: IpAddr, account: &str, now: Instant) {
        if self.failures.len() > SWEEP_ABOVE {
            self.failures.retain(|k, f| {
                let window = self.policy(k).window;
                f.back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        for key in [Key::Addr(addr), account_key(account)] {
            let policy = *self.policy(&key);
            let mut f = self.failures.entry(key).or_default();
            while f
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= policy.window)
            {
                f.pop_front();
            }
            f.push_back(now);
            while f.len() > policy.keep() {
                f.pop_front();
            }
        }
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

/// One stream's failed logins, so that a client falling back through the
/// mechanisms with one password counts as one failure, not one per
/// mechanism. The same mechanism failing again for the same account is
/// another password, and counts again.
#[derive(Debug, Default)]
pub struct StreamFailures {
    /// Each account failed on this stream, with the mechanisms failed since
    /// its last counted failure (a stream ends after a few failures).
    accounts: Vec<(String, Vec<Mechanism>)>,
}

impl StreamFailures {
    /// Records a failure; true when it is to be counted.
    pub fn is_new_guess(&mut self, account: &str, mechanism: Mechanism) -> bool {
        match self.accounts.iter_mut().find(|(a, _)| a == account) {
            None => {
                self.accounts.push((account.to_string(), vec![mechanism]));
                true
            }
            Some((_, tried)) if tried.contains(&mechanism) => {
                *tried = vec![mechanism];
                true
            }
            Some((_, tried)) => {
                tried.push(mechanism);
                false
            }
        }
    }

    /// A login succeeded: what follows starts afresh.
    pub fn clear(&mut self) {
        self.accounts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy(after: u32, window_s: u64, first_ms: u64, max_ms: u64) -> Policy {
        Policy {
            after_failures: after,
            window: Duration::from_secs(window_s),
            first_delay: MS * first_ms as u32,
            max_delay: MS * max_ms as u32,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The defaults: address 10 failures / 5 min, account 5 / 5 min, 0.5 s doubling to 5 s.
    fn defaults() -> Throttle {
        Throttle::from_config(&crate::config::LoginThrottle::default())
    }

    #[test]
    fn delays_start_at_the_threshold_double_and_cap() {
        let t = Throttle::new(policy(1000, 300, 1, 1), policy(3, 300, 500, 5000));
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.check_at(a, "alice@h", now), None);
            t.failed_at(a, "alice@h", now);
        }
        let delays: Vec<_> = (0..6)
            .map(|_| {
                let d = t.check_at(a, "alice@h", now).unwrap();
                assert_eq!(d.scope, Scope::Account);
                t.failed_at(a, "alice@h", now);
                d.delay
            })
            .collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 5000, 5000].map(|m| MS * m));
        for _ in 0..100 {
            t.failed_at(a, "alice@h", now);
        }
        assert_eq!(t.check_at(a, "alice@h", now).unwrap().delay, MS * 5000);
        // Memory per key stays bounded: beyond `keep` failures change nothing.
        assert_eq!(
            t.failures.get(&account_key("alice@h")).unwrap().len(),
            t.account.keep()
        );
    }

    #[test]
    fn failures_leave_the_sliding_window() {
        let t = Throttle::new(policy(1000, 300, 1, 1), policy(2, 60, 500, 5000));
        let a = ip("192.0.2.1");
        let t0 = Instant::now();
        t.failed_at(a, "alice@h", t0);
        t.failed_at(a, "alice@h", t0 + Duration::from_secs(40));
        assert!(t
            .check_at(a, "alice@h", t0 + Duration::from_secs(59))
            .is_some());
        // The first failure is out of the window: one left, below the threshold.
        assert_eq!(t.check_at(a, "alice@h", t0 + Duration::from_secs(60)), None);
        // A new failure makes two within the window again.
        t.failed_at(a, "alice@h", t0 + Duration::from_secs(61));
        assert!(t
            .check_at(a, "alice@h", t0 + Duration::from_secs(62))
            .is_some());
        assert_eq!(
            t.check_at(a, "alice@h", t0 + Duration::from_secs(200)),
            None
        );
    }

    #[test]
    fn address_and_account_are_separate_keys() {
        let t = defaults();
        let a = ip("192.0.2.1");
        let b = ip("192.0.2.2");
        let now = Instant::now();
        for _ in 0..5 {
            t.failed_at(a, "alice@h", now);
        }
        // The account is over its threshold, from anywhere; the address (5 of 10) is not.
        let v = t.check_at(b, "alice@h", now).unwrap();
        assert_eq!((v.scope, v.delay), (Scope::Account, MS * 500));
        assert_eq!(t.check_at(a, "bob@h", now), None, "bystander not slowed");
        // Spraying other accounts from the address: the address's threshold.
        for i in 0..5 {
            t.failed_at(a, &format!("user{i}@h"), now);
        }
        let v = t.check_at(a, "bob@h", now).unwrap();
        assert_eq!((v.scope, v.delay), (Scope::Address, MS * 500));
        assert_eq!(t.check_at(b, "bob@h", now), None, "elsewhere, bob is fine");
        // Both over: the longer delay wins (alice 7 of 5: 2 s; the address 10 of 10: 0.5 s).
        for _ in 0..2 {
            t.failed_at(b, "alice@h", now);
        }
        let v = t.check_at(a, "alice@h", now).unwrap();
        assert_eq!((v.scope, v.delay), (Scope::Account, MS * 2000));
    }

    #[test]
    fn success_clears_the_address_and_its_account_only() {
        let t = defaults();
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for _ in 0..10 {
            t.failed_at(a, "alice@h", now);
        }
        t.failed_at(a, "bob@h", now);
        assert_eq!(t.check_at(a, "carol@h", now).unwrap().scope, Scope::Address);
        // The attacker owns carol: the address is cleared...
        t.succeeded(a, "carol@h");
        assert_eq!(t.check_at(a, "carol@h", now), None);
        assert_eq!(t.check_at(a, "bob@h", now), None);
        // ...but guessing at alice stays throttled under alice's own key.
        let v = t.check_at(a, "alice@h", now).unwrap();
        assert_eq!(v.scope, Scope::Account);
        assert_eq!(v.delay, MS * 5000);
        // alice's own success clears alice.
        t.succeeded(ip("198.51.100.7"), "alice@h");
        assert_eq!(t.check_at(a, "alice@h", now), None);
    }

    #[test]
    fn a_stream_falling_back_through_mechanisms_fails_once() {
        let mut s = StreamFailures::default();
        // slixmpp with a wrong password: three mechanisms, one guess.
        assert!(s.is_new_guess("alice@h", Mechanism::ScramSha256));
        assert!(!s.is_new_guess("alice@h", Mechanism::ScramSha1));
        assert!(!s.is_new_guess("alice@h", Mechanism::Plain));
        // The same mechanism again is another password.
        assert!(s.is_new_guess("alice@h", Mechanism::Plain));
        assert!(!s.is_new_guess("alice@h", Mechanism::ScramSha256));
        // Another account on the same stream is another guess.
        assert!(s.is_new_guess("bob@h", Mechanism::ScramSha256));
        s.clear();
        assert!(s.is_new_guess("alice@h", Mechanism::ScramSha1));

        // Fed to the throttle: three fallbacks on each of two streams = two failures.
        let t = Throttle::new(policy(1000, 300, 1, 1), policy(3, 300, 500, 5000));
        let a = ip("192.0.2.1");
        let now = Instant::now();
        for _ in 0..2 {
            let mut stream = StreamFailures::default();
            for m in [
                Mechanism::ScramSha256,
                Mechanism::ScramSha1,
                Mechanism::Plain,
            ] {
                if stream.is_new_guess("alice@h", m) {
                    t.failed_at(a, "alice@h", now);
                }
            }
        }
        assert_eq!(t.recent(&account_key("alice@h"), now), 2);
        assert_eq!(t.recent(&Key::Addr(a), now), 2);
        assert_eq!(t.check_at(a, "alice@h", now), None);
    }

    #[test]
    fn keep_covers_the_doublings() {
        for p in [
            policy(5, 1, 500, 5000),
            policy(5, 1, 1000, 1000),
            policy(1, 1, 1, 60_000),
        ] {
            assert_eq!(p.delay(p.keep()), p.max_delay, "{p:?}");
            assert!(p.delay(p.keep() - 1) < p.max_delay, "{p:?}");
        }
        assert_eq!(policy(5, 1, 500, 5000).keep(), 5 + 4);
    }

    #[test]
    fn stale_keys_are_swept() {
        let t = Throttle::new(policy(10, 1, 1, 1), policy(10, 1, 1, 1));
        let t0 = Instant::now();
        for i in 0..=SWEEP_ABOVE as u32 / 2 {
            t.failed_at(IpAddr::from(i.to_be_bytes()), "x@h", t0);
        }
        assert!(t.failures.len() > SWEEP_ABOVE / 2);
        let later = t0 + Duration::from_secs(2);
        for i in 0..=SWEEP_ABOVE as u32 / 2 {
            t.failed_at(IpAddr::from((i + (1 << 24)).to_be_bytes()), "y@h", later);
        }
        // Only the second batch (and its account) is left.
        assert_eq!(t.failures.len(), SWEEP_ABOVE / 2 + 2);
    }
}
