//! The session registry behind the router: where a JID's sessions are.
//! A session reference is local (a handle into this process) or remote (a
//! session on another node, for the cluster backend to fill in); only the
//! router delivers to one.

use std::sync::Arc;

use super::session::{PresenceState, SessionHandle};

/// A session somewhere in the deployment.
#[derive(Clone)]
pub enum SessionRef {
    Local(Arc<SessionHandle>),
    /// On another node (no cluster backend yet: never produced).
    Remote(Arc<RemoteSession>),
}

/// What a node knows of another node's session.
#[derive(Debug, Clone)]
pub struct RemoteSession {
    pub node: String,
    pub id: u64,
    pub full: String,
    pub presence: PresenceState,
}

impl SessionRef {
    pub fn id(&self) -> u64 {
        match self {
            SessionRef::Local(h) => h.id(),
            SessionRef::Remote(r) => r.id,
        }
    }

    pub fn full(&self) -> &str {
        match self {
            SessionRef::Local(h) => h.full(),
            SessionRef::Remote(r) => &r.full,
        }
    }

    pub fn presence(&self) -> PresenceState {
        match self {
            SessionRef::Local(h) => h.presence(),
            SessionRef::Remote(r) => r.presence.clone(),
        }
    }

    pub fn is_available(&self) -> bool {
        match self {
            SessionRef::Local(h) => h.is_available(),
            SessionRef::Remote(r) => r.presence.available,
        }
    }

    /// Asked for the roster, so it gets roster pushes (RFC 6121 §2.1.6).
    pub fn roster_interested(&self) -> bool {
        match self {
            SessionRef::Local(h) => h
                .roster_interested
                .load(std::sync::atomic::Ordering::Relaxed),
            SessionRef::Remote(_) => false,
        }
    }

    /// Asks the session to close with a stream error (kick, conflict).
    pub fn close(&self, error: crate::errors::StreamError) {
        match self {
            SessionRef::Local(h) => h.close(error),
            // No cluster backend yet.
            SessionRef::Remote(_) => {}
        }
    }

    /// The local handle, for the session's own module hooks.
    pub fn local(&self) -> Option<&Arc<SessionHandle>> {
        match self {
            SessionRef::Local(h) => Some(h),
            SessionRef::Remote(_) => None,
        }
    }
}

/// Where sessions are registered. The single-node backend is
/// [`super::SessionTable`]; a cluster backend replicates it.
pub trait SessionRegistry: Send + Sync {
    /// A fresh session id (unique for this node).
    fn next_id(&self) -> u64;
    /// Adds a bound session; returns the local session it replaces (same
    /// full JID), which the caller closes with `<conflict/>`.
    fn insert(&self, handle: Arc<SessionHandle>) -> Option<Arc<SessionHandle>>;
    /// Removes exactly this session (not a newer one with the same JID).
    fn remove(&self, handle: &SessionHandle) -> bool;
    fn resources(&self, bare: &str) -> Vec<SessionRef>;
    fn full(&self, bare: &str, resource: &str) -> Option<SessionRef>;
    /// Sessions registered (detached ones included).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Distinct users online.
    fn unique_users(&self) -> usize;
    /// Every session of this node (admin API, shutdown).
    fn all(&self) -> Vec<SessionRef>;
}
