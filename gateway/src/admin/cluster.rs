//! The cluster as an operator sees it from one node (`[cluster]`).

use super::{run, AdminError, AdminResult};
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
