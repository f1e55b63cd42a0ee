//! Private XML storage (XEP-0049): one serialised element per account and
//! namespace of the element.

use sqlx::Row;

use super::{now_ms, on_pool, Storage, StorageError};

impl Storage {
    /// The element stored under `namespace`, if any.
    pub async fn private_get(
        &self,
        host: &str,
        user: &str,
        namespace: &str,
    ) -> Result<Option<String>, StorageError> {
        self.op("private_get", async {
            let xml = on_pool!(self, p => sqlx::query(
                "SELECT xml FROM private_storage \
                 WHERE host = $1 AND username = $2 AND namespace = $3")
                .bind(host).bind(user).bind(namespace)
                .fetch_optional(p).await?
                .map(|r| r.try_get("xml"))
                .transpose()?);
            Ok(xml)
        })
        .await
    }

    /// The namespaces the account stores something under, sorted.
    pub async fn private_namespaces(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Vec<String>, StorageError> {
        self.op("private_namespaces", async {
            let nss = on_pool!(self, p => sqlx::query(
                "SELECT namespace FROM private_storage \
                 WHERE host = $1 AND username = $2 ORDER BY namespace")
                .bind(host).bind(user)
                .fetch_all(p).await?
                .into_iter()
                .map(|r| r.try_get("namespace"))
                .collect::<Result<Vec<String>, sqlx::Error>>()?);
            Ok(nss)
        })
        .await
    }

    /// Stores each `(namespace, xml)`, replacing what was there; all or none.
    pub async fn private_set(
        &self,
        host: &str,
        user: &str,
        items: &[(String, String)],
    ) -> Result<(), StorageError> {
        self.op("private_set", async {
            if items.is_empty() {
                return Ok(());
            }
            let now = now_ms();
            on_pool!(self, p => {
                let mut tx = p.begin().await?;
                for (ns, xml) in items {
                    sqlx::query(
                        "INSERT INTO private_storage (host, username, namespace, xml, updated_at) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (host, username, namespace) DO UPDATE SET \
                         xml = excluded.xml, updated_at = excluded.updated_at")
                        .bind(host).bind(user).bind(ns).bind(xml).bind(now)
                        .execute(&mut *tx).await?;
                }
                tx.commit().await?;
            });
            Ok(())
        })
        .await
    }
}
