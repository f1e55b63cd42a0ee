//! The process log as an operator reads it: the configured level applies
//! without `RUST_LOG` and changes at run time (admin API through the CLI);
//! login failures, session closes and stream errors say who, from where
//! and why; JSON lines carry objects; no colour codes in a file.

use std::time::Duration;

use crate::harness::{Backend, Options, Server, TOKEN};
use crate::http::{get, send_json};
use crate::raw::Raw;

/// A plaintext server logging at `log` (TOML lines of
/// `[instrumentation.log]`), with `RUST_LOG` unset.
fn server(log: &str) -> Server {
    let s = Server::start(Options {
        log: log.into(),
        env: vec![("RUST_LOG".into(), String::new())],
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", "alice-pw");
    s
}

/// The log's lines from byte `from` on that mention `needle`.
fn lines_with(s: &Server, from: usize, needle: &str) -> Vec<String> {
    s.log()[from..]
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Waits until a line with every one of `needles` appears after `from`.
async fn wait_line(s: &Server, from: usize, needles: &[&str]) -> String {
    for _ in 0..200 {
        let log = s.log();
        if let Some(l) = log[from.min(log.len())..]
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
        {
            return l.to_string();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no log line with {needles:?}:\n{}", s.log());
}

/// A roster get: one `module_handler` event (a debug-level event).
async fn roster_get(c: &mut Raw, id: &str) {
    c.send(&format!(
        "<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>"
    ))
    .await;
    c.expect(&format!("id='{id}'")).await;
}

#[tokio::test]
async fn configured_level_applies_without_rust_log_and_changes_at_run_time() {
    let s = server("level = \"debug\"");
    let mut c = Raw::login(s.c2s, "alice", "alice-pw", "r").await;
    roster_get(&mut c, "g1").await;
    wait_line(&s, 0, &["module_handler", "module=roster", "operation=get"]).await;

    let out = s.cli(&["log", "level", "info"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("log level: info (was debug)"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mark = s.log().len();
    roster_get(&mut c, "g2").await;
    // A later info event proves the log is flowing; the debug one is gone.
    c.send("</stream:stream>").await;
    wait_line(&s, mark, &["c2s_session_close"]).await;
    assert!(
        lines_with(&s, mark, "module_handler").is_empty(),
        "debug events after the change to info:\n{}",
        &s.log()[mark..]
    );
    let out = s.cli(&["log", "level"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("log level: info"));
    let out = s.cli(&["log", "level", "loud"]);
    assert_eq!(out.status.code(), Some(2), "a bad level is bad input");
    assert!(
        !s.log().contains('\u{1b}'),
        "colour codes in a log file:\n{}",
        s.log()
    );
}

#[tokio::test]
async fn lines_say_who_from_where_and_why() {
    let s = server("level = \"info\"");
    // A wrong password: the line names the user and the address.
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode("\0mallory\0wrong");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
    ))
    .await;
    c.expect("<failure").await;
    let line = wait_line(&s, 0, &["c2s_auth", "outcome=failure"]).await;
    assert!(
        line.contains("user=mallory") && line.contains("address=127.0.0.1:"),
        "{line}"
    );
    drop(c);

    // A session's close: JID, reason and duration.
    let mut a = Raw::login(s.c2s, "alice", "alice-pw", "desk").await;
    a.send("</stream:stream>").await;
    let line = wait_line(&s, 0, &["c2s_session_close", "alice@localhost/desk"]).await;
    assert!(
        line.contains("reason=")
            && line.contains("duration_seconds=")
            && line.contains("address=127.0.0.1:"),
        "{line}"
    );

    // A stream error: its condition and the text sent to the client.
    let mut b = Raw::login(s.c2s, "alice", "alice-pw", "phone").await;
    b.send("<message><body>a & b</body></message>").await;
    b.read_to_close().await;
    let line = wait_line(&s, 0, &["xmpp_stream_error", "not-well-formed"]).await;
    assert!(line.contains("text="), "{line}");
}

#[tokio::test]
async fn json_lines_carry_objects() {
    let s = server("level = \"info\"\nformat = \"json\"");
    let mut a = Raw::login(s.c2s, "alice", "alice-pw", "desk").await;
    a.send("</stream:stream>").await;
    let line = wait_line(&s, 0, &["\"c2s_session_close\""]).await;
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(v["event"], "c2s_session_close", "{line}");
    assert!(v["labels"]["reason"].is_string(), "{line}");
    assert!(v["measurements"]["duration_seconds"].is_number(), "{line}");
    assert_eq!(v["meta"]["jid"], "alice@localhost/desk", "{line}");
    assert_eq!(v["level"], "INFO", "{line}");
    // The process's own lines are JSON too.
    let own = s
        .log()
        .lines()
        .find(|l| l.contains("serving"))
        .map(str::to_string)
        .expect("the serving line");
    let v: serde_json::Value = serde_json::from_str(&own).expect("a JSON line");
    assert_eq!(v["level"], "INFO", "{own}");
}

#[tokio::test]
async fn the_level_api_refuses_what_it_cannot_take() {
    let s = server("level = \"info\"");
    let put = |body: &'static str, token: Option<&'static str>| {
        send_json(s.http, "PUT", "/api/log", token, body)
    };
    assert_eq!(put(r#"{"level":"debug"}"#, None).await.status, 401);
    for bad in [r#"{"level":"loud"}"#, r#"{"lvl":"debug"}"#, "not json"] {
        let r = put(bad, Some(TOKEN)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(r.body.contains("error"), "{}", r.body);
    }
    let big: &'static str =
        Box::leak(format!(r#"{{"level":"{}"}}"#, "x".repeat(600 * 1024)).into_boxed_str());
    let r = put(big, Some(TOKEN)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("524288 bytes"), "{}", r.body);
    // Nothing above changed the level; a good request does, and says so.
    assert!(get(s.http, "/api/log", Some(TOKEN))
        .await
        .body
        .contains("\"info\""));
    let r = put(r#"{"level":"warn"}"#, Some(TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"previous\":\"info\""), "{}", r.body);
    assert!(get(s.http, "/api/log", Some(TOKEN))
        .await
        .body
        .contains("\"warn\""));
    wait_line(&s, 0, &["log level changed through the admin API"]).await;
}
