//! A cluster of Osprey nodes (`[cluster]`): a session registry and router
//! backend, on NATS for node-to-node messages and on the shared SQL
//! database for discovery (MongooseIM's CETS model).
//!
//! - [`registry`]: [`ClusterRegistry`], the `SessionRegistry` of a node in
//!   a cluster: its own sessions plus a replica of every other node's, so
//!   routing never asks another node where a JID is;
//! - [`wire`]: the NATS subjects and messages;
//! - [`link`]: the NATS connection and the tasks that publish this node's
//!   changes and stanzas and apply what others send;
//! - `inbound`: stanzas taken in from other nodes, acknowledged to their
//!   sender once written out or kept (a node killed before that has not
//!   acknowledged them, so the sender places them again);
//! - [`discovery`]: the heartbeat in `cluster_nodes`, and what happens when
//!   a node stops beating (its sessions are dropped, their contacts here get
//!   unavailable presence, messages for them go offline);
//! - [`trace`]: one OTLP trace across nodes.
//!
//! The router is unaware of all this: a `SessionRef::Remote` from the
//! registry is delivered through `SessionRegistry::deliver_remote`.

mod discovery;
mod inbound;
mod link;
pub mod registry;
mod trace;
pub mod wire;

use std::sync::{Arc, OnceLock};

use crate::config::Cluster as ClusterConfig;
use crate::jid::Jid;
use crate::router::RemoteSession;
use crate::server::Ctx;
use crate::storage::{ClusterNode, Subscription};

pub use registry::ClusterRegistry;

/// The machine's hostname (the default node name), as a subject token.
pub fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "osprey".into());
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "osprey".into()
    } else {
        name
    }
}

/// This node's part in the cluster.
pub struct Cluster {
    pub config: ClusterConfig,
    pub registry: Arc<ClusterRegistry>,
    client: OnceLock<async_nats::Client>,
    /// The last `cluster_nodes` read (discovery), for status.
    nodes: std::sync::Mutex<Vec<ClusterNode>>,
}

/// What `osprey cluster status` and `/api/cluster` show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub node: String,
    pub cluster: String,
    /// connected, disconnected or pending.
    pub nats: String,
    pub local_sessions: usize,
    pub remote_sessions: usize,
    pub nodes: Vec<NodeStatus>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub address: String,
    pub started_at: i64,
    /// ms since its last heartbeat.
    pub heartbeat_age_ms: i64,
    pub alive: bool,
    /// Its sessions as this node knows them (its own count for itself).
    pub sessions: usize,
    /// The lag: smoothed transit time of its stanzas to this node, ms
    /// (none until one came).
    pub transit_ms: Option<f64>,
    /// Stanzas this node sent it that it has not acknowledged yet.
    pub unacked: usize,
}

impl Cluster {
    pub fn new(config: ClusterConfig) -> Cluster {
        let registry = Arc::new(ClusterRegistry::new(config.node.clone(), config.queue));
        Cluster {
            config,
            registry,
            client: OnceLock::new(),
            nodes: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Connects to NATS (retrying in the background when it is down) and
    /// starts the link and discovery tasks.
    pub async fn start(self: &Arc<Self>, ctx: &Arc<Ctx>, address: String) {
        match link::connect(&self.config, self.clone()).await {
            Ok(client) => {
                let _ = self.client.set(client.clone());
                link::spawn(ctx.clone(), self.clone(), client).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cluster: NATS options refused; this node routes locally only");
            }
        }
        tokio::spawn(discovery::run(ctx.clone(), self.clone(), address));
    }

    /// Leaves: tells the others this node's sessions are gone, removes its
    /// row, and waits until NATS has what was queued.
    pub async fn leave(&self, ctx: &Ctx) {
        link::leave(self).await;
        if let Err(e) = ctx.storage.cluster_forget(&self.config.node).await {
            tracing::warn!(error = %e, "cluster: could not remove this node's row");
        }
    }

    pub fn status(&self) -> Status {
        let nats = match self.client.get().map(|c| c.connection_state()) {
            Some(async_nats::connection::State::Connected) => "connected",
            Some(async_nats::connection::State::Disconnected) => "disconnected",
            Some(async_nats::connection::State::Pending) | None => "pending",
        };
        let now = registry::now_ms();
        let timeout = (self.config.node_timeout * 1000) as i64;
        let by_node = self.registry.remote_by_node();
        let local = crate::router::SessionRegistry::len(&*self.registry);
        let nodes = self
            .nodes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|n| NodeStatus {
                node: n.node.clone(),
                address: n.address.clone(),
                started_at: n.started_at,
                heartbeat_age_ms: now - n.heartbeat_at,
                alive: now - n.heartbeat_at <= timeout,
                sessions: if n.node == self.config.node {
                    local
                } else {
                    by_node.get(&n.node).copied().unwrap_or(0)
                },
                transit_ms: self.registry.transit_ms(&n.node),
                unacked: self.registry.unacked_for(&n.node),
            })
            .collect();
        Status {
            node: self.config.node.clone(),
            cluster: self.config.name.clone(),
            nats: nats.into(),
            local_sessions: local,
            remote_sessions: self.registry.remote_len(),
            nodes,
        }
    }
}

/// Stanzas sent to a node that died or restarted before acknowledging
/// them are placed again for their bare JID: another resource, on any
/// node, else offline storage. (Delivered twice at worst, never lost.)
pub async fn place_orphans(ctx: &Ctx, cluster: &Cluster) {
    let orphans = cluster.registry.take_orphans();
    if orphans.is_empty() {
        return;
    }
    tracing::info!(
        stanzas = orphans.len(),
        "cluster: placing again what a lost node did not acknowledge"
    );
    ctx.instr.emit(
        &crate::events::CLUSTER_REPLACED,
        &[],
        &[("count", 1.0), ("stanzas", orphans.len() as f64)],
    );
    for (full, xml) in orphans {
        if let Ok(jid) = Jid::parse(&full) {
            crate::router::redeliver_or_keep(ctx, &jid.to_bare(), &xml).await;
        }
    }
}

/// Sessions of another node are gone (it died or restarted): the contacts
/// of each that have sessions here get its unavailable presence, as that
/// node would have sent had it stopped cleanly. Every node does this for
/// its own sessions, so every contact hears it once.
pub async fn sessions_gone(ctx: &Ctx, cluster: &Cluster, gone: Vec<Arc<RemoteSession>>) {
    for s in gone.into_iter().filter(|s| s.presence.available) {
        let Ok(from) = Jid::parse(&s.full) else {
            continue;
        };
        let (host, Some(user)) = (from.domain(), from.local()) else {
            continue;
        };
        let roster = match ctx.stores.roster.roster_get(host, user).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, jid = %s.full, "cluster: roster unreadable; contacts not told");
                continue;
            }
        };
        // The contacts subscribed to it, and its own other resources.
        let own = from.bare();
        let watchers = roster
            .iter()
            .filter(|i| matches!(i.subscription, Subscription::From | Subscription::Both))
            .map(|i| i.jid.as_str())
            .chain([own.as_str()]);
        for bare in watchers {
            for c in cluster.registry.local_resources(bare) {
                if c.is_available() {
                    let xml = crate::xml::El::new("presence")
                        .attr("from", &s.full)
                        .attr("to", c.full())
                        .attr("type", "unavailable")
                        .to_string();
                    let _ = crate::router::deliver(ctx, &c, xml);
                }
            }
        }
    }
}
