//! The session table: bare JID → the connected resources' handles.
//!
//! A sharded map (dashmap), so routing one stanza takes one shard read lock
//! for a moment and never a global lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::registry::{SessionRef, SessionRegistry};
use super::session::SessionHandle;

/// All bound sessions of this node.
#[derive(Default)]
pub struct SessionTable {
    /// foldhash, not SipHash: read for every routed stanza, and its keys
    /// are authenticated accounts (a peer cannot choose what is inserted).
    by_bare: DashMap<String, Vec<Arc<SessionHandle>>, foldhash::fast::RandomState>,
    next_id: AtomicU64,
    count: AtomicU64,
}

impl SessionTable {
    pub fn new() -> Self {
        Self::default()
    }
}

impl SessionRegistry for SessionTable {
    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn insert(&self, handle: Arc<SessionHandle>) -> Option<Arc<SessionHandle>> {
        let mut entry = self.by_bare.entry(handle.bare().to_string()).or_default();
        let old = entry
            .iter()
            .position(|s| s.resource() == handle.resource())
            .map(|i| entry.swap_remove(i));
        entry.push(handle);
        if old.is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        old
    }

    fn remove(&self, handle: &SessionHandle) -> bool {
        let mut removed = false;
        self.by_bare.remove_if_mut(handle.bare(), |_, list| {
            if let Some(i) = list.iter().position(|s| s.id() == handle.id()) {
                list.swap_remove(i);
                removed = true;
            }
            list.is_empty()
        });
        if removed {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    fn resources(&self, bare: &str) -> Vec<SessionRef> {
        self.by_bare
            .get(bare)
            .map(|l| l.value().iter().cloned().map(SessionRef::Local).collect())
            .unwrap_or_default()
    }

    fn full(&self, bare: &str, resource: &str) -> Option<SessionRef> {
        self.by_bare.get(bare).and_then(|l| {
            l.iter()
                .find(|s| s.resource() == resource)
                .cloned()
                .map(SessionRef::Local)
        })
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed) as usize
    }

    fn unique_users(&self) -> usize {
        self.by_bare.len()
    }

    fn all(&self) -> Vec<SessionRef> {
        self.by_bare
            .iter()
            .flat_map(|e| e.value().clone())
            .map(SessionRef::Local)
            .collect()
    }
}
