//! Login throttling hurts attackers, not users: an attacker guessing at one
//! account is held back, while another account logging in correctly from
//! the same address right after is not; a client falling back through the
//! mechanisms with one wrong password fails once, not once per mechanism; a
//! success clears the address. Counts are read from /metrics.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::harness::{Backend, Options, Server};
use crate::http::get;
use crate::raw::Raw;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

fn server(throttle: &str) -> Server {
    let s = Server::start(Options {
        extra: throttle.into(),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", "alice-pw");
    s.register("bob@localhost", "bob-pw");
    s
}

/// The sum of the series of `name` whose labels include all of `labels`.
async fn metric(s: &Server, name: &str, labels: &[(&str, &str)]) -> f64 {
    let body = get(s.http, "/metrics", None).await.body;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// A PLAIN attempt on an open stream: the time from `<auth/>` to the answer,
/// and whether it succeeded.
async fn plain(c: &mut Raw, user: &str, password: &str) -> (Duration, bool) {
    let token = B64.encode(format!("\0{user}\0{password}"));
    let t0 = Instant::now();
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>"
    ))
    .await;
    let reply = c.expect("/>").await;
    let took = t0.elapsed();
    if reply.contains("<success") {
        return (took, true);
    }
    assert!(reply.contains("<failure"), "{reply}");
    c.expect("</failure>").await;
    (took, false)
}

/// A wrong-password PLAIN attempt on a fresh stream; returns its time.
async fn wrong_plain(s: &Server, user: &str) -> Duration {
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    let (took, ok) = plain(&mut c, user, "wrong").await;
    assert!(!ok);
    took
}

/// A correct PLAIN login on a fresh stream, up to `<success/>`; returns its time.
async fn good_plain(s: &Server, user: &str, password: &str) -> Duration {
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    let (took, ok) = plain(&mut c, user, password).await;
    assert!(ok, "{user} must get in");
    took
}

/// A SCRAM exchange with a wrong proof, as a client with a wrong password
/// sends it.
async fn wrong_scram(c: &mut Raw, mechanism: &str, user: &str, proof_len: usize) {
    let first = format!("n,,n={user},r=clientnonce");
    c.send(&format!(
        "<auth xmlns='{SASL}' mechanism='{mechanism}'>{}</auth>",
        B64.encode(&first)
    ))
    .await;
    let challenge = c.expect("</challenge>").await;
    let data = challenge
        .rsplit_once("</challenge>")
        .and_then(|(head, _)| head.rsplit_once('>'))
        .map(|(_, b64)| b64)
        .expect("challenge data");
    let server_first = String::from_utf8(B64.decode(data).unwrap()).unwrap();
    let nonce = server_first
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .expect("nonce");
    let last = format!("c=biws,r={nonce},p={}", B64.encode(vec![0u8; proof_len]));
    c.send(&format!(
        "<response xmlns='{SASL}'>{}</response>",
        B64.encode(last)
    ))
    .await;
    let reply = c.expect("</failure>").await;
    assert!(reply.contains("<not-authorized/>"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_is_slowed_and_a_bystander_on_the_same_address_is_not() {
    // The account throttle with a 1 s delay from the third failure; the
    // address keeps its defaults (10 failures), which 5 guesses do not reach.
    let s = server("[auth.throttle.account]\nafter_failures = 2\nfirst_delay = 1\nmax_delay = 1\n");
    let delay = Duration::from_secs(1);
    let mut attacker = Vec::new();
    for _ in 0..5 {
        attacker.push(wrong_plain(&s, "alice").await);
    }
    let bystander = good_plain(&s, "bob", "bob-pw").await;
    let slowed = attacker[2..].iter().min().copied().unwrap();
    eprintln!("attacker attempts: {attacker:?}; bystander login: {bystander:?}");
    assert!(
        slowed >= delay,
        "the attacker's later attempts are held at least {delay:?}: {attacker:?}"
    );
    assert!(
        bystander < slowed,
        "the bystander ({bystander:?}) is not held like the attacker ({slowed:?})"
    );
    // The bystander's own later logins are not held either.
    assert!(good_plain(&s, "bob", "bob-pw").await < slowed);

    let throttled = |scope: &'static str| {
        let s = &s;
        async move { metric(s, "c2s_login_throttled_total", &[("scope", scope)]).await }
    };
    assert_eq!(throttled("account").await, 3.0);
    assert_eq!(throttled("address").await, 0.0);
    assert_eq!(
        metric(&s, "limit_hit_total", &[("limit", "auth_attempts")]).await,
        3.0,
        "each throttled attempt is a limit hit"
    );
    // The 3 s held are not in c2s_auth_seconds (7 logins, each far quicker
    // than a delay: with the delays in, the sum would be over 3 s).
    let held = metric(&s, "c2s_login_throttled_seconds_sum", &[]).await;
    let auth = metric(&s, "c2s_auth_seconds_sum", &[]).await;
    assert_eq!(held, 3.0);
    assert!(auth < held, "c2s_auth_seconds_sum {auth} includes delays");
    // The log says what was throttled: the account, by its JID.
    let log = s.log();
    assert!(
        log.contains("login throttled (account alice@localhost)"),
        "{log}"
    );
    // alice's own correct login is held (her account is throttled), and
    // clears her account.
    assert!(good_plain(&s, "alice", "alice-pw").await >= delay);
    assert!(good_plain(&s, "alice", "alice-pw").await < delay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_mechanisms_failing_on_one_stream_count_once() {
    let s = server("[auth.throttle.account]\nafter_failures = 2\nfirst_delay = 0.2\n");
    let throttled = || metric(&s, "c2s_login_throttled_total", &[]);
    let failures = || {
        metric(
            &s,
            "c2s_auth_total",
            &[("outcome", "failure"), ("reason", "not_authorized")],
        )
    };
    // What slixmpp does with a wrong password: SCRAM-SHA-256, SCRAM-SHA-1,
    // then PLAIN, on one stream.
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    wrong_scram(&mut c, "SCRAM-SHA-256", "alice", 32).await;
    wrong_scram(&mut c, "SCRAM-SHA-1", "alice", 20).await;
    assert!(!plain(&mut c, "alice", "wrong").await.1);
    assert_eq!(failures().await, 3.0);
    // One failure so far (threshold 2): nothing held, on this stream or the next.
    assert_eq!(throttled().await, 0.0);
    wrong_plain(&s, "alice").await;
    assert_eq!(
        throttled().await,
        0.0,
        "three mechanisms on one stream counted as more than one failure"
    );
    // Two failures now: the next attempt is held.
    wrong_plain(&s, "alice").await;
    assert_eq!(throttled().await, 1.0);
    // The same mechanism failing again on one stream is another guess.
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    for _ in 0..2 {
        assert!(!plain(&mut c, "alice", "wrong").await.1);
    }
    assert_eq!(throttled().await, 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_throttle_holds_everyone_there_until_a_login_succeeds() {
    let s = server("[auth.throttle.address]\nafter_failures = 3\nfirst_delay = 1\nmax_delay = 1\n");
    let delay = Duration::from_secs(1);
    // Spraying: one guess at each of three accounts.
    for user in ["alice", "carol", "dave"] {
        assert!(wrong_plain(&s, user).await < delay);
    }
    // Now everyone from this address is held, a correct login too...
    assert!(good_plain(&s, "bob", "bob-pw").await >= delay);
    assert_eq!(
        metric(&s, "c2s_login_throttled_total", &[("scope", "address")]).await,
        1.0
    );
    // ...which clears the address: the next ones are not held.
    assert!(good_plain(&s, "bob", "bob-pw").await < delay);
    assert!(wrong_plain(&s, "erin").await < delay);
    let log = s.log();
    assert!(log.contains("login throttled (address 127.0.0.1)"), "{log}");
}
