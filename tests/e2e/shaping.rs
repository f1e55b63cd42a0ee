//! Traffic shaping: a session over its shaper or stanza rate is slowed
//! down (its socket is not read for a while), never cut off and never
//! loses a stanza; each pause is a `limit_hit` the operator sees.

use std::time::{Duration, Instant};

use crate::harness::{Backend, Options, Server};
use crate::raw::Raw;

fn limit_hits(metrics: &str, limit: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("limit_hit_total{{limit=\"{limit}\"}} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn metrics(s: &Server) -> String {
    crate::http::get(s.http, "/metrics", None).await.body
}

/// Sends `n` messages of `body_len` bytes from alice to bob in one write;
/// returns how long until bob had them all.
async fn blast(s: &Server, n: usize, body_len: usize) -> Duration {
    let mut bob = Raw::login(s.c2s, "bob", "pw", "b").await;
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    let body = "x".repeat(body_len);
    let all: String = (0..n)
        .map(|i| {
            format!(
                "<message to='bob@localhost/b' type='chat' id='s{i}'><body>{body}</body></message>"
            )
        })
        .collect();
    let t = Instant::now();
    alice.send(&all).await;
    for i in 0..n {
        bob.expect(&format!("id='s{i}'")).await;
    }
    let took = t.elapsed();
    // Still connected and answering.
    alice
        .send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice.expect("id='p'").await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_shaper_delays_reading_and_loses_nothing() {
    let s = Server::start(Options {
        c2s_extra: "shaper = \"slow\"\nmax_stanza_rate = 0\nmax_stanza_size = 4096\nmax_stanza_size_pre_auth = 4096".into(),
        extra: "[shaper.slow]\nmax_rate = 8000\nburst = 4096\n".into(),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    // 40 × ~1 KB = ~40 KB at 8 kB/s after a 4 KB burst: at least ~4 s.
    let took = blast(&s, 40, 900).await;
    eprintln!("40 KB through an 8 kB/s shaper: {took:?}");
    assert!(took >= Duration::from_secs(3), "not shaped: {took:?}");
    assert!(limit_hits(&metrics(&s).await, "shaper") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stanza_rate_delays_reading_and_loses_nothing() {
    let s = Server::start(Options {
        c2s_extra: "shaper = \"none\"\nmax_stanza_rate = 20".into(),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    // A burst of 40 passes, then 20 a second: 100 take at least ~3 s.
    let took = blast(&s, 100, 10).await;
    eprintln!("100 stanzas at 20/s (burst 40): {took:?}");
    assert!(took >= Duration::from_millis(2500), "not limited: {took:?}");
    assert!(limit_hits(&metrics(&s).await, "stanza_rate") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_can_override_the_listener_shaper() {
    let s = Server::start(Options {
        c2s_extra: "shaper = \"slow\"\nmax_stanza_rate = 20".into(),
        extra: "[shaper.slow]\nmax_rate = 1000\n\n[[host_config]]\nhost = \"localhost\"\nshaper = \"none\"\nmax_stanza_rate = 0\n".into(),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    let took = blast(&s, 200, 200).await;
    eprintln!("200 stanzas, 40 KB, host without shaping: {took:?}");
    let m = metrics(&s).await;
    assert_eq!(limit_hits(&m, "shaper"), 0.0);
    assert_eq!(limit_hits(&m, "stanza_rate"), 0.0);
}
