//! The configuration model, with every default.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::Deserialize;

/// The loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub general: General,
    pub listen: Listen,
    pub auth: Auth,
    pub admin: Admin,
    pub storage: Storage,
    pub instrumentation: Instrumentation,
    /// The file it came from (`None`: built-in defaults).
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct General {
    /// XMPP domains served.
    pub hosts: Vec<String>,
    /// SQLite file, generated certificate, admin token, listeners.json.
    pub data_dir: PathBuf,
    /// Per user; beyond it a message bounces.
    pub max_offline_messages: u32,
    /// Seconds to wait for sessions and storage at shutdown.
    pub shutdown_timeout: u64,
}

impl Default for General {
    fn default() -> Self {
        General {
            hosts: vec!["localhost".into()],
            data_dir: PathBuf::from("data"),
            max_offline_messages: 1000,
            shutdown_timeout: 10,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Listen {
    pub c2s: Vec<C2sListener>,
    pub http: Vec<HttpListener>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    StarttlsRequired,
    Starttls,
    Direct,
    None,
}

impl TlsMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            TlsMode::StarttlsRequired => "starttls_required",
            TlsMode::Starttls => "starttls",
            TlsMode::Direct => "direct",
            TlsMode::None => "none",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub mode: TlsMode,
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            mode: TlsMode::StarttlsRequired,
            certfile: None,
            keyfile: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct C2sListener {
    pub address: IpAddr,
    /// 0 picks a free port (see data_dir/listeners.json).
    pub port: u16,
    pub tls: TlsConfig,
    /// PLAIN sends the password itself: only for loopback benchmarks.
    pub allow_plain_auth_without_tls: bool,
    pub max_stanza_size: usize,
    pub max_stanza_size_pre_auth: usize,
    /// Bound on one session's outgoing queue (slow readers).
    pub max_queue_bytes: usize,
}

impl Default for C2sListener {
    fn default() -> Self {
        C2sListener {
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 5222,
            tls: TlsConfig::default(),
            allow_plain_auth_without_tls: false,
            max_stanza_size: 262_144,
            max_stanza_size_pre_auth: 16_384,
            max_queue_bytes: 1_048_576,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpHandler {
    /// `/metrics` and `/healthz`.
    Metrics,
    /// `/api/...` (token required).
    Admin,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpListener {
    pub address: IpAddr,
    pub port: u16,
    pub handlers: Vec<HttpHandler>,
}

impl Default for HttpListener {
    fn default() -> Self {
        HttpListener {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 9091,
            handlers: vec![HttpHandler::Metrics, HttpHandler::Admin],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// PBKDF2 iterations for new SCRAM keys (>= 4096).
    pub scram_iterations: u32,
    /// Failed logins (per address or account) before delays start.
    pub throttle_after_failures: u32,
    /// Longest delay, in seconds.
    pub throttle_max_delay: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            scram_iterations: 4096,
            throttle_after_failures: 3,
            throttle_max_delay: 5,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Admin API token; generated into data_dir/admin.token when absent.
    pub token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Storage {
    /// `sqlite://path` or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
    /// Off for CockroachDB (no advisory locks).
    pub migration_locking: bool,
}

/// Log levels are the instrumentation's own (one enum for both).
pub use osprey_instrument::Level;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Events are logged up to this level.
    pub level: Level,
    pub format: LogFormat,
    /// Per-event level overrides.
    pub events: BTreeMap<String, Level>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: Level::Info,
            format: LogFormat::Text,
            events: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Instrumentation {
    /// Seconds between probe runs.
    pub probe_interval: u64,
    /// Present: the Prometheus handler is on.
    pub prometheus: Option<PrometheusConfig>,
    /// Present: the log handler is on.
    pub log: Option<LogConfig>,
    /// Each section pushes to one carbon receiver.
    pub graphite: Vec<GraphiteConfig>,
    /// Present: stanzas are traced over OTLP.
    pub otlp: Option<OtlpConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    Grpc,
    Http,
}

/// `[instrumentation.otlp]`: traces to an OpenTelemetry collector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// gRPC: `http://host:4317`; HTTP: `http://host:4318` (`/v1/traces` is added).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Share of stanzas traced, 0.0 to 1.0.
    pub sample_ratio: f64,
    pub service_name: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: "http://127.0.0.1:4317".into(),
            protocol: OtlpProtocol::Grpc,
            sample_ratio: 1.0,
            service_name: "osprey".into(),
        }
    }
}

/// One `[[instrumentation.graphite]]` receiver (plaintext protocol).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphiteConfig {
    pub host: String,
    pub port: u16,
    /// Seconds between pushes.
    pub interval: u64,
    pub prefix: String,
    /// Name of an environment variable whose value goes before `prefix`.
    pub env_prefix: Option<String>,
    /// Seconds for connecting and for each write.
    pub connect_timeout: u64,
    /// Lines kept while the receiver is down; older ones are dropped beyond it.
    pub buffer_lines: usize,
}

impl Default for GraphiteConfig {
    fn default() -> Self {
        GraphiteConfig {
            host: "127.0.0.1".into(),
            port: 2003,
            interval: 60,
            prefix: "osprey".into(),
            env_prefix: None,
            connect_timeout: 5,
            buffer_lines: 100_000,
        }
    }
}

impl Default for Instrumentation {
    fn default() -> Self {
        Instrumentation {
            probe_interval: 15,
            prometheus: None,
            log: None,
            graphite: Vec::new(),
            otlp: None,
        }
    }
}

// --- the file as written, before defaults that depend on other keys ---

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    general: General,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    auth: Auth,
    #[serde(default)]
    admin: Admin,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    instrumentation: Instrumentation,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    c2s: Option<Vec<C2sListener>>,
    http: Option<Vec<HttpListener>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStorage {
    url: Option<String>,
    max_connections: u32,
    migration_locking: bool,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            url: None,
            max_connections: 10,
            migration_locking: true,
        }
    }
}

impl RawConfig {
    pub(super) fn into_config(self) -> Config {
        let mut general = self.general;
        general.hosts = general.hosts.iter().map(|h| h.to_lowercase()).collect();
        let url = self
            .storage
            .url
            .unwrap_or_else(|| format!("sqlite://{}/osprey.db", general.data_dir.display()));
        Config {
            listen: Listen {
                c2s: self
                    .listen
                    .c2s
                    .unwrap_or_else(|| vec![C2sListener::default()]),
                http: self
                    .listen
                    .http
                    .unwrap_or_else(|| vec![HttpListener::default()]),
            },
            general,
            auth: self.auth,
            admin: self.admin,
            storage: Storage {
                url,
                max_connections: self.storage.max_connections,
                migration_locking: self.storage.migration_locking,
            },
            instrumentation: self.instrumentation,
            source: None,
        }
    }
}
