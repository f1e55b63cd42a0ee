//! `osprey session|stanza|roster|offline|stats|server …` and `osprey
//! account count`, the real binary against a running gateway's admin API
//! (found through its configuration: listeners.json and `[admin] token`).

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::harness::{osprey_bin, Backend, Options, Server};
use crate::raw::{Raw, NS_STREAM_ERRORS};

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the CLI; it must succeed. Its standard output.
fn run_ok(s: &Server, args: &[&str]) -> String {
    let out = s.cli(args);
    assert_eq!(code(&out), 0, "osprey {args:?}: {}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    stdout(&out)
}

/// Runs the CLI with `--json`; its reply, parsed.
fn run_json(s: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = run_ok(s, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("osprey {all:?}: not JSON ({e}): {text}"))
}

/// Runs the CLI; it must fail with exit code `expected`. Its standard error.
fn run_fails(s: &Server, args: &[&str], expected: i32) -> String {
    let out = s.cli(args);
    let err = stderr(&out);
    assert_eq!(
        code(&out),
        expected,
        "osprey {args:?}: {} {err}",
        stdout(&out)
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_sessions_stanzas_rosters_offline_stats_status() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), "pw");
    }
    let mut alice = Raw::login(s.c2s, "alice", "pw", "phone").await;
    alice.send("<presence/>").await;
    alice.settle().await;
    let mut bob = Raw::login(s.c2s, "bob", "pw", "desk").await;

    // account count: straight on storage.
    assert_eq!(run_ok(&s, &["account", "count"]), "localhost 3\n");
    assert_eq!(
        run_ok(&s, &["account", "count", "--host", "localhost"]),
        "3\n"
    );
    run_fails(&s, &["account", "count", "--host", "nothere"], 2);

    // session list / count
    let table = run_ok(&s, &["session", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two sessions: {table}");
    assert!(lines[0].starts_with("JID"), "{table}");
    assert!(lines[1].starts_with("alice@localhost/phone"), "{table}");
    assert!(lines[2].starts_with("bob@localhost/desk"), "{table}");
    let page = run_json(&s, &["session", "list", "--offset", "1", "--limit", "1"]);
    assert_eq!(page["total"], 2, "{page}");
    assert_eq!(page["items"][0]["jid"], "bob@localhost/desk", "{page}");
    let bob_id = page["items"][0]["session_id"].as_u64().expect("an id");
    let f = run_ok(
        &s,
        &[
            "session",
            "list",
            "--filter",
            "ALICE",
            "--host",
            "localhost",
        ],
    );
    assert_eq!(f.lines().count(), 2, "{f}");
    assert_eq!(run_ok(&s, &["session", "count"]), "2\n");
    assert_eq!(run_ok(&s, &["session", "count", "--filter", "bob"]), "1\n");
    assert_eq!(
        run_json(&s, &["session", "count"]),
        serde_json::json!({ "count": 2 })
    );
    let err = run_fails(&s, &["session", "list", "--host", "nothere"], 2);
    assert!(err.contains("not a host of this server"), "{err}");
    run_fails(&s, &["session", "list", "--limit", "10001"], 2);

    // stanza send-message / send (argument and standard input)
    let out = run_ok(
        &s,
        &[
            "stanza",
            "send-message",
            "--from",
            "bob@localhost",
            "--to",
            "alice@localhost/phone",
            "--body",
            "hi from the CLI",
        ],
    );
    assert!(out.starts_with("delivered to 1 session(s)"), "{out}");
    let m = alice
        .take("the CLI's message", |x| {
            x.is_message() && x.body() == Some("hi from the CLI")
        })
        .await;
    assert_eq!((m.from(), m.typ()), ("bob@localhost", "chat"), "{}", m.raw);
    let out = run_ok(
        &s,
        &[
            "stanza",
            "send",
            "<message from='localhost' to='alice@localhost/phone' id='cli-1'><body>raw</body></message>",
        ],
    );
    assert!(out.contains("delivered") && out.contains("cli-1"), "{out}");
    alice
        .take("the raw stanza", |x| x.is_message() && x.id() == "cli-1")
        .await;
    let mut child = Command::new(osprey_bin())
        .arg("--config")
        .arg(&s.config)
        .args(["stanza", "send", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("osprey stanza send -");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"<message from='localhost' to='alice@localhost/phone' id='cli-stdin'><body>piped</body></message>\n")
        .expect("write the stanza");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    alice
        .take("the piped stanza", |x| {
            x.is_message() && x.id() == "cli-stdin"
        })
        .await;
    let err = run_fails(&s, &["stanza", "send", "<message from='bob@localhost'"], 2);
    assert!(err.contains("HTTP 400"), "{err}");
    let err = run_fails(
        &s,
        &[
            "stanza",
            "send-message",
            "--from",
            "mallory@evil.example",
            "--to",
            "alice@localhost",
            "--body",
            "x",
        ],
        2,
    );
    assert!(err.contains("sender"), "{err}");

    // offline count / list / purge
    let out = run_ok(
        &s,
        &[
            "stanza",
            "send-message",
            "--from",
            "alice@localhost",
            "--to",
            "carol@localhost",
            "--body",
            "stored for later",
        ],
    );
    assert!(out.starts_with("stored offline"), "{out}");
    assert_eq!(run_ok(&s, &["offline", "count", "carol@localhost"]), "1\n");
    let list = run_ok(&s, &["offline", "list", "carol@localhost"]);
    assert_eq!(list.lines().count(), 1, "{list}");
    assert!(list.contains("stored for later"), "{list}");
    let page = run_json(
        &s,
        &[
            "offline",
            "list",
            "carol@localhost",
            "--offset",
            "0",
            "--limit",
            "5",
        ],
    );
    assert_eq!(page["total"], 1, "{page}");
    assert_eq!(run_ok(&s, &["offline", "count", "carol@localhost"]), "1\n");
    let out = run_ok(&s, &["offline", "purge", "carol@localhost"]);
    assert!(out.starts_with("purged 1 message"), "{out}");
    assert_eq!(run_ok(&s, &["offline", "count", "carol@localhost"]), "0\n");
    run_fails(&s, &["offline", "count", "carol@elsewhere.org"], 2);

    // roster add / list / remove; the online resource that asked for its
    // roster gets the pushes.
    let r = alice
        .iq(
            "rg",
            "<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>",
        )
        .await;
    assert_eq!(r.typ(), "result", "{}", r.raw);
    let out = run_ok(
        &s,
        &[
            "roster",
            "add",
            "alice@localhost",
            "bob@localhost",
            "--name",
            "Bob",
            "--group",
            "Friends",
            "--group",
            "Work",
            "--subscription",
            "both",
        ],
    );
    assert!(
        out.contains("bob@localhost") && out.contains("both"),
        "{out}"
    );
    let push = alice
        .take("the roster push", |x| {
            x.is_iq() && x.typ() == "set" && x.child("query", "jabber:iq:roster").is_some()
        })
        .await;
    assert!(push.raw.contains("bob@localhost"), "{}", push.raw);
    let list = run_ok(&s, &["roster", "list", "alice@localhost"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("bob@localhost"))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        row.contains("both") && row.contains("Bob") && row.contains("Friends, Work"),
        "{row}"
    );
    let items = run_json(&s, &["roster", "list", "alice@localhost"]);
    assert_eq!(items[0]["groups"], serde_json::json!(["Friends", "Work"]));
    run_fails(
        &s,
        &[
            "roster",
            "add",
            "alice@localhost",
            "bob@localhost",
            "--subscription",
            "sideways",
        ],
        2,
    );
    let out = run_ok(
        &s,
        &["roster", "remove", "alice@localhost", "bob@localhost"],
    );
    assert!(out.starts_with("removed bob@localhost"), "{out}");
    let err = run_fails(
        &s,
        &["roster", "remove", "alice@localhost", "bob@localhost"],
        4,
    );
    assert!(err.contains("not in"), "{err}");
    run_fails(
        &s,
        &["roster", "add", "nobody@localhost", "bob@localhost"],
        4,
    );

    // stats, server status
    let stats = run_ok(&s, &["stats"]);
    let row = stats
        .lines()
        .find(|l| l.starts_with("localhost"))
        .unwrap_or_else(|| panic!("{stats}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cols[..4], ["localhost", "3", "2", "2"], "{stats}");
    // Numbers sit under their right-aligned headings.
    let header = stats.lines().next().unwrap_or_default();
    assert_eq!(row.len(), header.len(), "{stats}");
    let one = run_json(&s, &["stats", "--host", "localhost"]);
    assert_eq!(one[0]["registered_users"], 3, "{one}");
    run_fails(&s, &["stats", "--host", "nothere"], 2);
    let status = run_ok(&s, &["server", "status"]);
    assert!(
        status.contains(env!("CARGO_PKG_VERSION")) && status.contains(&s.c2s.to_string()),
        "{status}"
    );
    let status = run_json(&s, &["server", "status"]);
    assert_eq!(status["sessions"], 2, "{status}");
    // This server has no TLS listener: nothing to reload, and that is fine.
    let reloaded = run_json(&s, &["server", "reload-certificates"]);
    assert_eq!(reloaded, serde_json::json!([]), "{reloaded}");

    // session kick: by full JID with a reason and condition, then by id.
    let err = run_fails(
        &s,
        &[
            "session",
            "kick",
            "alice@localhost/phone",
            "--condition",
            "nope",
        ],
        2,
    );
    assert!(err.contains("stream error condition"), "{err}");
    let out = run_ok(
        &s,
        &[
            "session",
            "kick",
            "alice@localhost/phone",
            "--reason",
            "go home",
            "--condition",
            "policy-violation",
        ],
    );
    assert!(
        out.starts_with("kicked 1 session(s) with policy-violation"),
        "{out}"
    );
    let text = alice.read_to_close().await;
    assert!(
        text.contains("<policy-violation") && text.contains("go home"),
        "{text}"
    );
    let out = run_ok(&s, &["session", "kick", &bob_id.to_string()]);
    assert!(
        out.starts_with("kicked 1 session(s) with undefined-condition"),
        "{out}"
    );
    let text = bob.read_to_close().await;
    assert!(
        text.contains("<kicked xmlns='urn:osprey:admin:0'/>")
            && text.contains(&format!("xmlns='{NS_STREAM_ERRORS}'")),
        "{text}"
    );
    let err = run_fails(&s, &["session", "kick", "alice@localhost"], 4);
    assert!(
        err.contains("no session") && err.contains("HTTP 404"),
        "{err}"
    );
    assert_eq!(run_ok(&s, &["session", "count"]), "0\n");

    // A wrong token, then a server that is gone: exit 1, said plainly.
    let err = run_fails(&s, &["session", "count", "--token", "wrong"], 1);
    assert!(err.contains("401"), "{err}");
    let mut s = s;
    s.terminate();
    let err = run_fails(&s, &["server", "status"], 1);
    assert!(err.contains("cannot reach the admin API"), "{err}");
    // account commands work without the server.
    assert_eq!(run_ok(&s, &["account", "count"]), "localhost 3\n");
}

/// `osprey session list | head -1`: the reader closes the pipe after one
/// line; the CLI ends quietly (SIGPIPE or done), never with a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_cli_session_list_into_a_closed_pipe() {
    let s = Server::start(Options::plaintext(Backend::Sqlite));
    s.register("alice@localhost", "pw");
    // Long resources make the listing larger than a pipe's buffer, so the
    // CLI is still writing when the pipe closes.
    let mut clients = Vec::new();
    for i in 0..80 {
        let resource = format!("{i:03}{}", "r".repeat(1000));
        clients.push(Raw::login(s.c2s, "alice", "pw", &resource).await);
    }
    // As a shell runs it: `head -1` exits after the first line.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' --config '{}' session list | head -1",
            osprey_bin(),
            s.config.display()
        ))
        .output()
        .expect("sh");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("JID"), "{}", stdout(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));

    // And the CLI's own exit status, its pipe closed after a few bytes.
    let mut child = Command::new(osprey_bin())
        .arg("--config")
        .arg(&s.config)
        .args(["session", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("osprey session list");
    let mut pipe = child.stdout.take().expect("stdout");
    let mut first = [0u8; 64];
    let n = pipe.read(&mut first).expect("read");
    assert!(n > 0, "some output first");
    drop(pipe);
    let status = child.wait().expect("wait");
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
        status.signal() == Some(13 /* SIGPIPE on Linux */) || status.success(),
        "{status:?} {err}"
    );
    drop(clients);
}
