//! The admin API as GraphQL (`/api/graphql`) against a real gateway: every
//! category's queries and mutations, what XMPP clients see of them, the
//! errors (`extensions.code` = the admin wire name), the request limits
//! (depth, complexity, body size), the token, and `osprey api schema`.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_backends;
use crate::harness::{osprey_bin, Backend, Options, Server, TOKEN};
use crate::http::{get, request, send_json};
use crate::raw::{Raw, Xml};

const NS_ADMIN: &str = "urn:osprey:admin:0";

/// A GraphQL request with the token; the HTTP status and the JSON reply.
async fn post(s: &Server, query: &str, variables: Value) -> (u16, Value) {
    let body = json!({ "query": query, "variables": variables }).to_string();
    let r = send_json(s.http, "POST", "/api/graphql", Some(TOKEN), &body).await;
    let v = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", r.status, r.body));
    (r.status, v)
}

/// A request that must succeed without errors; its `data`.
async fn ok(s: &Server, query: &str, variables: Value) -> Value {
    let (status, v) = post(s, query, variables).await;
    assert_eq!(status, 200, "{query}: {v}");
    assert!(v.get("errors").is_none(), "{query}: {v}");
    v["data"].clone()
}

/// A request whose one error has `extensions.code` = `code`; the reply.
async fn fails(s: &Server, query: &str, variables: Value, code: &str) -> Value {
    let (status, v) = post(s, query, variables).await;
    assert_eq!(status, 200, "{query}: {v}");
    let errors = v["errors"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["extensions"]["code"], code, "{query}: {v}");
    assert!(
        errors[0]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v
}

/// The first error's message of a reply that has no data.
fn refused(v: &Value) -> String {
    assert!(v["data"].is_null(), "{v}");
    v["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {v}"))
        .to_string()
}

const REGISTER: &str = "mutation($jid: String!, $pw: String!) {
    account { registerUser(jid: $jid, password: $pw) } }";

async fn accounts_rosters_offline(b: Backend) {
    let s = Server::start(Options::plaintext(b));

    // account
    for user in ["carol", "alice", "bob"] {
        let jid = format!("{user}@localhost");
        let d = ok(&s, REGISTER, json!({ "jid": jid, "pw": "pw1" })).await;
        assert_eq!(d["account"]["registerUser"], jid.as_str(), "{d}");
    }
    let v = fails(
        &s,
        REGISTER,
        json!({ "jid": "alice@localhost", "pw": "x" }),
        "conflict",
    )
    .await;
    // The failed field is null; the category around it still answers.
    assert_eq!(v["data"]["account"]["registerUser"], Value::Null, "{v}");
    let list = "query($o: Int, $l: Int) { account {
        listUsers(domain: \"localhost\", offset: $o, limit: $l) { total offset items } } }";
    let d = ok(&s, list, json!({ "o": 1, "l": 1 })).await;
    assert_eq!(
        d["account"]["listUsers"],
        json!({ "total": 3, "offset": 1, "items": ["bob@localhost"] })
    );
    let d = ok(&s, list, json!({})).await;
    assert_eq!(
        d["account"]["listUsers"]["items"],
        json!(["alice@localhost", "bob@localhost", "carol@localhost"])
    );
    let d = ok(
        &s,
        "{ account { countUsers { host accounts } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        d["account"]["countUsers"],
        json!([{ "host": "localhost", "accounts": 3 }])
    );
    // A new password: the next login uses it.
    let passwd = "mutation($jid: String!) {
        account { changePassword(jid: $jid, password: \"pw2\") } }";
    let d = ok(&s, passwd, json!({ "jid": "alice@localhost" })).await;
    assert_eq!(d["account"]["changePassword"], "alice@localhost");
    Raw::login(s.c2s, "alice", "pw2", "new").await;
    fails(
        &s,
        passwd,
        json!({ "jid": "nobody@localhost" }),
        "not_found",
    )
    .await;

    // roster
    let add = "mutation($u: String!, $c: String!) { roster { addContact(user: $u, contact: $c,
        name: \"Bob\", groups: [\"friends\"], subscription: \"both\") {
        jid name subscription ask groups } } }";
    let d = ok(
        &s,
        add,
        json!({ "u": "alice@localhost", "c": "bob@localhost" }),
    )
    .await;
    let bob = json!({ "jid": "bob@localhost", "name": "Bob", "subscription": "both",
        "ask": false, "groups": ["friends"] });
    assert_eq!(d["roster"]["addContact"], bob, "{d}");
    let contacts = "query($u: String!) { roster { listContacts(user: $u) {
        jid name subscription ask groups } } }";
    let d = ok(&s, contacts, json!({ "u": "alice@localhost" })).await;
    assert_eq!(d["roster"]["listContacts"], json!([bob]));
    let delete = "mutation($u: String!, $c: String!) {
        roster { deleteContact(user: $u, contact: $c) } }";
    let vars = json!({ "u": "alice@localhost", "c": "bob@localhost" });
    let d = ok(&s, delete, vars.clone()).await;
    assert_eq!(d["roster"]["deleteContact"], "bob@localhost");
    let d = ok(&s, contacts, json!({ "u": "alice@localhost" })).await;
    assert_eq!(d["roster"]["listContacts"], json!([]));
    fails(&s, delete, vars, "not_found").await;
    fails(
        &s,
        add,
        json!({ "u": "nobody@localhost", "c": "bob@localhost" }),
        "not_found",
    )
    .await;

    // offline: carol is not online, so a message to her is stored.
    let send = "mutation($f: String!, $t: String!, $b: String!) {
        stanza { sendMessage(from: $f, to: $t, body: $b) { id outcome sessions } } }";
    for body in ["first", "second"] {
        let d = ok(
            &s,
            send,
            json!({ "f": "alice@localhost", "t": "carol@localhost", "b": body }),
        )
        .await;
        let sent = &d["stanza"]["sendMessage"];
        assert_eq!(sent["outcome"], "offline", "{d}");
        assert_eq!(sent["sessions"], 0, "{d}");
        assert!(sent["id"].as_str().is_some_and(|i| !i.is_empty()), "{d}");
    }
    let carol = json!({ "u": "carol@localhost" });
    let count = "query($u: String!) { offline { countMessages(user: $u) } }";
    assert_eq!(
        ok(&s, count, carol.clone()).await["offline"]["countMessages"],
        2
    );
    let d = ok(
        &s,
        "query($u: String!) { offline { listMessages(user: $u, offset: 1, limit: 5) {
            total offset items { id storedAtMs stanza } } } }",
        carol.clone(),
    )
    .await;
    let page = &d["offline"]["listMessages"];
    assert_eq!(
        (page["total"].clone(), page["offset"].clone()),
        (json!(2), json!(1))
    );
    let items = page["items"].as_array().unwrap_or_else(|| panic!("{d}"));
    assert_eq!(items.len(), 1, "{d}");
    assert!(
        items[0]["stanza"]
            .as_str()
            .is_some_and(|x| x.contains("second")),
        "{d}"
    );
    assert!(
        items[0]["storedAtMs"].as_i64().is_some_and(|t| t > 0),
        "{d}"
    );
    // Listing leaves them stored; purging deletes them.
    let purge = "mutation($u: String!) { offline { purgeMessages(user: $u) } }";
    assert_eq!(
        ok(&s, purge, carol.clone()).await["offline"]["purgeMessages"],
        2
    );
    assert_eq!(
        ok(&s, count, carol.clone()).await["offline"]["countMessages"],
        0
    );

    let remove = "mutation($jid: String!) { account { removeUser(jid: $jid) } }";
    let d = ok(&s, remove, json!({ "jid": "carol@localhost" })).await;
    assert_eq!(d["account"]["removeUser"], "carol@localhost");
    fails(&s, remove, json!({ "jid": "carol@localhost" }), "not_found").await;
    let d = ok(
        &s,
        "{ account { countUsers(domain: \"localhost\") { accounts } } }",
        json!({}),
    )
    .await;
    assert_eq!(d["account"]["countUsers"][0]["accounts"], 2);

    // Each GraphQL operation is one admin operation: counted once.
    let metrics = get(s.http, "/metrics", None).await.body;
    let total = |op: &str, outcome: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with("admin_operation_total{"))
            .find(|l| {
                l.contains(&format!("operation=\"{op}\""))
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no admin_operation_total for {op}/{outcome}"))
    };
    assert_eq!(total("account_register", "ok"), 3.0);
    assert_eq!(total("account_register", "conflict"), 1.0);
    assert_eq!(total("roster_add", "ok"), 1.0);
    assert_eq!(total("offline_purge", "ok"), 1.0);
}
both_backends!(graphql_accounts_rosters_offline, accounts_rosters_offline);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_sessions_stanzas_stats_and_kicks() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    let mut phone = Raw::login(s.c2s, "alice", "pw", "phone").await;
    let mut laptop = Raw::login(s.c2s, "alice", "pw", "laptop").await;
    let mut desk = Raw::login(s.c2s, "bob", "pw", "desk").await;
    // Available: a message to the bare JID is delivered, not stored.
    desk.send("<presence/>").await;
    desk.settle().await;

    // session
    let list = "query($f: String, $o: Int, $l: Int) { session {
        listSessions(filter: $f, domain: \"localhost\", offset: $o, limit: $l) {
            total offset items { jid bare resource sessionId address transport tls state }
        } } }";
    let d = ok(&s, list, json!({})).await;
    let page = &d["session"]["listSessions"];
    assert_eq!(page["total"], 3, "{d}");
    let jids: Vec<&str> = page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{d}"))
        .iter()
        .filter_map(|i| i["jid"].as_str())
        .collect();
    assert_eq!(
        jids,
        [
            "alice@localhost/laptop",
            "alice@localhost/phone",
            "bob@localhost/desk"
        ]
    );
    let first = &page["items"][0];
    assert_eq!(first["bare"], "alice@localhost", "{first}");
    assert_eq!(first["transport"], "tcp", "{first}");
    assert_eq!(first["tls"], false, "{first}");
    assert_eq!(first["state"], "active", "{first}");
    assert!(
        first["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{first}"
    );
    let laptop_id = first["sessionId"]
        .as_u64()
        .unwrap_or_else(|| panic!("{first}"));
    let d = ok(&s, list, json!({ "o": 1, "l": 1 })).await;
    let page = &d["session"]["listSessions"];
    assert_eq!(
        (page["total"].clone(), page["offset"].clone()),
        (json!(3), json!(1))
    );
    assert_eq!(page["items"][0]["jid"], "alice@localhost/phone", "{d}");
    let d = ok(&s, list, json!({ "f": "DESK" })).await;
    assert_eq!(
        d["session"]["listSessions"]["items"][0]["jid"],
        "bob@localhost/desk"
    );
    let d = ok(
        &s,
        "{ session { all: countSessions(domain: \"localhost\") alice: countSessions(filter: \"alice\") } }",
        json!({}),
    )
    .await;
    assert_eq!(d["session"], json!({ "all": 3, "alice": 2 }));

    // stanza: to an online user, delivered to the session.
    let send = "mutation($f: String!, $t: String!, $b: String!) {
        stanza { sendMessage(from: $f, to: $t, body: $b) { id outcome sessions } } }";
    let d = ok(
        &s,
        send,
        json!({ "f": "alice@localhost", "t": "bob@localhost", "b": "hello from graphql" }),
    )
    .await;
    let sent = &d["stanza"]["sendMessage"];
    assert_eq!(
        (sent["outcome"].clone(), sent["sessions"].clone()),
        (json!("delivered"), json!(1)),
        "{d}"
    );
    let id = sent["id"].as_str().unwrap_or_default().to_string();
    let m = desk
        .take("the admin's message", |x| {
            x.is_message() && x.body() == Some("hello from graphql")
        })
        .await;
    assert_eq!(m.from(), "alice@localhost", "{}", m.raw);
    assert_eq!(m.id(), id, "{}", m.raw);
    let stanza = "<message from='localhost' to='bob@localhost/desk' id='raw1' type='chat'>\
                  <body>from the server</body></message>";
    let d = ok(
        &s,
        "mutation($x: String!) { stanza { sendStanza(stanza: $x) { id outcome sessions } } }",
        json!({ "x": stanza }),
    )
    .await;
    assert_eq!(
        d["stanza"]["sendStanza"],
        json!({ "id": "raw1", "outcome": "delivered", "sessions": 1 })
    );
    let m = desk
        .take("the raw stanza", |x| x.is_message() && x.id() == "raw1")
        .await;
    assert_eq!(m.body(), Some("from the server"), "{}", m.raw);
    fails(
        &s,
        "mutation { stanza { sendStanza(stanza: \"<message to='bob@localhost'/>\") { id } } }",
        json!({}),
        "bad_request",
    )
    .await;

    // stat
    let d = ok(
        &s,
        "{ stat { hosts(domain: \"localhost\") { host registeredUsers onlineSessions
            onlineUsers stanzasIn stanzasOut } } }",
        json!({}),
    )
    .await;
    let h = &d["stat"]["hosts"][0];
    assert_eq!(h["host"], "localhost", "{d}");
    assert_eq!(h["registeredUsers"], 2, "{d}");
    assert_eq!(h["onlineSessions"], 3, "{d}");
    assert_eq!(h["onlineUsers"], 2, "{d}");
    assert!(
        h["stanzasIn"].as_u64().is_some() && h["stanzasOut"].as_u64().is_some(),
        "{d}"
    );

    // server
    let d = ok(
        &s,
        "{ server { status { version uptimeSeconds hosts sessions users storage handlers
            listeners { c2s http } } logLevel { level handler } } }",
        json!({}),
    )
    .await;
    let st = &d["server"]["status"];
    assert!(st["version"].as_str().is_some_and(|v| !v.is_empty()), "{d}");
    assert_eq!(st["hosts"], json!(["localhost"]), "{d}");
    assert_eq!(
        (st["sessions"].clone(), st["users"].clone()),
        (json!(3), json!(2)),
        "{d}"
    );
    assert_eq!(st["storage"], "sqlite", "{d}");
    assert_eq!(st["listeners"]["c2s"][0], s.c2s.to_string(), "{d}");
    assert_eq!(d["server"]["logLevel"]["handler"], true, "{d}");
    let before = d["server"]["logLevel"]["level"].clone();
    let set = "mutation($l: String!) { server { setLogLevel(level: $l) { level previous } } }";
    let d = ok(&s, set, json!({ "l": "trace" })).await;
    assert_eq!(
        d["server"]["setLogLevel"],
        json!({ "level": "trace", "previous": before })
    );
    let d = ok(&s, "{ server { logLevel { level } } }", json!({})).await;
    assert_eq!(d["server"]["logLevel"]["level"], "trace");
    fails(&s, set, json!({ "l": "loud" }), "bad_request").await;
    ok(&s, set, json!({ "l": "info" })).await;

    // kicks: by session id with a reason (undefined-condition and <kicked/>).
    let kick = "mutation($t: String!, $r: String, $c: String) { session {
        kickUser(target: $t, reason: $r, condition: $c) { kicked sessions condition } } }";
    let d = ok(
        &s,
        kick,
        json!({ "t": laptop_id.to_string(), "r": "maintenance window" }),
    )
    .await;
    assert_eq!(
        d["session"]["kickUser"],
        json!({ "kicked": 1, "sessions": [laptop_id], "condition": "undefined-condition" })
    );
    let e = Xml::stream_error_in(&laptop.read_to_close().await);
    assert_eq!(
        e.stream_error_condition(),
        Some("undefined-condition"),
        "{}",
        e.raw
    );
    assert!(e.child("kicked", NS_ADMIN).is_some(), "{}", e.raw);
    assert!(e.raw.contains("maintenance window"), "{}", e.raw);
    // By bare JID with a condition: every session of the user.
    let d = ok(
        &s,
        kick,
        json!({ "t": "bob@localhost", "r": "spam", "c": "policy-violation" }),
    )
    .await;
    assert_eq!(d["session"]["kickUser"]["kicked"], 1, "{d}");
    assert_eq!(
        d["session"]["kickUser"]["condition"], "policy-violation",
        "{d}"
    );
    let e = Xml::stream_error_in(&desk.read_to_close().await);
    assert_eq!(
        e.stream_error_condition(),
        Some("policy-violation"),
        "{}",
        e.raw
    );
    assert!(e.raw.contains("spam"), "{}", e.raw);
    sessions_settle_at(&s, 1).await;
    fails(&s, kick, json!({ "t": "bob@localhost" }), "not_found").await;
    fails(&s, kick, json!({ "t": "999999" }), "not_found").await;
    fails(
        &s,
        kick,
        json!({ "t": "alice@localhost/phone", "c": "gone-fishing" }),
        "bad_request",
    )
    .await;
    // The refused kick closed nothing.
    let d = ok(&s, "{ session { countSessions } }", json!({})).await;
    assert_eq!(d["session"]["countSessions"], 1, "{d}");
    phone.settle().await;
}

/// Waits until the closed sessions have left the registry (a kicked
/// stream is closed before its session is removed).
async fn sessions_settle_at(s: &Server, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = ok(s, "{ session { countSessions } }", json!({})).await;
        if d["session"]["countSessions"] == n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "still {d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_bad_input_and_limits() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");

    // The admin errors, by wire name.
    fails(
        &s,
        REGISTER,
        json!({ "jid": "not a jid@localhost", "pw": "x" }),
        "bad_request",
    )
    .await;
    fails(
        &s,
        REGISTER,
        json!({ "jid": "bob@elsewhere.org", "pw": "x" }),
        "bad_request",
    )
    .await;
    fails(
        &s,
        "{ offline { countMessages(user: \"@@@\") } }",
        json!({}),
        "bad_request",
    )
    .await;
    fails(
        &s,
        "{ account { listUsers(limit: 10001) { total } } }",
        json!({}),
        "bad_request",
    )
    .await;
    fails(
        &s,
        "mutation { account { removeUser(jid: \"nobody@localhost\") } }",
        json!({}),
        "not_found",
    )
    .await;
    // One failing field leaves the others of the request answered.
    let (_, v) = post(
        &s,
        "{ account { countUsers { accounts } } offline { countMessages(user: \"x@nowhere\") } }",
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["account"]["countUsers"][0]["accounts"], 1, "{v}");
    assert_eq!(v["data"]["offline"]["countMessages"], Value::Null, "{v}");
    assert_eq!(
        v["errors"][0]["path"],
        json!(["offline", "countMessages"]),
        "{v}"
    );

    // Malformed GraphQL, unknown fields, wrong argument types: errors, no data.
    for q in [
        "{ account { listUsers { total ",
        "{ account { nothing } }",
        "mutation { account { registerUser(jid: \"a@localhost\") } }",
    ] {
        let (status, v) = post(&s, q, json!({})).await;
        assert_eq!(status, 200, "{q}: {v}");
        refused(&v);
    }
    // A value its Rust type refuses fails that field alone.
    let (_, v) = post(
        &s,
        "{ account { listUsers(offset: -1) { total } } }",
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["account"]["listUsers"], Value::Null, "{v}");
    assert!(v["errors"][0]["message"].as_str().is_some(), "{v}");

    // The depth limit, before anything runs: 26 levels of introspection.
    let deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {}name{} }} }} }} }} }}",
        "ofType { ".repeat(20),
        " }".repeat(20)
    );
    let (_, v) = post(&s, &deep, json!({})).await;
    assert!(refused(&v).contains("nested too deep"), "{v}");
    // Text nested far deeper than any query: refused by the parser, and the
    // gateway lives on (no stack overflow).
    let (_, v) = post(
        &s,
        &format!("{}{}", "{a".repeat(100_000), "}".repeat(100_000)),
        json!({}),
    )
    .await;
    refused(&v);
    // The complexity limit: many aliases of a cheap field.
    let wide: String = (0..400)
        .map(|i| format!("a{i}: server {{ status {{ version }} }} "))
        .collect();
    let (_, v) = post(&s, &format!("{{ {wide} }}"), json!({})).await;
    assert!(refused(&v).contains("too complex"), "{v}");
    // ... and a full introspection query fits both.
    let d = ok(&s, INTROSPECTION, json!(null)).await;
    let types = d["__schema"]["types"].as_array().map(Vec::len).unwrap_or(0);
    assert!(types > 20, "{d}");
    assert_eq!(d["__schema"]["mutationType"]["name"], "AdminMutation");

    // HTTP-level refusals, in the same error shape.
    let r = send_json(s.http, "POST", "/api/graphql", Some(TOKEN), "{\"query\": ").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("bad_request"), "{}", r.body);
    let batch = json!([{ "query": "{ server { logLevel { level } } }" }]).to_string();
    let r = send_json(s.http, "POST", "/api/graphql", Some(TOKEN), &batch).await;
    assert_eq!(r.status, 400, "a batch: {}", r.body);
    let r = request(s.http, "PUT", "/api/graphql", Some(TOKEN), None).await;
    assert_eq!(r.status, 405, "{}", r.body);
    assert!(
        r.headers.to_lowercase().contains("allow: get, post"),
        "{}",
        r.headers
    );
    // A declared length over the limit: refused before the body is read.
    let (status, _) = raw_post(&s, &format!("Content-Length: {}\r\n", 1 << 20), b"").await;
    assert_eq!(status, 413);
    // A chunked body that turns out too large: refused once over the limit.
    let mut chunked = Vec::new();
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..9 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, _) = raw_post(&s, "Transfer-Encoding: chunked\r\n", &chunked).await;
    assert_eq!(status, 413);
    // A large stanza still fits (the body limit is the REST one).
    let big = "x".repeat(200 * 1024);
    let d = ok(
        &s,
        "mutation($b: String!) { stanza { sendMessage(from: \"localhost\",
            to: \"alice@localhost\", body: $b) { outcome } } }",
        json!({ "b": big }),
    )
    .await;
    assert_eq!(d["stanza"]["sendMessage"]["outcome"], "offline", "{d}");

    // GET: queries only, from the query string.
    let q = "query($d: String) { account { countUsers(domain: $d) { accounts } } }";
    let path = format!(
        "/api/graphql?query={}&variables={}",
        encode(q),
        encode("{\"d\": \"localhost\"}")
    );
    let r = get(s.http, &path, Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap_or_default();
    assert_eq!(v["data"]["account"]["countUsers"][0]["accounts"], 1, "{v}");
    let m = "mutation { server { setLogLevel(level: \"trace\") { level } } }";
    let r = get(
        s.http,
        &format!("/api/graphql?query={}", encode(m)),
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 405, "a mutation over GET: {}", r.body);
    let d = ok(&s, "{ server { logLevel { level } } }", json!({})).await;
    assert_ne!(
        d["server"]["logLevel"]["level"], "trace",
        "the GET changed nothing"
    );
    assert_eq!(get(s.http, "/api/graphql", Some(TOKEN)).await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_needs_the_token() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    let body =
        json!({ "query": "mutation { server { setLogLevel(level: \"trace\") { level } } }" })
            .to_string();
    for token in [None, Some("wrong"), Some("")] {
        let r = send_json(s.http, "POST", "/api/graphql", token, &body).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(
            r.headers.contains("www-authenticate: Bearer"),
            "{}",
            r.headers
        );
        let r = get(s.http, "/api/graphql?query=%7B__typename%7D", token).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // Checked before the body: an unauthenticated huge body is a 401, not a 413.
    let (status, _) = raw_post_as(&s, None, &format!("Content-Length: {}\r\n", 1 << 20), b"").await;
    assert_eq!(status, 401);
    let d = ok(&s, "{ server { logLevel { level } } }", json!({})).await;
    assert_ne!(d["server"]["logLevel"]["level"], "trace", "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_reloads_certificates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let write_pair = || {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("a self-signed pair");
        std::fs::write(&cert, pair.cert.pem()).expect("write cert");
        std::fs::write(&key, pair.key_pair.serialize_pem()).expect("write key");
    };
    write_pair();
    let s = Server::start(Options {
        c2s_extra: format!(
            "tls.certfile = \"{}\"\ntls.keyfile = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        ..Options::new(Backend::Sqlite)
    });
    let reload = "mutation { server { reloadCertificates {
        listener certfile notAfter notAfterRfc3339 changed } } }";
    // The same files: reloaded, unchanged.
    let d = ok(&s, reload, json!({})).await;
    let certs = d["server"]["reloadCertificates"]
        .as_array()
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(certs.len(), 1, "{d}");
    assert_eq!(certs[0]["certfile"], cert.display().to_string(), "{d}");
    assert_eq!(certs[0]["changed"], false, "{d}");
    assert!(certs[0]["notAfter"].as_i64().is_some_and(|t| t > 0), "{d}");
    assert!(certs[0]["notAfterRfc3339"].as_str().is_some(), "{d}");
    // New files: changed.
    write_pair();
    let d = ok(&s, reload, json!({})).await;
    assert_eq!(d["server"]["reloadCertificates"][0]["changed"], true, "{d}");
    // Broken files: the error names the listener, the old one stays.
    std::fs::write(&cert, "not a certificate").expect("write cert");
    let v = fails(&s, reload, json!({}), "bad_request").await;
    let message = v["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("c2s_"), "{v}");
    assert_eq!(
        v["data"]["server"]["reloadCertificates"],
        Value::Null,
        "{v}"
    );
}

#[test]
fn api_schema_prints_the_sdl_without_a_server() {
    let out = std::process::Command::new(osprey_bin())
        .args(["api", "schema"])
        .output()
        .expect("run osprey api schema");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sdl = String::from_utf8_lossy(&out.stdout);
    for t in [
        "schema {",
        "query: AdminQuery",
        "mutation: AdminMutation",
        "type AccountAdminQuery",
        "type AccountAdminMutation",
        "type SessionAdminQuery",
        "type SessionAdminMutation",
        "type StanzaAdminMutation",
        "type RosterAdminQuery",
        "type RosterAdminMutation",
        "type OfflineAdminQuery",
        "type OfflineAdminMutation",
        "type StatAdminQuery",
        "type ServerAdminQuery",
        "type ServerAdminMutation",
        "reloadCertificates: [Certificate!]",
        "listUsers(domain: String, offset: Int, limit: Int): UserPage",
        "kickUser(target: String!, reason: String, condition: String): Kicked",
    ] {
        assert!(sdl.contains(t), "{t} missing from:\n{sdl}");
    }
}

/// A POST with the token, raw: `headers` (CRLF-terminated lines) and the
/// body bytes as given. The reply is read until the server closes, or
/// resets: a server refusing a body it did not read may do either.
async fn raw_post(s: &Server, headers: &str, body: &[u8]) -> (u16, String) {
    raw_post_as(s, Some(TOKEN), headers, body).await
}

async fn raw_post_as(s: &Server, token: Option<&str>, headers: &str, body: &[u8]) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(s.http)
        .await
        .expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /api/graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\n{auth}{headers}\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("send head");
    // The server may answer and close before taking it all.
    let _ = tcp.write_all(body).await;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buf[..n]),
            Ok(_) => break,
            Err(_) => panic!("no reply: {:?}", String::from_utf8_lossy(&raw)),
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    (status, text)
}

/// Percent-encodes a query-string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// graphql-js's `getIntrospectionQuery()`, as GraphiQL and most clients send it.
const INTROSPECTION: &str = include_str!("../../gateway/src/http/graphql/introspection.graphql");

/// Every GraphQL example in docs/admin-api.md runs against a real gateway,
/// in the order written: each is valid for the schema (no validation error)
/// and answers, at worst, with an admin error of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_examples_run() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    for u in ["alice@localhost", "bob@localhost"] {
        s.register(u, "pw");
    }
    let doc = include_str!("../../docs/admin-api.md");
    let examples: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("GraphQL: `"))
        .flat_map(|l| l.trim_end_matches('`').split("` and `"))
        .collect();
    assert!(examples.len() >= 20, "{examples:?}");
    for q in examples {
        let (status, v) = post(&s, q, json!({})).await;
        assert_eq!(status, 200, "{q}: {v}");
        for e in v["errors"].as_array().into_iter().flatten() {
            let code = e["extensions"]["code"].as_str();
            assert!(
                matches!(code, Some("not_found" | "bad_request")),
                "{q}: {e}"
            );
        }
        assert!(v["data"].is_object(), "{q}: {v}");
    }
}
