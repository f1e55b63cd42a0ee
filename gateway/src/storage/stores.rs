//! Storage as one trait per domain (accounts, roster, offline, blocking,
//! private XML, ...), so a module can be given trait objects and unit-tested
//! on [`MemoryStore`] instead of a database. [`Storage`] implements them all (in `sql_stores`).

use std::sync::Arc;

use async_trait::async_trait;

use super::{
    AccountCredentials, AccountGuard, LastActivity, MemoryStore, OfflineMessage, OfflineStored,
    RosterItem, Storage, StorageError, StoredVcard,
};
use super::{ArchivePrefs, ArchiveQuery, ArchivedMessage};
use super::{PepItem, PepNode};

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn account_exists(&self, host: &str, user: &str) -> Result<bool, StorageError>;
    async fn get_credentials(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<AccountCredentials>, StorageError>;
    /// Removes the account and every row it owns in every table.
    async fn remove_account(&self, host: &str, user: &str) -> Result<bool, StorageError>;
    /// Creates the account; `Err(Conflict)` when it exists.
    async fn create_account(
        &self,
        host: &str,
        user: &str,
        creds: &AccountCredentials,
    ) -> Result<(), StorageError>;
    /// Replaces its SCRAM keys; `false` when there is no such account.
    async fn set_credentials(
        &self,
        host: &str,
        user: &str,
        creds: &AccountCredentials,
    ) -> Result<bool, StorageError>;
}

#[async_trait]
pub trait RosterStore: Send + Sync {
    /// Serialises read-modify-writes of one account (same semantics as Storage::lock_account).
    async fn lock_account(&self, host: &str, user: &str) -> AccountGuard<'_>;
    async fn roster_get(&self, host: &str, user: &str) -> Result<Vec<RosterItem>, StorageError>;
    async fn roster_item(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StorageError>;
    /// Inserts or replaces; bumps the account's roster version.
    async fn roster_put(
        &self,
        host: &str,
        user: &str,
        item: &RosterItem,
    ) -> Result<(), StorageError>;
    /// Bumps the roster version when something was removed.
    async fn roster_remove(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<bool, StorageError>;
    /// XEP-0237: a counter that changes whenever the roster changes; 0 for a roster never written.
    async fn roster_version(&self, host: &str, user: &str) -> Result<u64, StorageError>;
    async fn sub_request_put(
        &self,
        host: &str,
        user: &str,
        contact: &str,
        stanza: &str,
    ) -> Result<(), StorageError>;
    async fn sub_request_remove(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<bool, StorageError>;
    async fn sub_requests(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Vec<(String, String)>, StorageError>;
}

#[async_trait]
pub trait OfflineStore: Send + Sync {
    async fn offline_store(
        &self,
        host: &str,
        user: &str,
        stanza: &str,
        max: u32,
    ) -> Result<OfflineStored, StorageError>;
    async fn offline_take(
        &self,
        host: &str,
        user: &str,
        limit: u32,
    ) -> Result<Vec<OfflineMessage>, StorageError>;
    async fn offline_count(&self, host: &str, user: &str) -> Result<u64, StorageError>;
}

/// XEP-0191 block lists: bare or full JIDs or domains, as strings.
#[async_trait]
pub trait BlockingStore: Send + Sync {
    async fn blocklist_get(&self, host: &str, user: &str) -> Result<Vec<String>, StorageError>;
    /// Every account with a non-empty list, as (host, user).
    async fn blocklist_owners(&self) -> Result<Vec<(String, String)>, StorageError>;
    /// Adds (ignoring ones already there).
    async fn blocklist_add(
        &self,
        host: &str,
        user: &str,
        jids: &[String],
    ) -> Result<(), StorageError>;
    /// Removes these; an empty slice removes all.
    async fn blocklist_remove(
        &self,
        host: &str,
        user: &str,
        jids: &[String],
    ) -> Result<(), StorageError>;
}

/// XEP-0049 private XML storage: one serialised element per namespace.
#[async_trait]
pub trait PrivateStore: Send + Sync {
    async fn private_get(
        &self,
        host: &str,
        user: &str,
        namespace: &str,
    ) -> Result<Option<String>, StorageError>;
    /// The namespaces stored under, sorted.
    async fn private_namespaces(&self, host: &str, user: &str)
        -> Result<Vec<String>, StorageError>;
    /// Stores each `(namespace, xml)`, replacing what was there; all or none.
    async fn private_set(
        &self,
        host: &str,
        user: &str,
        items: &[(String, String)],
    ) -> Result<(), StorageError>;
}

/// XEP-0012 last activity: each account's last logout.
#[async_trait]
pub trait LastActivityStore: Send + Sync {
    async fn last_activity_get(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<LastActivity>, StorageError>;
    /// Replaces what was recorded.
    async fn last_activity_set(
        &self,
        host: &str,
        user: &str,
        last: &LastActivity,
    ) -> Result<(), StorageError>;
}

/// XEP-0054 vcard-temp: one vCard per account.
#[async_trait]
pub trait VcardStore: Send + Sync {
    async fn vcard_get(&self, host: &str, user: &str) -> Result<Option<StoredVcard>, StorageError>;
    /// Replaces what was stored.
    async fn vcard_set(
        &self,
        host: &str,
        user: &str,
        vcard: &StoredVcard,
    ) -> Result<(), StorageError>;
}

/// XEP-0313 message archives and their preferences.
#[async_trait]
pub trait MamStore: Send + Sync {
    /// Archives a batch, all or none.
    async fn mam_insert(&self, rows: &[ArchivedMessage]) -> Result<(), StorageError>;
    /// One page: `(id, xml)`, newest first when `q.reverse`.
    async fn mam_page(&self, q: &ArchiveQuery) -> Result<Vec<(i64, String)>, StorageError>;
    async fn mam_exists(&self, host: &str, user: &str, id: i64) -> Result<bool, StorageError>;
    /// Removes every message archived before `id`; how many.
    async fn mam_purge_before(&self, id: i64) -> Result<u64, StorageError>;
    /// Keeps the newest `keep` of each archive: (archives trimmed, removed).
    async fn mam_trim(&self, keep: u64) -> Result<(u64, u64), StorageError>;
    async fn mam_prefs_get(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<ArchivePrefs>, StorageError>;
    async fn mam_prefs_set(
        &self,
        host: &str,
        user: &str,
        prefs: &ArchivePrefs,
    ) -> Result<(), StorageError>;
}

/// XEP-0163 PEP: each account's nodes (configuration) and items.
#[async_trait]
pub trait PepStore: Send + Sync {
    /// The account's nodes, sorted by name.
    async fn pep_nodes(&self, host: &str, user: &str) -> Result<Vec<PepNode>, StorageError>;
    /// Creates the node or replaces its configuration (items are kept).
    async fn pep_node_put(
        &self,
        host: &str,
        user: &str,
        node: &PepNode,
    ) -> Result<(), StorageError>;
    /// Removes the node and its items; whether it existed.
    async fn pep_node_delete(
        &self,
        host: &str,
        user: &str,
        node: &str,
    ) -> Result<bool, StorageError>;
    /// Stores `item` as the node's newest (replacing one with its id), then
    /// keeps the `keep` newest.
    async fn pep_publish(
        &self,
        host: &str,
        user: &str,
        node: &str,
        item: &PepItem,
        keep: u32,
    ) -> Result<(), StorageError>;
    /// Newest first: the `max` newest, or all.
    async fn pep_items(
        &self,
        host: &str,
        user: &str,
        node: &str,
        max: Option<u32>,
    ) -> Result<Vec<PepItem>, StorageError>;
    async fn pep_item(
        &self,
        host: &str,
        user: &str,
        node: &str,
        id: &str,
    ) -> Result<Option<PepItem>, StorageError>;
    /// Whether it was there.
    async fn pep_retract(
        &self,
        host: &str,
        user: &str,
        node: &str,
        id: &str,
    ) -> Result<bool, StorageError>;
}

/// Every store the modules use, as trait objects.
#[derive(Clone)]
pub struct Stores {
    pub accounts: Arc<dyn AccountStore>,
    pub roster: Arc<dyn RosterStore>,
    pub offline: Arc<dyn OfflineStore>,
    pub blocking: Arc<dyn BlockingStore>,
    pub private: Arc<dyn PrivateStore>,
    pub last: Arc<dyn LastActivityStore>,
    pub vcard: Arc<dyn VcardStore>,
    pub mam: Arc<dyn MamStore>,
    pub pep: Arc<dyn PepStore>,
}

impl Stores {
    /// The sqlx implementation over one Storage (SQLite or PostgreSQL).
    pub fn sql(storage: &Storage) -> Stores {
        // A clone shares the pool, the observer and the account locks.
        Stores::backed_by(Arc::new(storage.clone()))
    }

    /// Everything in memory: for unit tests of modules (no database).
    pub fn memory() -> Stores {
        Stores::backed_by(Arc::new(MemoryStore::new()))
    }

    /// Every field backed by the one `store`: a test keeps its own `Arc` to
    /// a [`MemoryStore`] to add accounts (`MemoryStore::add_account`).
    pub fn backed_by<S>(store: Arc<S>) -> Stores
    where
        S: AccountStore
            + RosterStore
            + OfflineStore
            + BlockingStore
            + PrivateStore
            + LastActivityStore
            + VcardStore
            + MamStore
            + PepStore
            + 'static,
    {
        Stores {
            accounts: store.clone(),
            roster: store.clone(),
            offline: store.clone(),
            blocking: store.clone(),
            private: store.clone(),
            last: store.clone(),
            vcard: store.clone(),
            mam: store.clone(),
            pep: store,
        }
    }
}
