//! Roster items, the roster version (XEP-0237) and pending inbound
//! subscription requests.

use sqlx::Row;

use super::{now_ms, on_pool, RosterItem, Storage, StorageError, Subscription};

const ITEM_COLUMNS: &str = "contact, name, subscription, ask, groups_json";

/// Run in the transaction that changes the roster, so a client never sees a
/// new version with the old items (or the reverse).
const BUMP_VERSION: &str =
    "INSERT INTO roster_versions (host, username, version) VALUES ($1, $2, 1) \
     ON CONFLICT (host, username) DO UPDATE SET version = roster_versions.version + 1";

fn item_from(
    contact: String,
    name: Option<String>,
    subscription: String,
    ask: bool,
    groups: String,
) -> Result<RosterItem, StorageError> {
    Ok(RosterItem {
        jid: contact,
        name,
        subscription: Subscription::parse(&subscription)
            .ok_or_else(|| StorageError::Corrupt(format!("subscription {subscription:?}")))?,
        ask,
        groups: serde_json::from_str(&groups)
            .map_err(|e| StorageError::Corrupt(format!("roster groups: {e}")))?,
    })
}

macro_rules! read_item {
    ($row:expr) => {
        item_from(
            $row.try_get("contact")?,
            $row.try_get("name")?,
            $row.try_get("subscription")?,
            $row.try_get("ask")?,
            $row.try_get("groups_json")?,
        )
    };
}

impl Storage {
    pub async fn roster_get(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Vec<RosterItem>, StorageError> {
        self.op("roster_get", async {
            on_pool!(self, p => {
                let sql = format!(
                    "SELECT {ITEM_COLUMNS} FROM roster_items WHERE host = $1 AND username = $2 ORDER BY contact");
                sqlx::query(&sql).bind(host).bind(user).fetch_all(p).await?
                    .into_iter()
                    .map(|r| read_item!(r))
                    .collect()
            })
        })
        .await
    }

    pub async fn roster_item(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StorageError> {
        self.op("roster_get_item", async {
            on_pool!(self, p => {
                let sql = format!(
                    "SELECT {ITEM_COLUMNS} FROM roster_items WHERE host = $1 AND username = $2 AND contact = $3");
                match sqlx::query(&sql).bind(host).bind(user).bind(contact).fetch_optional(p).await? {
                    Some(r) => read_item!(r).map(Some),
                    None => Ok(None),
                }
            })
        })
        .await
    }

    /// Inserts or replaces the item; bumps the roster version.
    pub async fn roster_put(
        &self,
        host: &str,
        user: &str,
        item: &RosterItem,
    ) -> Result<(), StorageError> {
        self.op("roster_set", async {
            let groups = serde_json::to_string(&item.groups)
                .map_err(|e| StorageError::Corrupt(e.to_string()))?;
            on_pool!(self, p => {
                let mut tx = p.begin().await?;
                sqlx::query(
                    "INSERT INTO roster_items (host, username, contact, name, subscription, ask, groups_json) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (host, username, contact) DO UPDATE SET \
                     name = excluded.name, subscription = excluded.subscription, \
                     ask = excluded.ask, groups_json = excluded.groups_json")
                    .bind(host).bind(user).bind(&item.jid).bind(item.name.as_deref())
                    .bind(item.subscription.as_str()).bind(item.ask).bind(groups)
                    .execute(&mut *tx).await?;
                sqlx::query(BUMP_VERSION).bind(host).bind(user).execute(&mut *tx).await?;
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// Removes the item; bumps the roster version if there was one.
    pub async fn roster_remove(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<bool, StorageError> {
        self.op("roster_remove", async {
            let n = on_pool!(self, p => {
                let mut tx = p.begin().await?;
                let n = sqlx::query(
                    "DELETE FROM roster_items WHERE host = $1 AND username = $2 AND contact = $3")
                    .bind(host).bind(user).bind(contact)
                    .execute(&mut *tx).await?.rows_affected();
                if n > 0 {
                    sqlx::query(BUMP_VERSION).bind(host).bind(user).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                n
            });
            Ok(n > 0)
        })
        .await
    }

    /// XEP-0237: changes whenever the roster does; 0 for a roster never written.
    pub async fn roster_version(&self, host: &str, user: &str) -> Result<u64, StorageError> {
        self.op("roster_version", async {
            let version: Option<i64> = on_pool!(self, p => sqlx::query(
                "SELECT version FROM roster_versions WHERE host = $1 AND username = $2")
                .bind(host).bind(user)
                .fetch_optional(p).await?
                .map(|r| r.try_get("version"))
                .transpose()?);
            let version = version.unwrap_or(0);
            u64::try_from(version)
                .map_err(|_| StorageError::Corrupt(format!("roster version {version}")))
        })
        .await
    }

    pub async fn sub_request_put(
        &self,
        host: &str,
        user: &str,
        contact: &str,
        stanza: &str,
    ) -> Result<(), StorageError> {
        self.op("subscription_request_store", async {
            on_pool!(self, p => sqlx::query(
                "INSERT INTO subscription_requests (host, username, contact, stanza, created_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (host, username, contact) DO UPDATE SET stanza = excluded.stanza")
                .bind(host).bind(user).bind(contact).bind(stanza).bind(now_ms())
                .execute(p).await.map(|_| ())?);
            Ok(())
        })
        .await
    }

    pub async fn sub_request_remove(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<bool, StorageError> {
        self.op("subscription_request_remove", async {
            let n = on_pool!(self, p => sqlx::query(
                "DELETE FROM subscription_requests WHERE host = $1 AND username = $2 AND contact = $3")
                .bind(host).bind(user).bind(contact)
                .execute(p).await?.rows_affected());
            Ok(n > 0)
        })
        .await
    }

    /// `(contact, stanza)`, oldest first.
    pub async fn sub_requests(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        self.op("subscription_request_list", async {
            let rows = on_pool!(self, p => sqlx::query(
                "SELECT contact, stanza FROM subscription_requests WHERE host = $1 AND username = $2 \
                 ORDER BY created_at, contact")
                .bind(host).bind(user)
                .fetch_all(p).await?
                .into_iter()
                .map(|r| Ok((r.try_get("contact")?, r.try_get("stanza")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?);
            Ok(rows)
        })
        .await
    }
}
