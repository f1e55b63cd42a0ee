//! Live tracing end to end: `osprey trace` against a running gateway.

use std::time::{Duration, Instant};

use osprey_instrument::live::{dump, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Backend, Options, Server, TOKEN};
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
        "Return router.route",
        "Recv message",
    ];
    // Each step is found after the one before it.
    let mut at = 0;
    for step in order {
        let found = lines[at..].iter().position(|l| l.contains(step));
        at += found.unwrap_or_else(|| panic!("{step} not after record {at}: {lines:#?}")) + 1;
    }
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
    assert!(err.contains("exactly one"), "{err}");
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
