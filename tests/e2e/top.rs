//! `osprey top` for real: the binary under tmux (Debian's package) against a
//! real gateway, read back with `tmux capture-pane`. Waits poll the screen
//! until what is expected shows up (or a generous deadline passes); nothing
//! asserts on timing.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{free_port, osprey_bin, Backend, Options, Server, TOKEN};
use crate::raw::Raw;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One tmux server of our own (its own socket), so parallel tests and the
/// developer's tmux never meet; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `osprey top ARGS` in a `width`×`height` window. When it exits,
    /// the shell prints its status and whether the terminal is back in
    /// canonical mode (`icanon`) — what "restored" means to the next program.
    fn start(args: &[String], width: u16, height: u16) -> Tmux {
        Tmux::start_with_env(args, width, height, "")
    }

    /// `env` is `NAME=value` for the dashboard's environment (or empty).
    fn start_with_env(args: &[String], width: u16, height: u16, env: &str) -> Tmux {
        let socket = format!(
            "osprey-top-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let script = format!(
            "env {env} '{}' top {}; echo \"top exited: $?\"; stty -a | grep -o -- '-\\?icanon'; exec sleep 600",
            osprey_bin(),
            quoted.join(" ")
        );
        let out = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .args(["sh", "-c", &script])
            .output()
            .expect("tmux is required for the osprey top tests (Debian package tmux)");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"])
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.tmux(&["send-keys", k]);
            // One key per read: the dashboard sees them in order.
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    /// Polls the screen until `ok` holds; panics with the last screen.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("osprey top never showed {what}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn wait_text(&self, text: &str) -> String {
        // Wrapped banners: compare with whitespace collapsed.
        self.wait_for(text, |s| flat(s).contains(text))
    }

    /// `q` (or another quit key) leaves a restored terminal behind.
    fn assert_quits_cleanly(&self, keys: &[&str]) {
        self.keys(keys);
        let s = self.wait_for("its exit", |s| s.contains("top exited:"));
        assert!(s.contains("top exited: 0"), "{s}");
        assert!(
            s.lines().any(|l| l.trim() == "icanon"),
            "terminal left in raw mode:\n{s}"
        );
        // The alternate screen is gone: the dashboard is no longer shown.
        assert!(!s.contains("1 Overview"), "{s}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn top_args(server: &Server, token: &str) -> Vec<String> {
    vec![
        "--url".into(),
        format!("http://{}", server.http),
        "--token".into(),
        token.into(),
    ]
}

/// The message rate the Overview shows (inbound), if any.
fn message_rate(screen: &str) -> Option<f64> {
    let line = screen.lines().find(|l| l.starts_with("│message"))?;
    let before = line.split("/s ▸").next()?;
    before.split_whitespace().last()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_a_live_gateway_lists_and_kicks_sessions() {
    let server = Server::start(Options::plaintext(Backend::Sqlite));
    server.register("alice@localhost", "pw");
    server.register("bob@localhost", "pw");
    let tmux = Tmux::start(&top_args(&server, TOKEN), 120, 40);
    tmux.wait_text("● live");

    let mut alice = Raw::login(server.c2s, "alice", "pw", "a").await;
    let bob = Raw::login(server.c2s, "bob", "pw", "b").await;
    // alice talks to bob, ~20 messages a second, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                alice
                    .send(&format!(
                        "<message to='bob@localhost/b' type='chat' id='m{i}'><body>hi</body></message>"
                    ))
                    .await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            alice
        })
    };

    let screen = tokio::task::block_in_place(|| {
        tmux.wait_for("2 sessions and a message rate", |s| {
            s.contains("2 sessions") && message_rate(s).is_some_and(|r| r > 0.0)
        })
    });
    assert!(screen.contains("Connections"), "{screen}");
    stop.store(true, Ordering::Relaxed);
    let mut alice = sender.await.expect("sender");

    tokio::task::block_in_place(|| {
        tmux.keys(&["2"]);
        let s = tmux.wait_for("both JIDs in Sessions", |s| {
            s.contains("alice@localhost") && s.contains("bob@localhost")
        });
        assert!(s.contains("Sessions: 2 shown of 2"), "{s}");
        // Select alice with the filter and kick her.
        tmux.keys(&["/", "a", "l", "i", "c", "e", "Enter", "k"]);
        tmux.wait_text("Kick alice@localhost/a? y = yes");
        tmux.keys(&["y"]);
        tmux.wait_text("kicked alice@localhost/a");
    });
    let closed = alice.read_to_close().await;
    assert!(closed.contains("</stream:stream>"), "{closed}");
    let list = crate::http::get(server.http, "/api/sessions", Some(TOKEN)).await;
    assert!(!list.body.contains("alice@localhost"), "{}", list.body);
    assert!(list.body.contains("bob@localhost"), "{}", list.body);

    tokio::task::block_in_place(|| {
        // The Sessions view follows: alice is gone from the table.
        tmux.keys(&["Escape"]);
        tmux.keys(&["/", "Escape"]);
        tmux.wait_text("Sessions: 1 shown of 1");
        tmux.assert_quits_cleanly(&["q"]);
    });
    // bob stays connected until here: the last view lists him alone.
    drop(bob);
}

#[test]
fn top_traces_the_selected_session() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = Server::start(Options::plaintext(Backend::Sqlite));
    server.register("carol@localhost", "pw");
    let mut carol = rt.block_on(Raw::login(server.c2s, "carol", "pw", "c"));
    let tmux = Tmux::start(&top_args(&server, TOKEN), 120, 40);
    tmux.wait_text("● live");
    tmux.keys(&["2"]);
    tmux.wait_text("carol@localhost");
    tmux.keys(&["t"]);
    tmux.wait_text("Trace 1 of carol@localhost/c · running");
    rt.block_on(carol.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>"));
    rt.block_on(carol.expect("id='r1'"));
    let s = tmux.wait_for("the roster iq in the trace", |s| {
        s.lines().any(|l| l.contains(" in ") && l.contains("iq"))
    });
    assert!(s.contains("c2s:"), "{s}");
    tmux.keys(&["x"]);
    tmux.wait_text("stopped:");
    tmux.assert_quits_cleanly(&["q"]);
}

#[test]
fn top_says_when_the_gateway_is_unreachable_and_quits_on_ctrl_c() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let tmux = Tmux::start(
        &["--url".into(), url.clone(), "--token".into(), "t".into()],
        120,
        40,
    );
    tmux.wait_text(&format!("gateway unreachable at {url}"));
    let s = tmux.wait_text("retrying in");
    assert!(s.contains("✖ down"), "{s}");
    tmux.assert_quits_cleanly(&["C-c"]);
}

#[test]
fn top_says_when_the_token_is_wrong() {
    let server = Server::start(Options::plaintext(Backend::Sqlite));
    let tmux = Tmux::start(&top_args(&server, "not-the-token"), 120, 40);
    tmux.wait_text("refused the token (HTTP 401)");
    tmux.assert_quits_cleanly(&["q"]);
}

/// A gateway whose admin API also listens on a port we choose, so a second
/// gateway can take over the same URL.
fn gateway_on(port: u16) -> Server {
    Server::start(Options {
        extra: format!("[[listen.http]]\naddress = \"127.0.0.1\"\nport = {port}\n"),
        ..Options::plaintext(Backend::Sqlite)
    })
}

#[test]
fn top_survives_the_gateway_going_away_and_reconnects() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = gateway_on(port);
    let tmux = Tmux::start(
        &["--url".into(), url.clone(), "--token".into(), TOKEN.into()],
        120,
        40,
    );
    tmux.wait_text("● live");
    server.terminate();
    let s = tmux.wait_text(&format!("gateway unreachable at {url}"));
    // The last data stays on screen under the banner.
    assert!(s.contains("Connections"), "{s}");
    // A new gateway on the same address: the banner goes, data flows again.
    let _again = gateway_on(port);
    let s = tmux.wait_for("the reconnect", |s| {
        s.contains("● live") && !s.contains("unreachable")
    });
    assert!(s.contains("up "), "{s}");
    tmux.assert_quits_cleanly(&["q"]);
}

#[test]
fn top_restores_the_terminal_when_it_panics() {
    let server = Server::start(Options::plaintext(Backend::Sqlite));
    let mut args = vec!["--url".into(), format!("http://{}", server.http)];
    args.extend(["--token".into(), TOKEN.into()]);
    let tmux = Tmux::start_with_env(&args, 120, 40, "RUST_BACKTRACE=0 OSPREY_TOP_TEST_PANIC=1");
    let s = tmux.wait_for("its exit", |s| s.contains("top exited:"));
    assert!(s.contains("top exited: 101"), "{s}");
    assert!(
        s.contains("OSPREY_TOP_TEST_PANIC"),
        "the panic message is shown:\n{s}"
    );
    assert!(
        s.lines().any(|l| l.trim() == "icanon"),
        "terminal left in raw mode:\n{s}"
    );
}

#[test]
fn top_in_a_tiny_terminal_says_so_then_recovers() {
    let server = Server::start(Options::plaintext(Backend::Sqlite));
    let tmux = Tmux::start(&top_args(&server, TOKEN), 40, 10);
    let s = tmux.wait_text("Terminal too small: 40×10");
    assert!(!s.contains('┌'), "{s}");
    tmux.tmux(&["resize-window", "-x", "120", "-y", "40"]);
    tmux.wait_text("1 Overview");
    tmux.assert_quits_cleanly(&["q"]);
}

#[test]
fn top_rejects_a_bad_url_before_touching_the_terminal() {
    let out = Command::new(osprey_bin())
        .args(["top", "--url", "https://127.0.0.1:1", "--token", "t"])
        .output()
        .expect("run osprey top");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scheme https not supported"), "{err}");
    // Without a terminal (output captured here) it says so and exits.
    let out = Command::new(osprey_bin())
        .args(["top", "--url", "http://127.0.0.1:1", "--token", "t"])
        .output()
        .expect("run osprey top");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("osprey top needs a terminal"), "{err}");
}

#[test]
fn top_finds_the_local_gateway_from_its_config() {
    let server = Server::start(Options::plaintext(Backend::Sqlite));
    // No --url, no --token: the listener file and [admin] token give them.
    let args = vec!["--config".into(), server.config.display().to_string()];
    let tmux = Tmux::start(&args, 120, 40);
    let s = tmux.wait_text("● live");
    assert!(s.contains(&format!("http://{}", server.http)), "{s}");
    tmux.assert_quits_cleanly(&["q"]);
}

/// The trace list comes from the gateway: a second dashboard lists the
/// traces the first one and `osprey trace start` started, follows one
/// (the records it already has, then live), and sees it stop when the
/// first dashboard stops it.
#[test]
fn top_lists_traces_started_elsewhere_and_follows_them() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = Server::start(Options::plaintext(Backend::Sqlite));
    server.register("carol@localhost", "pw");
    let mut carol = rt.block_on(Raw::login(server.c2s, "carol", "pw", "c"));
    // The first dashboard traces carol's session (trace 1).
    let first = Tmux::start(&top_args(&server, TOKEN), 120, 40);
    first.wait_text("● live");
    first.keys(&["2"]);
    first.wait_text("carol@localhost");
    first.keys(&["t"]);
    first.wait_text("Trace 1 of carol@localhost/c · running");
    // The CLI starts another (trace 2).
    let out = server.cli(&[
        "trace",
        "start",
        "--jid",
        "dave@localhost",
        "--duration",
        "600s",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("trace 2 started"), "{stdout}");
    // carol works before the second dashboard looks: it must get these
    // records from the gateway, not from a stream it was not on.
    rt.block_on(carol.send("<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>"));
    rt.block_on(carol.expect("id='r1'"));

    // The second dashboard, at 80×24, lists both: the newest first.
    let second = Tmux::start(&top_args(&server, TOKEN), 80, 24);
    second.wait_text("● live");
    second.keys(&["4"]);
    let s = second.wait_text("Traces on the gateway: 2 running of 2");
    let at = |who: &str| s.find(who).unwrap_or(usize::MAX);
    assert!(at("dave@localhost") < at("session "), "{s}");
    // Follow trace 1 (the second row): carol's iq is there.
    second.keys(&["Down", "Enter"]);
    second.wait_text("Trace 1 of session ");
    second.wait_for("carol's iq in the followed trace", |s| {
        s.lines().any(|l| l.contains(" in ") && l.contains("iq"))
    });
    // New records arrive live.
    rt.block_on(carol.send("<iq type='get' id='r2'><ping xmlns='urn:xmpp:ping'/></iq>"));
    rt.block_on(carol.expect("id='r2'"));
    second.wait_for("the ping in the followed trace", |s| {
        s.lines()
            .filter(|l| l.contains(" in ") && l.contains("iq"))
            .count()
            >= 2
    });
    // The first dashboard stops it; the second sees it stop.
    first.keys(&["x"]);
    first.wait_text("stopped:");
    second.wait_text("stopped:");
    // Back in the list: 1 running of 2.
    second.keys(&["l"]);
    second.wait_text("1 running of 2");
    second.assert_quits_cleanly(&["q"]);
    first.assert_quits_cleanly(&["q"]);
}

/// The Events view shows the levels as configured (`[instrumentation.log]
/// events` overrides) and marks what the current level does not log; the
/// admin API says the same.
#[test]
fn top_shows_configured_event_levels() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = Server::start(Options {
        log: "level = \"info\"\nevents = { c2s_auth = \"debug\", c2s_session_open = \"warn\" }"
            .into(),
        env: vec![("RUST_LOG".into(), String::new())],
        ..Options::plaintext(Backend::Sqlite)
    });
    let body = rt
        .block_on(crate::http::get(server.http, "/api/events", Some(TOKEN)))
        .body;
    let events: Vec<serde_json::Value> = serde_json::from_str(&body).expect("events JSON");
    let event = |name: &str| {
        events
            .iter()
            .find(|e| e["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    };
    let auth = event("c2s_auth");
    assert_eq!(auth["level"], "debug", "{auth}");
    assert_eq!(auth["default_level"], "info", "{auth}");
    assert_eq!(auth["overridden"], true, "{auth}");
    assert_eq!(auth["logged"], false, "{auth}");
    let open = event("c2s_session_open");
    assert_eq!(
        (&open["level"], &open["logged"]),
        (&"warn".into(), &true.into()),
        "{open}"
    );
    let close = event("c2s_session_close");
    assert_eq!(close["overridden"], false, "{close}");
    let log = rt.block_on(crate::http::get(server.http, "/api/log", Some(TOKEN)));
    assert!(log.body.contains("\"handler\":true"), "{}", log.body);

    let tmux = Tmux::start(&top_args(&server, TOKEN), 120, 40);
    tmux.wait_text("● live");
    tmux.keys(&["3"]);
    let row = |s: &str, name: &str| {
        s.lines()
            .find(|l| l.contains(&format!("│{name} ")))
            .unwrap_or_default()
            .to_string()
    };
    // The whole table, not a frame caught while the view switches.
    let s = tmux.wait_for("the events table with c2s_auth", |s| {
        flat(s).contains("logging up to info") && !row(s, "c2s_auth").is_empty()
    });
    assert!(row(&s, "c2s_auth").contains("debug* ✗"), "{s}");
    assert!(row(&s, "c2s_session_open").contains("warn*"), "{s}");
    assert!(!row(&s, "c2s_session_open").contains('✗'), "{s}");
    // Raised at run time, the level logs c2s_auth: the view follows.
    let out = server.cli(&["log", "level", "debug"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = tmux.wait_text("logging up to debug");
    assert!(row(&s, "c2s_auth").contains("debug*"), "{s}");
    assert!(!row(&s, "c2s_auth").contains('✗'), "{s}");
    tmux.assert_quits_cleanly(&["q"]);
}

/// In a cluster, the Sessions panel has a line of its own: nodes alive,
/// sessions elsewhere, the NATS link, stanzas between nodes; and a Cluster
/// panel has a row per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_the_cluster_line() {
    let nats = crate::harness::Nats::start();
    let db = crate::harness::SharedDb::new();
    let (n1, _n2, _alice, _bob) = crate::cluster::two_nodes(&nats, &db).await;
    let tmux = Tmux::start(&top_args(&n1, TOKEN), 120, 40);
    tmux.wait_text("cluster 2 nodes");
    let screen = tmux.wait_text("NATS up");
    assert!(flat(&screen).contains("1 elsewhere"), "{screen}");
    // The Cluster panel (from /api/cluster): a row per node, n1 marked as
    // the node followed, each up with its own session.
    tmux.wait_text("Cluster");
    tmux.wait_text("* n1 up 1");
    let screen = tmux.wait_text("n2 up 1");
    assert!(flat(&screen).contains("2/2 up"), "{screen}");
}
