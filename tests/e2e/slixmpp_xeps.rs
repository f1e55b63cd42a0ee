//! slixmpp scenarios for the XEP modules (stream management, carbons,
//! blocking): `tests/slixmpp/scenarios.py` as in `slixmpp.rs`, against a
//! server with those modules configured, on both backends.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::both_backends;
use crate::harness::{Backend, Options, Server};

/// Debian's interpreter, where `python3-slixmpp` is installed.
const PYTHON: &str = "/usr/bin/python3";
const PASSWORD: &str = "pässwörd e2e-2";
/// Backstop above the script's own 30 s limit.
const DEADLINE: Duration = Duration::from_secs(60);

/// Every module the scenarios use.
const MODULES: &str = "[modules.stream_management]\n\
                       [modules.carbons]\n\
                       [modules.blocking]\n";

/// Starts a server with [`MODULES`], registers `users`@localhost and runs
/// one scenario; fails with the client's output unless it exits 0.
fn run(backend: Backend, scenario: &str, users: &[&str]) {
    let probe = Command::new(PYTHON).args(["-c", "import slixmpp"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "slixmpp is required for these tests: apt-get install python3-slixmpp; probe: {probe:?}"
    );
    let server = Server::start(Options {
        extra: MODULES.into(),
        ..Options::new(backend)
    });
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

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut text);
        }
        text
    })
}

macro_rules! scenario {
    ($name:ident, [$($user:literal),+]) => {
        async fn $name(b: Backend) {
            tokio::task::spawn_blocking(move || run(b, stringify!($name), &[$($user),+]))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        }
    };
}

scenario!(sm_resume, ["alice", "bob"]);
scenario!(carbons, ["alice", "bob"]);
scenario!(blocking, ["alice", "bob"]);

both_backends!(
    slixmpp_sm_resume_after_abort_delivers_each_message_once,
    sm_resume
);
both_backends!(slixmpp_carbons_received_sent_and_disable, carbons);
both_backends!(slixmpp_blocking_block_refuse_unblock, blocking);
