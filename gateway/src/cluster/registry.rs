//! The cluster's session registry: this node's sessions (the same
//! [`SessionTable`] a single node uses) and a replica of every other
//! node's, kept current from their registry messages. A route lookup never
//! leaves the node (CETS's model); a change to a local session is published
//! as it happens.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use tokio::sync::mpsc;

use super::wire::{Directed, Entry, RegistryMsg};
use crate::errors::{StreamCondition, StreamError};
use crate::router::{
    PresenceState, RemoteSession, SessionHandle, SessionRef, SessionRegistry, SessionTable,
    Undelivered,
};

/// What the publisher task sends.
pub enum Outgoing {
    Registry(RegistryMsg),
    /// To one node's subject: an encoded [`Directed`] and its XML.
    Directed {
        node: String,
        payload: Vec<u8>,
    },
    /// Answered once everything before it reached NATS.
    Flush(tokio::sync::oneshot::Sender<()>),
}

type Remote = DashMap<String, Vec<Arc<RemoteSession>>, foldhash::fast::RandomState>;

pub struct ClusterRegistry {
    pub node: String,
    /// When this node started, ms since the epoch.
    pub started: i64,
    local: SessionTable,
    /// bare JID → other nodes' sessions.
    remote: Remote,
    remote_count: AtomicUsize,
    /// Node → its start time, for every node heard from.
    pub(super) nodes: DashMap<String, i64>,
    out: mpsc::Sender<Outgoing>,
    out_rx: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    /// A registry change could not be queued: a snapshot is owed.
    pub(super) resync: AtomicBool,
    /// Stanzas sent to each node and not yet acknowledged by it.
    unacked: Mutex<std::collections::HashMap<String, Unacked>>,
    /// Unacknowledged stanzas of nodes that died or restarted: to be
    /// placed again (`take_orphans`).
    orphans: Mutex<Vec<(String, String)>>,
    queue: usize,
    /// Per sending node: what was taken in here from it, and what of that
    /// is done (acknowledged).
    inbound: super::inbound::Inbounds,
    /// When the last stanza from another node arrived (ms since the
    /// epoch): a leaving node waits for the stream to go quiet.
    last_arrival: std::sync::atomic::AtomicI64,
}

/// What one node was sent and has not acknowledged: (seq, full JID, xml).
#[derive(Default)]
struct Unacked {
    next: u64,
    pending: std::collections::VecDeque<(u64, String, String)>,
    /// The node was found dead and its pending taken: a route that looked
    /// its session up just before is refused (and stores offline) rather
    /// than queued where nothing would ever place it again. Cleared when
    /// the node is heard from again.
    dead: bool,
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn entry_of(h: &SessionHandle) -> Entry {
    let p = h.presence();
    Entry {
        id: h.id(),
        full: h.full().to_string(),
        started: h
            .info()
            .connected_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        available: p.available,
        priority: p.priority,
        last: p.last,
        roster: h.roster_interested.load(Ordering::Relaxed),
    }
}

fn remote_of(node: &str, e: Entry) -> RemoteSession {
    RemoteSession {
        node: node.to_string(),
        id: e.id,
        full: e.full,
        started: e.started,
        roster: e.roster,
        presence: PresenceState {
            available: e.available,
            priority: e.priority,
            last: e.last,
        },
    }
}

fn bare_of(full: &str) -> &str {
    full.split_once('/').map_or(full, |(b, _)| b)
}

impl ClusterRegistry {
    pub fn new(node: String, queue: usize) -> ClusterRegistry {
        let (out, rx) = mpsc::channel(queue);
        ClusterRegistry {
            node,
            started: now_ms(),
            local: SessionTable::new(),
            remote: Remote::default(),
            remote_count: AtomicUsize::new(0),
            nodes: DashMap::new(),
            out,
            out_rx: Mutex::new(Some(rx)),
            resync: AtomicBool::new(false),
            unacked: Mutex::new(std::collections::HashMap::new()),
            orphans: Mutex::new(Vec::new()),
            queue,
            inbound: Default::default(),
            last_arrival: std::sync::atomic::AtomicI64::new(0),
        }
    }

    pub(super) fn take_outgoing(&self) -> Option<mpsc::Receiver<Outgoing>> {
        self.out_rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// `node` is done with what this node sent it up to `upto`, except
    /// the (ascending) sequences in `except`.
    pub fn acked(&self, node: &str, upto: u64, except: &[u64]) {
        // Searched below: an out-of-order list from a peer is put in order.
        let sorted;
        let except = if except.is_sorted() {
            except
        } else {
            sorted = {
                let mut v = except.to_vec();
                v.sort_unstable();
                v
            };
            &sorted[..]
        };
        let mut all = self.unacked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(u) = all.get_mut(node) {
            while u
                .pending
                .front()
                .is_some_and(|(seq, _, _)| *seq <= upto && except.binary_search(seq).is_err())
            {
                u.pending.pop_front();
            }
            if !except.is_empty() {
                u.pending
                    .retain(|(seq, _, _)| *seq > upto || except.binary_search(seq).is_ok());
            }
        }
    }

    /// What came from `from`, and its acknowledgements. (The link looks
    /// it up once per NATS message: a batch comes from one node.)
    pub(super) fn inbound_of(&self, from: &str) -> Arc<super::inbound::Inbound> {
        self.last_arrival.store(now_ms(), Ordering::Relaxed);
        self.inbound.of(&self.node, from, &self.out)
    }

    /// Stanza `seq` from `from` arrived, `transit_us` on its way; its
    /// receipt is to travel with it until it is done here (None for a
    /// sequence already seen).
    #[cfg(test)]
    pub fn received(
        &self,
        from: &str,
        seq: u64,
        transit_us: i64,
    ) -> Option<crate::router::Receipt> {
        self.inbound_of(from)
            .received(seq, transit_us, std::time::Instant::now())
    }

    /// Held stanzas acknowledged anyway (too many held by stalled
    /// sessions) since the last call.
    pub fn take_given_up(&self) -> u64 {
        self.inbound.take_given_up()
    }

    /// Acknowledges to every node what is done and not yet acknowledged
    /// (the link's tick; under load acknowledgements go out every
    /// [`super::inbound::ACK_EVERY`] stanzas by themselves).
    pub fn ack_due(&self) {
        self.inbound.ack_due();
    }

    /// Per node, every sequence done here (what `Down` acknowledges).
    pub fn all_done(&self) -> std::collections::BTreeMap<String, u64> {
        self.inbound.all_done()
    }

    /// The smoothed transit time of stanzas from `node`, ms.
    pub fn transit_ms(&self, node: &str) -> Option<f64> {
        self.inbound.get(node)?.transit_ms()
    }

    /// Stanzas sent to `node` and not yet acknowledged by it.
    pub fn unacked_for(&self, node: &str) -> usize {
        let all = self.unacked.lock().unwrap_or_else(|e| e.into_inner());
        all.get(node).map_or(0, |u| u.pending.len())
    }

    /// `node` stopped or restarted: its sequence numbers start again.
    pub(super) fn forget_inbound(&self, node: &str) {
        self.inbound.forget(node);
    }

    /// Ms since a stanza from another node last arrived here.
    pub fn quiet_for_ms(&self) -> i64 {
        now_ms() - self.last_arrival.load(Ordering::Relaxed)
    }

    /// `node` died or restarted: what it did not acknowledge is to be placed
    /// again (it may have been delivered just before: at least once).
    pub fn orphan_unacked(&self, node: &str, dead: bool) {
        let gone = {
            let mut all = self.unacked.lock().unwrap_or_else(|e| e.into_inner());
            let gone = all.remove(node);
            if dead {
                all.insert(
                    node.to_string(),
                    Unacked {
                        dead: true,
                        ..Unacked::default()
                    },
                );
            }
            gone
        };
        if let Some(u) = gone {
            self.orphans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(u.pending.into_iter().map(|(_, full, xml)| (full, xml)));
        }
    }

    /// Stanzas to place again: (the full JID they were for, the XML).
    pub fn take_orphans(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stanzas sent and not yet acknowledged, all nodes.
    pub fn unacked_len(&self) -> usize {
        self.unacked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|u| u.pending.len())
            .sum()
    }

    /// Queues for the publisher; false when the queue is full or closed.
    pub fn try_queue(&self, item: Outgoing) -> bool {
        self.out.try_send(item).is_ok()
    }

    fn publish(&self, msg: RegistryMsg) {
        if self.out.try_send(Outgoing::Registry(msg)).is_err() {
            self.resync.store(true, Ordering::Relaxed);
        }
    }

    /// Every local session, as a snapshot message.
    pub fn snapshot(&self) -> RegistryMsg {
        let sessions = self
            .local
            .all()
            .iter()
            .filter_map(|s| s.local().map(|h| entry_of(h)))
            .collect();
        RegistryMsg::Snapshot {
            node: self.node.clone(),
            started: self.started,
            ts: now_us(),
            sessions,
        }
    }

    pub fn hello(&self) -> RegistryMsg {
        RegistryMsg::Hello {
            node: self.node.clone(),
            started: self.started,
        }
    }

    /// This node's sessions of a bare JID.
    pub fn local_resources(&self, bare: &str) -> Vec<SessionRef> {
        self.local.resources(bare)
    }

    /// Items waiting for the publisher.
    pub fn queued(&self) -> usize {
        self.out.max_capacity() - self.out.capacity()
    }

    /// Sessions on other nodes.
    pub fn remote_len(&self) -> usize {
        self.remote_count.load(Ordering::Relaxed)
    }

    /// Every session in the cluster as this node's registry has it:
    /// (node, entry), this node's first.
    pub fn everywhere(&self) -> Vec<(String, Entry)> {
        let mut all: Vec<(String, Entry)> = self
            .local
            .all()
            .iter()
            .filter_map(|s| s.local().map(|h| (self.node.clone(), entry_of(h))))
            .collect();
        for list in self.remote.iter() {
            for r in list.value() {
                all.push((
                    r.node.clone(),
                    Entry {
                        id: r.id,
                        full: r.full.clone(),
                        started: r.started,
                        available: r.presence.available,
                        priority: r.presence.priority,
                        last: None,
                        roster: r.roster,
                    },
                ));
            }
        }
        all
    }

    /// Other nodes' sessions, by node.
    pub fn remote_by_node(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for list in self.remote.iter() {
            for s in list.value() {
                *out.entry(s.node.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    fn add_remote(&self, node: &str, e: Entry) {
        self.heard_from(node);
        let r = Arc::new(remote_of(node, e));
        let mut list = self.remote.entry(bare_of(&r.full).to_string()).or_default();
        // One entry per full JID: a newer session elsewhere replaces it.
        if let Some(i) = list.iter().position(|s| s.full == r.full) {
            list[i] = r;
        } else {
            list.push(r);
            self.remote_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn remove_remote(&self, node: &str, id: u64) {
        let mut gone = 0;
        self.remote.retain(|_, list| {
            let before = list.len();
            list.retain(|s| !(s.node == node && s.id == id));
            gone += before - list.len();
            !list.is_empty()
        });
        self.remote_count.fetch_sub(gone, Ordering::Relaxed);
    }

    /// `node` is alive after all (a stall ended, or it restarted): routes
    /// to it are taken again.
    fn heard_from(&self, node: &str) {
        let mut all = self.unacked.lock().unwrap_or_else(|e| e.into_inner());
        if all.get(node).is_some_and(|u| u.dead) {
            all.remove(node);
        }
    }

    /// Drops every session of `node`; returns them.
    pub fn drop_node(&self, node: &str) -> Vec<Arc<RemoteSession>> {
        let mut gone = Vec::new();
        self.remote.retain(|_, list| {
            list.retain(|s| {
                let keep = s.node != node;
                if !keep {
                    gone.push(s.clone());
                }
                keep
            });
            !list.is_empty()
        });
        self.remote_count.fetch_sub(gone.len(), Ordering::Relaxed);
        gone
    }

    /// A newer session with the same full JID bound on another node: ours
    /// closes with `<conflict/>` (RFC 6120 §7.7.2.2).
    fn resolve_conflict(&self, node: &str, e: &Entry) {
        let bare = bare_of(&e.full);
        let resource = e.full.split_once('/').map_or("", |(_, r)| r);
        if let Some(SessionRef::Local(h)) = self.local.full(bare, resource) {
            let ours = entry_of(&h).started;
            if (ours, self.node.as_str()) < (e.started, node) {
                h.close(StreamError::with_text(
                    StreamCondition::Conflict,
                    "replaced by a new connection on another node",
                ));
            }
        }
    }

    /// Applies another node's registry message; `Some(reply)` to publish.
    /// Returns the sessions dropped when the message says a node is gone or
    /// restarted (their contacts get unavailable presence).
    pub fn apply(&self, msg: RegistryMsg) -> (Option<RegistryMsg>, Vec<Arc<RemoteSession>>) {
        if msg.node() == self.node {
            return (None, Vec::new());
        }
        match msg {
            RegistryMsg::Hello { node, started } => {
                let dropped = self.note_start(&node, started);
                (Some(self.snapshot()), dropped)
            }
            RegistryMsg::Snapshot {
                node,
                started,
                sessions,
                ..
            } => {
                let mut dropped = self.note_start(&node, started);
                // The snapshot replaces what was known: only what it lacks
                // is gone.
                let mut stale = self.drop_node(&node);
                stale.retain(|s| !sessions.iter().any(|e| e.id == s.id));
                dropped.extend(stale);
                for e in sessions {
                    self.resolve_conflict(&node, &e);
                    self.add_remote(&node, e);
                }
                (None, dropped)
            }
            RegistryMsg::Join { node, entry } => {
                self.resolve_conflict(&node, &entry);
                self.add_remote(&node, entry);
                (None, Vec::new())
            }
            RegistryMsg::Update { node, entry } => {
                self.add_remote(&node, entry);
                (None, Vec::new())
            }
            RegistryMsg::Leave { node, id } => {
                self.remove_remote(&node, id);
                (None, Vec::new())
            }
            RegistryMsg::Down { node, acks } => {
                if let Some(upto) = acks.get(&self.node) {
                    self.acked(&node, *upto, &[]);
                }
                self.nodes.remove(&node);
                self.forget_inbound(&node);
                self.orphan_unacked(&node, true);
                (None, self.drop_node(&node))
            }
        }
    }

    /// Records a node's start time; a restart drops what it had before.
    fn note_start(&self, node: &str, started: i64) -> Vec<Arc<RemoteSession>> {
        let prev = self.nodes.insert(node.to_string(), started);
        match prev {
            Some(p) if p != started => {
                self.forget_inbound(node);
                self.orphan_unacked(node, false);
                self.drop_node(node)
            }
            _ => Vec::new(),
        }
    }

    /// Queues a stanza for a session on another node.
    fn send_directed(&self, node: &str, header: &Directed, xml: &str) -> bool {
        let payload = super::wire::encode_directed(header, xml);
        self.out
            .try_send(Outgoing::Directed {
                node: node.to_string(),
                payload,
            })
            .is_ok()
    }
}

impl SessionRegistry for ClusterRegistry {
    fn next_id(&self) -> u64 {
        self.local.next_id()
    }

    fn insert(&self, handle: Arc<SessionHandle>) -> Option<Arc<SessionHandle>> {
        let entry = entry_of(&handle);
        let old = self.local.insert(handle);
        self.publish(RegistryMsg::Join {
            node: self.node.clone(),
            entry,
        });
        old
    }

    fn remove(&self, handle: &SessionHandle) -> bool {
        let removed = self.local.remove(handle);
        if removed {
            self.publish(RegistryMsg::Leave {
                node: self.node.clone(),
                id: handle.id(),
            });
        }
        removed
    }

    fn resources(&self, bare: &str) -> Vec<SessionRef> {
        let mut all = self.local.resources(bare);
        if let Some(list) = self.remote.get(bare) {
            all.extend(list.iter().map(|r| SessionRef::Remote(r.clone())));
        }
        all
    }

    fn full(&self, bare: &str, resource: &str) -> Option<SessionRef> {
        if let Some(s) = self.local.full(bare, resource) {
            return Some(s);
        }
        let list = self.remote.get(bare)?;
        let full = format!("{bare}/{resource}");
        list.iter()
            .find(|r| r.full == full)
            .map(|r| SessionRef::Remote(r.clone()))
    }

    fn len(&self) -> usize {
        self.local.len()
    }

    fn unique_users(&self) -> usize {
        self.local.unique_users()
    }

    fn all(&self) -> Vec<SessionRef> {
        self.local.all()
    }

    fn presence_changed(&self, handle: &SessionHandle) {
        // A session already removed (its unavailable presence can follow
        // its removal, on a kick): an update would bring it back elsewhere.
        let bare = bare_of(handle.full());
        let resource = handle.full().get(bare.len() + 1..).unwrap_or("");
        let current = self
            .local
            .full(bare, resource)
            .is_some_and(|s| s.id() == handle.id());
        if !current {
            return;
        }
        self.publish(RegistryMsg::Update {
            node: self.node.clone(),
            entry: entry_of(handle),
        });
    }

    fn deliver_remote(&self, to: &RemoteSession, xml: String) -> Result<(), Undelivered> {
        let mut all = self.unacked.lock().unwrap_or_else(|e| e.into_inner());
        // (No key allocated per stanza: the node is there after the first.)
        if !all.contains_key(&to.node) {
            all.insert(to.node.clone(), Unacked::default());
        }
        let Some(u) = all.get_mut(&to.node) else {
            return Err(Undelivered(xml));
        };
        // Bounded: a node that stops acknowledging gets nothing more.
        if u.dead || u.pending.len() >= self.queue {
            return Err(Undelivered(xml));
        }
        u.next += 1;
        let header = Directed::Deliver {
            id: to.id,
            full: to.full.clone(),
            ts: now_us(),
            from: self.node.clone(),
            seq: u.next,
            tp: super::trace::current_traceparent(),
        };
        // Under the lock: sequence numbers reach the queue in order.
        if self.send_directed(&to.node, &header, &xml) {
            u.pending.push_back((u.next, to.full.clone(), xml));
            Ok(())
        } else {
            u.next -= 1;
            Err(Undelivered(xml))
        }
    }

    fn close_remote(&self, to: &RemoteSession, error: StreamError) {
        let header = Directed::Close {
            id: to.id,
            condition: error.condition.wire_name().to_string(),
            text: error.text,
            app: error.app,
        };
        let _ = self.send_directed(&to.node, &header, "");
    }

    fn local_full(&self, bare: &str, resource: &str) -> Option<Arc<SessionHandle>> {
        match self.local.full(bare, resource)? {
            SessionRef::Local(h) => Some(h),
            SessionRef::Remote(_) => None,
        }
    }

    fn local_by_id(&self, id: u64) -> Option<Arc<SessionHandle>> {
        self.local
            .all()
            .into_iter()
            .find_map(|s| s.local().filter(|h| h.id() == id).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob_on_n2() -> RemoteSession {
        RemoteSession {
            node: "n2".into(),
            id: 7,
            full: "bob@x/b".into(),
            started: 1,
            roster: false,
            presence: PresenceState {
                available: true,
                priority: 0,
                last: None,
            },
        }
    }

    fn body(n: u32) -> String {
        format!("<message to='bob@x/b'><body>{n}</body></message>")
    }

    /// A node that leaves says what it handled: only the rest is placed
    /// again (no duplicates of what it delivered or stored).
    #[test]
    fn down_acknowledges_what_the_leaving_node_handled() {
        let r = ClusterRegistry::new("n1".into(), 16);
        for n in 1..=3 {
            r.deliver_remote(&bob_on_n2(), body(n)).expect("queued");
        }
        assert_eq!(r.unacked_len(), 3);
        let (_, gone) = r.apply(RegistryMsg::Down {
            node: "n2".into(),
            acks: [("n1".to_string(), 2), ("n9".to_string(), 40)].into(),
        });
        assert!(gone.is_empty(), "n2's sessions were not known here");
        assert_eq!(r.unacked_len(), 0);
        let orphans = r.take_orphans();
        assert_eq!(orphans, vec![("bob@x/b".to_string(), body(3))]);
    }

    /// Without acknowledgements (a `Down` from an older node, or one that
    /// handled nothing) everything unacknowledged is placed again.
    #[test]
    fn down_without_acks_places_everything_again() {
        let r = ClusterRegistry::new("n1".into(), 16);
        for n in 1..=2 {
            r.deliver_remote(&bob_on_n2(), body(n)).expect("queued");
        }
        let down: RegistryMsg =
            serde_json::from_str(r#"{"t":"down","node":"n2"}"#).expect("old form");
        r.apply(down);
        assert_eq!(r.take_orphans().len(), 2);
    }

    /// What arrives is acknowledged once done; a node that restarts
    /// numbers from 1 again and is acknowledged from there.
    #[test]
    fn received_stanzas_are_acknowledged_once_done_and_restart_from_scratch() {
        let r = ClusterRegistry::new("n2".into(), 16);
        let mut out = r.take_outgoing().expect("queue");
        let acks = |out: &mut mpsc::Receiver<Outgoing>| {
            let mut v = Vec::new();
            while let Ok(Outgoing::Directed { node, payload }) = out.try_recv() {
                if let Some((Directed::Ack { from, upto, .. }, _)) =
                    super::super::wire::decode_directed(&payload)
                {
                    v.push((node, from, upto));
                }
            }
            v
        };
        let first = r.received("n1", 1, 100);
        drop(r.received("n1", 2, 100));
        r.ack_due();
        assert!(acks(&mut out).is_empty(), "1 is not done: nothing is");
        drop(first);
        r.ack_due();
        assert_eq!(acks(&mut out), vec![("n1".into(), "n2".into(), 2)]);
        r.ack_due();
        assert!(acks(&mut out).is_empty(), "sent once");
        assert_eq!(r.all_done(), [("n1".to_string(), 2)].into());
        assert!(r.quiet_for_ms() < 1000);
        assert_eq!(r.transit_ms("n1"), Some(0.1));
        assert_eq!(r.transit_ms("n9"), None);
        // n1 restarts: its new sequence 1 is acknowledged as 1, not 2.
        r.apply(RegistryMsg::Hello {
            node: "n1".into(),
            started: 5,
        });
        r.apply(RegistryMsg::Hello {
            node: "n1".into(),
            started: 6,
        });
        drop(r.received("n1", 1, 100));
        r.ack_due();
        assert_eq!(acks(&mut out), vec![("n1".into(), "n2".into(), 1)]);
    }

    /// A node found dead: a route that looked its session up just before
    /// is refused (stored offline by the router) instead of queued where
    /// nothing would place it again; hearing from the node lifts that.
    #[test]
    fn a_dead_node_refuses_late_routes_until_heard_from() {
        let r = ClusterRegistry::new("n1".into(), 16);
        let _rx = r.take_outgoing();
        r.deliver_remote(&bob_on_n2(), body(1)).expect("queued");
        r.orphan_unacked("n2", true);
        assert_eq!(r.take_orphans().len(), 1);
        assert!(r.deliver_remote(&bob_on_n2(), body(2)).is_err());
        r.apply(RegistryMsg::Join {
            node: "n2".into(),
            entry: Entry {
                id: 9,
                full: "bob@x/b".into(),
                started: 2,
                roster: false,
                available: true,
                priority: 0,
                last: None,
            },
        });
        r.deliver_remote(&bob_on_n2(), body(3))
            .expect("queued again");
    }

    /// An acknowledgement with exceptions: what it names stays, the rest
    /// up to `upto` goes; a later one frees the exceptions.
    #[test]
    fn exceptions_stay_unacknowledged() {
        let r = ClusterRegistry::new("n1".into(), 16);
        let _rx = r.take_outgoing();
        for n in 1..=5 {
            r.deliver_remote(&bob_on_n2(), body(n)).expect("queued");
        }
        r.acked("n2", 4, &[3, 1]);
        assert_eq!(r.unacked_for("n2"), 3, "out of order, taken in order");
        r.orphan_unacked("n2", false);
        let left: Vec<String> = r.take_orphans().into_iter().map(|(_, x)| x).collect();
        assert_eq!(left, vec![body(1), body(3), body(5)]);
    }

    /// A node that stops acknowledging gets at most `queue` stanzas.
    #[test]
    fn unacknowledged_stanzas_are_bounded() {
        let r = ClusterRegistry::new("n1".into(), 4);
        let _rx = r.take_outgoing();
        let sent = (0..10)
            .filter(|n| r.deliver_remote(&bob_on_n2(), body(*n)).is_ok())
            .count();
        assert_eq!(sent, 4);
        assert_eq!(r.unacked_len(), 4);
        r.acked("n2", 2, &[]);
        assert_eq!(r.unacked_len(), 2);
        assert_eq!(r.unacked_for("n2"), 2);
        assert_eq!(r.unacked_for("n3"), 0);
    }
}
