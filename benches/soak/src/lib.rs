//! osprey-soak: a long-running soak benchmark against an already-running
//! Osprey (or any XMPP server with the same accounts). It holds N sessions
//! that chat at a modest rate with exactly-once accounting, logs some of
//! them out and back in all the time, stalls a few readers until the
//! server drops them, and (with `attack`) keeps a few hostile connections
//! going; every interval it prints the server's RSS, descriptors and CPU
//! next to the message and connection counts, and at the end it drains
//! every message still owed and says whether any was lost or duplicated.
//!
//! # Layout
//!
//! - [`ledger`]: sequence ids, pending/delivered/duplicate/bounce accounting.
//! - [`session`]: the chatting sessions, churn, the slow readers.
//! - [`attack`]: the hostile connections (trickle, nesting, attributes,
//!   character references, oversized stanzas, wrong passwords).
//! - [`monitor`]: the server seen from /proc; the per-interval samples.
//! - [`run`]: the phases of a run, the interval lines and the summary.

pub mod attack;
pub mod ledger;
pub mod monitor;
pub mod run;
pub mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use osprey_loadgen::{Mech, TlsMode};
pub use run::{run, Summary};

/// Every knob of a soak run; [`Config::new`] has the command line's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub domain: String,
    /// Sessions use accounts `{prefix}{first}` … `{prefix}{first+sessions-1}`;
    /// the attackers use the next two.
    pub prefix: String,
    pub first: usize,
    pub password: String,
    pub mech: Mech,
    pub tls: TlsMode,
    /// Sessions held (slow readers included).
    pub sessions: usize,
    /// Length of the measured run (after the ramp).
    pub duration: Duration,
    /// Messages per second over all sessions, between random pairs.
    pub rate: f64,
    pub body_size: usize,
    /// Logouts per second (each session logs back in after `offline_min..=offline_max`).
    pub churn: f64,
    pub offline_min: Duration,
    pub offline_max: Duration,
    /// Sessions (the first accounts) that stop reading now and then.
    pub slow_readers: usize,
    /// A slow reader reads normally this long before each stall.
    pub slow_every: Duration,
    /// Bytes of messages sent to a stalled reader (above the server's queue
    /// bound plus the socket buffers, so that the server must act).
    pub slow_bytes: usize,
    pub slow_body: usize,
    /// Messages per second sent to a stalled reader.
    pub slow_rate: f64,
    pub attack: bool,
    /// Hostile connections open at once.
    pub attackers: usize,
    pub attack_kinds: Vec<attack::Kind>,
    /// Pause between one attacker's connections.
    pub attack_pause: Duration,
    /// The trickle attack's gap between bytes.
    pub trickle_every: Duration,
    /// Longest an attack connection is kept waiting for the server to close it.
    pub attack_max: Duration,
    pub interval: Duration,
    /// JSON lines file: one object per interval, then the summary.
    pub json: Option<PathBuf>,
    pub server_pid: Option<u32>,
    /// Loopback source addresses the sessions connect from (127.0.0.1,
    /// .2, …; the server may cap connections per address); 0: one per 200
    /// sessions. Only when the server is on IPv4 loopback.
    pub source_ips: usize,
    /// Logins in flight at once.
    pub concurrency: usize,
    pub login_timeout: Duration,
    /// Longest wait for every owed message after the run.
    pub drain: Duration,
    /// A pending message counts as lost-so-far once its addressee has been
    /// online this long since it was sent.
    pub loss_after: Duration,
    /// Longest wait for all sessions to be up before the run starts.
    pub ramp_timeout: Duration,
}

impl Config {
    pub fn new() -> Config {
        Config {
            host: "127.0.0.1".into(),
            port: 5222,
            domain: "localhost".into(),
            prefix: "user".into(),
            first: 1,
            password: "password".into(),
            mech: Mech::ScramSha256,
            tls: TlsMode::None,
            sessions: 1000,
            duration: Duration::from_secs(120),
            rate: 100.0,
            body_size: 32,
            churn: 2.0,
            offline_min: Duration::from_secs(1),
            offline_max: Duration::from_secs(5),
            slow_readers: 1,
            slow_every: Duration::from_secs(20),
            slow_bytes: 8 << 20,
            slow_body: 32 * 1024,
            slow_rate: 100.0,
            attack: false,
            attackers: 3,
            attack_kinds: attack::Kind::ALL.to_vec(),
            attack_pause: Duration::from_secs(2),
            trickle_every: Duration::from_secs(5),
            attack_max: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            json: None,
            server_pid: None,
            source_ips: 0,
            concurrency: 50,
            login_timeout: Duration::from_secs(30),
            drain: Duration::from_secs(60),
            loss_after: Duration::from_secs(15),
            ramp_timeout: Duration::from_secs(300),
        }
    }

    /// The account name of session `i` (0-based).
    pub fn user(&self, i: usize) -> String {
        format!("{}{}", self.prefix, self.first + i)
    }

    /// The account the post-authentication attacks log in as.
    pub fn attack_user(&self) -> String {
        self.user(self.sessions)
    }

    /// The account the wrong-password attack tries.
    pub fn badpass_user(&self) -> String {
        self.user(self.sessions + 1)
    }

    pub fn check(&self) -> Result<(), String> {
        if self.sessions < self.slow_readers + 2 {
            return Err(format!(
                "--sessions must be at least --slow-readers + 2 ({})",
                self.slow_readers + 2
            ));
        }
        if self.sessions > u32::MAX as usize / 2 {
            return Err("--sessions is too large".into());
        }
        for (v, name) in [
            (self.rate, "rate"),
            (self.churn, "churn"),
            (self.slow_rate, "slow-rate"),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("--{name} must be a number >= 0"));
            }
        }
        if self.slow_readers > 0 && self.slow_rate == 0.0 {
            return Err("--slow-rate must be > 0 with slow readers".into());
        }
        if self.offline_min > self.offline_max {
            return Err("--offline-min must not exceed --offline-max".into());
        }
        if self.source_ips > 250 {
            return Err("--source-ips must be at most 250".into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if self.interval.is_zero() {
            return Err("--interval must be > 0".into());
        }
        if self.attack && (self.attackers == 0 || self.attack_kinds.is_empty()) {
            return Err("--attack needs at least one attacker and one kind".into());
        }
        if self.attack && self.trickle_every.is_zero() {
            return Err("--trickle-every must be > 0".into());
        }
        Ok(())
    }

    /// Hostile connections go to 127.0.0.1 only: refuse anything else.
    pub fn check_attack_target(&self, addr: SocketAddr) -> Result<(), String> {
        if self.attack && addr.ip() != std::net::IpAddr::from([127, 0, 0, 1]) {
            return Err(format!(
                "--attack only runs against 127.0.0.1, not {addr} (the attacks are for a local test server)"
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_checks() {
        let mut c = Config::new();
        c.sessions = 10;
        assert_eq!(c.user(0), "user1");
        assert_eq!(c.attack_user(), "user11");
        assert_eq!(c.badpass_user(), "user12");
        assert!(c.check().is_ok());
        c.slow_readers = 9;
        assert!(c.check().is_err());
        c.slow_readers = 1;
        c.rate = f64::NAN;
        assert!(c.check().is_err());
        c.rate = 1.0;
        c.attack = true;
        assert!(c
            .check_attack_target("127.0.0.1:5222".parse().unwrap())
            .is_ok());
        assert!(c
            .check_attack_target("10.0.0.1:5222".parse().unwrap())
            .is_err());
        assert!(c
            .check_attack_target("127.0.0.2:5222".parse().unwrap())
            .is_err());
        c.attack = false;
        assert!(c
            .check_attack_target("10.0.0.1:5222".parse().unwrap())
            .is_ok());
    }
}
