//! A run: ramp (everyone logs in), run (chat, churn, stalls, attacks for
//! `duration`), drain (no more sending; everyone logs in and takes what it
//! is owed), stop (everyone logs out); an interval line all along, a
//! summary at the end. A server that dies ends the run at once.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::{sleep, Instant};

use crate::attack::{self, KindStats};
use crate::ledger::Counts;
use crate::monitor::{self, Range, ServerSample};
use crate::session::{self, Phase, Shared};
use crate::Config;

/// Failed connects in a row that mean the server is gone.
const DEAD_AFTER_REFUSED: u64 = 50;
/// The ramp gives up waiting when nobody new has logged in for this long.
const RAMP_STALL: Duration = Duration::from_secs(30);

/// One interval line, as written to the JSON lines file.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub phase: &'static str,
    pub elapsed_s: f64,
    pub rss_bytes: Option<u64>,
    pub fds: Option<u64>,
    pub cpu_s: Option<f64>,
    pub sessions_up: u64,
    pub sessions: usize,
    pub sent: u64,
    pub delivered: u64,
    pub delivered_offline: u64,
    /// Pending although the addressee has been online for `loss_after`.
    pub lost_so_far: u64,
    pub pending: u64,
    pub duplicates: u64,
    pub bounced: u64,
    pub logins: u64,
    pub login_failures: u64,
    pub churn_logouts: u64,
    pub dropped: u64,
    pub attacks_made: u64,
    pub attacks_closed_with_error: u64,
    pub slow_reader_stalls: u64,
    pub slow_reader_closes: u64,
}

/// The end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub run_id: String,
    /// Set when the run was cut short (the server died): the figures are
    /// then what was known at that moment.
    pub aborted: Option<String>,
    pub sessions: usize,
    pub rate: f64,
    pub churn: f64,
    pub slow_readers: usize,
    pub attack: bool,
    pub ramp_s: f64,
    pub run_s: f64,
    pub drain_s: f64,
    pub messages: Counts,
    /// Still pending after the drain.
    pub lost: u64,
    pub rss_bytes: Range,
    pub fds: Range,
    /// Server CPU seconds from the start of the run phase to the end.
    pub server_cpu_s: Option<f64>,
    /// Of it, per delivered message (logins, churn, attacks included).
    pub server_cpu_us_per_message: Option<f64>,
    pub generator_cpu_s: f64,
    pub logins: u64,
    pub login_failures: u64,
    pub churn_logouts: u64,
    pub dropped: u64,
    pub write_failures: u64,
    pub skipped_sends: u64,
    pub slow_reader_stalls: u64,
    pub slow_reader_closes: u64,
    pub slow_reader_close_conditions: BTreeMap<String, u64>,
    /// Slow-reader closes where the stream ended inside a stanza.
    pub slow_reader_cut_stanzas: u64,
    pub attacks_made: u64,
    pub attacks_closed_with_error: u64,
    pub attacks: BTreeMap<&'static str, KindStats>,
    /// Connection and login failures by kind.
    pub errors: BTreeMap<String, u64>,
}

impl Summary {
    /// Lost, duplicated, misrouted or bounced messages.
    pub fn message_failures(&self) -> Vec<String> {
        let m = &self.messages;
        [
            (self.lost, "lost"),
            (m.duplicates, "duplicated"),
            (m.misrouted, "misrouted"),
            (m.bounced, "bounced"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect()
    }

    pub fn ok(&self) -> bool {
        self.aborted.is_none() && self.message_failures().is_empty()
    }
}

fn mib(b: f64) -> f64 {
    b / (1024.0 * 1024.0)
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.messages;
        writeln!(
            f,
            "osprey-soak summary (run {}): {} sessions, {} msgs/s, churn {}/s, {} slow reader(s), attacks {}; \
             ramp {:.1} s, run {:.1} s, drain {:.1} s",
            self.run_id,
            self.sessions,
            self.rate,
            self.churn,
            self.slow_readers,
            if self.attack { "on" } else { "off" },
            self.ramp_s,
            self.run_s,
            self.drain_s
        )?;
        if self.rss_bytes.samples > 0 {
            let r = &self.rss_bytes;
            writeln!(
                f,
                "  server RSS (MiB): first {:.1}, min {:.1}, max {:.1}, last {:.1}",
                mib(r.first),
                mib(r.min),
                mib(r.max),
                mib(r.last)
            )?;
            let d = &self.fds;
            writeln!(
                f,
                "  server fds: first {}, min {}, max {}, last {}",
                d.first, d.min, d.max, d.last
            )?;
        }
        if let Some(cpu) = self.server_cpu_s {
            write!(f, "  server CPU: {cpu:.2} s")?;
            if let Some(us) = self.server_cpu_us_per_message {
                write!(
                    f,
                    ", {us:.1} µs per delivered message (logins, churn and attacks included)"
                )?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "  messages: sent {}, delivered {} ({} from offline storage), lost {}, duplicates {}, \
             misrouted {}, bounced {}, unconfirmed writes {}, unknown ids {}, earlier runs' {}",
            m.sent,
            m.delivered,
            m.delivered_offline,
            self.lost,
            m.duplicates,
            m.misrouted,
            m.bounced,
            m.unconfirmed,
            m.unknown,
            m.stale
        )?;
        writeln!(
            f,
            "  sessions: {} logins ({} failed), {} churn logouts, {} unexpected disconnects, \
             {} failed writes, {} sends not placed",
            self.logins,
            self.login_failures,
            self.churn_logouts,
            self.dropped,
            self.write_failures,
            self.skipped_sends
        )?;
        if self.slow_readers > 0 {
            writeln!(
                f,
                "  slow readers: {} stalls, {} closed by the server {:?}, {} of them inside a stanza",
                self.slow_reader_stalls,
                self.slow_reader_closes,
                self.slow_reader_close_conditions,
                self.slow_reader_cut_stanzas
            )?;
        }
        if self.attack {
            writeln!(
                f,
                "  attacks: {} connections, {} closed with a stream error",
                self.attacks_made, self.attacks_closed_with_error
            )?;
            for (kind, k) in &self.attacks {
                let endings: Vec<String> =
                    k.endings.iter().map(|(e, n)| format!("{e} ×{n}")).collect();
                writeln!(
                    f,
                    "    {kind:<12} {:>4} made: {}",
                    k.made,
                    endings.join(", ")
                )?;
            }
        }
        if !self.errors.is_empty() {
            writeln!(f, "  connection/login errors: {:?}", self.errors)?;
        }
        writeln!(f, "  generator CPU: {:.2} s", self.generator_cpu_s)?;
        match (&self.aborted, self.message_failures()) {
            (Some(why), _) => writeln!(f, "RESULT: ABORTED: {why}"),
            (None, fails) if fails.is_empty() => {
                writeln!(f, "RESULT: OK: every message arrived exactly once")
            }
            (None, fails) => writeln!(f, "RESULT: FAIL: {}", fails.join(", ")),
        }
    }
}

impl Interval {
    pub fn line(&self) -> String {
        let mut s = format!("{:>6.0}s {:<5}", self.elapsed_s, self.phase);
        match (self.rss_bytes, self.fds, self.cpu_s) {
            (Some(r), Some(d), Some(c)) => {
                let _ = write!(
                    s,
                    " rss {:>7.1} MiB  fds {:>6}  cpu {:>8.2} s |",
                    mib(r as f64),
                    d,
                    c
                );
            }
            _ => s.push_str(" (no server pid) |"),
        }
        let _ = write!(
            s,
            " up {}/{} | sent {} delivered {} lost {} pending {} dup {} | attacks {} made {} error-closed | slow-reader closes {}",
            self.sessions_up,
            self.sessions,
            self.sent,
            self.delivered,
            self.lost_so_far,
            self.pending,
            self.duplicates,
            self.attacks_made,
            self.attacks_closed_with_error,
            self.slow_reader_closes
        );
        s
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Ramp => "ramp",
        Phase::Run => "run",
        Phase::Drain => "drain",
        Phase::Stop => "stop",
    }
}

/// What the reporter keeps across intervals.
struct Reporter {
    sh: Arc<Shared>,
    t0: Instant,
    json: Option<std::io::BufWriter<std::fs::File>>,
    rss: Range,
    fds: Range,
    last: Option<ServerSample>,
}

impl Reporter {
    fn sample(&mut self) -> Interval {
        let sh = &self.sh;
        let server = sh.cfg.server_pid.and_then(monitor::sample);
        if let Some(s) = server {
            self.rss.add(s.rss_bytes as f64);
            self.fds.add(s.fds as f64);
            self.last = Some(s);
        }
        let c = sh.ledger.counts();
        let st = &sh.stats;
        let lost_so_far = sh
            .ledger
            .overdue(std::time::Instant::now(), sh.cfg.loss_after, |u| {
                sh.online_since(u)
            });
        Interval {
            kind: "interval",
            phase: phase_name(sh.phase()),
            elapsed_s: self.t0.elapsed().as_secs_f64(),
            rss_bytes: server.map(|s| s.rss_bytes),
            fds: server.map(|s| s.fds),
            cpu_s: server.map(|s| s.cpu_s),
            sessions_up: st.online.load(Relaxed),
            sessions: sh.cfg.sessions,
            sent: c.sent,
            delivered: c.delivered,
            delivered_offline: c.delivered_offline,
            lost_so_far,
            pending: c.pending,
            duplicates: c.duplicates,
            bounced: c.bounced,
            logins: st.logins.load(Relaxed),
            login_failures: st.login_failures.load(Relaxed),
            churn_logouts: st.churned.load(Relaxed),
            dropped: st.dropped.load(Relaxed),
            attacks_made: sh.attacks.made.load(Relaxed),
            attacks_closed_with_error: sh.attacks.closed_with_error.load(Relaxed),
            slow_reader_stalls: st.slow_stalls.load(Relaxed),
            slow_reader_closes: st.slow_closes.load(Relaxed),
        }
    }

    fn report(&mut self) {
        let i = self.sample();
        println!("{}", i.line());
        self.json_line(&i);
    }

    fn json_line<T: Serialize>(&mut self, v: &T) {
        if let Some(w) = self.json.as_mut() {
            let _ = serde_json::to_writer(&mut *w, v);
            let _ = writeln!(w);
            let _ = w.flush();
        }
    }
}

/// Sleeps until `until`, printing an interval line at each tick of
/// `next`; returns early (false) when the run is aborted or `done` holds.
async fn wait_reporting(
    rep: &mut Reporter,
    next: &mut Instant,
    until: Instant,
    done: impl Fn(&Shared) -> bool,
) -> bool {
    let sh = rep.sh.clone();
    let mut abort = sh.abort.subscribe();
    loop {
        if sh.aborted() {
            return false;
        }
        if done(&sh) {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        if now >= *next {
            rep.report();
            *next += sh.cfg.interval;
            continue;
        }
        tokio::select! {
            _ = sleep(Duration::from_millis(100).min(until - now).min(*next - now)) => {}
            _ = abort.changed() => {}
        }
    }
}

/// Ends the run when the server process is gone, or refuses every
/// connection.
async fn watch_server(sh: Arc<Shared>, t0: Instant) {
    loop {
        sleep(Duration::from_millis(200)).await;
        let why = match sh.cfg.server_pid {
            Some(pid) if !monitor::alive(pid) => Some(format!("the server (pid {pid}) exited")),
            _ if sh.stats.connect_streak.load(Relaxed) >= DEAD_AFTER_REFUSED => Some(format!(
                "the server refused {DEAD_AFTER_REFUSED} connections in a row"
            )),
            _ => None,
        };
        if let Some(why) = why {
            let why = format!("{why} at {:.1} s", t0.elapsed().as_secs_f64());
            eprintln!("osprey-soak: ABORTING: {why}");
            let _ = sh.abort.send(Some(why));
            let _ = sh.phase.send(Phase::Stop);
            return;
        }
    }
}

fn self_cpu() -> f64 {
    osprey_loadgen::proc::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Runs the soak. An error is a bad configuration or an unreachable
/// setup; a run that went wrong (the server died, messages were lost) is
/// a [`Summary`] that says so.
pub async fn run(cfg: &Config) -> Result<Summary, String> {
    cfg.check()?;
    let mut lcfg = osprey_loadgen::ScenarioConfig::new(osprey_loadgen::Scenario::Idle);
    lcfg.host = cfg.host.clone();
    lcfg.port = cfg.port;
    lcfg.domain = cfg.domain.clone();
    lcfg.mech = cfg.mech;
    lcfg.tls = cfg.tls;
    lcfg.resource = "soak".into();
    lcfg.timeout = cfg.login_timeout;
    let opts = lcfg.connect_options().await.map_err(|e| e.to_string())?;
    cfg.check_attack_target(opts.addr)?;
    if let Some(pid) = cfg.server_pid {
        if monitor::sample(pid).is_none() {
            return Err(format!("cannot read /proc/{pid} (--server-pid)"));
        }
    }
    let json = match &cfg.json {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )),
        None => None,
    };
    let run_id = format!("{:08x}", rand::random::<u32>());
    let gen_cpu0 = self_cpu();
    let (sh, rx) = Shared::new(cfg, opts, run_id.clone());
    let start = Instant::now();
    tokio::spawn(watch_server(sh.clone(), start));
    let mut rep = Reporter {
        sh: sh.clone(),
        t0: start,
        json,
        rss: Range::default(),
        fds: Range::default(),
        last: None,
    };
    println!(
        "osprey-soak: run {run_id}: {} sessions ({} slow readers) on {} as {}..{}@{}, {} msgs/s, churn {}/s, attacks {}, {} s",
        cfg.sessions,
        cfg.slow_readers,
        sh.opts.addr,
        cfg.user(0),
        cfg.user(cfg.sessions - 1),
        cfg.domain,
        cfg.rate,
        cfg.churn,
        if cfg.attack { "on" } else { "off" },
        cfg.duration.as_secs_f64()
    );
    rep.report();

    let mut tasks = tokio::task::JoinSet::new();
    for (i, cmds) in rx.cmds.into_iter().enumerate() {
        if i < cfg.slow_readers {
            drop(cmds);
            tasks.spawn(session::slow(sh.clone(), i as u32));
        } else {
            tasks.spawn(session::ordinary(sh.clone(), i as u32, cmds));
        }
    }
    tokio::spawn(session::flood(sh.clone(), rx.flood));

    // Ramp.
    let mut next = start + cfg.interval;
    // Until everyone is up, or nobody new has come up for RAMP_STALL.
    let ramp_progress = std::sync::Mutex::new((0u64, Instant::now()));
    let ramped = |sh: &Shared| {
        let up = sh.stats.online.load(Relaxed);
        if up >= sh.cfg.sessions as u64 {
            return true;
        }
        let Ok(mut p) = ramp_progress.lock() else {
            return false;
        };
        if up > p.0 {
            *p = (up, Instant::now());
        }
        p.1.elapsed() > RAMP_STALL
    };
    wait_reporting(&mut rep, &mut next, start + cfg.ramp_timeout, ramped).await;
    let ramp_s = start.elapsed().as_secs_f64();
    let up = sh.stats.online.load(Relaxed);
    if !sh.aborted() {
        println!(
            "osprey-soak: ramp: {up}/{} sessions up in {ramp_s:.1} s",
            cfg.sessions
        );
        if up < cfg.sessions as u64 {
            eprintln!(
                "osprey-soak: warning: {} sessions are not up ({} failed logins so far, by kind in the summary); running anyway",
                cfg.sessions as u64 - up,
                sh.stats.login_failures.load(Relaxed)
            );
        }
    }

    // Run.
    let run_start = Instant::now();
    let cpu0 = cfg.server_pid.and_then(monitor::sample).map(|s| s.cpu_s);
    let run_end = run_start + cfg.duration;
    if !sh.aborted() {
        let _ = sh.phase.send(Phase::Run);
        tokio::spawn(session::schedule(sh.clone()));
        if cfg.attack {
            for k in 0..cfg.attackers {
                tokio::spawn(attack::attacker(sh.clone(), k, run_end));
            }
        }
        rep.report();
        next = Instant::now() + cfg.interval;
        wait_reporting(&mut rep, &mut next, run_end, |_| false).await;
    }
    let run_s = run_start.elapsed().as_secs_f64();

    // Drain: nothing more is sent; offline sessions log in.
    let drain_start = Instant::now();
    if !sh.aborted() {
        let _ = sh.phase.send(Phase::Drain);
        println!(
            "osprey-soak: drain: waiting up to {:.0} s for {} pending messages",
            cfg.drain.as_secs_f64(),
            sh.ledger.counts().pending
        );
        // Done when nothing is pending, or when every session is up and
        // nothing has arrived for `loss_after` (what is missing by then is
        // not coming).
        let progress = std::sync::Mutex::new((u64::MAX, Instant::now()));
        let settled = |sh: &Shared| {
            let c = sh.ledger.counts();
            if c.pending == 0 {
                return true;
            }
            let Ok(mut p) = progress.lock() else {
                return false;
            };
            let all_up = sh.stats.online.load(Relaxed) >= sh.cfg.sessions as u64;
            if p.0 != c.delivered || !all_up {
                *p = (c.delivered, Instant::now());
                return false;
            }
            p.1.elapsed() > sh.cfg.loss_after
        };
        wait_reporting(&mut rep, &mut next, drain_start + cfg.drain, settled).await;
        let pending = sh.ledger.counts().pending;
        if pending > 0 && !sh.aborted() {
            println!(
                "osprey-soak: drain: {pending} messages still pending after {:.1} s",
                drain_start.elapsed().as_secs_f64()
            );
        }
        // Late duplicates would still come now.
        wait_reporting(
            &mut rep,
            &mut next,
            Instant::now() + Duration::from_secs(2),
            |_| false,
        )
        .await;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    let final_interval = rep.sample();
    let cpu1 = rep.last.map(|s| s.cpu_s);

    // Stop: everyone logs out (briefly waited for; not when aborted).
    let _ = sh.phase.send(Phase::Stop);
    if !sh.aborted() {
        println!("{}", final_interval.line());
        rep.json_line(&final_interval);
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
    }
    tasks.abort_all();

    let messages = sh.ledger.counts();
    let st = &sh.stats;
    let server_cpu_s = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let summary = Summary {
        kind: "summary",
        run_id,
        aborted: sh.abort.borrow().clone(),
        sessions: cfg.sessions,
        rate: cfg.rate,
        churn: cfg.churn,
        slow_readers: cfg.slow_readers,
        attack: cfg.attack,
        ramp_s,
        run_s,
        drain_s,
        lost: messages.pending,
        messages,
        rss_bytes: rep.rss,
        fds: rep.fds,
        server_cpu_s,
        server_cpu_us_per_message: server_cpu_s
            .filter(|_| messages.delivered > 0)
            .map(|c| c * 1e6 / messages.delivered as f64),
        generator_cpu_s: self_cpu() - gen_cpu0,
        logins: st.logins.load(Relaxed),
        login_failures: st.login_failures.load(Relaxed),
        churn_logouts: st.churned.load(Relaxed),
        dropped: st.dropped.load(Relaxed),
        write_failures: st.write_failures.load(Relaxed),
        skipped_sends: st.skipped.load(Relaxed),
        slow_reader_stalls: st.slow_stalls.load(Relaxed),
        slow_reader_closes: st.slow_closes.load(Relaxed),
        slow_reader_cut_stanzas: st.slow_cut.load(Relaxed),
        slow_reader_close_conditions: st
            .slow_close_conditions
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default(),
        attacks_made: sh.attacks.made.load(Relaxed),
        attacks_closed_with_error: sh.attacks.closed_with_error.load(Relaxed),
        attacks: sh.attacks.by_kind(),
        errors: sh.failures.take(),
    };
    if summary.lost > 0 && summary.aborted.is_none() {
        let mut by: Vec<(u32, u64)> = sh.ledger.pending_by_addressee().into_iter().collect();
        by.sort_by_key(|b| std::cmp::Reverse(b.1));
        let top: Vec<String> = by
            .iter()
            .take(10)
            .map(|(u, n)| format!("{} ({n})", cfg.user(*u as usize)))
            .collect();
        eprintln!("osprey-soak: lost messages were for: {}", top.join(", "));
    }
    rep.json_line(&summary);
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            kind: "summary",
            run_id: "ab".into(),
            aborted: None,
            sessions: 10,
            rate: 1.0,
            churn: 0.0,
            slow_readers: 1,
            attack: true,
            ramp_s: 1.0,
            run_s: 2.0,
            drain_s: 0.5,
            messages: Counts {
                sent: 10,
                delivered: 10,
                ..Counts::default()
            },
            lost: 0,
            rss_bytes: Range::default(),
            fds: Range::default(),
            server_cpu_s: None,
            server_cpu_us_per_message: None,
            generator_cpu_s: 0.1,
            logins: 10,
            login_failures: 0,
            churn_logouts: 0,
            dropped: 0,
            write_failures: 0,
            skipped_sends: 0,
            slow_reader_stalls: 0,
            slow_reader_closes: 0,
            slow_reader_close_conditions: BTreeMap::new(),
            slow_reader_cut_stanzas: 0,
            attacks_made: 0,
            attacks_closed_with_error: 0,
            attacks: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn verdicts() {
        let mut s = summary();
        assert!(s.ok());
        assert!(s.to_string().contains("RESULT: OK"));
        s.lost = 2;
        s.messages.duplicates = 1;
        assert!(!s.ok());
        assert_eq!(s.message_failures(), ["2 lost", "1 duplicated"]);
        assert!(s.to_string().contains("RESULT: FAIL: 2 lost, 1 duplicated"));
        let mut s = summary();
        s.messages.bounced = 1;
        assert!(!s.ok());
        let mut s = summary();
        s.aborted = Some("the server (pid 1) exited at 3.0 s".into());
        assert!(!s.ok());
        assert!(s.to_string().contains("RESULT: ABORTED: the server"));
        let v: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(v["type"], "summary");
        assert_eq!(v["messages"]["sent"], 10);
    }
}
