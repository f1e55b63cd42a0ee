//! osprey-loadgen: an XMPP load generator (amoc-like) for Osprey, Prosody
//! and ejabberd. Tokio-based and lean: one task or two per session, no XML
//! tree per stanza, shared salted passwords, one atomic add per latency
//! sample; pinned to its own core it should never be the bottleneck.
//!
//! ```no_run
//! # async fn f() -> Result<(), osprey_loadgen::Error> {
//! use osprey_loadgen::{run, Scenario, ScenarioConfig};
//! let mut cfg = ScenarioConfig::new(Scenario::Chat);
//! cfg.port = 5222;
//! cfg.pairs = 5;
//! let report = run(&cfg).await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`config`]: [`ScenarioConfig`], every knob of a run, with defaults.
//! - [`client`]: the XMPP client: TCP, STARTTLS, SASL, bind, raw stanzas.
//! - [`sasl`]: SCRAM-SHA-256/SCRAM-SHA-1 (RFC 5802/7677) and PLAIN, client side.
//! - [`tls`]: the no-verify, no-resumption rustls client configuration.
//! - [`scan`]: the byte scanner that splits the stream into elements and
//!   reads attributes without a DOM.
//! - [`scenario`]: `login`, `idle`, `chat`, `mixed`, and what they share.
//! - [`sm`]: stream management (XEP-0198) acks: the client's count `h`.
//! - [`stats`]: the clock, the latency histogram and percentile math.
//! - [`report`]: the result structs (JSON) and the human summary.
//! - [`proc`]: the server's RSS and CPU time from /proc; the fd limit.
//! - [`error`]: the error type.

pub mod client;
pub mod config;
pub mod error;
pub mod proc;
pub mod report;
pub mod sasl;
pub mod scan;
pub mod scenario;
pub mod sm;
pub mod stats;
pub mod tls;

pub use client::TlsMode;
pub use config::{Scenario, ScenarioConfig};
pub use error::Error;
pub use report::{Outcome, Report};
pub use sasl::Mech;

/// Runs one scenario against the server `cfg` names and reports on it.
/// Failed logins and dropped sessions are counted in the report; only a
/// bad configuration, an unresolvable host or an unreadable
/// `server_pids` entry make it an error.
pub async fn run(cfg: &ScenarioConfig) -> Result<Report, Error> {
    match cfg.scenario {
        Scenario::Login => scenario::login::run(cfg).await,
        Scenario::Idle => scenario::idle::run(cfg).await,
        Scenario::Chat => scenario::chat::run(cfg).await,
        Scenario::Mixed => scenario::mixed::run(cfg).await,
    }
}
