#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("already exists")]
    Conflict,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("bad storage URL {0:?}: expected sqlite://PATH or postgres://USER@HOST/DB")]
    BadUrl(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

impl StorageError {
    /// A unique-key violation becomes `Conflict`.
    pub(crate) fn from_insert(e: sqlx::Error) -> StorageError {
        match e.as_database_error() {
            Some(d) if d.is_unique_violation() => StorageError::Conflict,
            _ => StorageError::Database(e),
        }
    }
}
