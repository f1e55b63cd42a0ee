//! What a run produces: one [`Report`] per run, as JSON (for scripts) and
//! as a short human summary (its `Display`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::client::TlsMode;
use crate::config::{Scenario, ScenarioConfig};
use crate::sasl::Mech;

/// Latency percentiles in milliseconds (nearest rank; see [`crate::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// The parameters the run used (enough to repeat it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub host: String,
    pub port: u16,
    /// chat: where the second user of each pair logged in, when not on
    /// `host`/`port` (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_port: Option<u16>,
    pub domain: String,
    pub users: usize,
    pub prefix: String,
    pub concurrency: usize,
    pub mech: Mech,
    pub tls: TlsMode,
    pub pairs: usize,
    pub login_for_s: Option<f64>,
    pub duration_s: f64,
    pub rate: f64,
    pub window: usize,
    pub interval_s: f64,
    pub contacts: usize,
    pub body_size: usize,
    /// With stream management (XEP-0198) on: the ack interval (absent
    /// when off, so reports without it read as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_ack_every: Option<u32>,
}

impl Params {
    pub fn of(c: &ScenarioConfig) -> Params {
        Params {
            host: c.host.clone(),
            port: c.port,
            peer_host: c
                .has_peer()
                .then(|| c.peer_host.clone().unwrap_or_else(|| c.host.clone())),
            peer_port: c.has_peer().then(|| c.peer_port.unwrap_or(c.port)),
            domain: c.domain.clone(),
            users: c.accounts(),
            prefix: c.prefix.clone(),
            concurrency: c.concurrency,
            mech: c.mech,
            tls: c.tls,
            pairs: c.pairs,
            login_for_s: c.login_for.map(|d| d.as_secs_f64()),
            duration_s: c.duration.as_secs_f64(),
            rate: c.rate,
            window: c.window,
            interval_s: c.interval.as_secs_f64(),
            contacts: c.contacts,
            body_size: c.body_size,
            sm_ack_every: c.stream_management.then_some(c.sm_ack_every),
        }
    }
}

/// The server process as /proc saw it during the measured part of the run;
/// with several `--server-pid`s (a cluster's nodes), their sum (pid 0),
/// each one's usage in `each`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// User + system CPU time the server used in the measured part.
    pub cpu_seconds: f64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    /// With several processes: each one, in `--server-pid` order (absent
    /// with one, so single-server reports read as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub each: Vec<ServerUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoginResult {
    pub attempted: u64,
    pub ok: u64,
    pub failed: u64,
    pub logins_per_s: f64,
    /// Connect to bound, per successful login.
    pub latency: Latency,
    /// Server CPU seconds per 1,000 successful logins.
    pub cpu_s_per_1k: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleResult {
    pub target: u64,
    /// Sessions still open when the RSS was read.
    pub online: u64,
    pub failed: u64,
    pub login_s: f64,
    pub hold_s: f64,
    /// (RSS after − RSS before) / online.
    pub rss_per_session_bytes: Option<f64>,
    /// Server CPU seconds per second while holding (probes, timers…).
    pub cpu_s_per_s_idle: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatResult {
    pub pairs: u64,
    pub login_failed: u64,
    /// 0 = maximum rate.
    pub target_rate: f64,
    pub sent: u64,
    pub delivered: u64,
    /// sent − delivered after the grace period; must be 0.
    pub lost: u64,
    /// Error stanzas received (bounces).
    pub errors: u64,
    /// Delivered messages per second of sending time.
    pub delivered_per_s: f64,
    /// Send to receipt, per delivered message.
    pub latency: Latency,
    /// Server CPU seconds per 1,000 delivered messages (summed over the
    /// `--server-pid`s).
    pub cpu_s_per_1k: Option<f64>,
    /// With several `--server-pid`s: each one's CPU seconds per 1,000
    /// delivered messages, in the same order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_s_per_1k_each: Vec<f64>,
    /// Seconds from all logged in until a probe message had crossed each
    /// pair both ways (before the measured part; not counted in it).
    #[serde(default)]
    pub settle_s: f64,
    /// Pairs whose probe never arrived within the settle limit (they
    /// still send; 0 expected).
    #[serde(default)]
    pub unsettled: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MixedResult {
    pub users: u64,
    pub online: u64,
    pub login_failed: u64,
    pub login_latency: Latency,
    /// The roster get's round trip (grows with the roster).
    #[serde(default)]
    pub roster_latency: Latency,
    pub roster_items_added: u64,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub errors: u64,
    pub latency: Latency,
    /// Sessions that ended before the run did.
    pub dropped: u64,
    pub cpu_s_per_1k: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Login(LoginResult),
    Idle(IdleResult),
    Chat(ChatResult),
    Mixed(MixedResult),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: Scenario,
    pub label: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    pub elapsed_s: f64,
    pub params: Params,
    pub result: Outcome,
    pub server: Option<ServerUsage>,
    /// CPU seconds the generator itself used over the whole run: compare
    /// with elapsed_s to see that it was not the bottleneck.
    pub generator_cpu_s: f64,
    /// Failures by kind (at most 20 kinds), e.g. "auth: not-authorized".
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    pub fn to_json(&self) -> String {
        // Plain structs of numbers and strings: serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn from_json(s: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(s)
    }
}

/// Counts failures by kind, from any task.
#[derive(Default)]
pub struct Failures(Mutex<BTreeMap<String, u64>>);

impl Failures {
    pub fn add(&self, e: &crate::Error) {
        if let Ok(mut m) = self.0.lock() {
            let kind = e.kind();
            if m.len() < 20 || m.contains_key(&kind) {
                *m.entry(kind).or_insert(0) += 1;
            }
        }
    }

    pub fn take(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

fn lat(f: &mut fmt::Formatter<'_>, what: &str, l: &Latency) -> fmt::Result {
    writeln!(
        f,
        "  {what}: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms ({} samples)",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
    )
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map(|v| format!("{v:.4} {unit}"))
        .unwrap_or_else(|| "n/a (no --server-pid)".into())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        let peer = match (&p.peer_host, p.peer_port) {
            (Some(h), Some(port)) => format!(" (second of each pair on {h}:{port})"),
            _ => String::new(),
        };
        writeln!(
            f,
            "{} {} → {}:{}{peer} ({}, {}, tls {:?}{}) in {:.1} s",
            self.scenario.name(),
            self.label,
            p.host,
            p.port,
            p.domain,
            p.mech.name(),
            p.tls,
            p.sm_ack_every
                .map(|n| format!(", stream management, ack every {n}"))
                .unwrap_or_default(),
            self.elapsed_s
        )?;
        match &self.result {
            Outcome::Login(r) => {
                writeln!(
                    f,
                    "  logins: {} ok, {} failed of {} at concurrency {}: {:.0} logins/s",
                    r.ok, r.failed, r.attempted, p.concurrency, r.logins_per_s
                )?;
                lat(f, "login latency", &r.latency)?;
                writeln!(
                    f,
                    "  server CPU: {}",
                    opt(r.cpu_s_per_1k, "s per 1k logins")
                )?;
            }
            Outcome::Idle(r) => {
                writeln!(
                    f,
                    "  sessions: {} online of {} ({} failed), logged in in {:.1} s, held {:.1} s",
                    r.online, r.target, r.failed, r.login_s, r.hold_s
                )?;
                writeln!(
                    f,
                    "  server RSS per session: {}",
                    r.rss_per_session_bytes
                        .map(|b| format!("{:.1} KiB", b / 1024.0))
                        .unwrap_or_else(|| "n/a (no --server-pid)".into())
                )?;
                writeln!(
                    f,
                    "  server CPU while idle: {}",
                    opt(r.cpu_s_per_s_idle, "s/s")
                )?;
            }
            Outcome::Chat(r) => {
                let rate = if r.target_rate > 0.0 {
                    format!("target {:.0} msgs/s", r.target_rate)
                } else {
                    format!("max rate, window {}", p.window)
                };
                writeln!(
                    f,
                    "  {} pairs, {rate}: sent {}, delivered {}, lost {}, errors {}: {:.0} msgs/s",
                    r.pairs, r.sent, r.delivered, r.lost, r.errors, r.delivered_per_s
                )?;
                lat(f, "end-to-end latency", &r.latency)?;
                let each = if r.cpu_s_per_1k_each.is_empty() {
                    String::new()
                } else {
                    let parts: Vec<String> = r
                        .cpu_s_per_1k_each
                        .iter()
                        .map(|c| format!("{c:.4}"))
                        .collect();
                    format!(" (sum of {})", parts.join(" + "))
                };
                writeln!(
                    f,
                    "  server CPU: {}{each}",
                    opt(r.cpu_s_per_1k, "s per 1k messages")
                )?;
                writeln!(
                    f,
                    "  settle: {:.3} s until a probe crossed every pair both ways ({} pairs unsettled)",
                    r.settle_s, r.unsettled
                )?;
            }
            Outcome::Mixed(r) => {
                writeln!(
                    f,
                    "  users: {} online of {} ({} login failures, {} dropped), {} roster items added",
                    r.online, r.users, r.login_failed, r.dropped, r.roster_items_added
                )?;
                lat(f, "login latency", &r.login_latency)?;
                lat(f, "roster get latency", &r.roster_latency)?;
                writeln!(
                    f,
                    "  messages: sent {}, delivered {}, lost {}, errors {}",
                    r.sent, r.delivered, r.lost, r.errors
                )?;
                lat(f, "end-to-end latency", &r.latency)?;
                writeln!(
                    f,
                    "  server CPU: {}",
                    opt(r.cpu_s_per_1k, "s per 1k messages")
                )?;
            }
        }
        if let Some(s) = &self.server {
            let procs = if s.each.is_empty() {
                std::slice::from_ref(s)
            } else {
                &s.each[..]
            };
            for s in procs {
                writeln!(
                    f,
                    "  server pid {}: {:.2} CPU s, RSS {:.1} → {:.1} MiB",
                    s.pid,
                    s.cpu_seconds,
                    s.rss_before_bytes as f64 / 1048576.0,
                    s.rss_after_bytes as f64 / 1048576.0
                )?;
            }
            if !s.each.is_empty() {
                writeln!(
                    f,
                    "  servers together: {:.2} CPU s, RSS {:.1} → {:.1} MiB",
                    s.cpu_seconds,
                    s.rss_before_bytes as f64 / 1048576.0,
                    s.rss_after_bytes as f64 / 1048576.0
                )?;
            }
        }
        writeln!(
            f,
            "  generator CPU: {:.2} s ({:.0} % of one core over the run)",
            self.generator_cpu_s,
            self.generator_cpu_s / self.elapsed_s.max(1e-9) * 100.0
        )?;
        for (kind, n) in &self.errors {
            writeln!(f, "  failure ×{n}: {kind}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut errors = BTreeMap::new();
        errors.insert("auth: not-authorized".to_string(), 2);
        Report {
            scenario: Scenario::Chat,
            label: "osprey".into(),
            started_unix: 1_700_000_000,
            elapsed_s: 12.5,
            params: Params::of(&ScenarioConfig::new(Scenario::Chat)),
            result: Outcome::Chat(ChatResult {
                pairs: 10,
                login_failed: 0,
                target_rate: 0.0,
                sent: 1000,
                delivered: 1000,
                lost: 0,
                errors: 0,
                delivered_per_s: 100.0,
                latency: Latency {
                    count: 1000,
                    min_ms: 0.1,
                    mean_ms: 0.5,
                    p50_ms: 0.4,
                    p90_ms: 0.8,
                    p99_ms: 1.5,
                    p999_ms: 2.5,
                    max_ms: 3.0,
                },
                cpu_s_per_1k: Some(0.05),
                cpu_s_per_1k_each: Vec::new(),
                settle_s: 0.01,
                unsettled: 0,
            }),
            server: Some(ServerUsage {
                pid: 42,
                cpu_seconds: 0.05,
                rss_before_bytes: 1 << 20,
                rss_after_bytes: 2 << 20,
                each: Vec::new(),
            }),
            generator_cpu_s: 1.25,
            errors,
        }
    }

    #[test]
    fn json_round_trip() {
        let r = sample();
        let json = r.to_json();
        assert_eq!(Report::from_json(&json).expect("parse"), r);
    }

    #[test]
    fn json_shape_for_scripts() {
        // benches/compare/table.py reads these paths.
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).expect("json");
        assert_eq!(v["scenario"], "chat");
        assert_eq!(v["label"], "osprey");
        assert_eq!(v["params"]["mech"], "scram-sha-256");
        assert_eq!(v["params"]["tls"], "none");
        assert_eq!(v["result"]["chat"]["delivered_per_s"], 100.0);
        assert_eq!(v["result"]["chat"]["latency"]["p99_ms"], 1.5);
        assert_eq!(v["result"]["chat"]["lost"], 0);
        assert_eq!(v["server"]["cpu_seconds"], 0.05);
        assert_eq!(v["errors"]["auth: not-authorized"], 2);
    }

    #[test]
    fn several_servers_and_a_peer() {
        let mut cfg = ScenarioConfig::new(Scenario::Chat);
        cfg.peer_port = Some(6222);
        let mut r = sample();
        r.params = Params::of(&cfg);
        let one = |pid, cpu| ServerUsage {
            pid,
            cpu_seconds: cpu,
            rss_before_bytes: 1 << 20,
            rss_after_bytes: 1 << 20,
            each: Vec::new(),
        };
        r.server = Some(ServerUsage {
            pid: 0,
            cpu_seconds: 0.3,
            rss_before_bytes: 2 << 20,
            rss_after_bytes: 2 << 20,
            each: vec![one(7, 0.1), one(8, 0.2)],
        });
        if let Outcome::Chat(c) = &mut r.result {
            c.cpu_s_per_1k_each = vec![0.1, 0.2];
        }
        assert_eq!(Report::from_json(&r.to_json()).expect("parse"), r);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
        assert_eq!(v["params"]["peer_port"], 6222);
        assert_eq!(v["server"]["each"][1]["pid"], 8);
        assert_eq!(v["result"]["chat"]["cpu_s_per_1k_each"][0], 0.1);
        let text = r.to_string();
        assert!(
            text.contains("second of each pair on 127.0.0.1:6222"),
            "{text}"
        );
        assert!(text.contains("(sum of 0.1000 + 0.2000)"), "{text}");
        assert!(text.contains("server pid 8: 0.20 CPU s"), "{text}");
        // One server: no peer, no per-process list in the JSON.
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).expect("json");
        assert!(v["params"].get("peer_port").is_none());
        assert!(v["server"].get("each").is_none());
    }

    #[test]
    fn human_summary_names_the_numbers() {
        let text = sample().to_string();
        assert!(text.contains("chat osprey"), "{text}");
        assert!(text.contains("delivered 1000, lost 0"), "{text}");
        assert!(text.contains("p99 1.500 ms"), "{text}");
        assert!(text.contains("failure ×2: auth: not-authorized"), "{text}");
    }
}
