//! Scenarios driven by a real XMPP client library: Debian's
//! `python3-slixmpp` running `tests/slixmpp/scenarios.py`, each against its
//! own server, on both backends.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::harness::{Backend, Options, Server};

/// Debian's interpreter, where `python3-slixmpp` is installed (the `python3`
/// on PATH may be another one).
const PYTHON: &str = "/usr/bin/python3";

/// Non-ASCII and a space: the password crosses the CLI, storage and SCRAM's
/// SASLprep/UTF-8 handling.
const PASSWORD: &str = "pässwörd e2e-1";

/// Backstop above the script's own 30 s limit, for a client that hangs
/// outside its event loop.
const DEADLINE: Duration = Duration::from_secs(60);

fn require_slixmpp() {
    let probe = Command::new(PYTHON).args(["-c", "import slixmpp"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "slixmpp is required for these tests: apt-get install python3-slixmpp \
         (for {PYTHON}); probe: {probe:?}"
    );
}

/// Starts a server, registers `users`@localhost and runs one scenario;
/// fails with the client's output (and the server log) unless it exits 0.
fn run(backend: Backend, scenario: &str, users: &[&str]) {
    run_with(Options::new(backend), scenario, users)
}

/// [`run`] against a server started with `opts` (e.g. module sections).
pub(crate) fn run_with(opts: Options, scenario: &str, users: &[&str]) {
    require_slixmpp();
    let server = Server::start(opts);
    let jids: Vec<String> = users.iter().map(|u| format!("{u}@localhost")).collect();
    for jid in &jids {
        server.register(jid, PASSWORD);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/slixmpp/scenarios.py");
    let mut child = Command::new(PYTHON)
        .arg(script)
        .args(["--scenario", scenario])
        .args(["--port", &server.c2s.port().to_string()])
        .args(["--password", PASSWORD])
        .arg("--jids")
        .args(&jids)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the slixmpp scenario");
    // Read both pipes on threads so a chatty client cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the scenario") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "slixmpp scenario {scenario} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        status.map_or(format!("killed after {DEADLINE:?}"), |s| s.to_string()),
    );
    assert!(
        stdout.contains(&format!("ok {scenario}")),
        "no success line: {stdout}"
    );
}

/// Reads a child's pipe to the end on its own thread.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut text);
        }
        text
    })
}

/// Declares an async test body that runs `scenario` with these accounts.
macro_rules! scenario {
    ($name:ident, [$($user:literal),+]) => {
        async fn $name(b: Backend) {
            tokio::task::spawn_blocking(move || run(b, stringify!($name), &[$($user),+]))
                .await
                // Re-raise the scenario's own panic rather than wrapping its message again.
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        }
    };
}

scenario!(login, ["alice"]);
scenario!(wrong_password, ["alice"]);
scenario!(roster, ["alice", "bob"]);
scenario!(subscription, ["alice", "bob"]);
scenario!(presence, ["alice", "bob", "carol"]);
scenario!(messages, ["alice", "bob"]);
scenario!(offline, ["alice", "bob"]);
scenario!(disco_ping, ["alice"]);
scenario!(errors, ["alice", "bob"]);

both_backends!(login_scram_sha256_sha1_and_plain_over_tls, login);
both_backends!(wrong_password_fails_then_retry_works, wrong_password);
both_backends!(roster_set_get_push_update_remove, roster);
both_backends!(subscription_flow_reaches_both, subscription);
both_backends!(presence_broadcast_probe_and_unavailable, presence);
both_backends!(messages_full_bare_priorities, messages);
both_backends!(offline_messages_in_order_once, offline);
both_backends!(disco_and_ping, disco_ping);
both_backends!(error_replies, errors);
