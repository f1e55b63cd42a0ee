//! The Graphite handler against a real carbon receiver (Debian's
//! graphite-carbon), read back with whisper-fetch; and a receiver that is
//! down: the gateway keeps serving, drops are bounded, counted and logged
//! once per interval.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The newest stored value of a whisper file (whisper-fetch).
fn latest(file: &Path) -> Option<f64> {
    let out = Command::new("whisper-fetch")
        .arg("--from")
        .arg(
            (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs()
                - 120)
                .to_string(),
        )
        .arg(file)
        .output()
        .expect("whisper-fetch is required: apt-get install python3-whisper");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
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
