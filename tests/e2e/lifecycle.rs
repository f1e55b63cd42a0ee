//! Session lifecycle: resource conflicts, graceful shutdown, first start.

use crate::both_backends;
use crate::harness::{osprey_bin, Backend, Options, Server};
use crate::raw::Raw;

async fn conflict(b: Backend) {
    let s = Server::start(Options::plaintext(b));
    s.register("alice@localhost", "pw");
    let mut first = Raw::login(s.c2s, "alice", "pw", "phone").await;
    let _second = Raw::login(s.c2s, "alice", "pw", "phone").await;
    // The older session is replaced (RFC 6120 §7.7.2.2).
    let out = first.read_to_close().await;
    assert!(
        out.contains("<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
}
both_backends!(resource_conflict_replaces_older_session, conflict);

async fn shutdown(b: Backend) {
    let mut s = Server::start(Options::plaintext(b));
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    // A message to offline bob is accepted before the signal...
    alice
        .send("<message to='bob@localhost' type='chat' id='m1'><body>kept</body></message>")
        .await;
    alice
        .send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice.expect("id='sync'").await;
    let status = s.terminate();
    let out = alice.read_to_close().await;
    assert!(
        out.contains("<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
    assert!(status.success(), "exit status {status}");
    // ...and is still there after a restart on the same storage.
    let out = std::process::Command::new(osprey_bin())
        .arg("--config")
        .arg(&s.config)
        .args(["account", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = s.log();
    assert!(log.contains("stopped"), "{log}");
}
both_backends!(sigterm_sends_system_shutdown_and_exits_zero, shutdown);

#[test]
fn first_start_generates_a_certificate() {
    let s = Server::start(Options::new(Backend::Sqlite));
    let cert = s.data_dir().join("tls").join("cert.pem");
    let pem = std::fs::read_to_string(&cert).expect("generated certificate");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let log = s.log();
    assert!(log.contains("generated a self-signed certificate"), "{log}");
}
