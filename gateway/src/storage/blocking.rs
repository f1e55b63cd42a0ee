//! Block lists (XEP-0191): the JIDs (bare, full or domains) each account
//! blocks, stored as the strings the client sent.

use sqlx::Row;

use super::{on_pool, Storage, StorageError};

impl Storage {
    /// The account's block list, sorted.
    pub async fn blocklist_get(&self, host: &str, user: &str) -> Result<Vec<String>, StorageError> {
        self.op("blocklist_get", async {
            let jids = on_pool!(self, p => sqlx::query(
                "SELECT jid FROM blocklist WHERE host = $1 AND username = $2 ORDER BY jid")
                .bind(host).bind(user)
                .fetch_all(p).await?
                .into_iter()
                .map(|r| r.try_get("jid"))
                .collect::<Result<Vec<String>, sqlx::Error>>()?);
            Ok(jids)
        })
        .await
    }

    /// Every account with a non-empty block list, as (host, user).
    pub async fn blocklist_owners(&self) -> Result<Vec<(String, String)>, StorageError> {
        self.op("blocklist_owners", async {
            let owners = on_pool!(self, p => sqlx::query(
                "SELECT DISTINCT host, username FROM blocklist")
                .fetch_all(p).await?
                .into_iter()
                .map(|r| Ok((r.try_get("host")?, r.try_get("username")?)))
                .collect::<Result<Vec<(String, String)>, sqlx::Error>>()?);
            Ok(owners)
        })
        .await
    }

    /// Adds `jids`, ignoring ones already there; all or none.
    pub async fn blocklist_add(
        &self,
        host: &str,
        user: &str,
        jids: &[String],
    ) -> Result<(), StorageError> {
        self.op("blocklist_add", async {
            if jids.is_empty() {
                return Ok(());
            }
            // One statement per JID: a block list push carries a handful.
            on_pool!(self, p => {
                let mut tx = p.begin().await?;
                for jid in jids {
                    sqlx::query(
                        "INSERT INTO blocklist (host, username, jid) VALUES ($1, $2, $3) \
                         ON CONFLICT (host, username, jid) DO NOTHING")
                        .bind(host).bind(user).bind(jid)
                        .execute(&mut *tx).await?;
                }
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }

    /// Removes `jids`; an empty slice empties the list (XEP-0191 unblock-all).
    pub async fn blocklist_remove(
        &self,
        host: &str,
        user: &str,
        jids: &[String],
    ) -> Result<(), StorageError> {
        self.op("blocklist_remove", async {
            on_pool!(self, p => {
                let mut tx = p.begin().await?;
                if jids.is_empty() {
                    sqlx::query("DELETE FROM blocklist WHERE host = $1 AND username = $2")
                        .bind(host).bind(user)
                        .execute(&mut *tx).await?;
                }
                for jid in jids {
                    sqlx::query(
                        "DELETE FROM blocklist WHERE host = $1 AND username = $2 AND jid = $3")
                        .bind(host).bind(user).bind(jid)
                        .execute(&mut *tx).await?;
                }
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }
}
