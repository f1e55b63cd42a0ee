//! `osprey-load SCENARIO [options]`: runs one scenario and prints its
//! report: the human summary on stdout, or with `--json` the JSON on
//! stdout and the summary on stderr.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use osprey_loadgen::{Mech, Scenario, ScenarioConfig, TlsMode};

#[derive(Parser)]
#[command(
    name = "osprey-load",
    version,
    about = "XMPP load generator: login, idle, chat and mixed scenarios"
)]
struct Cli {
    scenario: Scenario,
    /// A name for the target, copied into the report.
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 5222)]
    port: u16,
    /// chat: the host the second user of each pair (user 2k) logs in on
    /// (default: --host), e.g. another node of a cluster.
    #[arg(long, visible_alias = "receiver-host")]
    peer_host: Option<String>,
    /// chat: the port the second user of each pair (user 2k) logs in on
    /// (default: --port): with another node's port, every message of the
    /// pair (both directions) crosses from one node to the other.
    #[arg(long, visible_alias = "receiver-port")]
    peer_port: Option<u16>,
    #[arg(long, default_value = "localhost")]
    domain: String,
    /// Accounts {prefix}1..{prefix}N (login, idle, mixed).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Number of the first account.
    #[arg(long, default_value_t = 1)]
    first: usize,
    #[arg(long, default_value = "user")]
    prefix: String,
    #[arg(long, default_value = "password")]
    password: String,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    #[arg(long, value_enum, default_value = "scram-sha-256")]
    mech: Mech,
    #[arg(long, value_enum, default_value = "none")]
    tls: TlsMode,
    /// login: keep logging in for this many seconds, cycling over the
    /// accounts (a new resource each pass), instead of once per account.
    #[arg(long)]
    login_for: Option<f64>,
    /// chat: pairs (user 2k-1 ⇄ user 2k).
    #[arg(long, default_value_t = 10)]
    pairs: usize,
    /// Seconds: chat and mixed sending time; idle holding time.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// chat: messages/s over all senders; 0 = as fast as delivered.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// chat at rate 0: messages in flight per direction.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// mixed: mean seconds between one user's messages.
    #[arg(long, default_value_t = 5.0)]
    interval: f64,
    /// mixed: seconds over which users arrive (default duration/3).
    #[arg(long)]
    ramp: Option<f64>,
    /// mixed: contacts per user.
    #[arg(long, default_value_t = 20)]
    contacts: usize,
    /// mixed: do not add missing roster items.
    #[arg(long)]
    no_roster: bool,
    /// Bytes of message body.
    #[arg(long, default_value_t = 32)]
    body_size: usize,
    /// Seconds to wait for messages in flight when sending stops.
    #[arg(long, default_value_t = 5.0)]
    grace: f64,
    /// Seconds allowed per login.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// The server's PID: RSS and CPU time from /proc. May be given more
    /// than once (a cluster's nodes): CPU and RSS are summed, and each
    /// process's is reported too.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Loopback source addresses to use (0 = one per 20,000 connections).
    #[arg(long, default_value_t = 0)]
    source_ips: usize,
    /// Enable stream management (XEP-0198, urn:xmpp:sm:3) with resume
    /// after bind on every session, and acknowledge received stanzas.
    #[arg(long)]
    stream_management: bool,
    /// With --stream-management: send <a h/> after this many received
    /// stanzas (0 = only when the server sends <r/>, and at close).
    #[arg(long, default_value_t = osprey_loadgen::sm::DEFAULT_ACK_EVERY)]
    sm_ack_every: u32,
    /// Print the report as JSON on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
}

fn secs(s: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{what} must be a number of seconds >= 0"))
}

fn config(cli: &Cli) -> Result<ScenarioConfig, String> {
    let mut c = ScenarioConfig::new(cli.scenario);
    c.label = cli.label.clone();
    c.host = cli.host.clone();
    c.port = cli.port;
    c.peer_host = cli.peer_host.clone();
    c.peer_port = cli.peer_port;
    c.domain = cli.domain.clone();
    c.users = cli.users;
    c.first = cli.first;
    c.prefix = cli.prefix.clone();
    c.password = cli.password.clone();
    c.concurrency = cli.concurrency;
    c.mech = cli.mech;
    c.tls = cli.tls;
    c.login_for = cli.login_for.map(|s| secs(s, "login-for")).transpose()?;
    c.pairs = cli.pairs;
    c.duration = secs(cli.duration, "duration")?;
    c.rate = cli.rate;
    c.window = cli.window;
    c.interval = secs(cli.interval, "interval")?;
    c.ramp = cli.ramp.map(|r| secs(r, "ramp")).transpose()?;
    c.contacts = cli.contacts;
    c.roster = !cli.no_roster;
    c.body_size = cli.body_size;
    c.grace = secs(cli.grace, "grace")?;
    c.timeout = secs(cli.timeout, "timeout")?;
    c.server_pids = cli.server_pid.clone();
    c.source_ips = cli.source_ips;
    c.stream_management = cli.stream_management;
    c.sm_ack_every = cli.sm_ack_every;
    Ok(c)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("osprey-load: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = osprey_loadgen::proc::raise_nofile_limit() {
        eprintln!("osprey-load: warning: cannot raise the open-file limit: {e}");
    }
    // Worker threads follow the CPUs this process may use (taskset).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("osprey-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(osprey_loadgen::run(&cfg)) {
        Ok(report) => {
            if cli.json {
                println!("{}", report.to_json());
                eprint!("{report}");
            } else {
                print!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("osprey-load: {e}");
            ExitCode::FAILURE
        }
    }
}
