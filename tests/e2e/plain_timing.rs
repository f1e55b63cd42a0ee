//! PLAIN does not tell which accounts exist: a login to an unknown account
//! takes as long as a wrong password for a known one (both derive the
//! password's keys; the unknown one against fake stored keys).

use std::time::{Duration, Instant};

use base64::Engine;

use crate::harness::{Backend, Options, Server};
use crate::raw::Raw;

/// One failed PLAIN attempt on a fresh stream: the time from `<auth/>` to
/// `<failure/>`.
async fn attempt(s: &Server, user: &str, password: &str) -> Duration {
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    let auth =
        format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>");
    let t0 = Instant::now();
    c.send(&auth).await;
    let reply = c.expect("</failure>").await;
    let took = t0.elapsed();
    assert!(reply.contains("<not-authorized/>"), "{reply}");
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_account_fails_as_slowly_as_a_wrong_password() {
    let s = Server::start(Options {
        // No throttling delays: they would swamp what is measured.
        extra: "[auth.throttle.address]\nafter_failures = 1000\n\
                [auth.throttle.account]\nafter_failures = 1000\n"
            .into(),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", "alice-pw");
    for _ in 0..3 {
        attempt(&s, "alice", "wrong").await;
        attempt(&s, "nobody", "wrong").await;
    }
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    // Interleaved, so that any drift hits both alike.
    for _ in 0..30 {
        known.push(attempt(&s, "alice", "wrong").await);
        unknown.push(attempt(&s, "nobody", "wrong").await);
    }
    let (k, u) = (median(known), median(unknown));
    let ratio = u.as_secs_f64() / k.as_secs_f64();
    eprintln!(
        "PLAIN failure, median of 30: known account {k:?}, unknown account {u:?}, ratio {ratio:.2}"
    );
    assert!(
        (0.5..=2.0).contains(&ratio),
        "an unknown account fails in {u:?}, a wrong password in {k:?} (ratio {ratio:.2})"
    );
}
