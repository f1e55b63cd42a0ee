//! The cluster as an operator sees it from one node (`[cluster]`).

use super::{run, AdminError, AdminResult};
use crate::cluster::Status;
use crate::server::Ctx;

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
