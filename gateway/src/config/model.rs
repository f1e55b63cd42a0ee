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
    /// Named input shapers (`normal` and `fast` are built in).
    pub shaper: BTreeMap<String, Shaper>,
    pub host_config: Vec<HostConfig>,
    /// `[modules.NAME]` tables, checked by [`crate::modules::check`].
    pub modules: BTreeMap<String, toml::Table>,
    /// `[cluster]`: present, this node joins a cluster.
    pub cluster: Option<Cluster>,
    /// The file it came from (`None`: built-in defaults).
    pub source: Option<PathBuf>,
}

/// `[cluster]`: nodes find each other in the shared database
/// (`cluster_nodes`) and talk over NATS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cluster {
    /// This node's name, unique in the cluster ("": the machine's hostname).
    pub node: String,
    /// NATS server URLs (`nats://` or `tls://`).
    pub nats: Vec<String>,
    /// A NATS `.creds` file (JWT and NKey seed).
    pub nats_credentials: Option<PathBuf>,
    /// A CA certificate (PEM) for `tls://` NATS servers.
    pub nats_ca: Option<PathBuf>,
    /// Seconds between two heartbeats of this node in `cluster_nodes`.
    pub heartbeat: u64,
    /// Seconds without a heartbeat before a node is considered gone.
    pub node_timeout: u64,
    /// The cluster's name: the prefix of its NATS subjects.
    pub name: String,
    /// Stanzas waiting to be sent to other nodes; beyond it a stanza is
    /// treated as undeliverable (a message is stored offline).
    pub queue: usize,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            node: String::new(),
            nats: vec!["nats://127.0.0.1:4222".into()],
            nats_credentials: None,
            nats_ca: None,
            heartbeat: 2,
            node_timeout: 10,
            name: "osprey".into(),
            queue: 65536,
        }
    }
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
    /// Caps on each element's shape, checked before parsing.
    pub xml: crate::xml::XmlLimits,
    /// Seconds from accept to a bound resource.
    pub negotiation_timeout: u64,
    /// Seconds an unauthenticated stream may send nothing.
    pub pre_auth_idle_timeout: u64,
    /// Bytes/s an element must at least arrive at before authentication
    /// (after a 2 s grace): a trickle is dropped early.
    pub min_read_rate_pre_auth: u64,
    /// Open connections on this listener; 0: as many as the process's
    /// file descriptor limit allows, less a reserve for everything else.
    pub max_connections: usize,
    /// Open connections from one IP address (all c2s listeners together).
    pub max_connections_per_address: usize,
    /// The `[shaper.NAME]` applied to each session's input ("none": off).
    pub shaper: String,
    /// Stanzas per second a session may send (a burst of twice that
    /// passes); beyond it reading pauses. 0: off.
    pub max_stanza_rate: u32,
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
            xml: crate::xml::XmlLimits::default(),
            negotiation_timeout: 30,
            pre_auth_idle_timeout: 10,
            min_read_rate_pre_auth: 128,
            max_connections: 0,
            max_connections_per_address: 256,
            shaper: "normal".into(),
            max_stanza_rate: 500,
        }
    }
}

/// `[shaper.NAME]`: a token bucket on a session's input (ejabberd's and
/// MongooseIM's `shaper`). Reading pauses while it is empty; nothing is
/// dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shaper {
    /// Bytes per second.
    pub max_rate: u64,
    /// Bytes that may arrive at once (default: 4 seconds' worth, and at
    /// least one stanza of the largest size).
    #[serde(default)]
    pub burst: Option<u64>,
}

/// `[[host_config]]`: what differs for one of `general.hosts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub host: String,
    /// Overrides the listener's `shaper` for this host's sessions.
    #[serde(default)]
    pub shaper: Option<String>,
    /// Overrides the listener's `max_stanza_rate`.
    #[serde(default)]
    pub max_stanza_rate: Option<u32>,
}

/// The shapers every configuration has (a file may redefine them).
pub fn builtin_shapers() -> BTreeMap<String, Shaper> {
    BTreeMap::from([
        // 64 kB/s sustained: 20× ejabberd's c2s default, far beyond what
        // a person types or a client syncs upstream; bursts of 256 kB.
        (
            "normal".to_string(),
            Shaper {
                max_rate: 65_536,
                burst: Some(262_144),
            },
        ),
        (
            "fast".to_string(),
            Shaper {
                max_rate: 1_048_576,
                burst: None,
            },
        ),
    ])
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
    /// Connections served at once; beyond it new ones are closed at once.
    pub max_connections: usize,
    /// Seconds to receive a request's headers (also the longest wait for the
    /// next request on a kept-alive connection).
    pub header_read_timeout: u64,
    /// Seconds with nothing read or written (no response streaming), or a
    /// response the client does not read, before the connection is closed.
    pub idle_timeout: u64,
}

impl Default for HttpListener {
    fn default() -> Self {
        HttpListener {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 9091,
            handlers: vec![HttpHandler::Metrics, HttpHandler::Admin],
            max_connections: 256,
            header_read_timeout: 10,
            idle_timeout: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// PBKDF2 iterations for new SCRAM keys (>= 4096).
    pub scram_iterations: u32,
    /// Login throttling: `[auth.throttle.address]`, `[auth.throttle.account]`.
    pub throttle: LoginThrottle,
    /// Replaced by `throttle`: refused with a pointer to the new keys.
    pub throttle_after_failures: Option<toml::Value>,
    /// Replaced by `throttle`: refused with a pointer to the new keys.
    pub throttle_max_delay: Option<toml::Value>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            scram_iterations: 4096,
            throttle: LoginThrottle::default(),
            throttle_after_failures: None,
            throttle_max_delay: None,
        }
    }
}

/// Failed logins slow down further attempts, counted apart per IP address
/// and per account.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawLoginThrottle")]
pub struct LoginThrottle {
    pub address: ThrottleScope,
    pub account: ThrottleScope,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            address: ThrottleScope {
                after_failures: 10,
                ..ThrottleScope::DEFAULT
            },
            account: ThrottleScope::DEFAULT,
        }
    }
}

/// One throttling key's policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleScope {
    /// Failed logins within `window` before delays start.
    pub after_failures: u32,
    /// Seconds a failure counts (a sliding window).
    pub window: u64,
    /// Seconds; the first delay, doubling with each further failure.
    pub first_delay: f64,
    /// Seconds; the longest delay.
    pub max_delay: f64,
}

impl ThrottleScope {
    const DEFAULT: ThrottleScope = ThrottleScope {
        after_failures: 5,
        window: 300,
        first_delay: 0.5,
        max_delay: 5.0,
    };
}

/// `[auth.throttle]` as written: each scope's missing keys take that
/// scope's defaults (the address and the account differ).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoginThrottle {
    address: Option<RawThrottleScope>,
    account: Option<RawThrottleScope>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottleScope {
    after_failures: Option<u32>,
    window: Option<u64>,
    first_delay: Option<f64>,
    max_delay: Option<f64>,
}

impl RawThrottleScope {
    fn or(self, d: ThrottleScope) -> ThrottleScope {
        ThrottleScope {
            after_failures: self.after_failures.unwrap_or(d.after_failures),
            window: self.window.unwrap_or(d.window),
            first_delay: self.first_delay.unwrap_or(d.first_delay),
            max_delay: self.max_delay.unwrap_or(d.max_delay),
        }
    }
}

impl From<RawLoginThrottle> for LoginThrottle {
    fn from(r: RawLoginThrottle) -> Self {
        let d = LoginThrottle::default();
        LoginThrottle {
            address: r.address.unwrap_or_default().or(d.address),
            account: r.account.unwrap_or_default().or(d.account),
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
    #[serde(default)]
    shaper: BTreeMap<String, Shaper>,
    #[serde(default)]
    host_config: Vec<HostConfig>,
    #[serde(default)]
    modules: BTreeMap<String, toml::Table>,
    cluster: Option<Cluster>,
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
            shaper: {
                let mut all = builtin_shapers();
                all.extend(self.shaper);
                all
            },
            host_config: self.host_config,
            modules: self.modules,
            cluster: self.cluster.map(|mut c| {
                if c.node.is_empty() {
                    c.node = crate::cluster::hostname();
                }
                c
            }),
            source: None,
        }
    }
}
