//! Storage: one interface over SQLite (embedded default) and PostgreSQL
//! (CockroachDB-compatible SQL), from the same code. Queries are built at
//! run time; each public operation goes through [`Storage::op`], the one
//! place that times it and reports it to the observer (instrumentation).
//! A read-modify-write of one account's data runs under that account's
//! lock ([`Storage::lock_account`], in `locks`).
//!
//! Modules can instead see storage as one trait per domain ([`Stores`], in
//! `stores`): [`Storage`] implements them all, and so does [`MemoryStore`],
//! for unit tests without a database.

mod accounts;
mod blocking;
mod cluster;
mod error;
mod last;
mod locks;
mod mam;
mod memory;
mod offline;
mod pep;
mod pool;
mod private;
mod roster;
mod sql_stores;
mod stores;
mod types;
mod vcard;

pub use cluster::ClusterNode;
pub use error::StorageError;
pub use locks::AccountGuard;
pub use mam::{page_sql, PageBind};
pub use memory::MemoryStore;
pub use pep::{PepItem, PepNode};
pub use pool::{PoolStats, StorageOptions};
pub use stores::LastActivityStore;
pub use stores::MamStore;
pub use stores::PepStore;
pub use stores::VcardStore;
pub use stores::{AccountStore, BlockingStore, OfflineStore, PrivateStore, RosterStore, Stores};
pub use types::*;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{PgPool, SqlitePool};
use tracing::Instrument;

/// Every operation's name (the `operation` label of `storage_query`): the
/// instrumentation creates each series at zero at start, so a storage
/// error shows as a change from 0, never as a series appearing.
pub const OPERATIONS: &[&str] = &[
    "account_count",
    "account_create",
    "account_create_bulk",
    "account_exists",
    "account_get_credentials",
    "account_list",
    "account_remove",
    "account_set_credentials",
    "blocklist_add",
    "blocklist_get",
    "blocklist_owners",
    "blocklist_remove",
    "cluster_forget",
    "cluster_heartbeat",
    "cluster_nodes",
    "last_activity_get",
    "last_activity_set",
    "mam_exists",
    "mam_insert",
    "mam_page",
    "mam_prefs_get",
    "mam_prefs_set",
    "mam_purge",
    "mam_trim",
    "offline_count",
    "offline_list",
    "offline_store",
    "offline_take",
    "pep_item",
    "pep_items",
    "pep_node_delete",
    "pep_node_put",
    "pep_nodes",
    "pep_publish",
    "pep_retract",
    "ping",
    "private_get",
    "private_namespaces",
    "private_set",
    "roster_get",
    "roster_get_item",
    "roster_remove",
    "roster_set",
    "roster_version",
    "subscription_request_list",
    "subscription_request_remove",
    "subscription_request_store",
    "vcard_get",
    "vcard_set",
];

/// Called after each operation: its name, how long it took, and whether it failed.
pub type Observer = Arc<dyn Fn(&'static str, Duration, bool) + Send + Sync>;

#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Clone)]
pub struct Storage {
    pub(crate) backend: Backend,
    observer: Option<Observer>,
    /// Shared by every clone: see [`Storage::lock_account`].
    locks: Arc<locks::AccountLocks>,
}

/// Runs the same query code on whichever pool this is: `$pool` is bound
/// to the concrete pool in each arm.
macro_rules! on_pool {
    ($storage:expr, $pool:ident => $body:expr) => {
        match &$storage.backend {
            super::Backend::Sqlite($pool) => $body,
            super::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Storage {
    /// "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Reports every operation to `observer` from now on.
    pub fn set_observer(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    /// Every public operation runs through here.
    async fn op<T>(
        &self,
        name: &'static str,
        fut: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        debug_assert!(
            OPERATIONS.contains(&name),
            "storage operation {name} missing from storage::OPERATIONS"
        );
        let start = Instant::now();
        let span = crate::child_span!(
            "storage.query",
            otel.kind = "client",
            // OpenTelemetry's names for the two systems.
            db.system.name = if self.backend() == "postgres" {
                "postgresql"
            } else {
                "sqlite"
            },
            db.operation.name = name
        );
        let result = crate::live::call(
            "storage",
            || format!("storage.{name}"),
            fut.instrument(span.clone()),
        )
        .await;
        if let Err(e) = &result {
            crate::otel::fail(&span, &e.to_string());
        }
        if let Some(observer) = &self.observer {
            observer(name, start.elapsed(), result.is_err());
        }
        result
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
