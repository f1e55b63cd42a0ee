//! [`MemoryStore`]: every store trait in process memory, for unit tests of
//! modules (no database). It behaves as `Storage` does where a module can
//! tell: roster sorted by contact, versions bumped on change, offline ids
//! increasing and the per-user maximum honoured, block lists sorted.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::locks::AccountLocks;
use super::{
    now_ms, AccountCredentials, AccountGuard, AccountStore, BlockingStore, OfflineMessage,
    OfflineStore, OfflineStored, PrivateStore, RosterItem, RosterStore, StorageError,
};
use super::{ArchivePrefs, ArchiveQuery, ArchivedMessage, MamStore};
use super::{LastActivity, LastActivityStore, StoredVcard, VcardStore};
use super::{PepItem, PepNode, PepStore};

/// `(host, username)`.
type Account = (String, String);

fn account(host: &str, user: &str) -> Account {
    (host.to_string(), user.to_string())
}

#[derive(Default)]
struct State {
    accounts: HashMap<Account, AccountCredentials>,
    /// Keyed by contact, so `roster_get` comes out sorted like the SQL.
    rosters: HashMap<Account, BTreeMap<String, RosterItem>>,
    roster_versions: HashMap<Account, u64>,
    /// `(contact, stanza)`, oldest first; a repeat replaces in place.
    sub_requests: HashMap<Account, Vec<(String, String)>>,
    offline: HashMap<Account, VecDeque<OfflineMessage>>,
    /// The last offline id given out: one sequence for all users, as in SQL.
    last_offline_id: i64,
    blocklists: HashMap<Account, BTreeSet<String>>,
    /// XEP-0049: namespace → serialised element.
    private: HashMap<Account, BTreeMap<String, String>>,
    /// XEP-0012: the last logout.
    last_activity: HashMap<Account, LastActivity>,
    /// XEP-0054.
    vcards: HashMap<Account, StoredVcard>,
    /// XEP-0313: id → message, per account.
    archives: HashMap<Account, BTreeMap<i64, ArchivedMessage>>,
    mam_prefs: HashMap<Account, ArchivePrefs>,
    /// XEP-0163: node → (configuration, items oldest first).
    pep: HashMap<Account, BTreeMap<String, (PepNode, Vec<PepItem>)>>,
}

pub struct MemoryStore {
    state: Mutex<State>,
    locks: AccountLocks,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore {
            state: Mutex::new(State::default()),
            locks: AccountLocks::new(),
        }
    }

    /// Creates `user@host` with dummy (empty) credentials; an existing
    /// account is left as it is.
    pub fn add_account(&self, host: &str, user: &str) {
        self.state()
            .accounts
            .entry(account(host, user))
            .or_insert_with(|| AccountCredentials {
                scram_sha1: String::new(),
                scram_sha256: String::new(),
            });
    }

    /// Every change is made in one step under the mutex, so a panic in some
    /// other holder leaves the maps consistent: carry on past the poison
    /// rather than fail every later test call.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn bump_version(state: &mut State, key: Account) {
    *state.roster_versions.entry(key).or_insert(0) += 1;
}

#[async_trait]
impl AccountStore for MemoryStore {
    async fn account_exists(&self, host: &str, user: &str) -> Result<bool, StorageError> {
        Ok(self.state().accounts.contains_key(&account(host, user)))
    }

    async fn get_credentials(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<AccountCredentials>, StorageError> {
        Ok(self.state().accounts.get(&account(host, user)).cloned())
    }

    async fn remove_account(&self, host: &str, user: &str) -> Result<bool, StorageError> {
        let key = account(host, user);
        let mut state = self.state();
        state.rosters.remove(&key);
        state.roster_versions.remove(&key);
        state.sub_requests.remove(&key);
        state.offline.remove(&key);
        state.blocklists.remove(&key);
        state.private.remove(&key);
        state.last_activity.remove(&key);
        state.vcards.remove(&key);
        state.archives.remove(&key);
        state.mam_prefs.remove(&key);
        state.pep.remove(&key);
        Ok(state.accounts.remove(&key).is_some())
    }

    async fn create_account(
        &self,
        host: &str,
        user: &str,
        creds: &AccountCredentials,
    ) -> Result<(), StorageError> {
        match self.state().accounts.entry(account(host, user)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(StorageError::Conflict),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(creds.clone());
                Ok(())
            }
        }
    }

    async fn set_credentials(
        &self,
        host: &str,
        user: &str,
        creds: &AccountCredentials,
    ) -> Result<bool, StorageError> {
        match self.state().accounts.get_mut(&account(host, user)) {
            Some(c) => {
                *c = creds.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[async_trait]
impl RosterStore for MemoryStore {
    async fn lock_account(&self, host: &str, user: &str) -> AccountGuard<'_> {
        self.locks.lock(host, user).await
    }

    async fn roster_get(&self, host: &str, user: &str) -> Result<Vec<RosterItem>, StorageError> {
        let state = self.state();
        let items = state.rosters.get(&account(host, user));
        Ok(items
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn roster_item(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<Option<RosterItem>, StorageError> {
        let state = self.state();
        let items = state.rosters.get(&account(host, user));
        Ok(items.and_then(|m| m.get(contact)).cloned())
    }

    async fn roster_put(
        &self,
        host: &str,
        user: &str,
        item: &RosterItem,
    ) -> Result<(), StorageError> {
        let key = account(host, user);
        let mut state = self.state();
        state
            .rosters
            .entry(key.clone())
            .or_default()
            .insert(item.jid.clone(), item.clone());
        bump_version(&mut state, key);
        Ok(())
    }

    async fn roster_remove(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<bool, StorageError> {
        let key = account(host, user);
        let mut state = self.state();
        let removed = state
            .rosters
            .get_mut(&key)
            .and_then(|m| m.remove(contact))
            .is_some();
        if removed {
            bump_version(&mut state, key);
        }
        Ok(removed)
    }

    async fn roster_version(&self, host: &str, user: &str) -> Result<u64, StorageError> {
        let state = self.state();
        Ok(state
            .roster_versions
            .get(&account(host, user))
            .copied()
            .unwrap_or(0))
    }

    async fn sub_request_put(
        &self,
        host: &str,
        user: &str,
        contact: &str,
        stanza: &str,
    ) -> Result<(), StorageError> {
        let mut state = self.state();
        let list = state.sub_requests.entry(account(host, user)).or_default();
        // Like the SQL upsert: the newer stanza, the older place in line.
        match list.iter_mut().find(|(c, _)| c == contact) {
            Some(entry) => entry.1 = stanza.to_string(),
            None => list.push((contact.to_string(), stanza.to_string())),
        }
        Ok(())
    }

    async fn sub_request_remove(
        &self,
        host: &str,
        user: &str,
        contact: &str,
    ) -> Result<bool, StorageError> {
        let mut state = self.state();
        let Some(list) = state.sub_requests.get_mut(&account(host, user)) else {
            return Ok(false);
        };
        let before = list.len();
        list.retain(|(c, _)| c != contact);
        Ok(list.len() < before)
    }

    async fn sub_requests(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let state = self.state();
        let list = state.sub_requests.get(&account(host, user));
        Ok(list.cloned().unwrap_or_default())
    }
}

#[async_trait]
impl OfflineStore for MemoryStore {
    async fn offline_store(
        &self,
        host: &str,
        user: &str,
        stanza: &str,
        max: u32,
    ) -> Result<OfflineStored, StorageError> {
        // Storage takes the account lock here too: a module that stores
        // while holding one then hangs in its unit tests, not first in production.
        let _account = self.locks.lock(host, user).await;
        let mut guard = self.state();
        let state = &mut *guard;
        let queue = state.offline.entry(account(host, user)).or_default();
        if queue.len() >= max as usize {
            return Ok(OfflineStored::Full);
        }
        state.last_offline_id += 1;
        let id = state.last_offline_id;
        queue.push_back(OfflineMessage {
            id,
            stanza: stanza.to_string(),
            stored_at_ms: now_ms(),
        });
        Ok(OfflineStored::Stored { id })
    }

    async fn offline_take(
        &self,
        host: &str,
        user: &str,
        limit: u32,
    ) -> Result<Vec<OfflineMessage>, StorageError> {
        let mut state = self.state();
        let Some(queue) = state.offline.get_mut(&account(host, user)) else {
            return Ok(Vec::new());
        };
        let n = queue.len().min(limit as usize);
        Ok(queue.drain(..n).collect())
    }

    async fn offline_count(&self, host: &str, user: &str) -> Result<u64, StorageError> {
        let state = self.state();
        let queue = state.offline.get(&account(host, user));
        Ok(queue.map_or(0, |q| q.len() as u64))
    }
}

#[async_trait]
impl BlockingStore for MemoryStore {
    async fn blocklist_get(&self, host: &str, user: &str) -> Result<Vec<String>, StorageError> {
        let state = self.state();
        let list = state.blocklists.get(&account(host, user));
        Ok(list
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn blocklist_owners(&self) -> Result<Vec<(String, String)>, StorageError> {
        let state = self.state();
        Ok(state
            .blocklists
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(a, _)| a.clone())
            .collect())
    }

    async fn blocklist_add(
        &self,
        host: &str,
        user: &str,
        jids: &[String],
    ) -> Result<(), StorageError> {
        let mut state = self.state();
        let list = state.blocklists.entry(account(host, user)).or_default();
        list.extend(jids.iter().cloned());
        Ok(())
    }

    async fn blocklist_remove(
        &self,
        host: &str,
        user: &str,
        jids: &[String],
    ) -> Result<(), StorageError> {
        let key = account(host, user);
        let mut state = self.state();
        if jids.is_empty() {
            state.blocklists.remove(&key);
        } else if let Some(list) = state.blocklists.get_mut(&key) {
            for jid in jids {
                list.remove(jid);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl PrivateStore for MemoryStore {
    async fn private_get(
        &self,
        host: &str,
        user: &str,
        namespace: &str,
    ) -> Result<Option<String>, StorageError> {
        let state = self.state();
        let stored = state.private.get(&account(host, user));
        Ok(stored.and_then(|m| m.get(namespace)).cloned())
    }

    async fn private_namespaces(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Vec<String>, StorageError> {
        let state = self.state();
        let stored = state.private.get(&account(host, user));
        Ok(stored
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default())
    }

    async fn private_set(
        &self,
        host: &str,
        user: &str,
        items: &[(String, String)],
    ) -> Result<(), StorageError> {
        let mut state = self.state();
        let stored = state.private.entry(account(host, user)).or_default();
        for (ns, xml) in items {
            stored.insert(ns.clone(), xml.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl LastActivityStore for MemoryStore {
    async fn last_activity_get(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<LastActivity>, StorageError> {
        Ok(self
            .state()
            .last_activity
            .get(&account(host, user))
            .cloned())
    }

    async fn last_activity_set(
        &self,
        host: &str,
        user: &str,
        last: &LastActivity,
    ) -> Result<(), StorageError> {
        self.state()
            .last_activity
            .insert(account(host, user), last.clone());
        Ok(())
    }
}

#[async_trait]
impl VcardStore for MemoryStore {
    async fn vcard_get(&self, host: &str, user: &str) -> Result<Option<StoredVcard>, StorageError> {
        Ok(self.state().vcards.get(&account(host, user)).cloned())
    }

    async fn vcard_set(
        &self,
        host: &str,
        user: &str,
        vcard: &StoredVcard,
    ) -> Result<(), StorageError> {
        self.state()
            .vcards
            .insert(account(host, user), vcard.clone());
        Ok(())
    }
}

#[async_trait]
impl PepStore for MemoryStore {
    async fn pep_nodes(&self, host: &str, user: &str) -> Result<Vec<PepNode>, StorageError> {
        let state = self.state();
        let nodes = state.pep.get(&account(host, user));
        Ok(nodes
            .map(|m| m.values().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default())
    }

    async fn pep_node_put(
        &self,
        host: &str,
        user: &str,
        node: &PepNode,
    ) -> Result<(), StorageError> {
        let mut state = self.state();
        let nodes = state.pep.entry(account(host, user)).or_default();
        match nodes.get_mut(&node.node) {
            Some((config, _)) => *config = node.clone(),
            None => {
                nodes.insert(node.node.clone(), (node.clone(), Vec::new()));
            }
        }
        Ok(())
    }

    async fn pep_node_delete(
        &self,
        host: &str,
        user: &str,
        node: &str,
    ) -> Result<bool, StorageError> {
        let mut state = self.state();
        let nodes = state.pep.get_mut(&account(host, user));
        Ok(nodes.is_some_and(|m| m.remove(node).is_some()))
    }

    async fn pep_publish(
        &self,
        host: &str,
        user: &str,
        node: &str,
        item: &PepItem,
        keep: u32,
    ) -> Result<(), StorageError> {
        let mut state = self.state();
        let nodes = state.pep.entry(account(host, user)).or_default();
        // Like the SQL: items of a node with no configuration row are kept.
        let (_, items) = nodes.entry(node.to_string()).or_insert_with(|| {
            let config = PepNode {
                node: node.to_string(),
                access_model: "presence".into(),
                persist_items: true,
                max_items: Some(1),
                send_last: "on_sub_and_presence".into(),
            };
            (config, Vec::new())
        });
        items.retain(|i| i.id != item.id);
        items.push(item.clone());
        let over = items.len().saturating_sub(keep.max(1) as usize);
        items.drain(..over);
        Ok(())
    }

    async fn pep_items(
        &self,
        host: &str,
        user: &str,
        node: &str,
        max: Option<u32>,
    ) -> Result<Vec<PepItem>, StorageError> {
        let state = self.state();
        let items = state
            .pep
            .get(&account(host, user))
            .and_then(|m| m.get(node));
        let limit = max.map_or(usize::MAX, |m| m as usize);
        Ok(items
            .map(|(_, items)| items.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn pep_item(
        &self,
        host: &str,
        user: &str,
        node: &str,
        id: &str,
    ) -> Result<Option<PepItem>, StorageError> {
        let state = self.state();
        let items = state
            .pep
            .get(&account(host, user))
            .and_then(|m| m.get(node));
        Ok(items.and_then(|(_, items)| items.iter().find(|i| i.id == id).cloned()))
    }

    async fn pep_retract(
        &self,
        host: &str,
        user: &str,
        node: &str,
        id: &str,
    ) -> Result<bool, StorageError> {
        let mut state = self.state();
        let Some((_, items)) = state
            .pep
            .get_mut(&account(host, user))
            .and_then(|m| m.get_mut(node))
        else {
            return Ok(false);
        };
        let before = items.len();
        items.retain(|i| i.id != id);
        Ok(items.len() < before)
    }
}

#[async_trait]
impl MamStore for MemoryStore {
    async fn mam_insert(&self, rows: &[ArchivedMessage]) -> Result<(), StorageError> {
        let mut state = self.state();
        for r in rows {
            state
                .archives
                .entry(account(&r.host, &r.user))
                .or_default()
                .insert(r.id, r.clone());
        }
        Ok(())
    }

    async fn mam_page(&self, q: &ArchiveQuery) -> Result<Vec<(i64, String)>, StorageError> {
        let state = self.state();
        let Some(archive) = state.archives.get(&account(&q.host, &q.user)) else {
            return Ok(Vec::new());
        };
        let lo = q
            .after
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let hi = q
            .before
            .map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        if matches!((q.after, q.before), (Some(a), Some(b)) if a >= b) {
            return Ok(Vec::new());
        }
        let matches = |m: &&ArchivedMessage| {
            q.with_bare.as_ref().is_none_or(|w| *w == m.peer_bare)
                && q.with_resource
                    .as_ref()
                    .is_none_or(|r| *r == m.peer_resource)
        };
        let range = archive.range((lo, hi)).map(|(_, m)| m);
        let limit = q.limit as usize;
        let rows: Vec<_> = if q.reverse {
            range
                .rev()
                .filter(matches)
                .take(limit)
                .map(|m| (m.id, m.xml.clone()))
                .collect()
        } else {
            range
                .filter(matches)
                .take(limit)
                .map(|m| (m.id, m.xml.clone()))
                .collect()
        };
        Ok(rows)
    }

    async fn mam_exists(&self, host: &str, user: &str, id: i64) -> Result<bool, StorageError> {
        Ok(self
            .state()
            .archives
            .get(&account(host, user))
            .is_some_and(|a| a.contains_key(&id)))
    }

    async fn mam_purge_before(&self, id: i64) -> Result<u64, StorageError> {
        let mut n = 0;
        for a in self.state().archives.values_mut() {
            let before = a.len();
            a.retain(|k, _| *k >= id);
            n += (before - a.len()) as u64;
        }
        Ok(n)
    }

    async fn mam_trim(&self, keep: u64) -> Result<(u64, u64), StorageError> {
        let (mut accounts, mut removed) = (0, 0);
        for a in self.state().archives.values_mut() {
            let over = a.len().saturating_sub(keep as usize);
            if over > 0 {
                accounts += 1;
                removed += over as u64;
                let cut = *a.keys().nth(over).unwrap_or(&i64::MAX);
                a.retain(|k, _| *k >= cut);
            }
        }
        Ok((accounts, removed))
    }

    async fn mam_prefs_get(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<ArchivePrefs>, StorageError> {
        Ok(self.state().mam_prefs.get(&account(host, user)).cloned())
    }

    async fn mam_prefs_set(
        &self,
        host: &str,
        user: &str,
        prefs: &ArchivePrefs,
    ) -> Result<(), StorageError> {
        self.state()
            .mam_prefs
            .insert(account(host, user), prefs.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{Stores, Subscription};
    use super::*;

    fn item(jid: &str, subscription: Subscription) -> RosterItem {
        RosterItem {
            jid: jid.into(),
            name: None,
            subscription,
            ask: false,
            groups: vec!["Friends".into()],
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn roster_put_get_version_remove() {
        let s = Stores::memory();
        let r = &s.roster;
        assert_eq!(r.roster_version("h", "alice").await.unwrap(), 0);
        assert!(r.roster_get("h", "alice").await.unwrap().is_empty());
        let bob = item("bob@h", Subscription::None);
        r.roster_put("h", "alice", &bob).await.unwrap();
        assert_eq!(r.roster_version("h", "alice").await.unwrap(), 1);
        let mut bob2 = bob.clone();
        bob2.subscription = Subscription::Both;
        r.roster_put("h", "alice", &bob2).await.unwrap();
        let amy = item("amy@h", Subscription::From);
        r.roster_put("h", "alice", &amy).await.unwrap();
        assert_eq!(r.roster_version("h", "alice").await.unwrap(), 3);
        // Sorted by contact, the replaced item once.
        assert_eq!(
            r.roster_get("h", "alice").await.unwrap(),
            [amy.clone(), bob2.clone()]
        );
        assert_eq!(
            r.roster_item("h", "alice", "bob@h").await.unwrap(),
            Some(bob2)
        );
        assert_eq!(r.roster_item("h", "alice", "x@h").await.unwrap(), None);
        // Another account's roster is its own.
        assert!(r.roster_get("other", "alice").await.unwrap().is_empty());
        assert_eq!(r.roster_version("h", "bob").await.unwrap(), 0);
        assert!(r.roster_remove("h", "alice", "bob@h").await.unwrap());
        assert_eq!(r.roster_version("h", "alice").await.unwrap(), 4);
        // Nothing removed, no new version.
        assert!(!r.roster_remove("h", "alice", "bob@h").await.unwrap());
        assert_eq!(r.roster_version("h", "alice").await.unwrap(), 4);
        assert_eq!(r.roster_get("h", "alice").await.unwrap(), [amy]);
    }

    #[tokio::test]
    async fn sub_requests_replace_in_place_and_remove() {
        let s = Stores::memory();
        let r = &s.roster;
        r.sub_request_put("h", "alice", "carol@h", "<presence id='1'/>")
            .await
            .unwrap();
        r.sub_request_put("h", "alice", "bob@h", "<presence id='2'/>")
            .await
            .unwrap();
        r.sub_request_put("h", "alice", "carol@h", "<presence id='3'/>")
            .await
            .unwrap();
        assert_eq!(
            r.sub_requests("h", "alice").await.unwrap(),
            [
                ("carol@h".to_string(), "<presence id='3'/>".to_string()),
                ("bob@h".to_string(), "<presence id='2'/>".to_string())
            ]
        );
        assert!(r.sub_request_remove("h", "alice", "carol@h").await.unwrap());
        assert!(!r.sub_request_remove("h", "alice", "carol@h").await.unwrap());
        assert!(!r
            .sub_request_remove("h", "nobody", "carol@h")
            .await
            .unwrap());
        assert_eq!(r.sub_requests("h", "alice").await.unwrap().len(), 1);
        // Sub requests are not the roster: no version bump.
        assert_eq!(r.roster_version("h", "alice").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn offline_order_limit_full_take() {
        let s = Stores::memory();
        let o = &s.offline;
        let mut ids = Vec::new();
        for i in 0..3 {
            match o
                .offline_store("h", "bob", &format!("<m id='{i}'/>"), 3)
                .await
                .unwrap()
            {
                OfflineStored::Stored { id } => ids.push(id),
                OfflineStored::Full => panic!("full at {i}"),
            }
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(
            o.offline_store("h", "bob", "<m id='x'/>", 3).await.unwrap(),
            OfflineStored::Full
        );
        // The maximum is per user.
        assert!(matches!(
            o.offline_store("h", "carol", "<m/>", 3).await.unwrap(),
            OfflineStored::Stored { id } if id > ids[2]
        ));
        assert_eq!(o.offline_count("h", "bob").await.unwrap(), 3);
        let first = o.offline_take("h", "bob", 2).await.unwrap();
        assert_eq!(
            first.iter().map(|m| m.stanza.as_str()).collect::<Vec<_>>(),
            ["<m id='0'/>", "<m id='1'/>"]
        );
        assert_eq!(first[0].id, ids[0]);
        assert!(first[0].stored_at_ms > 0);
        assert_eq!(o.offline_count("h", "bob").await.unwrap(), 1);
        // Room again after a take.
        assert!(matches!(
            o.offline_store("h", "bob", "<m id='3'/>", 3).await.unwrap(),
            OfflineStored::Stored { .. }
        ));
        let rest = o.offline_take("h", "bob", 10).await.unwrap();
        assert_eq!(
            rest.iter().map(|m| m.stanza.as_str()).collect::<Vec<_>>(),
            ["<m id='2'/>", "<m id='3'/>"]
        );
        assert!(o.offline_take("h", "bob", 10).await.unwrap().is_empty());
        assert!(o.offline_take("h", "nobody", 10).await.unwrap().is_empty());
        assert_eq!(o.offline_count("h", "bob").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn blocklist_add_dup_remove_remove_all() {
        let s = Stores::memory();
        let b = &s.blocking;
        assert!(b.blocklist_get("h", "alice").await.unwrap().is_empty());
        b.blocklist_add("h", "alice", &strings(&["spam@x", "evil.example", "a@b/r"]))
            .await
            .unwrap();
        // Already there: ignored, no duplicate.
        b.blocklist_add("h", "alice", &strings(&["spam@x", "spam@x"]))
            .await
            .unwrap();
        assert_eq!(
            b.blocklist_get("h", "alice").await.unwrap(),
            strings(&["a@b/r", "evil.example", "spam@x"])
        );
        assert!(b.blocklist_get("h", "bob").await.unwrap().is_empty());
        b.blocklist_remove("h", "alice", &strings(&["spam@x", "not-there@x"]))
            .await
            .unwrap();
        assert_eq!(
            b.blocklist_get("h", "alice").await.unwrap(),
            strings(&["a@b/r", "evil.example"])
        );
        b.blocklist_remove("h", "alice", &[]).await.unwrap();
        assert!(b.blocklist_get("h", "alice").await.unwrap().is_empty());
        // Removing from a list that does not exist is no error.
        b.blocklist_remove("h", "bob", &strings(&["x@y"]))
            .await
            .unwrap();
        b.blocklist_remove("h", "bob", &[]).await.unwrap();
    }

    #[tokio::test]
    async fn remove_account_clears_everything() {
        let mem = Arc::new(MemoryStore::new());
        mem.add_account("h", "alice");
        mem.add_account("h", "bob");
        let s = Stores::backed_by(mem.clone());
        assert!(s.accounts.account_exists("h", "alice").await.unwrap());
        assert!(!s.accounts.account_exists("h", "carol").await.unwrap());
        assert!(s
            .accounts
            .get_credentials("h", "alice")
            .await
            .unwrap()
            .is_some());
        assert_eq!(
            s.accounts.get_credentials("h", "carol").await.unwrap(),
            None
        );
        for user in ["alice", "bob"] {
            let r = &s.roster;
            r.roster_put("h", user, &item("x@h", Subscription::Both))
                .await
                .unwrap();
            r.sub_request_put("h", user, "y@h", "<presence/>")
                .await
                .unwrap();
            s.offline
                .offline_store("h", user, "<m/>", 10)
                .await
                .unwrap();
            s.blocking
                .blocklist_add("h", user, &strings(&["z@h"]))
                .await
                .unwrap();
            s.private
                .private_set("h", user, &[("p:x".into(), "<x xmlns='p:x'/>".into())])
                .await
                .unwrap();
        }
        assert!(s.accounts.remove_account("h", "alice").await.unwrap());
        assert!(!s.accounts.remove_account("h", "alice").await.unwrap());
        assert!(!s.accounts.account_exists("h", "alice").await.unwrap());
        assert!(s.roster.roster_get("h", "alice").await.unwrap().is_empty());
        assert_eq!(s.roster.roster_version("h", "alice").await.unwrap(), 0);
        assert!(s
            .roster
            .sub_requests("h", "alice")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(s.offline.offline_count("h", "alice").await.unwrap(), 0);
        assert!(s
            .blocking
            .blocklist_get("h", "alice")
            .await
            .unwrap()
            .is_empty());
        assert!(s
            .private
            .private_namespaces("h", "alice")
            .await
            .unwrap()
            .is_empty());
        // Bob keeps his.
        assert!(s.accounts.account_exists("h", "bob").await.unwrap());
        assert_eq!(s.roster.roster_get("h", "bob").await.unwrap().len(), 1);
        assert_eq!(s.roster.roster_version("h", "bob").await.unwrap(), 1);
        assert_eq!(s.roster.sub_requests("h", "bob").await.unwrap().len(), 1);
        assert_eq!(s.offline.offline_count("h", "bob").await.unwrap(), 1);
        assert_eq!(s.blocking.blocklist_get("h", "bob").await.unwrap().len(), 1);
        assert_eq!(
            s.private.private_get("h", "bob", "p:x").await.unwrap(),
            Some("<x xmlns='p:x'/>".to_string())
        );
    }

    #[tokio::test]
    async fn lock_account_serialises_read_modify_write() {
        let s = Stores::memory();
        let add_group = |g: usize| {
            let r = s.roster.clone();
            async move {
                let _account = r.lock_account("h", "alice").await;
                let mut it = r
                    .roster_item("h", "alice", "bob@h")
                    .await?
                    .unwrap_or(item("bob@h", Subscription::None));
                // Let the others run between the read and the write.
                tokio::task::yield_now().await;
                it.groups.push(format!("g{g}"));
                r.roster_put("h", "alice", &it).await
            }
        };
        let tasks: Vec<_> = (0..20).map(|g| tokio::spawn(add_group(g))).collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let it = s
            .roster
            .roster_item("h", "alice", "bob@h")
            .await
            .unwrap()
            .unwrap();
        // "Friends" from the first read, then one group per task.
        assert_eq!(it.groups.len(), 21, "{:?}", it.groups);
    }
}
