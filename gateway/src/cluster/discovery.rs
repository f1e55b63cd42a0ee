//! Discovery and node loss (CETS's RDBMS discovery): every `heartbeat`
//! seconds a node refreshes its `cluster_nodes` row and reads everyone's.
//! A node whose row is older than `node_timeout` (or gone) is dead: its
//! sessions leave this node's registry, their contacts here get
//! unavailable presence, and messages for those users now go offline.
//! A snapshot owed (a registry change that did not fit the queue) is sent
//! here too.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::registry::{now_ms, Outgoing};
use super::Cluster;
use crate::server::Ctx;
use crate::storage::ClusterNode;

pub async fn run(ctx: Arc<Ctx>, cluster: Arc<Cluster>, address: String) {
    // Their series exist at 0 from the start: an alert on increase() sees
    // the first node lost.
    for spec in [
        &crate::events::CLUSTER_NODE_DOWN,
        &crate::events::CLUSTER_REPLACED,
    ] {
        ctx.instr.registry.resolve(spec, &[]);
    }
    let cfg = &cluster.config;
    let timeout_ms = (cfg.node_timeout * 1000) as i64;
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.heartbeat));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let me = ClusterNode {
        node: cfg.node.clone(),
        address,
        started_at: cluster.registry.started,
        heartbeat_at: 0,
    };
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        let beat = ClusterNode {
            heartbeat_at: now,
            ..me.clone()
        };
        if let Err(e) = ctx.storage.cluster_heartbeat(&beat).await {
            tracing::warn!(error = %e, "cluster: heartbeat not written");
        }
        let rows = match ctx.storage.cluster_nodes().await {
            Ok(r) => r,
            Err(e) => {
                // Without the table nothing can be declared dead.
                tracing::warn!(error = %e, "cluster: nodes unreadable");
                continue;
            }
        };
        let alive: HashSet<&str> = rows
            .iter()
            .filter(|n| now - n.heartbeat_at <= timeout_ms)
            .map(|n| n.node.as_str())
            .collect();
        let registry = &cluster.registry;
        let mut known: HashSet<String> = registry.remote_by_node().into_keys().collect();
        known.extend(registry.nodes.iter().map(|n| n.key().clone()));
        for node in known {
            if node == cfg.node || alive.contains(node.as_str()) {
                continue;
            }
            registry.nodes.remove(&node);
            registry.forget_inbound(&node);
            registry.orphan_unacked(&node, true);
            let gone = registry.drop_node(&node);
            tracing::warn!(node = %node, sessions = gone.len(), "cluster: node gone (no heartbeat); its sessions are dropped");
            ctx.instr.count(&crate::events::CLUSTER_NODE_DOWN, &[]);
            super::sessions_gone(&ctx, &cluster, gone).await;
            super::place_orphans(&ctx, &cluster).await;
        }
        // Rows of nodes dead for long are removed (by every node; harmless).
        for n in rows
            .iter()
            .filter(|n| now - n.heartbeat_at > 10 * timeout_ms)
        {
            let _ = ctx.storage.cluster_forget(&n.node).await;
        }
        *cluster.nodes.lock().unwrap_or_else(|e| e.into_inner()) = rows;
        if registry.resync.swap(false, Ordering::Relaxed)
            && !registry.try_queue(Outgoing::Registry(registry.snapshot()))
        {
            registry.resync.store(true, Ordering::Relaxed);
        }
    }
}
