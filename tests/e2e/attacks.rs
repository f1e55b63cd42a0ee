//! The attack suite: every input that once crashed, stalled or bled the
//! server, sent as bytes on a socket. Each case checks the stream error the
//! attacker gets, that the server is alive and serves a bystander
//! afterwards, and prints what the attack cost the server in CPU (read from
//! /proc; the bounds asserted are liveness guards far above the measured
//! figures, which docs/reliability.md records).

use std::time::{Duration, Instant};

use crate::both_backends;
use crate::harness::{Backend, Options, Server};
use crate::raw::{Raw, HEADER};

const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

fn server_with(b: Backend, c2s_extra: &str, general_extra: &str) -> Server {
    let s = Server::start(Options {
        c2s_extra: c2s_extra.into(),
        general_extra: general_extra.into(),
        ..Options::plaintext(b)
    });
    s.register("alice@localhost", "alice-pw");
    s.register("bob@localhost", "bob-pw");
    s
}

/// The server's CPU time so far (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Reads to the end of the stream and checks the stream error and its text.
async fn closed_with(c: &mut Raw, condition: &str, text: &str) -> String {
    let out = c.read_to_close().await;
    assert!(
        out.contains(&format!(
            "<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        )),
        "expected {condition}, got {out:?}"
    );
    assert!(out.contains(text), "expected text {text:?}, got {out:?}");
    assert!(out.ends_with("</stream:stream>"), "{out:?}");
    out
}

/// A bystander logs in and pings; returns how long that took.
async fn bystander(s: &mut Server) -> Duration {
    s.assert_alive();
    let t = Instant::now();
    let mut c = Raw::login(s.c2s, "bob", "bob-pw", "bystander").await;
    c.send("<iq type='get' id='by' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = c.expect("id='by'").await;
    assert!(r.contains("type='result'"), "{r}");
    t.elapsed()
}

fn deep_nesting() -> String {
    format!(
        "<message to='bob@localhost/x' type='headline'>{}{}</message>",
        "<a>".repeat(4000),
        "</a>".repeat(4000)
    )
}

/// 15 KB before login: 700 namespace declarations on one element, then
/// 400 children declaring one each (roxmltree copies the in-scope ones
/// per element: N²·M once).
fn namespace_bomb_pre_auth() -> String {
    format!(
        "<auth xmlns='{SASL_NS}' mechanism='PLAIN'{}>{}</auth>",
        " xmlns:p='u'".repeat(700),
        "<c xmlns:q='v'/>".repeat(400)
    )
}

/// Children only, each declaring a namespace: no element is over the
/// per-element cap, the stanza is over the per-stanza one.
fn namespace_children() -> String {
    format!(
        "<message to='bob@localhost'{}>{}</message>",
        (0..16)
            .map(|i| format!(" xmlns:r{i}='u'"))
            .collect::<String>(),
        "<c xmlns:q='v'/>".repeat(2500)
    )
}

fn many_attributes() -> String {
    let attrs: String = (0..37_420).map(|i| format!(" a{i}=''")).collect();
    format!("<message to='bob@localhost'{attrs}/>")
}

/// The largest stanza the limits let through, shaped as expensively as
/// they allow: the parse cost must stay linear in its size.
fn worst_legal_stanza(size: usize) -> String {
    let mut s = String::from("<message to='bob@localhost/nobody' type='headline'");
    for i in 0..16 {
        s.push_str(&format!(" xmlns:n{i}='urn:x:{i}'"));
    }
    s.push('>');
    let attrs: String = (0..60).map(|i| format!(" a{i}='v'")).collect();
    let mut declared = 16;
    while s.len() + 1000 < size {
        if declared < 128 {
            s.push_str(&format!("<x xmlns:d{declared}='u'{attrs}>"));
            declared += 1;
        } else {
            s.push_str(&format!("<x{attrs}>"));
        }
        s.push_str("&amp;&#x1F600;</x>");
    }
    s.push_str("</message>");
    s
}

async fn xml_attacks(b: Backend) {
    let mut s = server_with(b, "", "");
    let pid = s.pid();
    let mut costs = Vec::new();
    let mut attack = |name: &'static str, cpu: f64, n: usize| {
        let each = cpu / n as f64;
        eprintln!(
            "attack {name}: {:.2} ms of server CPU each ({n} runs)",
            each * 1e3
        );
        costs.push((name, each));
    };

    // Item 1: the 27 KB stanza that overflowed the stack.
    const N: usize = 20;
    let before = cpu_seconds(pid);
    for _ in 0..N {
        let mut c = Raw::login(s.c2s, "alice", "alice-pw", "deep").await;
        let _ = c.try_send(deep_nesting().as_bytes()).await;
        closed_with(&mut c, "policy-violation", "elements nested deeper than 64").await;
    }
    attack(
        "deep nesting (after login, incl. login)",
        cpu_seconds(pid) - before,
        N,
    );

    // Item 2: quadratic namespace and attribute work.
    let before = cpu_seconds(pid);
    for _ in 0..N {
        let mut c = Raw::connect(s.c2s).await;
        c.open().await;
        let _ = c.try_send(namespace_bomb_pre_auth().as_bytes()).await;
        closed_with(
            &mut c,
            "policy-violation",
            "namespace declarations on one element",
        )
        .await;
    }
    attack("namespace bomb before login", cpu_seconds(pid) - before, N);

    let mut c = Raw::login(s.c2s, "alice", "alice-pw", "ns").await;
    let before = cpu_seconds(pid);
    let _ = c.try_send(namespace_children().as_bytes()).await;
    closed_with(
        &mut c,
        "policy-violation",
        "namespace declarations in one stanza",
    )
    .await;
    attack("namespace children (40 KB)", cpu_seconds(pid) - before, 1);

    let mut c = Raw::login(s.c2s, "alice", "alice-pw", "attrs").await;
    let before = cpu_seconds(pid);
    let _ = c.try_send(many_attributes().as_bytes()).await;
    closed_with(&mut c, "policy-violation", "attributes on one element").await;
    attack("37,420 attributes", cpu_seconds(pid) - before, 1);

    // The worst stanza the caps allow is accepted, and costs time linear
    // in its size: 8 of 32 KB against 2 of 128 KB.
    let mut c = Raw::login(s.c2s, "alice", "alice-pw", "legal").await;
    for (size, n) in [(32_000usize, 8usize), (128_000, 2)] {
        let stanza = worst_legal_stanza(size);
        let before = cpu_seconds(pid);
        for i in 0..n {
            c.send(&stanza).await;
            c.send(&format!(
                "<iq type='get' id='w{size}-{i}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await;
            c.expect(&format!("id='w{size}-{i}'")).await;
        }
        let cpu = cpu_seconds(pid) - before;
        eprintln!(
            "worst legal stanza of {} KB: {:.2} ms of server CPU each",
            stanza.len() / 1000,
            cpu / n as f64 * 1e3
        );
    }

    // Item 3: forbidden character references are refused, not relayed.
    let mut bob = Raw::login(s.c2s, "bob", "bob-pw", "b").await;
    let mut c = Raw::login(s.c2s, "alice", "alice-pw", "refs").await;
    c.send(
        "<message to='bob@localhost/b' type='chat'><body>x&#xD800;y&#x110000;z</body></message>",
    )
    .await;
    closed_with(&mut c, "not-well-formed", "reference").await;
    bob.expect_silence(Duration::from_millis(300)).await;
    bob.send("<iq type='get' id='still' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    bob.expect("id='still'").await;

    // Item 9: a second stream header after bind is an error at once.
    let mut c = Raw::login(s.c2s, "alice", "alice-pw", "again").await;
    let header = HEADER.strip_prefix("<?xml version='1.0'?>").unwrap();
    c.send(header).await;
    closed_with(
        &mut c,
        "not-well-formed",
        "a stream header inside the stream",
    )
    .await;

    for (name, each) in costs {
        // Liveness guard: the quadratic cases cost 0.2–20 s before.
        assert!(each < 0.2, "{name}: {each} s of CPU");
    }
    let took = bystander(&mut s).await;
    eprintln!("bystander login + ping after the attacks: {took:?}");
}
both_backends!(xml_attacks_are_refused_cheaply, xml_attacks);

/// Two attackers loop over the inputs while a bystander logs in and pings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bystander_is_served_while_two_attackers_loop() {
    let mut s = server_with(Backend::Sqlite, "max_connections_per_address = 4000", "");
    let addr = s.c2s;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..2 {
        let stop = stop.clone();
        attackers.push(tokio::spawn(async move {
            let mut rounds = 0u32;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let mut c = Raw::connect(addr).await;
                c.open().await;
                let _ = c.try_send(namespace_bomb_pre_auth().as_bytes()).await;
                let _ = c.read_to_close().await;
                let mut c = Raw::login(addr, "alice", "alice-pw", "loop").await;
                let _ = c.try_send(deep_nesting().as_bytes()).await;
                let _ = c.read_to_close().await;
                rounds += 1;
            }
            rounds
        }));
    }
    let mut times = Vec::new();
    for _ in 0..10 {
        times.push(bystander(&mut s).await);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut rounds = 0;
    for a in attackers {
        rounds += a.await.unwrap();
    }
    times.sort();
    eprintln!(
        "bystander login+ping under attack ({rounds} attack rounds): median {:?}, max {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    assert!(rounds > 0);
    // The stall this guards against lasted 20 s.
    assert!(times[times.len() - 1] < Duration::from_secs(3), "{times:?}");
}

async fn deadlines(b: Backend) {
    let mut s = server_with(b, "negotiation_timeout = 4\npre_auth_idle_timeout = 2", "");
    // A stream header, one byte every 400 ms: dropped by the read rate.
    let t = Instant::now();
    let mut c = Raw::connect(s.c2s).await;
    let mut sent = 0;
    for byte in HEADER.as_bytes() {
        if c.try_send(&[*byte]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
        if t.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    closed_with(&mut c, "connection-timeout", "too slow").await;
    assert!(sent < 20, "a trickle of {sent} bytes was allowed");

    // After a header, `<auth` trickling: the same.
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    for byte in b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'" {
        if c.try_send(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    closed_with(&mut c, "connection-timeout", "too slow").await;

    // Silence before authentication: the idle timeout.
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    closed_with(&mut c, "connection-timeout", "nothing received for 2 s").await;

    // Authenticated but never bound: the whole-negotiation deadline.
    let mut c = Raw::connect(s.c2s).await;
    c.open().await;
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode("\0alice\0alice-pw");
    c.send(&format!(
        "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>"
    ))
    .await;
    c.expect("<success").await;
    c.send(HEADER).await;
    c.expect("</stream:features>").await;
    // Keep-alive whitespace does not extend the deadline.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(6) {
        if c.try_send(b" ").await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    closed_with(&mut c, "connection-timeout", "no session bound within 4 s").await;
    bystander(&mut s).await;
}
both_backends!(negotiation_deadline_and_slow_senders, deadlines);

async fn connection_caps(b: Backend) {
    let mut s = server_with(b, "max_connections_per_address = 5", "");
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut c = Raw::connect(s.c2s).await;
        c.open().await;
        held.push(c);
    }
    let mut sixth = Raw::connect(s.c2s).await;
    closed_with(
        &mut sixth,
        "policy-violation",
        "too many connections from your address",
    )
    .await;
    // HTTP is not starved by it.
    let health = crate::http::get(s.http, "/healthz", None).await;
    assert_eq!(health.status, 200, "{}", health.body);
    // A place given back is free again.
    drop(held.pop());
    let t = Instant::now();
    loop {
        let mut c = Raw::connect(s.c2s).await;
        let _ = c.try_send(HEADER.as_bytes()).await;
        if c.expect("</stream:").await.contains("<stream:features") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the place was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    let metrics = crate::http::get(s.http, "/metrics", None).await.body;
    let hits: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("limit_hit_total{limit=\"too_many_from_address\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(hits >= 1.0, "the refusal was not counted");
    bystander(&mut s).await;

    // The total cap, across addresses.
    let mut s = server_with(b, "max_connections = 3", "");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Raw::connect(s.c2s).await;
        c.open().await;
        held.push(c);
    }
    let mut over = Raw::connect(s.c2s).await;
    closed_with(&mut over, "resource-constraint", "connection limit").await;
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    bystander(&mut s).await;
}
both_backends!(
    connections_are_capped_per_address_and_in_total,
    connection_caps
);

/// Item 5: unauthenticated connections holding half-sent elements cost the
/// bytes they sent, not a multiple; closing them gives the memory back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_memory_is_bounded_by_the_bytes_sent() {
    let mut s = server_with(Backend::Sqlite, "max_connections_per_address = 4000", "");
    let pid = s.pid();
    // Warm up allocator arenas and the runtime.
    bystander(&mut s).await;
    let baseline = rss_bytes(pid);
    // The attack: 16 KB of unclosed <a> each; refused at level 65.
    let bomb = "<a>".repeat(5400);
    for _ in 0..200 {
        let mut c = Raw::connect(s.c2s).await;
        c.open().await;
        let _ = c.try_send(bomb.as_bytes()).await;
        closed_with(&mut c, "policy-violation", "nested deeper").await;
    }
    // Within every cap: 60 levels, then text, 15 KB each, held open.
    let held_input = format!("<message>{}{}", "<a>".repeat(60), "x".repeat(15_000));
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut c = Raw::connect(s.c2s).await;
        c.open().await;
        c.send(&held_input).await;
        held.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = (held_input.len() * held.len()) as u64;
    let grown = rss_bytes(pid).saturating_sub(baseline);
    eprintln!(
        "300 half-sent 15 KB elements: RSS +{} KB for {} KB sent ({:.1}x)",
        grown / 1024,
        sent / 1024,
        grown as f64 / sent as f64
    );
    assert!(grown < 4 * sent, "RSS grew {grown} B for {sent} B sent");
    drop(held);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = rss_bytes(pid);
    eprintln!(
        "after closing: RSS {} KB over the baseline",
        after.saturating_sub(baseline) / 1024
    );
    assert!(
        after < baseline + sent / 2 + 4 * 1024 * 1024,
        "RSS stayed at {after} (baseline {baseline})"
    );
    bystander(&mut s).await;
}

/// Item 7: SIGTERM right after a burst loses nothing the socket delivered.
async fn shutdown_burst(b: Backend) {
    let mut s = server_with(b, "", "max_offline_messages = 5000\nshutdown_timeout = 30");
    let mut alice = Raw::login(s.c2s, "alice", "alice-pw", "burst").await;
    let burst: String = (0..2000)
        .map(|i| {
            format!("<message to='bob@localhost' type='chat' id='m{i}'><body>n{i}</body></message>")
        })
        .collect();
    alice.send(&burst).await;
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
    let out = alice.read_to_close().await;
    assert!(out.contains("<system-shutdown"), "{out}");
    s.restart();
    let mut bob = Raw::login(s.c2s, "bob", "bob-pw", "back").await;
    bob.send("<presence/>").await;
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 2000 && Instant::now() < deadline {
        let m = bob.expect("</message>").await;
        if let Some(i) = m.find(" id='m") {
            let id: String = m[i + 6..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            seen.insert(id);
        }
    }
    assert_eq!(seen.len(), 2000, "messages lost on SIGTERM");
}
both_backends!(sigterm_after_a_burst_loses_nothing, shutdown_burst);

/// An unknown account's fake SCRAM salt is the same after a restart, as a
/// real account's is: probing across a restart does not tell them apart.
async fn fake_salt_after_restart(b: Backend) {
    async fn salt(addr: std::net::SocketAddr, user: &str) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut c = Raw::connect(addr).await;
        c.open().await;
        let first = b64.encode(format!("n,,n={user},r=abcdefghijklmnop"));
        c.send(&format!(
            "<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-256'>{first}</auth>"
        ))
        .await;
        let challenge = c.expect("</challenge>").await;
        let start = challenge.find('>').unwrap() + 1;
        let end = challenge.rfind("</challenge>").unwrap();
        let text = String::from_utf8(b64.decode(&challenge[start..end]).unwrap()).unwrap();
        text.split(',')
            .find_map(|p| p.strip_prefix("s="))
            .expect("a salt")
            .to_string()
    }
    let mut s = server_with(b, "", "");
    let (real, fake) = (salt(s.c2s, "alice").await, salt(s.c2s, "mallory").await);
    assert_eq!(fake, salt(s.c2s, "mallory").await, "stable within a run");
    s.terminate();
    s.restart();
    assert_eq!(real, salt(s.c2s, "alice").await);
    assert_eq!(fake, salt(s.c2s, "mallory").await, "the fake salt changed");
}
both_backends!(
    unknown_accounts_keep_their_fake_salt,
    fake_salt_after_restart
);
