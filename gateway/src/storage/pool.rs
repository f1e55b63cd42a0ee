//! Connecting: URL → pool, then migrations.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Backend, Storage, StorageError};

#[derive(Debug, Clone)]
pub struct StorageOptions {
    pub max_connections: u32,
    /// Off for CockroachDB, which has no advisory locks.
    pub migration_locking: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
}

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl Storage {
    pub async fn connect(url: &str, opts: &StorageOptions) -> Result<Storage, StorageError> {
        let backend = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(parent) = std::path::Path::new(file).parent() {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)?;
                }
            }
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                // WAL: readers never block the writer, and the CLI can write
                // while the server runs.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(opts.max_connections.max(1))
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(options)
                .await?;
            let mut migrator = sqlx::migrate!("migrations/sqlite");
            migrator.set_locking(opts.migration_locking);
            migrator.run(&pool).await?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections.max(1))
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url)
                .await?;
            let mut migrator = sqlx::migrate!("migrations/postgres");
            migrator.set_locking(opts.migration_locking);
            migrator.run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(StorageError::BadUrl(url.to_string()));
        };
        Ok(Storage {
            backend,
            observer: None,
            locks: Arc::new(super::locks::AccountLocks::new()),
        })
    }

    /// A storage that never connects unless used: for unit tests whose
    /// modules run on in-memory stores (no database is opened).
    pub fn unconnected() -> Result<Storage, StorageError> {
        let pool = SqlitePoolOptions::new().connect_lazy("sqlite::memory:")?;
        Ok(Storage {
            backend: Backend::Sqlite(pool),
            observer: None,
            locks: Arc::new(super::locks::AccountLocks::new()),
        })
    }

    pub fn pool_stats(&self) -> PoolStats {
        let (size, idle) = match &self.backend {
            Backend::Sqlite(p) => (p.size(), p.num_idle()),
            Backend::Postgres(p) => (p.size(), p.num_idle()),
        };
        PoolStats {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
        }
    }

    /// Waits for every connection to be returned, then closes them.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(p) => p.close().await,
            Backend::Postgres(p) => p.close().await,
        }
    }

    pub async fn ping(&self) -> Result<(), StorageError> {
        self.op("ping", async {
            super::on_pool!(self, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ())?);
            Ok(())
        })
        .await
    }
}
