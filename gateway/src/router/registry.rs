//! The session registry behind the router: where a JID's sessions are.
//! A session reference is local (a handle into this process) or remote (a
//! session on another node, for the cluster backend to fill in); only the
//! router delivers to one.

use std::sync::Arc;

use super::session::{PresenceState, SessionHandle, Undelivered};
use crate::errors::StreamError;

/// A session somewhere in the deployment.
#[derive(Clone)]
pub enum SessionRef {
    Local(Arc<SessionHandle>),
    /// On another node (the cluster backend).
    Remote(Arc<RemoteSession>),
}

/// What a node knows of another node's session.
#[derive(Debug, Clone)]
pub struct RemoteSession {
    pub node: String,
    pub id: u64,
    pub full: String,
    /// When it bound, ms since the epoch.
    pub started: i64,
    /// Asked for the roster (gets roster pushes).
    pub roster: bool,
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
            SessionRef::Remote(r) => r.roster,
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

    /// A local session's presence changed (a cluster backend tells the
    /// other nodes).
    fn presence_changed(&self, _handle: &SessionHandle) {}

    /// Hands XML to a session on another node; it comes back when it
    /// cannot be sent (the caller stores or bounces it).
    fn deliver_remote(&self, _to: &RemoteSession, xml: String) -> Result<(), Undelivered> {
        Err(Undelivered(xml))
    }

    /// Asks another node to close one of its sessions.
    fn close_remote(&self, _to: &RemoteSession, _error: StreamError) {}

    /// Closes a session with a stream error (a kick, an account removed),
    /// here or, through [`SessionRegistry::close_remote`], on its node.
    fn close(&self, session: &SessionRef, error: StreamError) {
        match session {
            SessionRef::Local(h) => h.close(error),
            SessionRef::Remote(r) => self.close_remote(r, error),
        }
    }

    /// This node's session with that full JID.
    fn local_full(&self, bare: &str, resource: &str) -> Option<Arc<SessionHandle>> {
        match self.full(bare, resource)? {
            SessionRef::Local(h) => Some(h),
            SessionRef::Remote(_) => None,
        }
    }

    /// This node's session with that id.
    fn local_by_id(&self, id: u64) -> Option<Arc<SessionHandle>> {
        self.all()
            .into_iter()
            .find_map(|s| s.local().filter(|h| h.id() == id).cloned())
    }
}
