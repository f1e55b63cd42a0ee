//! Starts the real `osprey` binary on ephemeral ports, in its own temporary
//! data directory, on SQLite or on its own database of the PostgreSQL server
//! on this machine; stops it and drops the database afterwards.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Options for one server.
pub struct Options {
    pub backend: Backend,
    /// `tls.mode` of the c2s listener.
    pub tls_mode: &'static str,
    pub allow_plain_auth_without_tls: bool,
    /// Extra keys for the `[general]` table (TOML lines).
    pub general_extra: String,
    /// Extra keys for the `[[listen.c2s]]` table (TOML lines).
    pub c2s_extra: String,
    /// Extra keys for the `[[listen.http]]` table (TOML lines).
    pub http_extra: String,
    /// Extra TOML appended to the file (other sections).
    pub extra: String,
    /// The `[instrumentation.log]` table's keys (TOML lines).
    pub log: String,
    /// Environment of the server process.
    pub env: Vec<(String, String)>,
    /// With `Backend::Postgres`: this existing database (shared by a
    /// cluster's nodes; made and dropped by [`SharedDb`]), not a new one.
    pub shared_pg: Option<String>,
}

impl Options {
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            tls_mode: "starttls_required",
            allow_plain_auth_without_tls: false,
            general_extra: String::new(),
            c2s_extra: String::new(),
            http_extra: String::new(),
            extra: String::new(),
            log: "level = \"info\"".into(),
            env: Vec::new(),
            shared_pg: None,
        }
    }

    /// Plain TCP with PLAIN allowed: for raw protocol tests.
    pub fn plaintext(backend: Backend) -> Options {
        Options {
            tls_mode: "none",
            allow_plain_auth_without_tls: true,
            ..Options::new(backend)
        }
    }
}

/// The admin token every test server uses.
pub const TOKEN: &str = "e2e-admin-token";

pub struct Server {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub c2s: SocketAddr,
    /// The metrics/admin HTTP listener.
    pub http: SocketAddr,
    pg_db: Option<String>,
    env: Vec<(String, String)>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The binary under test: this build's, or `OSPREY_BIN` (to run the suite
/// against another build, e.g. an older one to see a test fail there).
pub fn osprey_bin() -> String {
    std::env::var("OSPREY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_osprey").to_string())
}

impl Server {
    pub fn start(opts: Options) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg_db) = match opts.backend {
            Backend::Sqlite => (format!("sqlite://{}/osprey.db", dir.path().display()), None),
            Backend::Postgres if opts.shared_pg.is_some() => {
                let name = opts.shared_pg.clone().unwrap_or_default();
                (format!("postgres://postgres@127.0.0.1:5432/{name}"), None)
            }
            Backend::Postgres => {
                let name = format!(
                    "osprey_e2e_{}_{}",
                    std::process::id(),
                    SEQ.fetch_add(1, Ordering::Relaxed)
                );
                psql(&format!("CREATE DATABASE {name}"));
                (
                    format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    Some(name),
                )
            }
        };
        let config = dir.path().join("osprey.toml");
        let toml = format!(
            r#"[general]
hosts = ["localhost"]
data_dir = "{data}"
{shutdown}{general_extra}

[[listen.c2s]]
address = "127.0.0.1"
port = 0
tls.mode = "{tls}"
allow_plain_auth_without_tls = {plain}
{c2s_extra}

[[listen.http]]
address = "127.0.0.1"
port = 0
handlers = ["metrics", "admin"]
{http_extra}

[admin]
token = "{token}"

[storage]
url = "{url}"

[instrumentation]
probe_interval = 1
[instrumentation.prometheus]
[instrumentation.log]
{log}

{extra}
"#,
            data = dir.path().display(),
            tls = opts.tls_mode,
            plain = opts.allow_plain_auth_without_tls,
            // Tests that need a longer grace set their own.
            shutdown = if opts.general_extra.contains("shutdown_timeout") {
                ""
            } else {
                "shutdown_timeout = 5\n"
            },
            general_extra = opts.general_extra,
            c2s_extra = opts.c2s_extra,
            http_extra = opts.http_extra,
            extra = opts.extra,
            log = opts.log,
            token = TOKEN,
        );
        std::fs::write(&config, toml).expect("write config");
        let mut server = Server {
            child: None,
            dir,
            config,
            c2s: "127.0.0.1:0".parse().expect("addr"),
            http: "127.0.0.1:0".parse().expect("addr"),
            pg_db,
            env: opts.env,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let child = Command::new(osprey_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("RUST_LOG", "info,osprey=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start osprey");
        self.child = Some(child);
        (self.c2s, self.http) = self.wait_ready();
    }

    /// Starts the server again on the same configuration and storage (after
    /// [`Server::terminate`]); the ports may change.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// Waits for `listeners.json`; a server that dies first fails the test
    /// with its log.
    fn wait_ready(&mut self) -> (SocketAddr, SocketAddr) {
        let file = self.dir.path().join("listeners.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(bytes) = std::fs::read(&file) {
                let v: serde_json::Value = serde_json::from_slice(&bytes).expect("listeners.json");
                let c2s = v["c2s"][0].as_str().expect("a c2s listener");
                let http = v["http"][0].as_str().expect("an http listener");
                return (
                    c2s.parse().expect("listener address"),
                    http.parse().expect("listener address"),
                );
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("osprey exited early ({status}):\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "osprey not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server process's PID (for /proc readings).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    /// The server's own PostgreSQL database, if it runs on PostgreSQL.
    /// How many rows of `table` belong to `user@localhost`, read from the
    /// server's own database (which backend it is).
    pub async fn user_rows(&self, table: &str, user: &str) -> i64 {
        use sqlx::Row;
        let sql =
            format!("SELECT COUNT(*) AS n FROM {table} WHERE host = 'localhost' AND username = $1");
        let row = match self.pg_database() {
            Some(db) => {
                let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
                let pool = sqlx::PgPool::connect(&url).await.expect("connect");
                let r = sqlx::query(&sql).bind(user).fetch_one(&pool).await;
                pool.close().await;
                r.map(|r| r.try_get::<i64, _>("n"))
            }
            None => {
                let url = format!("sqlite://{}/osprey.db", self.data_dir().display());
                let pool = sqlx::SqlitePool::connect(&url).await.expect("connect");
                let r = sqlx::query(&sql).bind(user).fetch_one(&pool).await;
                pool.close().await;
                r.map(|r| r.try_get::<i64, _>("n"))
            }
        };
        row.expect("count").expect("n")
    }

    /// Every table of the server's database with `host` and `username`
    /// columns, and how many rows of `user@localhost` each holds.
    pub async fn rows_everywhere(&self, user: &str) -> Vec<(String, i64)> {
        use sqlx::Row;
        let tables: Vec<String> = match self.pg_database() {
            Some(db) => {
                let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
                let pool = sqlx::PgPool::connect(&url).await.expect("connect");
                let rows = sqlx::query(
                    "SELECT table_name::text AS t FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND column_name = 'username' \
                     AND table_name IN (SELECT table_name FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND column_name = 'host')",
                )
                .fetch_all(&pool)
                .await
                .expect("tables");
                pool.close().await;
                rows.iter().map(|r| r.get::<String, _>("t")).collect()
            }
            None => {
                let url = format!("sqlite://{}/osprey.db", self.data_dir().display());
                let pool = sqlx::SqlitePool::connect(&url).await.expect("connect");
                let names = sqlx::query(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(&pool)
                .await
                .expect("tables");
                let mut out = Vec::new();
                for n in names {
                    let name: String = n.get("name");
                    let cols = sqlx::query(&format!("PRAGMA table_info({name})"))
                        .fetch_all(&pool)
                        .await
                        .expect("columns");
                    let has = |c: &str| cols.iter().any(|r| r.get::<String, _>("name") == c);
                    if has("username") && has("host") {
                        out.push(name);
                    }
                }
                pool.close().await;
                out
            }
        };
        assert!(
            tables.iter().any(|t| t == "accounts") && tables.len() > 5,
            "tables found: {tables:?}"
        );
        let mut out = Vec::new();
        for t in tables {
            let n = self.user_rows(&t, user).await;
            out.push((t, n));
        }
        out
    }

    pub fn pg_database(&self) -> Option<&str> {
        self.pg_db.as_deref()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `osprey --config … ARGS` (the CLI, against this server's storage).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(osprey_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run osprey cli")
    }

    pub fn register(&self, jid: &str, password: &str) {
        let out = self.cli(&["account", "register", jid, "--password", password]);
        assert!(
            out.status.success(),
            "register {jid}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `osprey account populate`: accounts user1..userN with password
    /// `password` (benchmark accounts); returns the CLI's output.
    pub fn populate(&self, count: usize) -> String {
        let out = self.cli(&[
            "account",
            "populate",
            "--prefix",
            "user",
            "--count",
            &count.to_string(),
            "--password",
            "password",
        ]);
        assert!(
            out.status.success(),
            "populate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGTERM, then the exit status (graceful shutdown).
    /// SIGKILL: the process dies at once, nothing is cleaned up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("osprey did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process is still alive (it survived whatever the test did).
    pub fn assert_alive(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("osprey died ({status}):\n{}", self.log());
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(db) = self.pg_db.take() {
            psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

/// A PostgreSQL database several servers share (a cluster's), dropped
/// with this value.
pub struct SharedDb(pub String);

impl SharedDb {
    pub fn new() -> SharedDb {
        let name = format!(
            "osprey_e2e_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        psql(&format!("CREATE DATABASE {name}"));
        SharedDb(name)
    }
}

impl Drop for SharedDb {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

/// A `nats-server` of the test's own, on a free port (killed with this
/// value); fails loudly when the binary is missing.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
}

impl Nats {
    pub fn start() -> Nats {
        let mut n = Nats {
            child: None,
            port: free_port(),
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (Debian package nats-server) must be installed");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port free right now (for receivers the tests start, or to
/// stand for a receiver that is down).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs SQL as the PostgreSQL superuser; fails loudly if the server is not there.
pub fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql (PostgreSQL client) must be installed");
    assert!(
        out.status.success(),
        "PostgreSQL at 127.0.0.1:5432 is required for the PostgreSQL half of the suite: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Declares a test body once and runs it on both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::harness::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::harness::Backend::Postgres).await
            }
        }
    };
}
