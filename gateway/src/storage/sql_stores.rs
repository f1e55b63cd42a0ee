//! The store traits over [`Storage`] (SQLite or PostgreSQL): each method
//! calls the inherent one of the same name, which runs through
//! `Storage::op` (so the trait path is instrumented exactly like the direct one).

use async_trait::async_trait;

use super::{
    AccountCredentials, AccountGuard, AccountStore, BlockingStore, OfflineMessage, OfflineStore,
    OfflineStored, PrivateStore, RosterItem, RosterStore, Storage, StorageError,
};
use super::{ArchivePrefs, ArchiveQuery, ArchivedMessage, MamStore};
use super::{LastActivity, LastActivityStore, StoredVcard, VcardStore};

// `Storage::name(self, ..)` picks the inherent method: inherent methods come
// before trait methods of the same name, so none of these recurse.

#[async_trait]
impl AccountStore for Storage {
    async fn account_exists(&self, host: &str, user: &str) -> Result<bool, StorageError> {
        Storage::account_exists(self, host, user).await
    }

    async fn get_credentials(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<AccountCredentials>, StorageError> {
        Storage::get_credentials(self, host, user).await
    }

    async fn remove_account(&self, host: &str, user: &str) -> Result<bool, StorageError> {
        Storage::remove_account(self, host, user).await
    }

    async fn create_account(
        &self,
        host: &str,
        user: &str,
        creds: &AccountCredentials,
    ) -> Result<(), StorageError> {
        Storage::create_account(self, host, user, creds).await
    }

    async fn set_credentials(
        &self,
        host: &str,
        user: &str,
        creds: &AccountCredentials,
    ) -> Result<bool, StorageError> {
        Storage::set_credentials(self, host, user, creds).await
    }
}

#[async_trait]
impl RosterStore for Storage {
    async fn lock_account(&self, host: &str, user: &str) -> AccountGuard<'_> {
        Storage::lock_account(self, host, user).await
    }

    async fn roster_get(&self, host: &str, user: &str) -> Result<Vec<RosterItem>, StorageError> {
        Storage::roster_get(self, host, user).await
    }

    async fn roster_item(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StorageError> {
        Storage::roster_item(self, host, user, contact).await
    }

    async fn roster_put(
        &self,
        host: &str,
        user: &str,
        item: &RosterItem,
    ) -> Result<(), StorageError> {
        Storage::roster_put(self, host, user, item).await
    }

    async fn roster_remove(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<bool, StorageError> {
        Storage::roster_remove(self, host, user, contact).await
    }

    async fn roster_version(&self, host: &str, user: &str) -> Result<u64, StorageError> {
        Storage::roster_version(self, host, user).await
    }

    async fn sub_request_put(
        &self,
        host: &str,
        user: &str,
        contact: &str,
        stanza: &str,
    ) -> Result<(), StorageError> {
        Storage::sub_request_put(self, host, user, contact, stanza).await
    }

    async fn sub_request_remove(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<bool, StorageError> {
        Storage::sub_request_remove(self, host, user, contact).await
    }

    async fn sub_requests(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        Storage::sub_requests(self, host, user).await
    }
}

#[async_trait]
impl OfflineStore for Storage {
    async fn offline_store(
        &self,
        host: &str,
        user: &str,
        stanza: &str,
        max: u32,
    ) -> Result<OfflineStored, StorageError> {
        Storage::offline_store(self, host, user, stanza, max).await
    }

    async fn offline_take(
        &self,
        host: &str,
        user: &str,
        limit: u32,
    ) -> Result<Vec<OfflineMessage>, StorageError> {
        Storage::offline_take(self, host, user, limit).await
    }

    async fn offline_count(&self, host: &str, user: &str) -> Result<u64, StorageError> {
        Storage::offline_count(self, host, user).await
    }
}

#[async_trait]
impl BlockingStore for Storage {
    async fn blocklist_get(&self, host: &str, user: &str) -> Result<Vec<String>, StorageError> {
        Storage::blocklist_get(self, host, user).await
    }

    async fn blocklist_owners(&self) -> Result<Vec<(String, String)>, StorageError> {
        Storage::blocklist_owners(self).await
    }

    async fn blocklist_add(
        &self,
        host: &str,
        user: &str,
        jids: &[String],
    ) -> Result<(), StorageError> {
        Storage::blocklist_add(self, host, user, jids).await
    }

    async fn blocklist_remove(
        &self,
        host: &str,
        user: &str,
        jids: &[String],
    ) -> Result<(), StorageError> {
        Storage::blocklist_remove(self, host, user, jids).await
    }
}

#[async_trait]
impl PrivateStore for Storage {
    async fn private_get(
        &self,
        host: &str,
        user: &str,
        namespace: &str,
    ) -> Result<Option<String>, StorageError> {
        Storage::private_get(self, host, user, namespace).await
    }

    async fn private_namespaces(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Vec<String>, StorageError> {
        Storage::private_namespaces(self, host, user).await
    }

    async fn private_set(
        &self,
        host: &str,
        user: &str,
        items: &[(String, String)],
    ) -> Result<(), StorageError> {
        Storage::private_set(self, host, user, items).await
    }
}

#[async_trait]
impl LastActivityStore for Storage {
    async fn last_activity_get(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<LastActivity>, StorageError> {
        Storage::last_activity_get(self, host, user).await
    }

    async fn last_activity_set(
        &self,
        host: &str,
        user: &str,
        last: &LastActivity,
    ) -> Result<(), StorageError> {
        Storage::last_activity_set(self, host, user, last).await
    }
}

#[async_trait]
impl VcardStore for Storage {
    async fn vcard_get(&self, host: &str, user: &str) -> Result<Option<StoredVcard>, StorageError> {
        Storage::vcard_get(self, host, user).await
    }

    async fn vcard_set(
        &self,
        host: &str,
        user: &str,
        vcard: &StoredVcard,
    ) -> Result<(), StorageError> {
        Storage::vcard_set(self, host, user, vcard).await
    }
}

#[async_trait]
impl MamStore for Storage {
    async fn mam_insert(&self, rows: &[ArchivedMessage]) -> Result<(), StorageError> {
        Storage::mam_insert(self, rows).await
    }

    async fn mam_page(&self, q: &ArchiveQuery) -> Result<Vec<(i64, String)>, StorageError> {
        Storage::mam_page(self, q).await
    }

    async fn mam_exists(&self, host: &str, user: &str, id: i64) -> Result<bool, StorageError> {
        Storage::mam_exists(self, host, user, id).await
    }

    async fn mam_purge_before(&self, id: i64) -> Result<u64, StorageError> {
        Storage::mam_purge_before(self, id).await
    }

    async fn mam_trim(&self, keep: u64) -> Result<(u64, u64), StorageError> {
        Storage::mam_trim(self, keep).await
    }

    async fn mam_prefs_get(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<ArchivePrefs>, StorageError> {
        Storage::mam_prefs_get(self, host, user).await
    }

    async fn mam_prefs_set(
        &self,
        host: &str,
        user: &str,
        prefs: &ArchivePrefs,
    ) -> Result<(), StorageError> {
        Storage::mam_prefs_set(self, host, user, prefs).await
    }
}
