//! Scenarios driven by a real XMPP client library: Debian's
//! `python3-slixmpp` (tests/slixmpp/scenarios.py), on both backends.

use std::process::Command;

use crate::both_backends;
use crate::harness::{Backend, Options, Server};

const PYTHON: &str = "/usr/bin/python3";

fn run(b: Backend, scenario: &str) {
    let probe = Command::new(PYTHON).args(["-c", "import slixmpp"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "slixmpp is required: apt-get install python3-slixmpp ({probe:?})"
    );
    let s = Server::start(Options::new(b));
    for u in ["alice", "bob", "carol"] {
        s.register(&format!("{u}@localhost"), &format!("{u}-pw"));
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/slixmpp/scenarios.py");
    let out = Command::new(PYTHON)
        .arg(script)
        .args(["--scenario", scenario, "--port", &s.c2s.port().to_string()])
        .output()
        .expect("run slixmpp scenario");
    assert!(
        out.status.success(),
        "scenario {scenario} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

macro_rules! scenario {
    ($name:ident) => {
        async fn $name(b: Backend) {
            tokio::task::spawn_blocking(move || run(b, stringify!($name)))
                .await
                .expect("scenario thread");
        }
    };
}

scenario!(login);
scenario!(wrong_password);
scenario!(roster);
scenario!(subscription);
scenario!(presence);
scenario!(messages);
scenario!(offline);
scenario!(disco_ping);
scenario!(errors);

both_backends!(login_scram_sha256_sha1_and_plain_over_tls, login);
both_backends!(wrong_password_fails_then_retry_works, wrong_password);
both_backends!(roster_set_get_and_push, roster);
both_backends!(subscription_flow_reaches_both, subscription);
both_backends!(presence_broadcast_and_unavailable, presence);
both_backends!(messages_full_bare_and_priorities, messages);
both_backends!(offline_messages_in_order_once, offline);
both_backends!(disco_and_ping, disco_ping);
both_backends!(error_replies, errors);
