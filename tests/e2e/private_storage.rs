//! XEP-0049 private XML storage (`jabber:iq:private`): a set/get round trip
//! across a re-login, overwriting, several namespaces in one request, the
//! refusals (another account's storage, reserved namespaces, the size and
//! count limits), the module turned off, and that removing the account
//! leaves no row behind.

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::Raw;

const PRIVATE: &str = "jabber:iq:private";
const PW: &str = "pw";
const PREFS: &str = "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>";

fn query(typ: &str, id: &str, to: Option<&str>, body: &str) -> String {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    format!("<iq type='{typ}' id='{id}'{to}><query xmlns='{PRIVATE}'>{body}</query></iq>")
}

async fn set(c: &mut Raw, id: &str, body: &str) -> crate::raw::Xml {
    c.iq(id, &query("set", id, None, body)).await
}

/// A get that must succeed; returns the answer's raw text.
async fn get_ok(c: &mut Raw, id: &str, body: &str) -> String {
    let r = c.iq(id, &query("get", id, None, body)).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    assert!(r.child("query", PRIVATE).is_some(), "{}", r.raw);
    r.raw
}

/// Rows `user@localhost` has in `private_storage`.
async fn rows(s: &Server, user: &str) -> i64 {
    s.user_rows("private_storage", user).await
}

async fn private_storage(b: Backend) {
    let s = Server::start(Options {
        extra: "[modules.private]\nmax_bytes = 2000\nmax_items = 3\n".into(),
        ..Options::plaintext(b)
    });
    s.register("alice@localhost", PW);
    s.register("bob@localhost", PW);
    let mut a = Raw::login(s.c2s, "alice", PW, "a1").await;

    // Nothing stored: the empty element comes back.
    let r = get_ok(&mut a, "g0", "<exodus xmlns='exodus:prefs'/>").await;
    assert!(r.contains("<exodus xmlns='exodus:prefs'/>"), "{r}");
    // XEP-0049 has no disco feature.
    assert!(!a.disco_features().await.iter().any(|f| f == PRIVATE));

    let r = set(&mut a, "s1", PREFS).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    assert!(r.child("query", PRIVATE).is_none(), "{}", r.raw);
    assert_eq!(rows(&s, "alice").await, 1);

    // Across a re-login (to the bare JID this time).
    drop(a);
    let mut a = Raw::login(s.c2s, "alice", PW, "a2").await;
    let r = a
        .iq(
            "g1",
            &query(
                "get",
                "g1",
                Some("alice@localhost"),
                "<exodus xmlns='exodus:prefs'/>",
            ),
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    assert!(r.raw.contains(PREFS), "{}", r.raw);

    // Overwrite, and a second namespace in the same set.
    let r = set(
        &mut a,
        "s2",
        "<exodus xmlns='exodus:prefs'><defaultnick>Ophelia</defaultnick></exodus>\
         <storage xmlns='storage:bookmarks'><conference jid='c@muc.localhost' autojoin='true'/></storage>",
    )
    .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let r = get_ok(
        &mut a,
        "g2",
        "<exodus xmlns='exodus:prefs'/><storage xmlns='storage:bookmarks'/>",
    )
    .await;
    assert!(
        r.contains("<defaultnick>Ophelia</defaultnick>") && !r.contains("Hamlet"),
        "{r}"
    );
    assert!(
        r.contains("<conference jid='c@muc.localhost' autojoin='true'/>"),
        "{r}"
    );
    assert_eq!(rows(&s, "alice").await, 2);

    // Another account's storage: forbidden, for a get and a set.
    let mut bob = Raw::login(s.c2s, "bob", PW, "b").await;
    for typ in ["get", "set"] {
        let id = format!("o{typ}");
        let r = bob
            .iq(&id, &query(typ, &id, Some("alice@localhost"), PREFS))
            .await;
        assert_eq!(r.refusal().0, "forbidden", "{}", r.raw);
    }
    // And bob sees none of alice's data in his own.
    let r = get_ok(&mut bob, "bg", "<exodus xmlns='exodus:prefs'/>").await;
    assert!(!r.contains("Ophelia"), "{r}");

    // §3: no namespace of its own, or a reserved one.
    for (i, child) in [
        "<x/>",
        "<x xmlns='jabber:client'/>",
        "<x xmlns='jabber:server'/>",
        "<x xmlns='jabber:iq:private'/>",
    ]
    .iter()
    .enumerate()
    {
        let r = set(&mut a, &format!("n{i}"), child).await;
        assert_eq!(r.refusal().0, "not-acceptable", "{child}: {}", r.raw);
    }

    // The size limit (2000 bytes here), with a text saying so; nothing of
    // that set is stored.
    let big = format!("<big xmlns='urn:big'>{}</big>", "x".repeat(3000));
    let r = set(&mut a, "big", &format!("<small xmlns='urn:small'/>{big}")).await;
    let (cond, text) = r.refusal();
    assert_eq!(cond, "not-acceptable", "{}", r.raw);
    assert!(text.contains("2000"), "{}", r.raw);
    let r = get_ok(&mut a, "g3", "<small xmlns='urn:small'/>").await;
    assert!(r.contains("<small xmlns='urn:small'/>"), "{r}");
    assert_eq!(rows(&s, "alice").await, 2);

    // The count limit (3 namespaces here): overwriting is not a new one.
    let r = set(&mut a, "c1", "<c xmlns='urn:c'/>").await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let r = set(&mut a, "c2", PREFS).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let r = set(&mut a, "c3", "<d xmlns='urn:d'/>").await;
    assert_eq!(r.refusal().0, "resource-constraint", "{}", r.raw);
    assert_eq!(rows(&s, "alice").await, 3);
    // Each limit is counted once.
    let metrics = crate::http::get(s.http, "/metrics", None).await.body;
    for limit in ["private_bytes", "private_items"] {
        let line = format!("limit_hit_total{{limit=\"{limit}\"}} 1\n");
        assert!(metrics.contains(&line), "{line}");
    }
    // Sets and gets are counted with the items they wrote and returned.
    for op in ["stored", "queried"] {
        for metric in ["module_data_total", "module_data_rows_total"] {
            let series = format!("{metric}{{module=\"private\",operation=\"{op}\"}} ");
            assert!(metrics.contains(&series), "{series} missing");
        }
    }

    // Removing the account removes its rows, and only its.
    let r = set(&mut bob, "bs", PREFS).await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    drop(a);
    let out = s.cli(&["account", "remove", "alice@localhost"]);
    assert!(
        out.status.success(),
        "remove: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rows(&s, "alice").await, 0);
    assert_eq!(rows(&s, "bob").await, 1);
    // A new account of the same name starts empty.
    s.register("alice@localhost", PW);
    let mut a = Raw::login(s.c2s, "alice", PW, "a3").await;
    let r = get_ok(&mut a, "g4", "<exodus xmlns='exodus:prefs'/>").await;
    assert!(r.contains("<exodus xmlns='exodus:prefs'/>"), "{r}");
}
both_backends!(
    private_storage_round_trip_limits_and_removal,
    private_storage
);

async fn private_storage_off(b: Backend) {
    let s = Server::start(Options {
        extra: "[modules.private]\nenabled = false\n".into(),
        ..Options::plaintext(b)
    });
    s.register("alice@localhost", PW);
    let mut a = Raw::login(s.c2s, "alice", PW, "a").await;
    let r = set(&mut a, "s", PREFS).await;
    assert_eq!(r.refusal().0, "service-unavailable", "{}", r.raw);
    let r = a
        .iq(
            "g",
            &query("get", "g", None, "<exodus xmlns='exodus:prefs'/>"),
        )
        .await;
    assert_eq!(r.refusal().0, "service-unavailable", "{}", r.raw);
    assert_eq!(rows(&s, "alice").await, 0);
}
both_backends!(
    private_storage_disabled_is_service_unavailable,
    private_storage_off
);
