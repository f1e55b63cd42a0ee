//! What a run is asked to do: the scenario and its sizes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::{ConnectOptions, TlsMode};
use crate::error::Error;
use crate::sasl::Mech;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// N accounts connect, authenticate and bind at concurrency C.
    Login,
    /// Hold N sessions with initial presence; the server's RSS per session.
    Idle,
    /// P pairs exchange messages for T seconds, at the maximum or a set rate.
    Chat,
    /// An amoc-style population ramping up to N users with ~20 contacts each.
    Mixed,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Login => "login",
            Scenario::Idle => "idle",
            Scenario::Chat => "chat",
            Scenario::Mixed => "mixed",
        }
    }
}

/// Every knob of a run. [`ScenarioConfig::new`] gives the defaults the
/// command line also uses.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub scenario: Scenario,
    /// A name for the target, copied into the report (e.g. "prosody").
    pub label: String,
    pub host: String,
    pub port: u16,
    /// chat: where the second user of each pair (user 2k) logs in, when
    /// not on `host`/`port`: e.g. another node of a cluster, so that every
    /// message crosses from one node to the other. `None` = `host`/`port`.
    pub peer_host: Option<String>,
    pub peer_port: Option<u16>,
    pub domain: String,
    /// Accounts `{prefix}{first}` … `{prefix}{first + users - 1}`.
    pub users: usize,
    pub first: usize,
    pub prefix: String,
    pub password: String,
    /// Logins in flight at once.
    pub concurrency: usize,
    pub mech: Mech,
    pub tls: TlsMode,
    pub resource: String,
    /// login: instead of once per account, keep logging in for this long,
    /// cycling over the accounts (pass k binds resource `{resource}{k}`,
    /// so a pass never replaces the previous pass's sessions), so that
    /// fast and slow servers are measured over the same time.
    pub login_for: Option<Duration>,
    /// chat: pairs (user 2k-1 ⇄ user 2k).
    pub pairs: usize,
    /// chat, mixed: sending time; idle: holding time before measuring.
    pub duration: Duration,
    /// chat: messages per second over all senders; 0 = as fast as the
    /// server delivers (each direction keeps `window` messages in flight).
    pub rate: f64,
    pub window: usize,
    /// mixed: mean time between one user's messages.
    pub interval: Duration,
    /// mixed: time over which the users arrive (default: a third of `duration`).
    pub ramp: Option<Duration>,
    /// mixed: contacts per user (neighbours by index).
    pub contacts: usize,
    /// mixed: make sure each roster holds the contacts (roster set for the
    /// missing ones) at login.
    pub roster: bool,
    /// Bytes of message body.
    pub body_size: usize,
    /// How long to wait for messages still in flight when sending stops.
    pub grace: Duration,
    /// Per login (connect to bound).
    pub timeout: Duration,
    /// The server processes, for RSS and CPU from /proc (summed; each
    /// one's too when there are several, e.g. a cluster's nodes).
    pub server_pids: Vec<u32>,
    /// Loopback source addresses to spread connections over (127.0.0.1,
    /// .2, …); 0 = one per 20,000 connections.
    pub source_ips: usize,
    /// Enable stream management (XEP-0198) with resume after bind on every
    /// session, and keep acknowledging what arrives.
    pub stream_management: bool,
    /// With stream management: an `<a h/>` after this many received
    /// stanzas (0 = only when the server sends `<r/>`, and at close).
    pub sm_ack_every: u32,
}

impl ScenarioConfig {
    pub fn new(scenario: Scenario) -> ScenarioConfig {
        ScenarioConfig {
            scenario,
            label: String::new(),
            host: "127.0.0.1".into(),
            port: 5222,
            peer_host: None,
            peer_port: None,
            domain: "localhost".into(),
            users: 100,
            first: 1,
            prefix: "user".into(),
            password: "password".into(),
            concurrency: 50,
            mech: Mech::ScramSha256,
            tls: TlsMode::None,
            resource: "load".into(),
            login_for: None,
            pairs: 10,
            duration: Duration::from_secs(10),
            rate: 0.0,
            window: 16,
            interval: Duration::from_secs(5),
            ramp: None,
            contacts: 20,
            roster: true,
            body_size: 32,
            grace: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            server_pids: Vec::new(),
            source_ips: 0,
            stream_management: false,
            sm_ack_every: crate::sm::DEFAULT_ACK_EVERY,
        }
    }

    /// The user name of account `i` (0-based within the run).
    pub fn user(&self, i: usize) -> String {
        format!("{}{}", self.prefix, self.first + i)
    }

    /// How many accounts the run logs in.
    pub fn accounts(&self) -> usize {
        match self.scenario {
            Scenario::Chat => self.pairs * 2,
            _ => self.users,
        }
    }

    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::Config(m.into()));
        if self.accounts() == 0 {
            return bad("no accounts (users or pairs is 0)");
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if self.window == 0 {
            return bad("window must be at least 1");
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return bad("rate must be >= 0");
        }
        if self.scenario == Scenario::Mixed && self.interval.is_zero() {
            return bad("interval must be > 0");
        }
        Ok(())
    }

    /// Whether the second user of each pair logs in elsewhere (chat).
    pub fn has_peer(&self) -> bool {
        self.scenario == Scenario::Chat && (self.peer_host.is_some() || self.peer_port.is_some())
    }

    /// Resolves the address and fixes the login options.
    pub async fn connect_options(&self) -> Result<ConnectOptions, Error> {
        self.options_for(&self.host, self.port).await
    }

    /// The login options of the second user of each pair (chat): those of
    /// `peer_host`/`peer_port`, each defaulting to `host`/`port`.
    pub async fn peer_connect_options(&self) -> Result<ConnectOptions, Error> {
        let host = self.peer_host.as_deref().unwrap_or(&self.host);
        self.options_for(host, self.peer_port.unwrap_or(self.port))
            .await
    }

    async fn options_for(&self, host: &str, port: u16) -> Result<ConnectOptions, Error> {
        let addr = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::Config(format!("{host}:{port}: {e}")))?
            .next()
            .ok_or_else(|| Error::Config(format!("{host}: no address")))?;
        Ok(ConnectOptions {
            addr,
            domain: self.domain.clone(),
            mech: self.mech,
            tls: self.tls,
            resource: self.resource.clone(),
            timeout: self.timeout,
            max_element: 1 << 20,
            stream_management: self.stream_management.then_some(self.sm_ack_every),
        })
    }

    /// The source address of connection `i`: `None` (the kernel's choice)
    /// unless the server is on IPv4 loopback and there are too many
    /// connections for one address's ephemeral ports.
    pub fn source_ip(&self, addr: SocketAddr, i: usize) -> Option<IpAddr> {
        let SocketAddr::V4(v4) = addr else {
            return None;
        };
        if !v4.ip().is_loopback() {
            return None;
        }
        let n = match self.source_ips {
            0 => self.accounts().div_ceil(20_000),
            n => n,
        }
        .min(250);
        if n <= 1 {
            return None;
        }
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % n) as u8)))
    }
}
