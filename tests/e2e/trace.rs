//! Live tracing end to end: `osprey trace` against a running gateway.

use std::time::{Duration, Instant};

use osprey_instrument::live::{dump, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{osprey_bin, Backend, Options, Server, TOKEN};
use crate::http::get;
use crate::raw::Raw;

fn cli(s: &Server, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["trace"];
    all.extend_from_slice(args);
    let out = s.cli(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn records(s: &Server, id: u64) -> Vec<Record> {
    let r = get(
        s.http,
        &format!("/api/trace/{id}/records?limit=100000"),
        Some(TOKEN),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("records JSON");
    serde_json::from_value(v["records"].clone()).expect("records")
}

async fn status(s: &Server, id: u64) -> serde_json::Value {
    serde_json::from_str(
        &get(s.http, &format!("/api/trace/{id}"), Some(TOKEN))
            .await
            .body,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_alice_from_before_login_to_the_hand_off() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    for u in ["alice", "bob"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    let mut bob = Raw::login(s.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    let (code, out, err) = cli(
        &s,
        &[
            "start",
            "--jid",
            "alice@localhost",
            "--messages",
            "--duration",
            "60s",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("trace 1 started"), "{out}");

    // Alice logs in after the trace started, sets her roster, messages bob.
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    alice
        .send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'/></query></iq>")
        .await;
    alice.expect("id='r1'").await;
    alice
        .send(
            "<message to='bob@localhost/b' type='chat' id='m1'><body>secret words</body></message>",
        )
        .await;
    bob.expect("id='m1'").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let recs = records(&s, 1).await;
    let line = |r: &Record| format!("{} {:?} {}", r.task, r.kind, r.name);
    let lines: Vec<String> = recs.iter().map(line).collect();
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {lines:#?}"))
    };
    // In order: negotiation, the roster handler, the message, routing, hand-off.
    let order = [
        "Call c2s.stream_open",
        "Call c2s.sasl",
        "Call c2s.bind",
        "In iq",
        "Call module.roster.set",
        "Call storage.roster_set",
        "Return module.roster.set",
        "In message",
        "Call router.route",
        "Send stanza",
        "Recv message",
    ];
    // Each step is found after the one before it.
    let mut at = 0;
    for step in order {
        let found = lines[at..].iter().position(|l| l.contains(step));
        at += found.unwrap_or_else(|| panic!("{step} not after record {at}: {lines:#?}")) + 1;
    }
    // Bob's session may take the message before the sender's route
    // returns (after-hooks such as MAM's still run): only "after the send".
    assert!(pos("Return router.route") > pos("Send stanza"));
    let roster_return = recs
        .iter()
        .find(|r| r.name == "module.roster.set" && r.kind == osprey_instrument::live::Kind::Return)
        .unwrap();
    assert!(roster_return.duration_us.is_some());
    // Bob's session appears only through the hand-off.
    let alice_task = recs[pos("In message")].task.clone();
    let bob_records: Vec<_> = recs.iter().filter(|r| r.task != alice_task).collect();
    assert!(!bob_records.is_empty());
    assert!(
        bob_records
            .iter()
            .all(|r| r.name == "message" && r.kind == osprey_instrument::live::Kind::Recv),
        "{bob_records:#?}"
    );
    // The body is redacted (no --payload).
    assert!(!lines
        .iter()
        .chain(recs.iter().map(|r| &r.data))
        .any(|l| l.contains("secret words")));
    assert!(recs.iter().any(|r| r.data.contains("body=[redacted]")));

    // stat ranks the handlers.
    let (code, out, _) = cli(&s, &["stat", "1", "--sort", "acc"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("module.roster.set") && out.contains("router.route"),
        "{out}"
    );
    let (_, tree, _) = cli(&s, &["tree", "1"]);
    assert!(tree.contains("module.roster.set(storage."), "{tree}");
    let (_, ranges, _) = cli(&s, &["ranges", "1", "--call", "router.route"]);
    assert!(
        ranges.contains("Send") || ranges.contains("send"),
        "{ranges}"
    );

    // dump then load gives the same records.
    let file = s.data_dir().join("alice.trace");
    let (code, out, err) = cli(&s, &["dump", "1", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (_, loaded) = dump::read(&file).unwrap();
    assert_eq!(loaded, records(&s, 1).await);
    let (code, out, _) = cli(&s, &["load", file.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("{} records", loaded.len())) && out.contains("module.roster.set"),
        "{out}"
    );

    let (code, out, _) = cli(&s, &["stop", "1"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(status(&s, 1).await["running"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_stop_traces_on_time_and_count() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    let mut bob = Raw::login(s.c2s, "bob", "pw", "b").await;
    let (code, out, err) = cli(&s, &["start", "--jid", "bob@localhost", "--limit", "100"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, _) = cli(
        &s,
        &["start", "--jid", "carol@localhost", "--duration", "1s"],
    );
    assert_eq!(code, 0);
    // Load on bob: far more than 100 records' worth.
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    for i in 0..300 {
        alice
            .send(&format!(
                "<message to='bob@localhost/b' type='chat' id='x{i}'><body>hi</body></message>"
            ))
            .await;
    }
    bob.expect("id='x299'").await;
    for i in 0..50 {
        bob.send(&format!(
            "<iq type='get' id='p{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
    }
    bob.expect("id='p49'").await;
    let st = status(&s, 1).await;
    assert_eq!(st["records"], 100, "{st}");
    assert_eq!(st["running"], false);
    assert_eq!(st["stop_reason"], "record limit of 100 reached");
    // The one-second trace stops on time, even with nothing recorded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(&s, 2).await;
        if st["running"] == false {
            assert!(
                st["stop_reason"].as_str().unwrap().contains("time limit"),
                "{st}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, out, _) = cli(&s, &["status"]);
    assert!(
        out.contains("record limit of 100 reached") && out.contains("time limit"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_records_as_server_sent_events() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("dave@localhost", "pw");
    assert_eq!(cli(&s, &["start", "--jid", "dave@localhost"]).0, 0);
    let mut tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    tcp.write_all(
        format!(
            "GET /api/trace/1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let _dave = Raw::login(s.c2s, "dave", "pw", "d").await;
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.contains("event: record") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), tcp.read(&mut buf))
            .await
            .expect("no event")
            .unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("text/event-stream"), "{got}");
    assert!(
        got.contains("c2s.stream_open") || got.contains("c2s.sasl"),
        "{got}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_clear_errors() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    let (code, _, err) = cli(&s, &["status", "99"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("no trace 99"), "{err}");
    let (code, _, err) = cli(&s, &["start", "--jid", "not a jid@localhost"]);
    assert_eq!(code, 2);
    assert!(err.contains("malformed JID"), "{err}");
    let (code, _, err) = cli(&s, &["start"]);
    assert_eq!(code, 2);
    assert!(err.contains("at least one"), "{err}");
    let (code, _, err) = cli(&s, &["start", "--task", "kernel"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli(&s, &["start", "--jid", "x@localhost", "--duration", "soon"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(cli(&s, &["start", "--jid", "x@localhost"]).0, 0);
    let (code, _, err) = cli(&s, &["start", "--jid", "x@localhost"]);
    assert_eq!(code, 3, "same filter twice: {err}");
    // A raw malformed request body.
    let mut tcp = tokio::net::TcpStream::connect(s.http).await.unwrap();
    let body = "{\"jid\": 42}";
    tcp.write_all(format!("POST /api/trace HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes()).await.unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 400") && reply.contains("malformed trace request"),
        "{reply}"
    );
    // Dumps that are corrupt or from another version.
    let dir = s.data_dir();
    let bad = dir.join("bad.trace");
    std::fs::write(&bad, "this is not a trace\n").unwrap();
    let (code, _, err) = cli(&s, &["load", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("not an Osprey trace dump"), "{err}");
    std::fs::write(&bad, "{\"format\":\"osprey-trace/0\",\"id\":1,\"filter\":{},\"stop_reason\":null,\"records\":0}\n").unwrap();
    let (code, _, err) = cli(&s, &["load", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("this version reads"), "{err}");
    let (code, _, err) = cli(&s, &["--url", "http://127.0.0.1:1", "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the admin API"), "{err}");
    let (code, _, err) = cli(&s, &["--token", "wrong", "status"]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_and_event_filters() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    for u in ["alice", "bob"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    assert_eq!(cli(&s, &["start", "--task", "storage"]).0, 0);
    assert_eq!(cli(&s, &["start", "--event", "router_*"]).0, 0);
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    alice
        .send("<message to='bob@localhost' type='chat' id='o1'><body>later</body></message>")
        .await;
    alice
        .send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice.expect("id='sync'").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every session's storage queries, under the storage task kind.
    let storage = records(&s, 1).await;
    assert!(
        storage
            .iter()
            .any(|r| r.task.kind == "storage" && r.name == "storage.offline_store"),
        "{storage:#?}"
    );
    assert!(storage.iter().all(|r| r.task.kind == "storage"));
    // Instrumentation events by name.
    let events = records(&s, 2).await;
    assert!(
        events
            .iter()
            .any(|r| r.name == "router_routed" && r.data.contains("outcome=offline_stored")),
        "{events:#?}"
    );
    assert!(events.iter().all(|r| r.name.starts_with("router_")));
}

/// The lines of stdout (no blank ones).
fn lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Runs a trace command that must succeed; its stdout.
fn ok(s: &Server, args: &[&str]) -> String {
    let (code, out, err) = cli(s, args);
    assert_eq!(code, 0, "osprey trace {args:?}: {out}{err}");
    out
}

/// Alice (traced) logs in, sets her roster twice, messages bob (logged
/// in before), pings the server; returns once all of it is recorded.
async fn alice_does_things(s: &Server) {
    let mut bob = Raw::login(s.c2s, "bob", "pw", "b").await;
    bob.send("<presence/>").await;
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    for i in 0..2 {
        alice
            .send(&format!("<iq type='set' id='r{i}'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob{i}'/></query></iq>"))
            .await;
        alice.expect(&format!("id='r{i}'")).await;
    }
    alice
        .send(
            "<message to='bob@localhost/b' type='chat' id='m1'><body>secret words</body></message>",
        )
        .await;
    bob.expect("id='m1'").await;
    alice
        .send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice.expect("id='p1'").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tr_grade_queries_on_a_live_trace() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    for u in ["alice", "bob"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    ok(&s, &["start", "--jid", "alice@localhost", "--messages"]);
    alice_does_things(&s).await;
    let recs = records(&s, 1).await;

    // --where: a predicate on fields; human times, never raw epoch µs.
    let out = ok(
        &s,
        &[
            "records",
            "1",
            "--where",
            "kind=return and name~storage and duration>0us",
        ],
    );
    assert!(!lines(&out).is_empty(), "{out}");
    for l in lines(&out) {
        assert!(l.contains(" return ") && l.contains("storage."), "{l}");
        assert!(
            l.contains("ms ") && l.contains('T') && l.contains("Z "),
            "{l}"
        );
        assert!(
            !recs.iter().any(|r| l.contains(&r.ts_us.to_string())),
            "{l}"
        );
    }
    // A call's duration is its return's: slow calls by duration.
    let calls = ok(
        &s,
        &[
            "records",
            "1",
            "--where",
            "kind=call and name~storage and duration>=0us",
        ],
    );
    assert_eq!(lines(&calls).len(), lines(&out).len(), "{calls}{out}");
    // The simple flags still work, and combine with --where.
    let ins = ok(
        &s,
        &["records", "1", "--kind", "in", "--where", "data.type=chat"],
    );
    assert_eq!(lines(&ins).len(), 1, "{ins}");
    assert!(
        ins.contains("id=m1") && ins.contains("body=[redacted]"),
        "{ins}"
    );
    // `out` records carry type/id/from/to.
    let outs = ok(&s, &["records", "1", "--where", "kind=out and data.id=r1"]);
    assert_eq!(lines(&outs).len(), 1, "{outs}");
    assert!(
        outs.contains("type=result id=r1 from=alice@localhost to=alice@localhost/a"),
        "{outs}"
    );
    // The endpoint takes where= too; a bad expression is a 400 saying why.
    let where_ = "kind%3Din%20and%20jid%3Dalice%40localhost";
    let r = get(
        s.http,
        &format!("/api/trace/1/records?where={where_}"),
        Some(TOKEN),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        v["total"],
        recs.iter()
            .filter(|r| r.kind == osprey_instrument::live::Kind::In)
            .count()
    );
    let r = get(
        s.http,
        "/api/trace/1/records?where=kind%3Dwalk",
        Some(TOKEN),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("unknown kind"), "{}", r.body);
    // Bounded: over 1 KiB, or nested over 32 levels.
    let long = format!("name={}", "x".repeat(1100));
    let (code, _, err) = cli(&s, &["records", "1", "--where", &long]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("longer than 1024 bytes"), "{err}");
    let deep = format!("{}kind=in{}", "(".repeat(40), ")".repeat(40));
    let (code, _, err) = cli(&s, &["records", "1", "--where", &deep]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nested deeper than 32 levels"), "{err}");

    // Tracebacks of every match, in three formats.
    let roster = "kind=call and name~roster";
    let count = |args: &[&str]| {
        let (code, out, err) = cli(&s, args);
        assert_eq!(code, 0, "{err}");
        let n: usize = err
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{err}"));
        (n, out)
    };
    let (shortest, out) = count(&["traceback", "1", "--where", roster]);
    assert_eq!(
        shortest, 2,
        "one per roster set (the storage calls inside extend it): {out}"
    );
    assert!(
        out.contains("c2s.stanza.iq") && out.contains("module.roster.set"),
        "{out}"
    );
    let (full, _) = count(&["traceback", "1", "--where", roster, "--format", "full"]);
    assert!(full > shortest, "{full}");
    let (root, out) = count(&["traceback", "1", "--where", roster, "--format", "root"]);
    assert_eq!(root, 2);
    assert!(
        !out.contains("module.roster.set"),
        "only the outermost calls: {out}"
    );
    let (code, _, err) = cli(
        &s,
        &["traceback", "1", "--where", roster, "--format", "tree"],
    );
    assert_eq!(code, 2, "{err}");

    // Ranges with a maximum depth: 1 is the call and its return.
    let out = ok(
        &s,
        &["ranges", "1", "--call", "c2s.stanza.iq", "--max-depth", "1"],
    );
    let ranges: Vec<&str> = out
        .split("--- range")
        .filter(|r| !r.trim().is_empty())
        .collect();
    assert_eq!(ranges.len(), 3, "two roster sets and a ping: {out}");
    for r in &ranges {
        assert_eq!(lines(r).len(), 3, "header, call, return: {r}");
    }
    let deeper = ok(
        &s,
        &[
            "ranges",
            "1",
            "--where",
            "name=c2s.stanza.iq",
            "--max-depth",
            "3",
        ],
    );
    assert!(deeper.contains("storage.roster_set"), "{deeper}");

    // Call trees with a minimum count and time; columns aligned.
    let out = ok(&s, &["tree", "1", "--min-count", "2", "--complete"]);
    let rows = lines(&out);
    assert!(
        rows.iter()
            .any(|l| l.contains("module.roster.set(storage.") && l.trim_start().starts_with("2 ")),
        "{out}"
    );
    // Every shape starts in the header's `tree` column.
    let col = rows[0].chars().count() - "tree".len();
    for row in &rows[1..] {
        let c: Vec<char> = row.chars().collect();
        assert!(c[col - 1] == ' ' && c[col] != ' ', "misaligned: {out}");
    }
    let out = ok(
        &s,
        &["tree", "1", "--min-count", "1", "--min-time", "1000s"],
    );
    assert_eq!(lines(&out).len(), 1, "nothing took an hour: {out}");

    // lookup / next / prev: the message and its handling in the same task.
    let msg = recs
        .iter()
        .find(|r| r.kind == osprey_instrument::live::Kind::In && r.name == "message")
        .unwrap();
    let out = ok(&s, &["lookup", "1", &msg.index.to_string()]);
    assert!(out.contains("id=m1"), "{out}");
    let out = ok(&s, &["next", "1", &msg.index.to_string()]);
    assert!(
        out.contains("call") && out.contains("c2s.stanza.message"),
        "{out}"
    );
    let out = ok(&s, &["prev", "1", &(msg.index + 1).to_string()]);
    assert!(out.contains("id=m1"), "{out}");
    let (code, _, err) = cli(&s, &["lookup", "1", "999999"]);
    assert_eq!(code, 4, "{err}");

    // A dump is queried offline (FILE for ID) or loaded under a new id.
    let file = s.data_dir().join("alice.jsonl");
    ok(&s, &["dump", "1", file.to_str().unwrap()]);
    let q = ["--where", "kind=call and name~roster"];
    let live = ok(&s, &[&["records", "1"][..], &q].concat());
    let offline = ok(&s, &[&["records", file.to_str().unwrap()][..], &q].concat());
    assert_eq!(live, offline);
    let out = ok(&s, &["load", file.to_str().unwrap()]);
    assert!(out.contains("loaded as trace 2"), "{out}");
    let loaded = ok(&s, &[&["records", "2"][..], &q].concat());
    assert_eq!(live, loaded);
    let out = ok(&s, &["traceback", "2", "--where", roster]);
    assert!(out.contains("module.roster.set"), "{out}");
    let status = ok(&s, &["status", "2"]);
    assert!(
        status.contains("stopped") && status.contains("loaded"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_criteria_and_the_login_storage_lookup() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    for u in ["alice", "bob"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    ok(&s, &["start", "--task", "storage"]);
    let out = ok(
        &s,
        &["start", "--jid", "alice@localhost", "--event", "router_*"],
    );
    assert!(
        out.contains(r#"{"event":"router_*","jid":"alice@localhost"}"#),
        "{out}"
    );
    ok(
        &s,
        &["start", "--task", "storage", "--jid", "bob@localhost"],
    );
    ok(&s, &["start", "--event", "router_*"]);
    alice_does_things(&s).await;
    // Bob answers: his router events are not alice's.
    let mut bob = Raw::login(s.c2s, "bob", "pw", "b2").await;
    bob.send("<message to='alice@localhost' type='chat' id='back'><body>hi</body></message>")
        .await;
    bob.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    bob.expect("id='sync'").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // --task storage sees the credential lookups at login, per session.
    let storage = records(&s, 1).await;
    let lookups: Vec<_> = storage
        .iter()
        .filter(|r| {
            r.name == "storage.account_get_credentials"
                && r.kind == osprey_instrument::live::Kind::Call
        })
        .collect();
    assert_eq!(lookups.len(), 3, "alice, bob, bob again: {storage:#?}");
    assert!(lookups
        .iter()
        .all(|r| r.task.kind == "storage" && r.task.id > 0));

    // jid AND event: only the router events of alice's session.
    let alice_events = records(&s, 2).await;
    let all_events = records(&s, 4).await;
    assert!(!alice_events.is_empty());
    assert!(alice_events.iter().all(|r| r.name.starts_with("router_")));
    let alice_task = alice_events[0].task.clone();
    assert!(
        alice_events.iter().all(|r| r.task == alice_task),
        "{alice_events:#?}"
    );
    assert!(all_events.len() > alice_events.len(), "{all_events:#?}");
    assert!(all_events.iter().any(|r| r.task != alice_task));

    // task AND jid: bob's storage calls only.
    let bobs = records(&s, 3).await;
    let bob_lookups = bobs
        .iter()
        .filter(|r| {
            r.name == "storage.account_get_credentials"
                && r.kind == osprey_instrument::live::Kind::Call
        })
        .count();
    assert_eq!(bob_lookups, 2, "{bobs:#?}");
    assert!(
        !bobs.iter().any(|r| r.task.id == alice_task.id),
        "{bobs:#?}"
    );

    // A task kind with an event pattern makes no sense: refused.
    let (code, _, err) = cli(&s, &["start", "--task", "storage", "--event", "x"]);
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_capture_is_an_audit_event() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");
    let out = ok(&s, &["start", "--jid", "alice@localhost", "--payload"]);
    assert!(out.contains("audit"), "{out}");
    ok(&s, &["start", "--jid", "bob@localhost"]);
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    alice
        .send(
            "<message to='alice@localhost/a' type='chat' id='self'><body>kept words</body></message>",
        )
        .await;
    alice.expect("kept words").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = ok(&s, &["status"]);
    let mut rows = lines(&status);
    rows.sort();
    assert!(
        rows[0].contains("alice") && rows[0].contains("payload: true"),
        "{status}"
    );
    assert!(!rows[1].contains("payload"), "{status}");
    assert_eq!(status_json(&s, 1).await["payload"], true);
    let log = s.log();
    let warn = log
        .lines()
        .find(|l| l.contains("capturing stanza payloads"))
        .unwrap_or_else(|| panic!("no audit line: {log}"));
    assert!(warn.contains("WARN") && warn.contains("trace=1"), "{warn}");
    assert!(
        warn.contains("alice@localhost") && warn.contains("osprey trace"),
        "{warn}"
    );
    // The payload is kept, in and out.
    let out = ok(
        &s,
        &[
            "records",
            "1",
            "--where",
            "data~\"<body>kept words\" and kind=out",
        ],
    );
    assert_eq!(lines(&out).len(), 1, "{out}");
}

async fn status_json(s: &Server, id: u64) -> serde_json::Value {
    status(s, id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_survive_a_restart() {
    let mut s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");
    ok(&s, &["start", "--jid", "alice@localhost"]);
    ok(&s, &["start", "--jid", "nobody@localhost"]);
    {
        let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
        alice
            .send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        alice.expect("id='p1'").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = records(&s, 1).await;
    assert!(s.terminate().success());
    let saved = s.data_dir().join("traces");
    assert!(saved.join("trace-1.jsonl").exists());
    assert!(
        !saved.join("trace-2.jsonl").exists(),
        "no records, nothing saved"
    );
    s.restart();
    let st = status(&s, 1).await;
    assert_eq!(st["running"], false);
    assert_eq!(st["origin"], "restored after a restart");
    assert_eq!(st["stop_reason"], "the server shut down");
    let after = records(&s, 1).await;
    assert!(after.len() >= before.len() && after[..before.len()] == before[..]);
    let out = ok(&s, &["records", "1", "--where", "kind=in and data.id=p1"]);
    assert_eq!(lines(&out).len(), 1, "{out}");
    let out = ok(&s, &["status"]);
    assert!(out.contains("restored after a restart"), "{out}");
    // New traces take new ids.
    let out = ok(&s, &["start", "--jid", "alice@localhost"]);
    assert!(out.contains("trace 2 started"), "{out}");
}

/// `osprey trace follow 1 | head -1` ends quietly: no panic, no exit 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");
    ok(&s, &["start", "--jid", "alice@localhost"]);
    let mut child = Command::new(osprey_bin())
        .arg("--config")
        .arg(&s.config)
        .args(["trace", "follow", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("osprey trace follow");
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    // Records keep coming (pings) while follow runs.
    let pinger = tokio::spawn(async move {
        for _ in 0..400 {
            alice
                .send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
                .await;
            alice.expect("id='p'").await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let n = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 64];
        // Close the pipe after one read, as `head -1` does.
        stdout.read(&mut buf).expect("read")
    })
    .await
    .unwrap();
    assert!(n > 0, "a first record");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "follow kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    pinger.abort();
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(!err.contains("panicked"), "{err}");
    assert_ne!(status.code(), Some(101), "{err}");
    assert!(
        status.signal() == Some(13 /* SIGPIPE */) || status.success(),
        "{status:?} {err}"
    );
}
