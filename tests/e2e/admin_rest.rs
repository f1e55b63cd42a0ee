//! The admin REST API against a real gateway: every operation (accounts,
//! sessions and kicks, stanzas, rosters, offline messages, stats, status,
//! log level), what XMPP clients see of it (messages, roster pushes, stream
//! errors), its errors (`{"error", "code"}` with 400/401/404/405/409) and
//! its `admin_operation` metric (never labelled with a JID).

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::both_backends;
use crate::harness::{Backend, Options, Server, TOKEN};
use crate::http::{get, request, send_json};
use crate::raw::{Raw, Xml};

const NS_ROSTER: &str = "jabber:iq:roster";
const NS_ADMIN: &str = "urn:osprey:admin:0";

/// One call with the token: the status and the JSON reply.
async fn api(s: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let r = match &body {
        Some(b) => send_json(s.http, method, path, Some(TOKEN), &b.to_string()).await,
        None => request(s.http, method, path, Some(TOKEN), None).await,
    };
    let v = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {:?}", r.body));
    (r.status, v)
}

/// A call that must succeed (200); its reply.
async fn ok(s: &Server, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = api(s, method, path, body).await;
    assert_eq!(status, 200, "{method} {path}: {v}");
    v
}

/// A call that must fail with `status` and the error code `code`; its reply.
async fn fails(
    s: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
    code: &str,
) -> Value {
    let (got, v) = api(s, method, path, body).await;
    assert_eq!(got, status, "{method} {path}: {v}");
    assert_eq!(v["code"], code, "{method} {path}: {v}");
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{method} {path}: an error message: {v}"
    );
    v
}

/// A PLAIN login that must fail (wrong password).
async fn login_fails(s: &Server, user: &str, password: &str) {
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
    ))
    .await;
    let reply = c.expect("</failure>").await;
    assert!(reply.contains("<not-authorized"), "{reply}");
}

/// The value of one series in the Prometheus text, if present.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (n == name && all).then(|| value.parse().ok()).flatten()
        })
}

fn jids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {page}"))
        .iter()
        .map(|i| i.as_str().or(i["jid"].as_str()).unwrap_or(""))
        .collect()
}

async fn accounts(b: Backend) {
    let s = Server::start(Options::plaintext(b));
    let reg = |jid: &str, pw: &str| json!({ "jid": jid, "password": pw });
    // 200 (not 201) with the normalised bare JID.
    let v = ok(
        &s,
        "POST",
        "/api/accounts",
        Some(reg("Alice@LocalHost", "pw1")),
    )
    .await;
    assert_eq!(v, json!({ "registered": "alice@localhost" }));
    let v = fails(
        &s,
        "POST",
        "/api/accounts",
        Some(reg("alice@localhost", "other")),
        409,
        "conflict",
    )
    .await;
    assert!(
        v["error"].as_str().unwrap().contains("already exists"),
        "{v}"
    );
    for bad in [
        reg("bob@elsewhere.org", "pw"),
        reg("localhost", "pw"),
        reg("not a jid@localhost", "pw"),
        reg("bob@localhost", ""),
    ] {
        fails(&s, "POST", "/api/accounts", Some(bad), 400, "bad_request").await;
    }
    for user in ["dave", "bob", "carol"] {
        ok(
            &s,
            "POST",
            "/api/accounts",
            Some(reg(&format!("{user}@localhost"), "pw")),
        )
        .await;
    }

    // Listing: sorted, paged, with the total.
    let all = ok(&s, "GET", "/api/accounts", None).await;
    assert_eq!(all["total"], 4, "{all}");
    assert_eq!(all["offset"], 0, "{all}");
    assert_eq!(
        jids(&all),
        [
            "alice@localhost",
            "bob@localhost",
            "carol@localhost",
            "dave@localhost"
        ]
    );
    let page = ok(&s, "GET", "/api/accounts?offset=1&limit=2", None).await;
    assert_eq!(page["total"], 4, "{page}");
    assert_eq!(page["offset"], 1, "{page}");
    assert_eq!(jids(&page), ["bob@localhost", "carol@localhost"]);
    let past = ok(&s, "GET", "/api/accounts?offset=10", None).await;
    assert_eq!((past["total"].clone(), jids(&past).len()), (json!(4), 0));
    let host = ok(&s, "GET", "/api/accounts?host=localhost&limit=1", None).await;
    assert_eq!((host["total"].clone(), jids(&host).len()), (json!(4), 1));
    fails(
        &s,
        "GET",
        "/api/accounts?host=elsewhere.org",
        None,
        400,
        "bad_request",
    )
    .await;

    // Counting, per host.
    let counts = ok(&s, "GET", "/api/accounts/count", None).await;
    assert_eq!(counts, json!([{ "host": "localhost", "accounts": 4 }]));
    let one = ok(&s, "GET", "/api/accounts/count?host=localhost", None).await;
    assert_eq!(one, counts);
    fails(
        &s,
        "GET",
        "/api/accounts/count?host=nothere",
        None,
        400,
        "bad_request",
    )
    .await;

    // A new password: the new one logs in, the old one no longer does, and
    // the session opened before stays.
    let mut before = Raw::login(s.c2s, "alice", "pw1", "before").await;
    let v = ok(
        &s,
        "PUT",
        "/api/accounts/alice@localhost/password",
        Some(json!({ "password": "pw2" })),
    )
    .await;
    assert_eq!(v, json!({ "changed": "alice@localhost" }));
    let mut after = Raw::login(s.c2s, "alice", "pw2", "after").await;
    login_fails(&s, "alice", "pw1").await;
    before.settle().await;
    fails(
        &s,
        "PUT",
        "/api/accounts/nobody@localhost/password",
        Some(json!({ "password": "x" })),
        404,
        "not_found",
    )
    .await;
    fails(
        &s,
        "PUT",
        "/api/accounts/alice@localhost/password",
        Some(json!({ "password": "" })),
        400,
        "bad_request",
    )
    .await;

    // Removal closes the account's sessions; a second one is a 404.
    let v = ok(&s, "DELETE", "/api/accounts/alice%40localhost", None).await;
    assert_eq!(v, json!({ "removed": "alice@localhost" }));
    for c in [&mut before, &mut after] {
        let e = Xml::stream_error_in(&c.read_to_close().await);
        assert_eq!(
            e.stream_error_condition(),
            Some("not-authorized"),
            "{}",
            e.raw
        );
        assert!(e.stream_error_text().contains("removed"), "{}", e.raw);
    }
    fails(
        &s,
        "DELETE",
        "/api/accounts/alice@localhost",
        None,
        404,
        "not_found",
    )
    .await;
    login_fails(&s, "alice", "pw2").await;
    let counts = ok(&s, "GET", "/api/accounts/count", None).await;
    assert_eq!(counts[0]["accounts"], 3, "{counts}");

    // The audit metric: by operation and outcome, never by JID.
    let metrics = get(s.http, "/metrics", None).await.body;
    let total = |op: &str, outcome: &str| {
        sample(
            &metrics,
            "admin_operation_total",
            &[("operation", op), ("outcome", outcome)],
        )
        .unwrap_or_else(|| panic!("no admin_operation_total for {op}/{outcome}"))
    };
    assert_eq!(total("account_register", "ok"), 4.0);
    assert_eq!(total("account_register", "conflict"), 1.0);
    assert_eq!(total("account_register", "bad_request"), 4.0);
    assert_eq!(total("account_remove", "not_found"), 1.0);
    assert_eq!(total("account_change_password", "ok"), 1.0);
    assert!(metrics.contains("admin_operation_seconds"), "the latency");
    for jid in ["alice", "bob@", "nobody", "elsewhere.org", "not a jid"] {
        assert!(
            !metrics.contains(jid),
            "a JID ({jid}) in a metric label: {}",
            metrics
                .lines()
                .filter(|l| l.contains(jid))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
both_backends!(admin_rest_accounts, accounts);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rest_sessions_list_count_and_kick() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    let mut phone = Raw::login(s.c2s, "alice", "pw", "phone").await;
    let mut laptop = Raw::login(s.c2s, "alice", "pw", "laptop").await;
    let mut desk = Raw::login(s.c2s, "bob", "pw", "desk").await;

    let all = ok(&s, "GET", "/api/sessions", None).await;
    assert_eq!(all["total"], 3, "{all}");
    assert_eq!(
        jids(&all),
        [
            "alice@localhost/laptop",
            "alice@localhost/phone",
            "bob@localhost/desk"
        ]
    );
    let first = &all["items"][0];
    assert_eq!(first["bare"], "alice@localhost", "{first}");
    assert_eq!(first["resource"], "laptop", "{first}");
    assert_eq!(first["transport"], "tcp", "{first}");
    assert_eq!(first["tls"], false, "{first}");
    assert_eq!(first["state"], "active", "{first}");
    assert!(first["session_id"].is_u64(), "{first}");
    assert!(
        first["address"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{first}"
    );
    let laptop_id = first["session_id"].as_u64().unwrap();

    let page = ok(&s, "GET", "/api/sessions?offset=1&limit=1", None).await;
    assert_eq!(
        (page["total"].clone(), page["offset"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(jids(&page), ["alice@localhost/phone"]);
    // The filter: a case-insensitive substring of the JID or the address.
    let f = ok(&s, "GET", "/api/sessions?filter=LAPTOP", None).await;
    assert_eq!(jids(&f), ["alice@localhost/laptop"]);
    let f = ok(&s, "GET", "/api/sessions?filter=127.0.0.1", None).await;
    assert_eq!(f["total"], 3, "{f}");
    let f = ok(&s, "GET", "/api/sessions?host=localhost&filter=bob", None).await;
    assert_eq!(jids(&f), ["bob@localhost/desk"]);
    fails(
        &s,
        "GET",
        "/api/sessions?host=elsewhere.org",
        None,
        400,
        "bad_request",
    )
    .await;
    assert_eq!(
        ok(&s, "GET", "/api/sessions/count", None).await,
        json!({ "count": 3 })
    );
    assert_eq!(
        ok(&s, "GET", "/api/sessions/count?filter=alice", None).await,
        json!({ "count": 2 })
    );
    assert_eq!(
        ok(&s, "GET", "/api/sessions/count?host=localhost", None).await,
        json!({ "count": 3 })
    );
    fails(
        &s,
        "GET",
        "/api/sessions/count?host=nothere",
        None,
        400,
        "bad_request",
    )
    .await;

    // Refused kicks close nothing.
    fails(
        &s,
        "DELETE",
        "/api/sessions/alice@localhost/phone?condition=gone-fishing",
        None,
        400,
        "bad_request",
    )
    .await;
    let long = "x".repeat(1100);
    fails(
        &s,
        "DELETE",
        &format!("/api/sessions/alice@localhost/phone?reason={long}"),
        None,
        400,
        "bad_request",
    )
    .await;
    assert_eq!(ok(&s, "GET", "/api/sessions/count", None).await["count"], 3);

    // By full JID, with a reason: undefined-condition, <kicked/>, the reason.
    let v = ok(
        &s,
        "DELETE",
        "/api/sessions/alice%40localhost%2Fphone?reason=too%20chatty",
        None,
    )
    .await;
    assert_eq!(v["kicked"], 1, "{v}");
    assert_eq!(v["condition"], "undefined-condition", "{v}");
    assert_eq!(v["sessions"].as_array().map(Vec::len), Some(1), "{v}");
    let e = Xml::stream_error_in(&phone.read_to_close().await);
    assert_eq!(
        e.stream_error_condition(),
        Some("undefined-condition"),
        "{}",
        e.raw
    );
    assert!(e.child("kicked", NS_ADMIN).is_some(), "{}", e.raw);
    assert!(e.stream_error_text().contains("too chatty"), "{}", e.raw);

    // By session id, as a policy violation: no <kicked/>, the reason.
    let v = ok(
        &s,
        "DELETE",
        &format!("/api/sessions/{laptop_id}?reason=spam&condition=policy-violation"),
        None,
    )
    .await;
    assert_eq!(v["sessions"], json!([laptop_id]), "{v}");
    assert_eq!(v["condition"], "policy-violation", "{v}");
    let e = Xml::stream_error_in(&laptop.read_to_close().await);
    assert_eq!(
        e.stream_error_condition(),
        Some("policy-violation"),
        "{}",
        e.raw
    );
    assert!(e.child("kicked", NS_ADMIN).is_none(), "{}", e.raw);
    assert!(e.stream_error_text().contains("spam"), "{}", e.raw);

    // By bare JID: every resource, and nobody else.
    let mut one = Raw::login(s.c2s, "alice", "pw", "one").await;
    let mut two = Raw::login(s.c2s, "alice", "pw", "two").await;
    let v = ok(&s, "DELETE", "/api/sessions/alice@localhost", None).await;
    assert_eq!(v["kicked"], 2, "{v}");
    for c in [&mut one, &mut two] {
        let e = Xml::stream_error_in(&c.read_to_close().await);
        assert_eq!(e.stream_error_condition(), Some("undefined-condition"));
        assert!(e.child("kicked", NS_ADMIN).is_some(), "{}", e.raw);
    }
    desk.settle().await;
    assert_eq!(ok(&s, "GET", "/api/sessions", None).await["total"], 1);
    fails(
        &s,
        "DELETE",
        "/api/sessions/alice@localhost",
        None,
        404,
        "not_found",
    )
    .await;
    fails(
        &s,
        "DELETE",
        &format!("/api/sessions/{laptop_id}"),
        None,
        404,
        "not_found",
    )
    .await;
    fails(&s, "DELETE", "/api/sessions/a@@b", None, 400, "bad_request").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rest_stanzas_and_offline_messages() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    let mut alice = Raw::login(s.c2s, "alice", "pw", "phone").await;
    alice.send("<presence/>").await;
    alice.settle().await;

    // To an online user: delivered, from/to/body as given.
    let body = "hello <there> & you";
    let v = ok(
        &s,
        "POST",
        "/api/stanzas/message",
        Some(json!({ "from": "bob@localhost", "to": "alice@localhost", "body": body })),
    )
    .await;
    assert_eq!(v["outcome"], "delivered", "{v}");
    assert_eq!(v["sessions"], 1, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("admin-"), "{v}");
    let m = alice
        .take("the admin's message", |x| x.is_message() && x.id() == id)
        .await;
    assert_eq!(m.from(), "bob@localhost", "{}", m.raw);
    assert_eq!(m.to(), "alice@localhost", "{}", m.raw);
    assert_eq!(m.typ(), "chat", "{}", m.raw);
    assert_eq!(m.body(), Some(body), "{}", m.raw);

    // To an offline user: stored; listing keeps it; purging removes it.
    let v = ok(
        &s,
        "POST",
        "/api/stanzas/message",
        Some(json!({ "from": "alice@localhost/phone", "to": "carol@localhost", "body": "while you were out" })),
    )
    .await;
    assert_eq!(
        (v["outcome"].clone(), v["sessions"].clone()),
        (json!("offline"), json!(0))
    );
    let count = "/api/offline/carol@localhost/count";
    assert_eq!(ok(&s, "GET", count, None).await, json!({ "count": 1 }));
    let list = ok(&s, "GET", "/api/offline/carol@localhost", None).await;
    assert_eq!(
        (list["total"].clone(), list["offset"].clone()),
        (json!(1), json!(0))
    );
    let stored = &list["items"][0];
    let text = stored["stanza"].as_str().unwrap();
    assert!(
        text.contains("while you were out") && text.contains("from='alice@localhost/phone'"),
        "{stored}"
    );
    assert!(
        stored["id"].is_i64() && stored["stored_at_ms"].as_i64() > Some(0),
        "{stored}"
    );
    assert_eq!(ok(&s, "GET", count, None).await, json!({ "count": 1 }));
    assert_eq!(
        ok(&s, "DELETE", "/api/offline/carol@localhost", None).await,
        json!({ "purged": 1 })
    );
    assert_eq!(ok(&s, "GET", count, None).await, json!({ "count": 0 }));
    // Paging of the stored messages, oldest first.
    for i in 1..=3 {
        let v = ok(
            &s,
            "POST",
            "/api/stanzas/message",
            Some(json!({ "from": "localhost", "to": "carol@localhost", "body": format!("n{i}") })),
        )
        .await;
        assert_eq!(v["outcome"], "offline", "{v}");
    }
    let page = ok(
        &s,
        "GET",
        "/api/offline/carol@localhost?offset=1&limit=1",
        None,
    )
    .await;
    assert_eq!(
        (page["total"].clone(), page["offset"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
    assert!(
        page["items"][0]["stanza"].as_str().unwrap().contains("n2"),
        "{page}"
    );
    assert_eq!(
        ok(&s, "DELETE", "/api/offline/carol@localhost", None).await,
        json!({ "purged": 3 })
    );
    fails(
        &s,
        "GET",
        "/api/offline/carol@elsewhere.org/count",
        None,
        400,
        "bad_request",
    )
    .await;
    // Nobody to store it for: not routed.
    fails(
        &s,
        "POST",
        "/api/stanzas/message",
        Some(json!({ "from": "localhost", "to": "nobody@localhost", "body": "x" })),
        404,
        "not_found",
    )
    .await;

    // A sender must exist; a stanza must be in the client namespace.
    fails(
        &s,
        "POST",
        "/api/stanzas/message",
        Some(json!({ "from": "ghost@localhost", "to": "alice@localhost", "body": "x" })),
        404,
        "not_found",
    )
    .await;
    fails(
        &s,
        "POST",
        "/api/stanzas",
        Some(json!({ "stanza": "<message xmlns='jabber:server' from='localhost' to='alice@localhost'><body>x</body></message>" })),
        400,
        "bad_request",
    )
    .await;

    // A raw stanza, as given (from the server itself here).
    let v = ok(
        &s,
        "POST",
        "/api/stanzas",
        Some(json!({ "stanza": "<message from='localhost' to='alice@localhost/phone' id='raw-1'><body>from the server</body></message>" })),
    )
    .await;
    assert_eq!(
        v,
        json!({ "id": "raw-1", "outcome": "delivered", "sessions": 1 })
    );
    let m = alice
        .take("the raw stanza", |x| x.is_message() && x.id() == "raw-1")
        .await;
    assert_eq!((m.from(), m.body()), ("localhost", Some("from the server")));

    // Refused: malformed, not one stanza, not ours to send, too large.
    let big = format!(
        "<message from='bob@localhost' to='alice@localhost'><body>{}</body></message>",
        "a".repeat(300_000)
    );
    for bad in [
        "<message from='bob@localhost' to='alice@localhost'><body>x</message>",
        "<message from='bob@localhost' to='alice@localhost'>",
        "<message from='bob@localhost' to='alice@localhost'/><message from='bob@localhost' to='alice@localhost'/>",
        "<message from='mallory@evil.example' to='alice@localhost' id='evil'><body>x</body></message>",
        "<message to='alice@localhost'><body>x</body></message>",
        "<message from='bob@localhost'><body>x</body></message>",
        "<foo from='bob@localhost' to='alice@localhost'/>",
        "not xml at all",
        "",
        &big,
    ] {
        let (status, v) = api(&s, "POST", "/api/stanzas", Some(json!({ "stanza": bad }))).await;
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("bad_request")),
            "{:.200}: {v}",
            bad
        );
    }
    for bad in [
        json!({ "from": "mallory@evil.example", "to": "alice@localhost", "body": "x" }),
        json!({ "from": "bob@localhost", "to": "a@@b", "body": "x" }),
        json!({ "from": "bob@localhost", "to": "alice@localhost", "body": "a".repeat(300_000) }),
    ] {
        fails(
            &s,
            "POST",
            "/api/stanzas/message",
            Some(bad),
            400,
            "bad_request",
        )
        .await;
    }
    // Another server's user: no server-to-server, so not routed.
    fails(
        &s,
        "POST",
        "/api/stanzas/message",
        Some(json!({ "from": "bob@localhost", "to": "eve@elsewhere.org", "body": "x" })),
        404,
        "not_found",
    )
    .await;
    alice
        .absent(Duration::from_millis(300), "a refused stanza", |x| {
            x.is_message()
        })
        .await;
}

/// RFC 6121 §8.5.2: a headline to a user with no available resource is
/// dropped, a groupchat message to a bare JID bounced; neither is stored
/// or delivered. An administrator's stanza must be routed by its type, as a
/// client's is (the client half passes; the admin half does not yet: the
/// type is not handed to the router, so every message counts as `normal`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rest_stanza_type_is_honoured() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");
    s.register("carol@localhost", "pw");
    let count = "/api/offline/carol@localhost/count";
    // A client's headline to carol (offline): dropped, not stored.
    let mut alice = Raw::login(s.c2s, "alice", "pw", "phone").await;
    alice.send("<presence/>").await;
    alice
        .send("<message to='carol@localhost' type='headline' id='c1'><body>news</body></message>")
        .await;
    alice.settle().await;
    assert_eq!(ok(&s, "GET", count, None).await, json!({ "count": 0 }));
    // The same through the admin API.
    let v = ok(
        &s,
        "POST",
        "/api/stanzas",
        Some(json!({ "stanza": "<message from='localhost' to='carol@localhost' type='headline' id='h1'><body>news</body></message>" })),
    )
    .await;
    assert_eq!(v["outcome"], "dropped", "{v}");
    assert_eq!(ok(&s, "GET", count, None).await, json!({ "count": 0 }));
    // A groupchat message to alice's bare JID: bounced, not delivered.
    let (status, v) = api(
        &s,
        "POST",
        "/api/stanzas",
        Some(json!({ "stanza": "<message from='localhost' to='alice@localhost' type='groupchat' id='g1'><body>g</body></message>" })),
    )
    .await;
    assert_eq!(status, 404, "not routed: {v}");
    alice
        .absent(Duration::from_millis(300), "the groupchat message", |x| {
            x.is_message() && x.id() == "g1"
        })
        .await;
}

async fn rosters(b: Backend) {
    let s = Server::start(Options::plaintext(b));
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    let mut alice = Raw::login(s.c2s, "alice", "pw", "phone").await;
    let r = alice
        .iq(
            "rg",
            "<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    // A resource that never asked for the roster gets no pushes.
    let mut quiet = Raw::login(s.c2s, "alice", "pw", "quiet").await;
    let is_push = |x: &Xml| x.is_iq() && x.typ() == "set" && x.child("query", NS_ROSTER).is_some();

    let v = ok(
        &s,
        "POST",
        "/api/roster/alice@localhost",
        Some(json!({
            "contact": "Bob@LocalHost", "name": "Bob",
            "groups": ["Friends", "Work"], "subscription": "both",
        })),
    )
    .await;
    let item = json!({
        "jid": "bob@localhost", "name": "Bob", "subscription": "both",
        "ask": false, "groups": ["Friends", "Work"],
    });
    assert_eq!(v, item);
    let push = alice.take("the roster push", is_push).await;
    let pushed = push.find("item", NS_ROSTER).expect("an item");
    assert_eq!(pushed.attr("jid"), Some("bob@localhost"), "{}", push.raw);
    assert_eq!(pushed.attr("subscription"), Some("both"), "{}", push.raw);
    assert_eq!(pushed.attr("name"), Some("Bob"), "{}", push.raw);
    let groups: Vec<&str> = pushed
        .children_named("group", NS_ROSTER)
        .map(|g| g.text.as_str())
        .collect();
    assert_eq!(groups, ["Friends", "Work"], "{}", push.raw);
    alice
        .send(&format!("<iq type='result' id='{}'/>", push.id()))
        .await;
    assert_eq!(
        ok(&s, "GET", "/api/roster/alice@localhost", None).await,
        json!([item])
    );

    // Changed: no subscription given is `none`.
    let v = ok(
        &s,
        "POST",
        "/api/roster/alice@localhost",
        Some(json!({ "contact": "bob@localhost" })),
    )
    .await;
    assert_eq!(
        v,
        json!({ "jid": "bob@localhost", "name": null, "subscription": "none", "ask": false, "groups": [] })
    );
    let push = alice.take("the second push", is_push).await;
    assert_eq!(
        push.find("item", NS_ROSTER)
            .and_then(|i| i.attr("subscription")),
        Some("none"),
        "{}",
        push.raw
    );

    // Removed: a push with subscription='remove'.
    let v = ok(
        &s,
        "DELETE",
        "/api/roster/alice@localhost/bob%40localhost",
        None,
    )
    .await;
    assert_eq!(v, json!({ "removed": "bob@localhost" }));
    let push = alice.take("the removal push", is_push).await;
    let pushed = push.find("item", NS_ROSTER).expect("an item");
    assert_eq!(
        (pushed.attr("jid"), pushed.attr("subscription")),
        (Some("bob@localhost"), Some("remove")),
        "{}",
        push.raw
    );
    assert_eq!(
        ok(&s, "GET", "/api/roster/alice@localhost", None).await,
        json!([])
    );
    fails(
        &s,
        "DELETE",
        "/api/roster/alice@localhost/bob@localhost",
        None,
        404,
        "not_found",
    )
    .await;
    quiet
        .absent(Duration::from_millis(300), "a roster push", is_push)
        .await;

    // Refused: a user that does not exist has no roster to read either.
    fails(
        &s,
        "GET",
        "/api/roster/nobody@localhost",
        None,
        404,
        "not_found",
    )
    .await;
    fails(
        &s,
        "GET",
        "/api/offline/nobody@localhost/count",
        None,
        404,
        "not_found",
    )
    .await;
    fails(
        &s,
        "POST",
        "/api/roster/nobody@localhost",
        Some(json!({ "contact": "bob@localhost" })),
        404,
        "not_found",
    )
    .await;
    for bad in [
        json!({ "contact": "alice@localhost" }),
        json!({ "contact": "bob@localhost", "subscription": "sideways" }),
        json!({ "contact": "bob@localhost", "groups": "Friends" }),
        json!({ "contact": "bob@localhost", "groups": [1] }),
        json!({ "contact": "a@@b" }),
        json!({ "name": "no contact" }),
    ] {
        fails(
            &s,
            "POST",
            "/api/roster/alice@localhost",
            Some(bad),
            400,
            "bad_request",
        )
        .await;
    }
    fails(
        &s,
        "GET",
        "/api/roster/alice@elsewhere.org",
        None,
        400,
        "bad_request",
    )
    .await;
}
both_backends!(admin_rest_rosters, rosters);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rest_stats_status_and_log_level() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    let stats = ok(&s, "GET", "/api/stats", None).await;
    assert_eq!(stats[0]["registered_users"], 2, "{stats}");
    assert_eq!(stats[0]["online_sessions"], 0, "{stats}");

    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    let mut bob = Raw::login(s.c2s, "bob", "pw", "b").await;
    let _second = Raw::login(s.c2s, "bob", "pw", "c").await;
    alice
        .send("<message to='bob@localhost/b' id='m1' type='chat'><body>hi</body></message>")
        .await;
    bob.expect("id='m1'").await;
    // The counters are the metric store's: wait for the last one to land.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let stats = ok(&s, "GET", "/api/stats", None).await;
        let h = &stats[0];
        if h["stanzas_in"].as_u64() > Some(0) && h["stanzas_out"].as_u64() > Some(0) {
            break stats;
        }
        assert!(Instant::now() < deadline, "no stanzas counted: {stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let h = &stats[0];
    assert_eq!(stats.as_array().map(Vec::len), Some(1), "{stats}");
    assert_eq!(h["host"], "localhost", "{h}");
    assert_eq!(h["registered_users"], 2, "{h}");
    assert_eq!(h["online_sessions"], 3, "{h}");
    assert_eq!(h["online_users"], 2, "{h}");
    let one = ok(&s, "GET", "/api/stats?host=localhost", None).await;
    assert_eq!(one[0]["online_sessions"], 3, "{one}");
    fails(
        &s,
        "GET",
        "/api/stats?host=nothere",
        None,
        400,
        "bad_request",
    )
    .await;

    // No TLS listener here: the reload has nothing to do (cert_reload.rs
    // tests real certificates).
    assert_eq!(
        ok(&s, "POST", "/api/certificates/reload", None).await,
        json!([])
    );
    let st = ok(&s, "GET", "/api/status", None).await;
    assert_eq!(st["version"], env!("CARGO_PKG_VERSION"), "{st}");
    assert_eq!(st["hosts"], json!(["localhost"]), "{st}");
    assert_eq!(
        (st["sessions"].clone(), st["users"].clone()),
        (json!(3), json!(2)),
        "{st}"
    );
    assert_eq!(st["storage"], "sqlite", "{st}");
    assert!(st["uptime_seconds"].is_u64(), "{st}");
    assert_eq!(st["listeners"]["c2s"], json!([s.c2s.to_string()]), "{st}");
    assert_eq!(st["listeners"]["http"], json!([s.http.to_string()]), "{st}");
    let handlers = st["handlers"].as_array().unwrap();
    assert!(handlers.contains(&json!("prometheus")), "{st}");

    let level = ok(&s, "GET", "/api/log", None).await;
    assert_eq!(level["handler"], true, "{level}");
    let was = level["level"].as_str().unwrap().to_string();
    assert!(level.get("previous").is_none(), "{level}");
    let v = ok(&s, "PUT", "/api/log", Some(json!({ "level": "trace" }))).await;
    assert_eq!(
        v,
        json!({ "level": "trace", "previous": was, "handler": true })
    );
    assert_eq!(ok(&s, "GET", "/api/log", None).await["level"], "trace");
    for bad in [json!({ "level": "loud" }), json!({}), json!({ "level": 3 })] {
        fails(&s, "PUT", "/api/log", Some(bad), 400, "bad_request").await;
    }
    let v = ok(&s, "PUT", "/api/log", Some(json!({ "level": was }))).await;
    assert_eq!(v["previous"], "trace", "{v}");
    drop(alice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_rest_refuses_bad_requests_tokens_routes_and_methods() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");

    // Bodies: not JSON, not an object, fields missing or not strings.
    for body in ["{not json", "", "[]", "\"alice\""] {
        let r = send_json(s.http, "POST", "/api/accounts", Some(TOKEN), body).await;
        assert_eq!(r.status, 400, "{body:?}: {}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["code"], "bad_request", "{v}");
    }
    let r = send_json(s.http, "POST", "/api/accounts", Some(TOKEN), "{not json").await;
    assert!(r.body.contains("malformed JSON"), "{}", r.body);
    for (method, path, body) in [
        ("POST", "/api/accounts", json!({ "jid": "bob@localhost" })),
        ("POST", "/api/accounts", json!({ "password": "x" })),
        (
            "POST",
            "/api/accounts",
            json!({ "jid": 5, "password": "x" }),
        ),
        ("PUT", "/api/accounts/alice@localhost/password", json!({})),
        (
            "POST",
            "/api/stanzas/message",
            json!({ "from": "alice@localhost", "to": "alice@localhost" }),
        ),
        ("POST", "/api/stanzas", json!({ "xml": "<message/>" })),
        ("POST", "/api/roster/alice@localhost", json!({})),
        ("PUT", "/api/log", json!({ "lvl": "info" })),
    ] {
        fails(&s, method, path, Some(body), 400, "bad_request").await;
    }
    let v = fails(
        &s,
        "POST",
        "/api/accounts",
        Some(json!({ "jid": "bob@localhost" })),
        400,
        "bad_request",
    )
    .await;
    assert!(v["error"].as_str().unwrap().contains("password"), "{v}");

    // Paging: numbers, and at most 10000 a page.
    for list in [
        "/api/accounts",
        "/api/sessions",
        "/api/offline/alice@localhost",
    ] {
        for q in ["limit=ten", "offset=-1", "limit=10001", "limit=1.5"] {
            let v = fails(&s, "GET", &format!("{list}?{q}"), None, 400, "bad_request").await;
            assert!(
                v["error"]
                    .as_str()
                    .unwrap()
                    .contains(if q.starts_with("offset") {
                        "offset"
                    } else {
                        "limit"
                    }),
                "{v}"
            );
        }
        let v = ok(&s, "GET", &format!("{list}?limit=10000"), None).await;
        assert!(v["items"].is_array(), "{v}");
        let v = ok(&s, "GET", &format!("{list}?limit=0"), None).await;
        assert_eq!(v["items"], json!([]), "{v}");
    }

    // The token: none, a wrong one, an empty one, another scheme: 401,
    // and nothing done.
    let routes: [(&str, &str, Option<Value>); 7] = [
        ("GET", "/api/status", None),
        ("GET", "/api/accounts", None),
        (
            "POST",
            "/api/accounts",
            Some(json!({ "jid": "mallory@localhost", "password": "x" })),
        ),
        ("DELETE", "/api/accounts/alice@localhost", None),
        ("DELETE", "/api/sessions/alice@localhost", None),
        ("PUT", "/api/log", Some(json!({ "level": "trace" }))),
        ("GET", "/api/nothing", None),
    ];
    let level = ok(&s, "GET", "/api/log", None).await["level"].clone();
    for (method, path, body) in &routes {
        for token in [
            None,
            Some("wrong"),
            Some(""),
            Some(&TOKEN[..TOKEN.len() - 1]),
        ] {
            let r = match body {
                Some(b) => send_json(s.http, method, path, token, &b.to_string()).await,
                None => request(s.http, method, path, token, None).await,
            };
            assert_eq!(r.status, 401, "{method} {path} {token:?}: {}", r.body);
            assert!(
                r.headers.contains("www-authenticate: Bearer"),
                "{}",
                r.headers
            );
            let v: Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(v["code"], "unauthorized", "{v}");
        }
    }
    let accounts = ok(&s, "GET", "/api/accounts", None).await;
    assert_eq!(jids(&accounts), ["alice@localhost"]);
    assert_eq!(ok(&s, "GET", "/api/log", None).await["level"], level);

    // Unknown routes: 404; known paths with another method: 405.
    for path in ["/api/nothing", "/api/", "/api/account", "/api/statuses"] {
        fails(&s, "GET", path, None, 404, "not_found").await;
    }
    // A path under a known one that does not exist is 404, not 405.
    fails(
        &s,
        "GET",
        "/api/accounts/alice@localhost/x/y",
        None,
        404,
        "not_found",
    )
    .await;
    for (method, path, allow) in [
        ("PUT", "/api/status", "GET"),
        ("POST", "/api/log", "GET, PUT"),
        ("DELETE", "/api/accounts", "GET, POST"),
        ("PATCH", "/api/accounts/alice@localhost", "DELETE"),
        ("GET", "/api/stanzas", "POST"),
        ("POST", "/api/sessions", "GET"),
        ("PUT", "/api/offline/alice@localhost", "GET, DELETE"),
        ("DELETE", "/api/stats", "GET"),
    ] {
        fails(&s, method, path, None, 405, "method_not_allowed").await;
        // RFC 9110 §15.5.6: a 405 says which methods the path takes.
        let r = request(s.http, method, path, Some(TOKEN), None).await;
        assert!(
            r.headers
                .to_ascii_lowercase()
                .contains(&format!("allow: {}", allow.to_ascii_lowercase())),
            "{method} {path}: {}",
            r.headers
        );
    }
    // The scheme is case-insensitive (RFC 9110 §11.1); another scheme is not a token.
    let r =
        crate::http::request_authorized(s.http, "GET", "/api/status", &format!("bearer {TOKEN}"))
            .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r =
        crate::http::request_authorized(s.http, "GET", "/api/status", &format!("Basic {TOKEN}"))
            .await;
    assert_eq!(r.status, 401, "{}", r.body);
}
