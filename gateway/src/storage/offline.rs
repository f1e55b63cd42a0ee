//! Offline messages (XEP-0160): kept in order, taken oldest first.

use sqlx::Row;

use super::{now_ms, on_pool, OfflineMessage, OfflineStored, Storage, StorageError};

impl Storage {
    /// Stores a message unless the user already has `max_per_user`.
    ///
    /// Takes the account's lock (never call it holding one): on PostgreSQL
    /// a statement sees what was committed when it began, so two stores at
    /// once would both pass the count. One statement, not a transaction that
    /// reads first: on SQLite such a transaction cannot start writing once
    /// anyone else has committed since its read (`SQLITE_BUSY_SNAPSHOT`,
    /// not retried), so a busy server would fail stores at random.
    pub async fn offline_store(
        &self,
        host: &str,
        user: &str,
        stanza: &str,
        max_per_user: u32,
    ) -> Result<OfflineStored, StorageError> {
        let _account = self.lock_account(host, user).await;
        self.op("offline_store", async {
            let id: Option<i64> = on_pool!(self, p => sqlx::query(
                "INSERT INTO offline_messages (host, username, stanza, stored_at) \
                 SELECT $1, $2, $3, $4 WHERE (\
                   SELECT COUNT(*) FROM offline_messages WHERE host = $1 AND username = $2) < $5 \
                 RETURNING id")
                .bind(host).bind(user).bind(stanza).bind(now_ms()).bind(i64::from(max_per_user))
                .fetch_optional(p).await?
                .map(|r| r.try_get("id"))
                .transpose()?);
            Ok(match id {
                Some(id) => OfflineStored::Stored { id },
                None => OfflineStored::Full,
            })
        })
        .await
    }

    /// Takes (removes and returns) up to `limit` messages, oldest first.
    pub async fn offline_take(
        &self,
        host: &str,
        user: &str,
        limit: u32,
    ) -> Result<Vec<OfflineMessage>, StorageError> {
        self.op("offline_take", async {
            // One statement: what is returned is exactly what was deleted.
            let mut rows = on_pool!(self, p => sqlx::query(
                "DELETE FROM offline_messages WHERE id IN (\
                   SELECT id FROM offline_messages WHERE host = $1 AND username = $2 \
                   ORDER BY id LIMIT $3) \
                 RETURNING id, stanza, stored_at")
                .bind(host).bind(user).bind(i64::from(limit))
                .fetch_all(p).await?
                .into_iter()
                .map(|r| Ok(OfflineMessage {
                    id: r.try_get("id")?,
                    stanza: r.try_get("stanza")?,
                    stored_at_ms: r.try_get("stored_at")?,
                }))
                .collect::<Result<Vec<_>, sqlx::Error>>()?);
            rows.sort_by_key(|m| m.id);
            Ok(rows)
        })
        .await
    }

    pub async fn offline_count(&self, host: &str, user: &str) -> Result<u64, StorageError> {
        self.op("offline_count", async {
            let n: i64 = on_pool!(self, p => sqlx::query(
                "SELECT COUNT(*) AS n FROM offline_messages WHERE host = $1 AND username = $2")
                .bind(host).bind(user)
                .fetch_one(p).await?
                .try_get("n")?);
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// Up to `limit` stored messages from the `offset`-th, oldest first,
    /// left in place (the admin API's listing).
    pub async fn offline_peek(
        &self,
        host: &str,
        user: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<OfflineMessage>, StorageError> {
        self.op("offline_list", async {
            let rows = on_pool!(self, p => sqlx::query(
                "SELECT id, stanza, stored_at FROM offline_messages \
                 WHERE host = $1 AND username = $2 ORDER BY id LIMIT $3 OFFSET $4")
                .bind(host).bind(user)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                .fetch_all(p).await?
                .into_iter()
                .map(|r| Ok(OfflineMessage {
                    id: r.try_get("id")?,
                    stanza: r.try_get("stanza")?,
                    stored_at_ms: r.try_get("stored_at")?,
                }))
                .collect::<Result<Vec<_>, sqlx::Error>>()?);
            Ok(rows)
        })
        .await
    }
}
