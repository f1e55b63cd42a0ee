//! Last activity (XEP-0012): per account, when its last session closed and
//! the status text of its last unavailable presence.

use sqlx::Row;

use super::{on_pool, LastActivity, Storage, StorageError};

impl Storage {
    /// The account's last logout, if it ever logged out.
    pub async fn last_activity_get(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<LastActivity>, StorageError> {
        self.op("last_activity_get", async {
            let row = on_pool!(self, p => sqlx::query(
            "SELECT seconds, status FROM last_activity WHERE host = $1 AND username = $2")
            .bind(host).bind(user)
            .fetch_optional(p).await?
            .map(|r| -> Result<_, sqlx::Error> {
                Ok(LastActivity {
                    seconds: r.try_get("seconds")?,
                    status: r.try_get("status")?,
                })
            }));
            Ok(row.transpose()?)
        })
        .await
    }

    /// Records a logout (replacing the previous one).
    pub async fn last_activity_set(
        &self,
        host: &str,
        user: &str,
        last: &LastActivity,
    ) -> Result<(), StorageError> {
        self.op("last_activity_set", async {
            on_pool!(self, p => sqlx::query(
                "INSERT INTO last_activity (host, username, seconds, status) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (host, username) DO UPDATE SET \
                 seconds = excluded.seconds, status = excluded.status")
                .bind(host).bind(user).bind(last.seconds).bind(&last.status)
                .execute(p).await.map(|_| ()))?;
            Ok(())
        })
        .await
    }
}
