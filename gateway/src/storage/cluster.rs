//! Cluster discovery: the `cluster_nodes` table (one row per node, its
//! heartbeat refreshed by the node itself).

use sqlx::Row;

use super::{on_pool, Storage, StorageError};

/// One node's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    pub node: String,
    /// Where it can be reached for operators (its HTTP listener).
    pub address: String,
    /// ms since the epoch.
    pub started_at: i64,
    pub heartbeat_at: i64,
}

impl Storage {
    /// Inserts or refreshes this node's row.
    pub async fn cluster_heartbeat(&self, n: &ClusterNode) -> Result<(), StorageError> {
        self.op("cluster_heartbeat", async {
            on_pool!(self, p => {
                sqlx::query(
                    "INSERT INTO cluster_nodes (node, address, started_at, heartbeat_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (node) DO UPDATE SET address = excluded.address, \
                     started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at")
                    .bind(&n.node).bind(&n.address).bind(n.started_at).bind(n.heartbeat_at)
                    .execute(p).await?;
            });
            Ok(())
        })
        .await
    }

    /// Every row, sorted by node name.
    pub async fn cluster_nodes(&self) -> Result<Vec<ClusterNode>, StorageError> {
        self.op("cluster_nodes", async {
            let rows = on_pool!(self, p => sqlx::query(
                "SELECT node, address, started_at, heartbeat_at FROM cluster_nodes ORDER BY node")
                .fetch_all(p).await?
                .into_iter()
                .map(|r| Ok(ClusterNode {
                    node: r.try_get("node")?,
                    address: r.try_get("address")?,
                    started_at: r.try_get("started_at")?,
                    heartbeat_at: r.try_get("heartbeat_at")?,
                }))
                .collect::<Result<Vec<_>, sqlx::Error>>()?);
            Ok(rows)
        })
        .await
    }

    /// Removes a node's row (it left, or it is long gone).
    pub async fn cluster_forget(&self, node: &str) -> Result<(), StorageError> {
        self.op("cluster_forget", async {
            on_pool!(self, p => {
                sqlx::query("DELETE FROM cluster_nodes WHERE node = $1")
                    .bind(node)
                    .execute(p).await?;
            });
            Ok(())
        })
        .await
    }
}
