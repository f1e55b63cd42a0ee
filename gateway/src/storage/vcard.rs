//! vcard-temp (XEP-0054): one serialised `<vCard/>` per account, with the
//! SHA-1 of its photo (XEP-0153).

use sqlx::Row;

use super::{now_ms, on_pool, Storage, StorageError, StoredVcard};

impl Storage {
    /// The account's vCard, if it stored one.
    pub async fn vcard_get(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<StoredVcard>, StorageError> {
        self.op("vcard_get", async {
            let row = on_pool!(self, p => sqlx::query(
                "SELECT xml, photo_hash FROM vcards WHERE host = $1 AND username = $2")
                .bind(host).bind(user)
                .fetch_optional(p).await?
                .map(|r| -> Result<StoredVcard, sqlx::Error> {
                    Ok(StoredVcard {
                        xml: r.try_get("xml")?,
                        photo_hash: r.try_get("photo_hash")?,
                    })
                })
                .transpose()?);
            Ok(row)
        })
        .await
    }

    /// Stores the account's vCard, replacing the one there.
    pub async fn vcard_set(
        &self,
        host: &str,
        user: &str,
        vcard: &StoredVcard,
    ) -> Result<(), StorageError> {
        self.op("vcard_set", async {
            let now = now_ms();
            on_pool!(self, p => {
                sqlx::query(
                "INSERT INTO vcards (host, username, xml, photo_hash, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (host, username) DO UPDATE SET \
                 xml = excluded.xml, photo_hash = excluded.photo_hash, \
                 updated_at = excluded.updated_at")
                .bind(host).bind(user).bind(&vcard.xml).bind(&vcard.photo_hash).bind(now)
                .execute(p).await?;
            });
            Ok(())
        })
        .await
    }
}
