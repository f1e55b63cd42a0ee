//! Per-account locks for read-modify-write: a roster item's subscription
//! state, a roster set or remove, the offline store's count-then-insert.
//!
//! Why a lock in this process and not a database transaction: one gateway
//! process owns its database (sessions and routing live in its memory), so
//! an in-process lock is correct on SQLite and PostgreSQL alike, from the
//! same code, and costs no round trip. A task waiting for it holds no pool
//! connection (a transaction with `SELECT … FOR UPDATE` would, and a burst
//! of waiters could starve the pool); SQLite has no row locks, and its
//! `BEGIN IMMEDIATE` would serialise every account's writes behind one.
//!
//! Striped: a fixed array of mutexes, indexed by a (per-process keyed) hash
//! of the account, so memory stays bounded however many accounts there are.
//! Two accounts may share a stripe; that costs a little waiting, but means a
//! task must never hold two account locks at once (it could deadlock with
//! itself, or with a task locking the other way round). Rule: hold one
//! account's lock at a time, and release it before touching another
//! account (delivering a subscription stanza to the contact, for one).

use std::hash::{BuildHasher, RandomState};

use tokio::sync::{Mutex, MutexGuard};

use super::Storage;

/// Enough that unrelated accounts rarely wait for each other; 1024 idle
/// mutexes are a few tens of KiB.
const STRIPES: usize = 1024;

pub(crate) struct AccountLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl AccountLocks {
    pub(crate) fn new() -> AccountLocks {
        AccountLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn stripe(&self, host: &str, user: &str) -> usize {
        (self.hasher.hash_one((host, user)) % STRIPES as u64) as usize
    }

    /// Also used by `MemoryStore`, which has its own set.
    pub(crate) async fn lock(&self, host: &str, user: &str) -> AccountGuard<'_> {
        AccountGuard(self.stripes[self.stripe(host, user)].lock().await)
    }
}

/// Held while one account's data is read and written back; released on drop.
#[must_use = "the account is only locked while the guard lives"]
pub struct AccountGuard<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

impl Storage {
    /// Locks `user@host` for a read-modify-write of its roster, its pending
    /// subscription requests or its offline store (see the module comment:
    /// never hold two at once).
    pub async fn lock_account(&self, host: &str, user: &str) -> AccountGuard<'_> {
        self.locks.lock(host, user).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_account_at_a_time_and_released_on_drop() {
        let locks = Arc::new(AccountLocks::new());
        let held = locks.lock("h", "alice").await;
        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _g = locks.lock("h", "alice").await;
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a second holder got in");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released on drop")
            .expect("waiter");
    }

    #[tokio::test]
    async fn other_accounts_go_on() {
        let locks = AccountLocks::new();
        let _alice = locks.lock("h", "alice").await;
        // An account on another stripe is not held up.
        let other = (0..)
            .map(|n| format!("user{n}"))
            .find(|u| locks.stripe("h", u) != locks.stripe("h", "alice"))
            .expect("another stripe");
        let _other = tokio::time::timeout(Duration::from_secs(5), locks.lock("h", &other))
            .await
            .expect("not blocked by alice");
    }

    #[test]
    fn stripes_spread() {
        let locks = AccountLocks::new();
        let used: std::collections::HashSet<usize> = (0..4096)
            .map(|n| locks.stripe("localhost", &format!("user{n}")))
            .collect();
        assert!(used.len() > STRIPES / 2, "{} stripes used", used.len());
    }
}
