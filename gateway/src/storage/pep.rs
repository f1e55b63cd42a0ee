//! XEP-0163 Personal Eventing Protocol: each account's nodes (their
//! configuration) in `pep_nodes`, their items in `pep_items` (serialised
//! payloads, ordered by a per-node sequence number).

use async_trait::async_trait;
use sqlx::Row;

use super::{now_ms, on_pool, PepStore, Storage, StorageError};

/// A node and its configuration, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PepNode {
    pub node: String,
    /// `presence`, `open` or `whitelist`.
    pub access_model: String,
    pub persist_items: bool,
    /// `None`: "max" (the server's cap).
    pub max_items: Option<u32>,
    /// `never`, `on_sub` or `on_sub_and_presence`.
    pub send_last: String,
}

/// One published item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PepItem {
    pub id: String,
    /// The full JID that published it.
    pub publisher: String,
    /// The payload, serialised (one element, or empty).
    pub xml: String,
    pub published_at_ms: i64,
}

fn node_of(r: &impl RowLike) -> Result<PepNode, sqlx::Error> {
    Ok(PepNode {
        node: r.text("node")?,
        access_model: r.text("access_model")?,
        persist_items: r.flag("persist_items")?,
        max_items: r
            .opt_int("max_items")?
            .map(|n| n.clamp(0, u32::MAX as i64) as u32),
        send_last: r.text("send_last")?,
    })
}

fn item_of(r: &impl RowLike) -> Result<PepItem, sqlx::Error> {
    Ok(PepItem {
        id: r.text("item_id")?,
        publisher: r.text("publisher")?,
        xml: r.text("xml")?,
        published_at_ms: r.int("published_at")?,
    })
}

/// The column reads both backends' rows share.
trait RowLike {
    fn text(&self, c: &str) -> Result<String, sqlx::Error>;
    fn int(&self, c: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error>;
    fn flag(&self, c: &str) -> Result<bool, sqlx::Error>;
}

macro_rules! row_like {
    ($t:ty) => {
        impl RowLike for $t {
            fn text(&self, c: &str) -> Result<String, sqlx::Error> {
                self.try_get(c)
            }
            fn int(&self, c: &str) -> Result<i64, sqlx::Error> {
                self.try_get(c)
            }
            fn opt_int(&self, c: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(c)
            }
            fn flag(&self, c: &str) -> Result<bool, sqlx::Error> {
                self.try_get(c)
            }
        }
    };
}
row_like!(sqlx::sqlite::SqliteRow);
row_like!(sqlx::postgres::PgRow);

const NODE_COLUMNS: &str = "node, access_model, persist_items, max_items, send_last";
const ITEM_COLUMNS: &str = "item_id, publisher, xml, published_at";

impl Storage {
    /// The account's nodes, sorted by name.
    pub async fn pep_nodes(&self, host: &str, user: &str) -> Result<Vec<PepNode>, StorageError> {
        self.op("pep_nodes", async {
            let sql = format!(
                "SELECT {NODE_COLUMNS} FROM pep_nodes WHERE host = $1 AND username = $2 ORDER BY node"
            );
            let nodes = on_pool!(self, p => sqlx::query(&sql)
                .bind(host).bind(user)
                .fetch_all(p).await?
                .iter().map(node_of).collect::<Result<Vec<_>, _>>()?);
            Ok(nodes)
        })
        .await
    }

    /// Creates the node or replaces its configuration (items are kept).
    pub async fn pep_node_put(
        &self,
        host: &str,
        user: &str,
        node: &PepNode,
    ) -> Result<(), StorageError> {
        self.op("pep_node_put", async {
            let max = node.max_items.map(i64::from);
            on_pool!(self, p => {
                sqlx::query(
                    "INSERT INTO pep_nodes (host, username, node, access_model, persist_items, \
                     max_items, send_last, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (host, username, node) DO UPDATE SET \
                     access_model = excluded.access_model, persist_items = excluded.persist_items, \
                     max_items = excluded.max_items, send_last = excluded.send_last")
                    .bind(host).bind(user).bind(&node.node).bind(&node.access_model)
                    .bind(node.persist_items).bind(max).bind(&node.send_last).bind(now_ms())
                    .execute(p).await?;
            });
            Ok(())
        })
        .await
    }

    /// Removes the node and its items; whether it existed.
    pub async fn pep_node_delete(
        &self,
        host: &str,
        user: &str,
        node: &str,
    ) -> Result<bool, StorageError> {
        self.op("pep_node_delete", async {
            let n = on_pool!(self, p => {
                let mut tx = p.begin().await?;
                sqlx::query("DELETE FROM pep_items WHERE host = $1 AND username = $2 AND node = $3")
                    .bind(host).bind(user).bind(node)
                    .execute(&mut *tx).await?;
                let n = sqlx::query("DELETE FROM pep_nodes WHERE host = $1 AND username = $2 AND node = $3")
                    .bind(host).bind(user).bind(node)
                    .execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                n
            });
            Ok(n > 0)
        })
        .await
    }

    /// Stores an item as the node's newest (replacing one with its id),
    /// then keeps only the `keep` newest. Runs under the caller's account lock.
    pub async fn pep_publish(
        &self,
        host: &str,
        user: &str,
        node: &str,
        item: &PepItem,
        keep: u32,
    ) -> Result<(), StorageError> {
        self.op("pep_publish", async {
            on_pool!(self, p => {
                let mut tx = p.begin().await?;
                let next: i64 = sqlx::query(
                    "SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM pep_items \
                     WHERE host = $1 AND username = $2 AND node = $3")
                    .bind(host).bind(user).bind(node)
                    .fetch_one(&mut *tx).await?
                    .try_get("n")?;
                sqlx::query(
                    "INSERT INTO pep_items (host, username, node, item_id, publisher, xml, seq, \
                     published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (host, username, node, item_id) DO UPDATE SET \
                     publisher = excluded.publisher, xml = excluded.xml, seq = excluded.seq, \
                     published_at = excluded.published_at")
                    .bind(host).bind(user).bind(node).bind(&item.id).bind(&item.publisher)
                    .bind(&item.xml).bind(next).bind(item.published_at_ms)
                    .execute(&mut *tx).await?;
                let oldest_kept: Option<i64> = sqlx::query(
                    "SELECT seq FROM pep_items WHERE host = $1 AND username = $2 AND node = $3 \
                     ORDER BY seq DESC LIMIT 1 OFFSET $4")
                    .bind(host).bind(user).bind(node).bind(i64::from(keep.max(1)) - 1)
                    .fetch_optional(&mut *tx).await?
                    .map(|r| r.try_get("seq")).transpose()?;
                if let Some(seq) = oldest_kept {
                    sqlx::query(
                        "DELETE FROM pep_items WHERE host = $1 AND username = $2 AND node = $3 \
                         AND seq < $4")
                        .bind(host).bind(user).bind(node).bind(seq)
                        .execute(&mut *tx).await?;
                }
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// The node's items, newest first: the `max` newest, or all.
    pub async fn pep_items(
        &self,
        host: &str,
        user: &str,
        node: &str,
        max: Option<u32>,
    ) -> Result<Vec<PepItem>, StorageError> {
        self.op("pep_items", async {
            let limit = max.map(i64::from).unwrap_or(i64::MAX);
            let sql = format!(
                "SELECT {ITEM_COLUMNS} FROM pep_items WHERE host = $1 AND username = $2 \
                 AND node = $3 ORDER BY seq DESC LIMIT $4"
            );
            let items = on_pool!(self, p => sqlx::query(&sql)
                .bind(host).bind(user).bind(node).bind(limit)
                .fetch_all(p).await?
                .iter().map(item_of).collect::<Result<Vec<_>, _>>()?);
            Ok(items)
        })
        .await
    }

    /// One item by id.
    pub async fn pep_item(
        &self,
        host: &str,
        user: &str,
        node: &str,
        id: &str,
    ) -> Result<Option<PepItem>, StorageError> {
        self.op("pep_item", async {
            let sql = format!(
                "SELECT {ITEM_COLUMNS} FROM pep_items WHERE host = $1 AND username = $2 \
                 AND node = $3 AND item_id = $4"
            );
            let item = on_pool!(self, p => sqlx::query(&sql)
                .bind(host).bind(user).bind(node).bind(id)
                .fetch_optional(p).await?
                .as_ref().map(item_of).transpose()?);
            Ok(item)
        })
        .await
    }

    /// Removes one item; whether it was there.
    pub async fn pep_retract(
        &self,
        host: &str,
        user: &str,
        node: &str,
        id: &str,
    ) -> Result<bool, StorageError> {
        self.op("pep_retract", async {
            let n = on_pool!(self, p => sqlx::query(
                "DELETE FROM pep_items WHERE host = $1 AND username = $2 AND node = $3 \
                 AND item_id = $4")
                .bind(host).bind(user).bind(node).bind(id)
                .execute(p).await?.rows_affected());
            Ok(n > 0)
        })
        .await
    }
}

#[async_trait]
impl PepStore for Storage {
    async fn pep_nodes(&self, host: &str, user: &str) -> Result<Vec<PepNode>, StorageError> {
        Storage::pep_nodes(self, host, user).await
    }

    async fn pep_node_put(
        &self,
        host: &str,
        user: &str,
        node: &PepNode,
    ) -> Result<(), StorageError> {
        Storage::pep_node_put(self, host, user, node).await
    }

    async fn pep_node_delete(
        &self,
        host: &str,
        user: &str,
        node: &str,
    ) -> Result<bool, StorageError> {
        Storage::pep_node_delete(self, host, user, node).await
    }

    async fn pep_publish(
        &self,
        host: &str,
        user: &str,
        node: &str,
        item: &PepItem,
        keep: u32,
    ) -> Result<(), StorageError> {
        Storage::pep_publish(self, host, user, node, item, keep).await
    }

    async fn pep_items(
        &self,
        host: &str,
        user: &str,
        node: &str,
        max: Option<u32>,
    ) -> Result<Vec<PepItem>, StorageError> {
        Storage::pep_items(self, host, user, node, max).await
    }

    async fn pep_item(
        &self,
        host: &str,
        user: &str,
        node: &str,
        id: &str,
    ) -> Result<Option<PepItem>, StorageError> {
        Storage::pep_item(self, host, user, node, id).await
    }

    async fn pep_retract(
        &self,
        host: &str,
        user: &str,
        node: &str,
        id: &str,
    ) -> Result<bool, StorageError> {
        Storage::pep_retract(self, host, user, node, id).await
    }
}
