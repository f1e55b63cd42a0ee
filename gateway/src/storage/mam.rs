//! XEP-0313 message archives: rows of `mam_messages` ordered by id within
//! one account, and each account's preferences in `mam_prefs`.
//!
//! A page is one range scan of an index, `(host, username, id)` or
//! `(host, username, peer_bare, id)`, with a LIMIT: its cost does not grow
//! with the archive (docs/performance.md shows the plan at 1M rows).

use sqlx::Row;

use super::{on_pool, ArchivePrefs, ArchiveQuery, ArchivedMessage, Storage, StorageError};

/// Rows per INSERT statement (7 binds each). SQLite's is small: binding
/// looks each parameter's name up in a list (`sqlite3_bind_parameter_name`,
/// linear), so a statement's binding cost grows with the square of its
/// parameters; at 100 rows it was 12 % of the server's CPU at 5,000 msgs/s.
const INSERT_CHUNK_SQLITE: usize = 16;
const INSERT_CHUNK_POSTGRES: usize = 100;

impl Storage {
    /// Archives `rows` in one transaction (a batch of the writer).
    pub async fn mam_insert(&self, rows: &[ArchivedMessage]) -> Result<(), StorageError> {
        self.op("mam_insert", async {
            if rows.is_empty() {
                return Ok(());
            }
            on_pool!(self, p => {
                // One statement is atomic by itself: no BEGIN/COMMIT round trips.
                let chunk_rows = match self.backend() {
                    "sqlite" => INSERT_CHUNK_SQLITE,
                    _ => INSERT_CHUNK_POSTGRES,
                };
                let single = rows.len() <= chunk_rows;
                let mut tx = if single { None } else { Some(p.begin().await?) };
                for chunk in rows.chunks(chunk_rows) {
                    let mut sql = String::from(
                        "INSERT INTO mam_messages \
                         (host, username, id, peer_bare, peer_resource, outgoing, xml) VALUES ",
                    );
                    for i in 0..chunk.len() {
                        let b = i * 7;
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!(
                            "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                            b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7
                        ));
                    }
                    let mut q = sqlx::query(&sql);
                    for r in chunk {
                        q = q
                            .bind(&r.host)
                            .bind(&r.user)
                            .bind(r.id)
                            .bind(&r.peer_bare)
                            .bind(&r.peer_resource)
                            .bind(i16::from(r.outgoing))
                            .bind(&r.xml);
                    }
                    match tx.as_mut() {
                        Some(tx) => q.execute(&mut **tx).await?,
                        None => q.execute(p).await?,
                    };
                }
                if let Some(tx) = tx {
                    tx.commit().await?;
                }
            });
            Ok(())
        })
        .await
    }

    /// One page: `(id, xml)` in the order asked (newest first when reverse).
    pub async fn mam_page(&self, q: &ArchiveQuery) -> Result<Vec<(i64, String)>, StorageError> {
        self.op("mam_page", async {
            let (sql, binds) = page_sql(q);
            let rows = on_pool!(self, p => {
                let mut query = sqlx::query(&sql).bind(&q.host).bind(&q.user);
                for b in &binds {
                    query = match b {
                        PageBind::Text(s) => query.bind(s.as_str()),
                        PageBind::Int(i) => query.bind(*i),
                    };
                }
                query
                    .fetch_all(p).await?
                    .into_iter()
                    .map(|r| Ok((r.try_get("id")?, r.try_get("xml")?)))
                    .collect::<Result<Vec<(i64, String)>, sqlx::Error>>()?
            });
            Ok(rows)
        })
        .await
    }

    /// Whether the archive holds `id` (RSM's item-not-found).
    pub async fn mam_exists(&self, host: &str, user: &str, id: i64) -> Result<bool, StorageError> {
        self.op("mam_exists", async {
            let found = on_pool!(self, p => sqlx::query(
                "SELECT 1 FROM mam_messages WHERE host = $1 AND username = $2 AND id = $3")
                .bind(host).bind(user).bind(id)
                .fetch_optional(p).await?.is_some());
            Ok(found)
        })
        .await
    }

    /// Removes every message archived before `id` (retention); how many.
    pub async fn mam_purge_before(&self, id: i64) -> Result<u64, StorageError> {
        self.op("mam_purge", async {
            let n = on_pool!(self, p => sqlx::query("DELETE FROM mam_messages WHERE id < $1")
                .bind(id)
                .execute(p).await?.rows_affected());
            Ok(n)
        })
        .await
    }

    /// Keeps the newest `keep` messages of every archive holding more;
    /// returns `(accounts trimmed, messages removed)`.
    pub async fn mam_trim(&self, keep: u64) -> Result<(u64, u64), StorageError> {
        self.op("mam_trim", async {
            let keep = i64::try_from(keep).unwrap_or(i64::MAX);
            let (accounts, removed) = on_pool!(self, p => {
                let over = sqlx::query(
                    "SELECT host, username FROM mam_messages \
                     GROUP BY host, username HAVING COUNT(*) > $1")
                    .bind(keep)
                    .fetch_all(p).await?;
                let mut removed = 0;
                for r in &over {
                    let host: String = r.try_get("host")?;
                    let user: String = r.try_get("username")?;
                    // The id of the oldest message kept: everything older goes.
                    let oldest: Option<i64> = sqlx::query(
                        "SELECT id FROM mam_messages WHERE host = $1 AND username = $2 \
                         ORDER BY id DESC LIMIT 1 OFFSET $3")
                        .bind(&host).bind(&user).bind(keep - 1)
                        .fetch_optional(p).await?
                        .map(|r| r.try_get("id")).transpose()?;
                    if let Some(oldest) = oldest {
                        removed += sqlx::query(
                            "DELETE FROM mam_messages WHERE host = $1 AND username = $2 AND id < $3")
                            .bind(&host).bind(&user).bind(oldest)
                            .execute(p).await?.rows_affected();
                    }
                }
                (over.len() as u64, removed)
            });
            Ok((accounts, removed))
        })
        .await
    }

    pub async fn mam_prefs_get(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<ArchivePrefs>, StorageError> {
        self.op("mam_prefs_get", async {
            let prefs = on_pool!(self, p => sqlx::query(
                "SELECT default_mode, always_jids, never_jids FROM mam_prefs \
                 WHERE host = $1 AND username = $2")
                .bind(host).bind(user)
                .fetch_optional(p).await?
                .map(|r| -> Result<ArchivePrefs, sqlx::Error> {
                    Ok(ArchivePrefs {
                        default_mode: r.try_get("default_mode")?,
                        always: lines(r.try_get("always_jids")?),
                        never: lines(r.try_get("never_jids")?),
                    })
                })
                .transpose()?);
            Ok(prefs)
        })
        .await
    }

    pub async fn mam_prefs_set(
        &self,
        host: &str,
        user: &str,
        prefs: &ArchivePrefs,
    ) -> Result<(), StorageError> {
        self.op("mam_prefs_set", async {
            on_pool!(self, p => {
                sqlx::query(
                    "INSERT INTO mam_prefs (host, username, default_mode, always_jids, never_jids) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (host, username) DO UPDATE SET \
                     default_mode = excluded.default_mode, always_jids = excluded.always_jids, \
                     never_jids = excluded.never_jids")
                    .bind(host).bind(user).bind(&prefs.default_mode)
                    .bind(prefs.always.join("\n")).bind(prefs.never.join("\n"))
                    .execute(p).await?;
            });
            Ok(())
        })
        .await
    }
}

fn lines(s: String) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A value bound to a page query's placeholder after host and username.
pub enum PageBind {
    Text(String),
    Int(i64),
}

/// The page query of `q` ($1 host, $2 username, then the binds returned).
/// Public for the benchmark (`examples/mam_page.rs`), which prints its plan.
pub fn page_sql(q: &ArchiveQuery) -> (String, Vec<PageBind>) {
    let mut sql =
        String::from("SELECT id, xml FROM mam_messages WHERE host = $1 AND username = $2");
    let mut binds = Vec::new();
    let mut n = 2;
    let mut cond = |sql: &mut String, clause: &str, b: PageBind| {
        n += 1;
        sql.push_str(&format!(" AND {clause} ${n}"));
        binds.push(b);
    };
    if let Some(w) = &q.with_bare {
        cond(&mut sql, "peer_bare =", PageBind::Text(w.clone()));
        if let Some(r) = &q.with_resource {
            cond(&mut sql, "peer_resource =", PageBind::Text(r.clone()));
        }
    }
    if let Some(a) = q.after {
        cond(&mut sql, "id >", PageBind::Int(a));
    }
    if let Some(b) = q.before {
        cond(&mut sql, "id <", PageBind::Int(b));
    }
    sql.push_str(if q.reverse {
        " ORDER BY id DESC"
    } else {
        " ORDER BY id ASC"
    });
    sql.push_str(&format!(" LIMIT {}", q.limit));
    (sql, binds)
}
