//! Accounts: SCRAM keys per (host, username).

use sqlx::Row;

use super::{now_ms, on_pool, AccountCredentials, Storage, StorageError};

impl Storage {
    pub async fn create_account(
        &self,
        host: &str,
        user: &str,
        creds: &AccountCredentials,
    ) -> Result<(), StorageError> {
        self.op("account_create", async {
            on_pool!(self, p => sqlx::query(
                "INSERT INTO accounts (host, username, scram_sha1, scram_sha256, created_at) \
                 VALUES ($1, $2, $3, $4, $5)")
                .bind(host).bind(user).bind(&creds.scram_sha1).bind(&creds.scram_sha256).bind(now_ms())
                .execute(p).await.map(|_| ()))
            .map_err(StorageError::from_insert)?;
            Ok(())
        })
        .await
    }

    /// Creates `users` on `host`, all with the same credentials (benchmark
    /// accounts: `osprey account populate`), in one transaction of
    /// multi-row inserts; accounts that already exist are left as they are.
    /// Returns how many were created.
    pub async fn create_accounts_bulk(
        &self,
        host: &str,
        users: &[String],
        creds: &AccountCredentials,
    ) -> Result<u64, StorageError> {
        // Rows per statement: 4 shared parameters + one per row stays far
        // below SQLite's oldest limit of 999 bound parameters.
        const ROWS: usize = 500;
        self.op("account_create_bulk", async {
            let created = on_pool!(self, p => {
                let mut tx = p.begin().await?;
                let mut n = 0;
                for chunk in users.chunks(ROWS) {
                    let mut sql = String::from(
                        "INSERT INTO accounts (host, username, scram_sha1, scram_sha256, created_at) VALUES ",
                    );
                    for k in 0..chunk.len() {
                        if k > 0 {
                            sql.push(',');
                        }
                        sql.push_str(&format!("($1, ${}, $2, $3, $4)", k + 5));
                    }
                    sql.push_str(" ON CONFLICT (host, username) DO NOTHING");
                    let mut q = sqlx::query(&sql)
                        .bind(host).bind(&creds.scram_sha1).bind(&creds.scram_sha256).bind(now_ms());
                    for u in chunk {
                        q = q.bind(u);
                    }
                    n += q.execute(&mut *tx).await?.rows_affected();
                }
                tx.commit().await?;
                n
            });
            Ok(created)
        })
        .await
    }

    pub async fn set_credentials(
        &self,
        host: &str,
        user: &str,
        creds: &AccountCredentials,
    ) -> Result<bool, StorageError> {
        self.op("account_set_credentials", async {
            let done = on_pool!(self, p => sqlx::query(
                "UPDATE accounts SET scram_sha1 = $1, scram_sha256 = $2 WHERE host = $3 AND username = $4")
                .bind(&creds.scram_sha1).bind(&creds.scram_sha256).bind(host).bind(user)
                .execute(p).await?.rows_affected());
            Ok(done > 0)
        })
        .await
    }

    pub async fn get_credentials(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<AccountCredentials>, StorageError> {
        self.op("account_get_credentials", async {
            let row = on_pool!(self, p => sqlx::query(
            "SELECT scram_sha1, scram_sha256 FROM accounts WHERE host = $1 AND username = $2")
            .bind(host).bind(user)
            .fetch_optional(p).await?
            .map(|r| -> Result<_, sqlx::Error> {
                Ok(AccountCredentials {
                    scram_sha1: r.try_get("scram_sha1")?,
                    scram_sha256: r.try_get("scram_sha256")?,
                })
            }));
            Ok(row.transpose()?)
        })
        .await
    }

    pub async fn account_exists(&self, host: &str, user: &str) -> Result<bool, StorageError> {
        self.op("account_exists", async {
            let found = on_pool!(self, p => sqlx::query(
                "SELECT 1 FROM accounts WHERE host = $1 AND username = $2")
                .bind(host).bind(user)
                .fetch_optional(p).await?.is_some());
            Ok(found)
        })
        .await
    }

    /// Removes the account and everything it owns, in one transaction.
    pub async fn remove_account(&self, host: &str, user: &str) -> Result<bool, StorageError> {
        self.op("account_remove", async {
            let removed = on_pool!(self, p => {
                let mut tx = p.begin().await?;
                for table in [
                    "roster_items",
                    "roster_versions",
                    "subscription_requests",
                    "offline_messages",
                    "blocklist",
                    "private_storage",
                    "last_activity",
                    "vcards",
                    "pep_items",
                    "pep_nodes",
                    "mam_messages",
                    "mam_prefs",
                ] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE host = $1 AND username = $2"))
                        .bind(host).bind(user)
                        .execute(&mut *tx).await?;
                }
                let n = sqlx::query("DELETE FROM accounts WHERE host = $1 AND username = $2")
                    .bind(host).bind(user)
                    .execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                n
            });
            Ok(removed > 0)
        })
        .await
    }

    /// `(host, user)` pairs, sorted.
    pub async fn list_accounts(
        &self,
        host: Option<&str>,
    ) -> Result<Vec<(String, String)>, StorageError> {
        self.op("account_list", async {
            let rows = on_pool!(self, p => {
                let q = match host {
                    Some(h) => sqlx::query(
                        "SELECT host, username FROM accounts WHERE host = $1 ORDER BY host, username")
                        .bind(h),
                    None => sqlx::query("SELECT host, username FROM accounts ORDER BY host, username"),
                };
                q.fetch_all(p).await?
                    .into_iter()
                    .map(|r| Ok((r.try_get("host")?, r.try_get("username")?)))
                    .collect::<Result<Vec<_>, sqlx::Error>>()?
            });
            Ok(rows)
        })
        .await
    }

    /// How many accounts a host has.
    pub async fn count_accounts(&self, host: &str) -> Result<u64, StorageError> {
        self.op("account_count", async {
            let n: i64 = on_pool!(self, p => sqlx::query(
                "SELECT COUNT(*) AS n FROM accounts WHERE host = $1")
                .bind(host)
                .fetch_one(p).await?
                .try_get("n")?);
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }
}
