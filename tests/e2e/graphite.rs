//! The Graphite handler against a real carbon receiver (Debian's
//! graphite-carbon), read back with whisper-fetch: the series, and
//! percentiles that cover each push interval (a latency spike shows in its
//! own interval only); and a receiver that is down: the gateway keeps
//! serving, drops are bounded, counted and logged once per interval.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::harness::{Backend, Options, Server};
use crate::http::get;
use crate::raw::Raw;

struct Carbon {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Carbon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Carbon {
    fn start() -> Carbon {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let (line, pickle, query) = (
            crate::harness::free_port(),
            crate::harness::free_port(),
            crate::harness::free_port(),
        );
        std::fs::write(
            dir.path().join("carbon.conf"),
            format!(
                "[cache]\nSTORAGE_DIR = {d}/storage/\nLOCAL_DATA_DIR = {d}/storage/whisper/\n\
                 WHITELISTS_DIR = {d}/lists/\nCONF_DIR = {d}/\nLOG_DIR = {d}/log/\nPID_DIR = {d}/\n\
                 ENABLE_LOGROTATION = False\nUSER =\nMAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = 10000\n\
                 MAX_CREATES_PER_MINUTE = inf\nLINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line}\n\
                 ENABLE_UDP_LISTENER = False\nPICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pickle}\n\
                 CACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {query}\nLOG_LISTENER_CONNECTIONS = False\n\
                 ENABLE_TAGS = False\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("storage-schemas.conf"),
            "[default]\npattern = .*\nretentions = 1s:1h\n",
        )
        .unwrap();
        let child = Command::new("carbon-cache")
            .arg(format!("--config={d}/carbon.conf"))
            .arg(format!("--pidfile={d}/carbon.pid"))
            .arg(format!("--logdir={d}/log"))
            .args(["--nodaemon", "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("carbon-cache is required: apt-get install graphite-carbon");
        let carbon = Carbon {
            child,
            dir,
            port: line,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", line)).is_err() {
            assert!(Instant::now() < deadline, "carbon-cache did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        carbon
    }

    fn whisper(&self, path: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/whisper")
            .join(format!("{}.wsp", path.replace('.', "/")))
    }
}

/// Every slot of a whisper file over the last two minutes (whisper-fetch),
/// oldest first: its timestamp and value, `None` where nothing was stored.
fn points(file: &Path) -> Vec<(u64, Option<f64>)> {
    let from = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() - 120)
        .unwrap_or(0);
    let out = Command::new("whisper-fetch")
        .arg("--from")
        .arg(from.to_string())
        .arg(file)
        .output()
        .expect("whisper-fetch is required: apt-get install python3-whisper");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let t = f.next()?.parse().ok()?;
            Some((t, f.next()?.parse::<f64>().ok()))
        })
        .collect()
}

/// The newest stored value of a whisper file.
fn latest(file: &Path) -> Option<f64> {
    points(file).into_iter().rev().find_map(|(_, v)| v)
}

async fn wait_value(carbon: &Carbon, path: &str, want: f64) {
    let file = carbon.whisper(path);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = latest(&file);
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: wanted {want}, have {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carbon_receives_the_series() {
    let carbon = Carbon::start();
    let s = Server::start(Options {
        extra: format!(
            "[[instrumentation.graphite]]\nport = {p}\ninterval = 1\nprefix = \"osprey\"\n\
             [[instrumentation.graphite]]\nport = {p}\ninterval = 1\nprefix = \"osprey\"\nenv_prefix = \"OSPREY_SITE\"\n",
            p = carbon.port
        ),
        env: vec![("OSPREY_SITE".into(), "staging".into())],
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    let mut alice = Raw::login(s.c2s, "alice", "pw", "a").await;
    let mut bob = Raw::login(s.c2s, "bob", "pw", "b").await;
    for i in 0..3 {
        alice
            .send(&format!(
                "<message to='bob@localhost/b' type='chat' id='g{i}'><body>x</body></message>"
            ))
            .await;
        bob.expect(&format!("id='g{i}'")).await;
    }
    wait_value(&carbon, "osprey.router_routed_total.message.delivered", 3.0).await;
    wait_value(&carbon, "osprey.sm_sessions", 2.0).await;
    wait_value(
        &carbon,
        "osprey.router_routed_seconds.message.delivered.count",
        3.0,
    )
    .await;
    assert!(carbon
        .whisper("osprey.router_routed_seconds.message.delivered.p99")
        .exists());
    // The second section, with its environment prefix.
    wait_value(
        &carbon,
        "staging.osprey.router_routed_total.message.delivered",
        3.0,
    )
    .await;
}

const SM: &str = "urn:xmpp:sm:3";

/// A session with XEP-0198 acks enabled that decides when to acknowledge:
/// the gateway observes `sm_ack_seconds`, the time from the oldest
/// unacknowledged stanza it sent to the `<a/>` that covers it, so a client
/// that waits before acking is a real latency of the client's choosing.
struct Acker {
    c: Raw,
    /// Stanzas received since `<enabled/>`.
    h: u32,
    pings: u32,
}

impl Acker {
    async fn login(s: &Server, user: &str) -> Acker {
        let mut c = Raw::login(s.c2s, user, "pw", "sm").await;
        c.send(&format!("<enable xmlns='{SM}'/>")).await;
        c.take("<enabled/>", |x| x.is("enabled", SM)).await;
        Acker { c, h: 0, pings: 0 }
    }

    /// A ping round trip: the result is a stanza awaiting an ack.
    async fn ping(&mut self) {
        self.pings += 1;
        let id = format!("w{}", self.pings);
        self.c
            .send(&format!(
                "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await;
        loop {
            let x = self.c.next_el().await;
            if x.is_stanza() {
                self.h += 1;
            }
            if x.is_iq() && x.id() == id {
                assert_eq!(x.typ(), "result", "{}", x.raw);
                return;
            }
        }
    }

    /// Acknowledges everything received: one `sm_ack_seconds` observation.
    async fn ack(&mut self) {
        self.c
            .send(&format!("<a xmlns='{SM}' h='{}'/>", self.h))
            .await;
    }

    /// `n` pings, each acked at once, as fast as they go.
    async fn burst(&mut self, n: usize) {
        for _ in 0..n {
            self.ping().await;
            self.ack().await;
        }
    }

    /// Pings and acks at once, ten times a second, for `d`: a steady flow
    /// of acks of a few milliseconds at most.
    async fn fast_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            self.ping().await;
            self.ack().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A p99 at least this high needs an ack slower than 1.6384 s (the bucket
/// edge below it): the held ack (2.5 s) always is, the others are not.
const SLOW: f64 = 1.5;

/// Two targets with different intervals; a steady flow of fast acks, then
/// one ack held back 2.5 s. The p99 each target stores for the interval in
/// which that ack arrived shows it (≥ [`SLOW`]); the intervals before and after
/// it show only the fast acks — whereas a p99 over everything since start
/// (hundreds of fast acks against one slow one) would never show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p99_covers_each_push_interval() {
    let carbon = Carbon::start();
    let s = Server::start(Options {
        extra: format!(
            "[[instrumentation.graphite]]\nport = {p}\ninterval = 2\nprefix = \"two\"\n\
             [[instrumentation.graphite]]\nport = {p}\ninterval = 3\nprefix = \"three\"\n",
            p = carbon.port
        ),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", "pw");
    s.register("bob@localhost", "pw");
    let mut fast = Acker::login(&s, "alice").await;
    let mut slow = Acker::login(&s, "bob").await;
    // Enough fast acks that one slow ack can never reach a p99 taken over
    // everything since start (it would need fewer than 99 others)…
    fast.burst(300).await;
    // …then a steady flow: a few dozen per interval.
    fast.fast_for(Duration::from_secs(5)).await;
    // Bob's ping result waits 2.5 s for its ack while Alice keeps acking.
    slow.ping().await;
    fast.fast_for(Duration::from_millis(2500)).await;
    slow.ack().await;
    fast.fast_for(Duration::from_secs(7)).await;

    for prefix in ["two", "three"] {
        let p99 = carbon.whisper(&format!("{prefix}.sm_ack_seconds.p99"));
        let p50 = carbon.whisper(&format!("{prefix}.sm_ack_seconds.p50"));
        let deadline = Instant::now() + Duration::from_secs(30);
        // Carbon writes asynchronously: wait for the interval after the
        // spike's to be stored.
        let (stored, spike) = loop {
            let stored: Vec<(u64, f64)> = points(&p99)
                .into_iter()
                .filter_map(|(t, v)| Some((t, v?)))
                .collect();
            let spike = stored.iter().position(|(_, v)| *v >= SLOW);
            if let Some(i) = spike.filter(|i| i + 1 < stored.len()) {
                break (stored, i);
            }
            assert!(
                Instant::now() < deadline,
                "{prefix}: no spike and interval after it in {stored:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let at = stored[spike].0;
        assert!(
            spike > 0,
            "{prefix}: no interval before the spike: {stored:?}"
        );
        for (t, v) in stored.iter().filter(|(t, _)| *t != at) {
            assert!(*v < SLOW, "{prefix}: interval at {t} shows {v}: {stored:?}");
        }
        // The previous and next intervals are the target's own, `interval`
        // seconds away (give or take the second a late tick may cross).
        let every = if prefix == "two" { 2 } else { 3 };
        let (before, after) = (stored[spike - 1].0, stored[spike + 1].0);
        assert!(
            (at - before).abs_diff(every) <= 1 && (after - at).abs_diff(every) <= 1,
            "{prefix}: {stored:?}"
        );
        // The median of that interval is still a fast ack.
        let median = points(&p50)
            .into_iter()
            .find(|(t, _)| *t == at)
            .and_then(|(_, v)| v);
        assert!(
            median.is_some_and(|m| m < SLOW),
            "{prefix}: p50 at {at}: {median:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_down_is_counted_not_blocking() {
    let closed = crate::harness::free_port();
    let mut s = Server::start(Options {
        extra: format!(
            "[[instrumentation.graphite]]\nport = {closed}\ninterval = 1\nconnect_timeout = 1\nbuffer_lines = 20\n"
        ),
        ..Options::plaintext(Backend::Sqlite)
    });
    s.register("alice@localhost", "pw");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        // The gateway keeps serving while the receiver is down.
        let mut c = Raw::login(s.c2s, "alice", "pw", "x").await;
        c.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        c.expect("id='p'").await;
        let m = get(s.http, "/metrics", None).await.body;
        let dropped = m
            .lines()
            .find(|l| l.starts_with("instrumentation_dropped_lines_total{handler=\"graphite\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if dropped > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no drop counted:\n{m}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    s.assert_alive();
    // Logged once per interval at most, never per emission.
    let log = s.log();
    let warnings = log.matches("graphite: buffer full").count() as u64;
    assert!(
        warnings >= 1 && warnings <= started.elapsed().as_secs() + 2,
        "{warnings} warnings:\n{log}"
    );
    assert!(log.contains("graphite: receiver unreachable"), "{log}");
}
