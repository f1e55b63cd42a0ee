//! What the cost benchmarks share: an in-process server and a load of N
//! chat messages from alice to bob over loopback.

#[path = "../../tests/e2e/raw.rs"]
#[allow(dead_code)]
pub mod raw;

use std::time::Instant;

use osprey_instrument::probe::process::cpu_seconds;

pub struct Bench {
    pub running: osprey::server::Running,
    pub addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

/// A server on loopback, plaintext, no HTTP listener, with alice, bob and carol.
pub async fn server() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[general]\ndata_dir = \"{}\"\n[listen]\nhttp = []\n[[listen.c2s]]\naddress = \"127.0.0.1\"\nport = 0\n\
         tls.mode = \"none\"\nallow_plain_auth_without_tls = true\nmax_queue_bytes = 67108864\n",
        dir.path().display()
    );
    let config = osprey::config::Config::parse(&text, &dir.path().join("b.toml")).unwrap();
    let running = osprey::server::start(config, Vec::new()).await.unwrap();
    for u in ["alice", "bob", "carol"] {
        let creds = osprey::sasl::account_credentials("pw", 4096).unwrap();
        running
            .ctx
            .storage
            .create_account("localhost", u, &creds)
            .await
            .unwrap();
    }
    let addr = running.listeners.c2s[0].parse().unwrap();
    Bench {
        running,
        addr,
        _dir: dir,
    }
}

/// alice sends bob `n` messages; (wall µs, process CPU µs) per message.
pub async fn load(b: &Bench, n: usize) -> (f64, f64) {
    let mut alice = raw::Raw::login(b.addr, "alice", "pw", "a").await;
    let mut bob = raw::Raw::login(b.addr, "bob", "pw", "b").await;
    let reader = tokio::spawn(async move {
        bob.expect(&format!("id='m{}'", n - 1)).await;
    });
    let cpu0 = cpu_seconds().unwrap_or(0.0);
    let t0 = Instant::now();
    let mut batch = String::new();
    for i in 0..n {
        batch.push_str(&format!(
            "<message to='bob@localhost/b' type='chat' id='m{i}'><body>hello</body></message>"
        ));
        if batch.len() > 16 * 1024 {
            alice.send(&batch).await;
            batch.clear();
        }
    }
    alice.send(&batch).await;
    reader.await.unwrap();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds().unwrap_or(0.0) - cpu0;
    (wall / n as f64 * 1e6, cpu / n as f64 * 1e6)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
