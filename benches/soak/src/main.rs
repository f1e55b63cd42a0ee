//! `osprey-soak [options]`: soaks a running server; an interval line every
//! `--interval`, a summary at the end.
//!
//! Exit status: 0 every message arrived exactly once; 1 some were lost,
//! duplicated, misrouted or bounced; 2 bad options or setup; 3 the run was
//! aborted (the server died or stopped accepting connections) or hung.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use osprey_soak::attack::Kind;
use osprey_soak::{Config, Mech, TlsMode};

#[derive(Parser)]
#[command(
    name = "osprey-soak",
    version,
    about = "Soak benchmark: many sessions chatting with exactly-once accounting, churn, slow readers and hostile connections, against a running server"
)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 5222)]
    port: u16,
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Accounts {prefix}{first}.. (sessions, then two for the attacks).
    #[arg(long, default_value = "user")]
    prefix: String,
    #[arg(long, default_value_t = 1)]
    first: usize,
    #[arg(long, default_value = "password")]
    password: String,
    #[arg(long, value_enum, default_value = "scram-sha-256")]
    mech: Mech,
    #[arg(long, value_enum, default_value = "none")]
    tls: TlsMode,
    /// Sessions held (slow readers included).
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Seconds of the run (after all sessions are up).
    #[arg(long, default_value_t = 120.0)]
    duration: f64,
    /// Messages per second over all sessions, between random pairs.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Bytes of message body.
    #[arg(long, default_value_t = 32)]
    body_size: usize,
    /// Logouts per second (each session comes back after a pause).
    #[arg(long, default_value_t = 2.0)]
    churn: f64,
    /// Seconds a churned session stays logged out: at least…
    #[arg(long, default_value_t = 1.0)]
    offline_min: f64,
    /// …and at most.
    #[arg(long, default_value_t = 5.0)]
    offline_max: f64,
    /// Sessions that stop reading now and then (the first accounts).
    #[arg(long, default_value_t = 1)]
    slow_readers: usize,
    /// Seconds a slow reader reads normally before each stall.
    #[arg(long, default_value_t = 20.0)]
    slow_every: f64,
    /// Bytes sent to a stalled reader (more than the server's queue bound,
    /// `max_queue_bytes`, plus socket buffers).
    #[arg(long, default_value_t = 8 << 20)]
    slow_bytes: usize,
    /// Body bytes of each message to a stalled reader.
    #[arg(long, default_value_t = 32 * 1024)]
    slow_body: usize,
    /// Messages per second to a stalled reader.
    #[arg(long, default_value_t = 100.0)]
    slow_rate: f64,
    /// Keep a few hostile connections going (127.0.0.1 only).
    #[arg(long)]
    attack: bool,
    /// Hostile connections at once.
    #[arg(long, default_value_t = 3)]
    attackers: usize,
    /// Which attacks (comma-separated; default all).
    #[arg(long, value_enum, value_delimiter = ',')]
    attack_kinds: Vec<Kind>,
    /// Seconds between one attacker's connections.
    #[arg(long, default_value_t = 2.0)]
    attack_pause: f64,
    /// Seconds between the trickle attack's bytes.
    #[arg(long, default_value_t = 5.0)]
    trickle_every: f64,
    /// Seconds an attack connection waits for the server to close it.
    #[arg(long, default_value_t = 90.0)]
    attack_max: f64,
    /// Seconds between interval lines.
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// Also write the interval lines and the summary to this JSON lines file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The server's PID: RSS, descriptors and CPU from /proc, and the run
    /// ends at once if it dies.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Loopback source addresses for the sessions (127.0.0.1, .2, …);
    /// 0: one per 200 sessions (servers cap connections per address).
    #[arg(long, default_value_t = 0)]
    source_ips: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Seconds allowed per login.
    #[arg(long, default_value_t = 30.0)]
    login_timeout: f64,
    /// Seconds to wait, after the run, for every owed message.
    #[arg(long, default_value_t = 60.0)]
    drain: f64,
    /// Seconds a message may stay pending while its addressee is online
    /// before the interval line counts it as lost so far.
    #[arg(long, default_value_t = 15.0)]
    loss_after: f64,
    /// Seconds to wait for all sessions to be up before the run.
    #[arg(long, default_value_t = 300.0)]
    ramp_timeout: f64,
}

fn secs(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{what} must be a number of seconds >= 0"))
}

fn config(cli: Cli) -> Result<Config, String> {
    let mut c = Config::new();
    c.host = cli.host;
    c.port = cli.port;
    c.domain = cli.domain;
    c.prefix = cli.prefix;
    c.first = cli.first;
    c.password = cli.password;
    c.mech = cli.mech;
    c.tls = cli.tls;
    c.sessions = cli.sessions;
    c.duration = secs(cli.duration, "duration")?;
    c.rate = cli.rate;
    c.body_size = cli.body_size;
    c.churn = cli.churn;
    c.offline_min = secs(cli.offline_min, "offline-min")?;
    c.offline_max = secs(cli.offline_max, "offline-max")?;
    c.slow_readers = cli.slow_readers;
    c.slow_every = secs(cli.slow_every, "slow-every")?;
    c.slow_bytes = cli.slow_bytes;
    c.slow_body = cli.slow_body;
    c.slow_rate = cli.slow_rate;
    c.attack = cli.attack;
    c.attackers = cli.attackers;
    if !cli.attack_kinds.is_empty() {
        c.attack_kinds = cli.attack_kinds;
    }
    c.attack_pause = secs(cli.attack_pause, "attack-pause")?;
    c.trickle_every = secs(cli.trickle_every, "trickle-every")?;
    c.attack_max = secs(cli.attack_max, "attack-max")?;
    c.interval = secs(cli.interval, "interval")?;
    c.json = cli.json;
    c.server_pid = cli.server_pid;
    c.source_ips = cli.source_ips;
    c.concurrency = cli.concurrency;
    c.login_timeout = secs(cli.login_timeout, "login-timeout")?;
    c.drain = secs(cli.drain, "drain")?;
    c.loss_after = secs(cli.loss_after, "loss-after")?;
    c.ramp_timeout = secs(cli.ramp_timeout, "ramp-timeout")?;
    c.check()?;
    Ok(c)
}

fn main() -> ExitCode {
    let cfg = match config(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("osprey-soak: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = osprey_loadgen::proc::raise_nofile_limit() {
        eprintln!("osprey-soak: warning: cannot raise the open-file limit: {e}");
    }
    // Every phase has its own deadline; this is the last resort should
    // one of them not hold.
    let limit = cfg.ramp_timeout + cfg.duration + cfg.drain + Duration::from_secs(120);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "osprey-soak: ABORTING: still running {:.0} s after the start (hung)",
            limit.as_secs_f64()
        );
        std::process::exit(3);
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("osprey-soak: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(osprey_soak::run(&cfg));
    // Sessions of an aborted run may still be retrying: do not wait.
    runtime.shutdown_background();
    match result {
        Ok(summary) => {
            print!("{summary}");
            if summary.aborted.is_some() {
                ExitCode::from(3)
            } else if summary.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("osprey-soak: {e}");
            ExitCode::from(2)
        }
    }
}
