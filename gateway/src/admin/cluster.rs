//! The cluster as an operator sees it from one node (`[cluster]`).

use super::{run, AdminError, AdminResult, Page, Paged};
use crate::cluster::Status;
use crate::server::Ctx;
use serde::Serialize;

/// This node, the nodes in `cluster_nodes`, sessions per node, NATS state.
pub async fn status(ctx: &Ctx) -> AdminResult<Status> {
    run(ctx, "cluster_status", "cluster", async {
        match &ctx.cluster {
            Some(c) => Ok(c.status()),
            None => Err(AdminError::NotFound(
                "this node is not in a cluster (no [cluster] section)".into(),
            )),
        }
    })
    .await
}

#[derive(Debug, Clone, Serialize)]
pub struct Leaving {
    pub node: String,
}

/// Leaves the cluster and stops this node, as SIGTERM does: the answer
/// goes out first, then sessions close and queued stanzas are delivered
/// or stored.
pub async fn leave(ctx: &Ctx) -> AdminResult<Leaving> {
    run(ctx, "cluster_leave", "cluster", async {
        let Some(c) = &ctx.cluster else {
            return Err(AdminError::NotFound(
                "this node is not in a cluster (no [cluster] section)".into(),
            ));
        };
        tracing::info!(node = %c.config.node, "leaving the cluster (admin API)");
        let token = ctx.shutdown.clone();
        tokio::spawn(async move {
            // The reply is written before the listeners close.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            token.cancel();
        });
        Ok(Leaving {
            node: c.config.node.clone(),
        })
    })
    .await
}

/// One session anywhere in the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSession {
    pub node: String,
    pub jid: String,
    /// Its id on its node (`osprey session kick` there takes it).
    pub session_id: u64,
    pub available: bool,
    pub priority: i8,
    /// When it bound, ms since the epoch.
    pub started_at: i64,
}

/// Every session of the cluster, from this node's replica of the registry
/// (no other node is asked), sorted by full JID then node; `filter`: a
/// case-insensitive substring of the full JID or the node name.
pub async fn sessions(
    ctx: &Ctx,
    filter: Option<&str>,
    page: Page,
) -> AdminResult<Paged<ClusterSession>> {
    run(ctx, "cluster_sessions", filter.unwrap_or("*"), async {
        let Some(c) = &ctx.cluster else {
            return Err(AdminError::NotFound(
                "this node is not in a cluster (no [cluster] section)".into(),
            ));
        };
        let needle = filter.unwrap_or("").to_lowercase();
        let mut all: Vec<ClusterSession> = c
            .registry
            .everywhere()
            .into_iter()
            .filter(|(node, e)| {
                needle.is_empty()
                    || e.full.to_lowercase().contains(&needle)
                    || node.to_lowercase().contains(&needle)
            })
            .map(|(node, e)| ClusterSession {
                node,
                jid: e.full,
                session_id: e.id,
                available: e.available,
                priority: e.priority,
                started_at: e.started,
            })
            .collect();
        all.sort_by(|a, b| a.jid.cmp(&b.jid).then_with(|| a.node.cmp(&b.node)));
        Ok(page.of(all))
    })
    .await
}
