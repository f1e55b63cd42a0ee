//! Every operation on SQLite and on the real PostgreSQL server of this
//! machine (127.0.0.1:5432); each PostgreSQL test has its own database.

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
static SEQ: AtomicU32 = AtomicU32::new(0);

fn opts() -> StorageOptions {
    StorageOptions {
        max_connections: 4,
        migration_locking: true,
    }
}

/// A fresh database: (url, guard that drops it).
async fn fresh(pg: bool) -> (String, Guard) {
    if !pg {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/t.db", dir.path().display());
        return (url, Guard::Dir(dir));
    }
    let name = format!(
        "osprey_t_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let admin = sqlx::PgPool::connect(PG_ADMIN).await.unwrap_or_else(|e| {
        panic!("PostgreSQL must be running on 127.0.0.1:5432 for these tests: {e}")
    });
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create database");
    (
        format!("postgres://postgres@127.0.0.1:5432/{name}"),
        Guard::Pg(admin, name),
    )
}

enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Pg(sqlx::PgPool, String),
}

impl Guard {
    async fn drop_db(self) {
        if let Guard::Pg(admin, name) = self {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
        }
    }
}

fn creds(tag: &str) -> AccountCredentials {
    AccountCredentials {
        scram_sha1: format!("sha1-{tag}"),
        scram_sha256: format!("sha256-{tag}"),
    }
}

async fn accounts(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    s.create_account("h", "bob", &creds("1")).await.unwrap();
    s.create_account("h", "alice", &creds("1")).await.unwrap();
    s.create_account("other", "alice", &creds("1"))
        .await
        .unwrap();
    assert!(matches!(
        s.create_account("h", "alice", &creds("2")).await,
        Err(StorageError::Conflict)
    ));
    assert_eq!(
        s.get_credentials("h", "alice").await.unwrap(),
        Some(creds("1"))
    );
    assert!(s.set_credentials("h", "alice", &creds("3")).await.unwrap());
    assert!(!s.set_credentials("h", "nobody", &creds("3")).await.unwrap());
    assert_eq!(
        s.get_credentials("h", "alice").await.unwrap(),
        Some(creds("3"))
    );
    assert!(s.account_exists("h", "bob").await.unwrap());
    assert!(!s.account_exists("h", "carol").await.unwrap());
    let all = s.list_accounts(None).await.unwrap();
    assert_eq!(
        all,
        [
            ("h".into(), "alice".into()),
            ("h".into(), "bob".into()),
            ("other".into(), "alice".into())
        ]
    );
    assert_eq!(s.list_accounts(Some("other")).await.unwrap().len(), 1);
    // Removal cascades to what the account owns.
    let item = RosterItem {
        jid: "bob@h".into(),
        name: None,
        subscription: Subscription::Both,
        ask: false,
        groups: vec![],
    };
    s.roster_put("h", "alice", &item).await.unwrap();
    s.sub_request_put("h", "alice", "carol@h", "<presence/>")
        .await
        .unwrap();
    s.offline_store("h", "alice", "<message/>", 10)
        .await
        .unwrap();
    s.blocklist_add("h", "alice", &["spam@x".to_string()])
        .await
        .unwrap();
    s.private_set("h", "alice", &[("p:x".into(), "<x xmlns='p:x'/>".into())])
        .await
        .unwrap();
    let card = StoredVcard {
        xml: "<vCard xmlns='vcard-temp'/>".into(),
        photo_hash: Some(String::new()),
    };
    s.vcard_set("h", "alice", &card).await.unwrap();
    s.vcard_set("h", "bob", &card).await.unwrap();
    // Bob owns rows in the same tables: they stay.
    s.roster_put("h", "bob", &item).await.unwrap();
    s.blocklist_add("h", "bob", &["spam@x".to_string()])
        .await
        .unwrap();
    assert_eq!(s.roster_version("h", "alice").await.unwrap(), 1);
    assert!(s.remove_account("h", "alice").await.unwrap());
    assert!(!s.remove_account("h", "alice").await.unwrap());
    assert!(s.roster_get("h", "alice").await.unwrap().is_empty());
    assert!(s.sub_requests("h", "alice").await.unwrap().is_empty());
    assert_eq!(s.offline_count("h", "alice").await.unwrap(), 0);
    assert!(s.blocklist_get("h", "alice").await.unwrap().is_empty());
    assert!(s.private_namespaces("h", "alice").await.unwrap().is_empty());
    assert_eq!(s.vcard_get("h", "alice").await.unwrap(), None);
    assert_eq!(s.vcard_get("h", "bob").await.unwrap(), Some(card));
    assert_eq!(s.roster_version("h", "alice").await.unwrap(), 0);
    assert_eq!(s.blocklist_get("h", "bob").await.unwrap(), ["spam@x"]);
    assert_eq!(s.roster_version("h", "bob").await.unwrap(), 1);
    s.ping().await.unwrap();
    s.close().await;
    guard.drop_db().await;
}

async fn accounts_bulk(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    s.create_account("h", "u3", &creds("old")).await.unwrap();
    // More than one statement's worth of rows, one of them already there.
    let users: Vec<String> = (1..=1203).map(|i| format!("u{i}")).collect();
    assert_eq!(
        s.create_accounts_bulk("h", &users, &creds("b"))
            .await
            .unwrap(),
        1202
    );
    assert_eq!(s.list_accounts(Some("h")).await.unwrap().len(), 1203);
    assert_eq!(
        s.get_credentials("h", "u3").await.unwrap(),
        Some(creds("old"))
    );
    assert_eq!(
        s.get_credentials("h", "u1203").await.unwrap(),
        Some(creds("b"))
    );
    // Again: nothing new.
    assert_eq!(
        s.create_accounts_bulk("h", &users, &creds("c"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.create_accounts_bulk("h", &[], &creds("c")).await.unwrap(),
        0
    );
    s.close().await;
    guard.drop_db().await;
}

async fn roster(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    let mut item = RosterItem {
        jid: "bob@h".into(),
        name: Some("Bob".into()),
        subscription: Subscription::None,
        ask: true,
        groups: vec!["Friends".into(), "Work, \"quoted\"".into()],
    };
    s.roster_put("h", "alice", &item).await.unwrap();
    assert_eq!(
        s.roster_item("h", "alice", "bob@h").await.unwrap(),
        Some(item.clone())
    );
    item.subscription = Subscription::Both;
    item.ask = false;
    item.name = None;
    s.roster_put("h", "alice", &item).await.unwrap();
    let other = RosterItem {
        jid: "amy@h".into(),
        name: None,
        subscription: Subscription::From,
        ask: false,
        groups: vec![],
    };
    s.roster_put("h", "alice", &other).await.unwrap();
    assert_eq!(
        s.roster_get("h", "alice").await.unwrap(),
        [other.clone(), item.clone()]
    );
    assert!(s.roster_remove("h", "alice", "bob@h").await.unwrap());
    assert!(!s.roster_remove("h", "alice", "bob@h").await.unwrap());
    assert_eq!(s.roster_get("h", "alice").await.unwrap(), [other]);
    s.sub_request_put("h", "alice", "carol@h", "<presence type='subscribe'/>")
        .await
        .unwrap();
    s.sub_request_put(
        "h",
        "alice",
        "carol@h",
        "<presence type='subscribe' id='2'/>",
    )
    .await
    .unwrap();
    assert_eq!(
        s.sub_requests("h", "alice").await.unwrap(),
        [(
            "carol@h".to_string(),
            "<presence type='subscribe' id='2'/>".to_string()
        )]
    );
    assert!(s.sub_request_remove("h", "alice", "carol@h").await.unwrap());
    assert!(!s.sub_request_remove("h", "alice", "carol@h").await.unwrap());
    s.close().await;
    guard.drop_db().await;
}

/// XEP-0237: every change to the roster, and only a change, moves the version.
async fn roster_version(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    assert_eq!(s.roster_version("h", "alice").await.unwrap(), 0);
    let mut item = RosterItem {
        jid: "bob@h".into(),
        name: None,
        subscription: Subscription::None,
        ask: false,
        groups: vec![],
    };
    s.roster_put("h", "alice", &item).await.unwrap();
    assert_eq!(s.roster_version("h", "alice").await.unwrap(), 1);
    item.subscription = Subscription::To;
    s.roster_put("h", "alice", &item).await.unwrap();
    assert_eq!(s.roster_version("h", "alice").await.unwrap(), 2);
    // Other accounts have their own.
    assert_eq!(s.roster_version("h", "bob").await.unwrap(), 0);
    assert_eq!(s.roster_version("other", "alice").await.unwrap(), 0);
    assert!(!s.roster_remove("h", "alice", "nobody@h").await.unwrap());
    assert_eq!(s.roster_version("h", "alice").await.unwrap(), 2);
    s.sub_request_put("h", "alice", "carol@h", "<presence/>")
        .await
        .unwrap();
    assert_eq!(s.roster_version("h", "alice").await.unwrap(), 2);
    assert!(s.roster_remove("h", "alice", "bob@h").await.unwrap());
    assert_eq!(s.roster_version("h", "alice").await.unwrap(), 3);
    // Concurrent writers (no account lock): no bump is lost.
    let puts = (0..20).map(|i| {
        let s = &s;
        async move {
            let item = RosterItem {
                jid: format!("c{i}@h"),
                name: None,
                subscription: Subscription::None,
                ask: false,
                groups: vec![],
            };
            s.roster_put("h", "alice", &item).await
        }
    });
    for r in futures_util::future::join_all(puts).await {
        r.unwrap();
    }
    assert_eq!(s.roster_version("h", "alice").await.unwrap(), 23);
    s.close().await;
    guard.drop_db().await;
}

async fn blocklist(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    let jids = |v: &[&str]| v.iter().map(|j| j.to_string()).collect::<Vec<_>>();
    assert!(s.blocklist_get("h", "alice").await.unwrap().is_empty());
    s.blocklist_add("h", "alice", &jids(&["spam@x", "evil.example", "a@b/r"]))
        .await
        .unwrap();
    // Already there, and twice in one call: ignored.
    s.blocklist_add("h", "alice", &jids(&["spam@x", "new@x", "new@x"]))
        .await
        .unwrap();
    s.blocklist_add("h", "alice", &[]).await.unwrap();
    assert_eq!(
        s.blocklist_get("h", "alice").await.unwrap(),
        jids(&["a@b/r", "evil.example", "new@x", "spam@x"])
    );
    s.blocklist_add("h", "bob", &jids(&["spam@x"]))
        .await
        .unwrap();
    s.blocklist_remove("h", "alice", &jids(&["spam@x", "not-there@x"]))
        .await
        .unwrap();
    assert_eq!(
        s.blocklist_get("h", "alice").await.unwrap(),
        jids(&["a@b/r", "evil.example", "new@x"])
    );
    // Empty: unblock everything, of this account only.
    s.blocklist_remove("h", "alice", &[]).await.unwrap();
    assert!(s.blocklist_get("h", "alice").await.unwrap().is_empty());
    assert_eq!(s.blocklist_get("h", "bob").await.unwrap(), ["spam@x"]);
    s.close().await;
    guard.drop_db().await;
}

async fn private_storage(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    let item = |ns: &str, xml: &str| (ns.to_string(), xml.to_string());
    assert_eq!(s.private_get("h", "alice", "a:x").await.unwrap(), None);
    s.private_set("h", "alice", &[]).await.unwrap();
    s.private_set(
        "h",
        "alice",
        &[
            item("b:y", "<y xmlns='b:y'/>"),
            item("a:x", "<x xmlns='a:x'>1</x>"),
        ],
    )
    .await
    .unwrap();
    s.private_set("h", "alice", &[item("a:x", "<x xmlns='a:x'>2</x>")])
        .await
        .unwrap();
    s.private_set("h", "bob", &[item("a:x", "<x xmlns='a:x'>bob</x>")])
        .await
        .unwrap();
    assert_eq!(
        s.private_get("h", "alice", "a:x").await.unwrap().as_deref(),
        Some("<x xmlns='a:x'>2</x>")
    );
    assert_eq!(
        s.private_namespaces("h", "alice").await.unwrap(),
        ["a:x", "b:y"]
    );
    assert_eq!(
        s.private_get("h", "bob", "a:x").await.unwrap().as_deref(),
        Some("<x xmlns='a:x'>bob</x>")
    );
    s.close().await;
    guard.drop_db().await;
}

async fn vcards(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    assert_eq!(s.vcard_get("h", "alice").await.unwrap(), None);
    let card = |xml: &str, hash: Option<&str>| StoredVcard {
        xml: xml.to_string(),
        photo_hash: hash.map(str::to_string),
    };
    let first = card("<vCard xmlns='vcard-temp'><FN>A</FN></vCard>", Some(""));
    s.vcard_set("h", "alice", &first).await.unwrap();
    assert_eq!(s.vcard_get("h", "alice").await.unwrap(), Some(first));
    // Replaced whole, the hash with it (NULL allowed).
    let second = card("<vCard xmlns='vcard-temp'><FN>B</FN></vCard>", None);
    s.vcard_set("h", "alice", &second).await.unwrap();
    assert_eq!(
        s.vcard_get("h", "alice").await.unwrap(),
        Some(second.clone())
    );
    let bob = card(
        "<vCard xmlns='vcard-temp'/>",
        Some("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
    );
    s.vcard_set("h", "bob", &bob).await.unwrap();
    assert_eq!(s.vcard_get("h", "bob").await.unwrap(), Some(bob));
    assert_eq!(s.vcard_get("h", "alice").await.unwrap(), Some(second));
    s.close().await;
    guard.drop_db().await;
}

/// The trait objects over `Storage` reach the same rows as the inherent methods.
async fn stores_over_sql(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    s.create_account("h", "alice", &creds("1")).await.unwrap();
    let stores = Stores::sql(&s);
    assert!(stores.accounts.account_exists("h", "alice").await.unwrap());
    assert_eq!(
        stores.accounts.get_credentials("h", "alice").await.unwrap(),
        Some(creds("1"))
    );
    let item = RosterItem {
        jid: "bob@h".into(),
        name: None,
        subscription: Subscription::Both,
        ask: false,
        groups: vec![],
    };
    {
        let _account = stores.roster.lock_account("h", "alice").await;
        stores.roster.roster_put("h", "alice", &item).await.unwrap();
    }
    assert_eq!(s.roster_get("h", "alice").await.unwrap(), [item]);
    assert_eq!(stores.roster.roster_version("h", "alice").await.unwrap(), 1);
    stores
        .offline
        .offline_store("h", "alice", "<message/>", 1)
        .await
        .unwrap();
    assert_eq!(s.offline_count("h", "alice").await.unwrap(), 1);
    stores
        .blocking
        .blocklist_add("h", "alice", &["spam@x".to_string()])
        .await
        .unwrap();
    assert_eq!(s.blocklist_get("h", "alice").await.unwrap(), ["spam@x"]);
    assert!(stores.accounts.remove_account("h", "alice").await.unwrap());
    assert!(!s.account_exists("h", "alice").await.unwrap());
    s.close().await;
    guard.drop_db().await;
}

async fn offline(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    for i in 0..5 {
        let r = s
            .offline_store("h", "bob", &format!("<message id='{i}'/>"), 5)
            .await
            .unwrap();
        assert!(matches!(r, OfflineStored::Stored { .. }));
    }
    assert_eq!(
        s.offline_store("h", "bob", "<message id='x'/>", 5)
            .await
            .unwrap(),
        OfflineStored::Full
    );
    assert_eq!(s.offline_count("h", "bob").await.unwrap(), 5);
    let first = s.offline_take("h", "bob", 3).await.unwrap();
    assert_eq!(
        first.iter().map(|m| m.stanza.as_str()).collect::<Vec<_>>(),
        [
            "<message id='0'/>",
            "<message id='1'/>",
            "<message id='2'/>"
        ]
    );
    assert!(first[0].stored_at_ms > 0);
    let rest = s.offline_take("h", "bob", 10).await.unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[1].stanza, "<message id='4'/>");
    assert!(s.offline_take("h", "bob", 10).await.unwrap().is_empty());
    s.close().await;
    guard.drop_db().await;
}

/// Many stores at once for two users: each ends exactly at the limit, and
/// none fails (on SQLite a transaction that read before writing could not
/// upgrade once another had committed; on PostgreSQL two stores could both
/// pass the count).
async fn offline_concurrent(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    let users = ["u0", "u1"];
    let stores = (0..40).flat_map(|i| {
        let s = &s;
        users.iter().map(move |u| async move {
            s.offline_store("h", u, &format!("<message id='{i}'/>"), 10)
                .await
        })
    });
    let results = futures_util::future::join_all(stores).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed[0]
    );
    for u in users {
        assert_eq!(s.offline_count("h", u).await.unwrap(), 10, "{u}");
    }
    let full = results
        .iter()
        .filter(|r| matches!(r, Ok(OfflineStored::Full)))
        .count();
    assert_eq!(full, 30 * users.len());
    s.close().await;
    guard.drop_db().await;
}

/// Read-modify-writes of one item under its account's lock lose nothing.
async fn roster_updates_under_lock(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    let add_group = |g: usize| {
        let s = &s;
        async move {
            let _account = s.lock_account("h", "alice").await;
            let mut item = s
                .roster_item("h", "alice", "bob@h")
                .await?
                .unwrap_or(RosterItem {
                    jid: "bob@h".into(),
                    name: None,
                    subscription: Subscription::None,
                    ask: false,
                    groups: Vec::new(),
                });
            item.groups.push(format!("g{g}"));
            s.roster_put("h", "alice", &item).await
        }
    };
    for r in futures_util::future::join_all((0..40).map(add_group)).await {
        r.unwrap();
    }
    let item = s.roster_item("h", "alice", "bob@h").await.unwrap().unwrap();
    assert_eq!(item.groups.len(), 40, "{:?}", item.groups);
    s.close().await;
    guard.drop_db().await;
}

async fn migrations_and_two_pools(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let a = Storage::connect(&url, &opts()).await.unwrap();
    // A second process (the CLI) connecting while the server runs.
    let b = Storage::connect(
        &url,
        &StorageOptions {
            max_connections: 2,
            migration_locking: false,
        },
    )
    .await
    .unwrap();
    let (ca, cb) = (creds("a"), creds("b"));
    let (r1, r2) = tokio::join!(
        a.create_account("h", "one", &ca),
        b.create_account("h", "two", &cb)
    );
    r1.unwrap();
    r2.unwrap();
    assert_eq!(a.list_accounts(None).await.unwrap().len(), 2);
    assert_eq!(b.backend(), if pg { "postgres" } else { "sqlite" });
    assert!(a.pool_stats().size >= 1);
    a.close().await;
    b.close().await;
    guard.drop_db().await;
}

#[tokio::test]
async fn observer_sees_each_operation() {
    let (url, guard) = fresh(false).await;
    let mut s = Storage::connect(&url, &opts()).await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    s.set_observer(std::sync::Arc::new(move |name, _, failed| {
        log.lock().unwrap().push((name, failed))
    }));
    s.account_exists("h", "x").await.unwrap();
    s.create_account("h", "x", &creds("1")).await.unwrap();
    assert!(s.create_account("h", "x", &creds("1")).await.is_err());
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("account_exists", false),
            ("account_create", false),
            ("account_create", true)
        ]
    );
    guard.drop_db().await;
}

#[tokio::test]
async fn bad_url_is_refused() {
    assert!(matches!(
        Storage::connect("mysql://x", &opts()).await,
        Err(StorageError::BadUrl(_))
    ));
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(false).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(true).await
            }
        }
    };
}
both!(accounts);
both!(accounts_bulk);
both!(roster);
both!(roster_version);
both!(blocklist);
both!(private_storage);
both!(vcards);
both!(stores_over_sql);
both!(offline);
both!(offline_concurrent);
both!(roster_updates_under_lock);
both!(migrations_and_two_pools);

async fn last_activity(pg: bool) {
    let (url, guard) = fresh(pg).await;
    let s = Storage::connect(&url, &opts()).await.unwrap();
    s.create_account("h", "alice", &creds("1")).await.unwrap();
    assert_eq!(s.last_activity_get("h", "alice").await.unwrap(), None);
    let first = LastActivity {
        seconds: 1_700_000_000,
        status: "away".into(),
    };
    s.last_activity_set("h", "alice", &first).await.unwrap();
    assert_eq!(
        s.last_activity_get("h", "alice").await.unwrap(),
        Some(first)
    );
    // A later logout replaces it.
    let second = LastActivity {
        seconds: 1_700_000_100,
        status: String::new(),
    };
    s.last_activity_set("h", "alice", &second).await.unwrap();
    assert_eq!(
        s.last_activity_get("h", "alice").await.unwrap(),
        Some(second)
    );
    assert!(s.remove_account("h", "alice").await.unwrap());
    assert_eq!(s.last_activity_get("h", "alice").await.unwrap(), None);
    s.close().await;
    guard.drop_db().await;
}
both!(last_activity);
