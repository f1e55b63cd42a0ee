//! The `osprey` command line, in the ejabberdctl/mongooseimctl habit:
//! `serve`, `account …`.
//!
//! Exit codes: 0 done; 1 failed (storage, I/O); 2 bad input (usage, config,
//! malformed JID, unknown host); 3 the account already exists; 4 no such account
//! (or, through the admin API, no such session or contact: its 404).

mod account;
mod admin;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "osprey",
    version,
    about = "Osprey, an observability-first XMPP gateway"
)]
pub struct Cli {
    /// Configuration file (TOML). Without it, built-in defaults: localhost
    /// on port 5222 with STARTTLS, SQLite under ./data.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server.
    Serve,
    /// Manage accounts (works whether or not the server runs).
    #[command(subcommand)]
    Account(account::AccountCommand),
    // session, stanza, roster, offline, stats, server: through the admin
    // API of a running gateway (top-level, as in mongooseimctl).
    #[command(flatten)]
    Admin(admin::AdminCommand),
    /// Live tracing of a session or task (erlang_doctor's `tr`), through
    /// the admin API of a running gateway.
    Trace {
        #[command(flatten)]
        target: trace::Target,
        #[command(subcommand)]
        command: trace::TraceCommand,
    },
    /// The live terminal dashboard of a running gateway (through its admin
    /// API): overview, sessions (kick, trace), events, live traces.
    Top {
        #[command(flatten)]
        target: trace::Target,
    },
    /// The log of a running gateway (through its admin API).
    Log {
        #[command(flatten)]
        target: trace::Target,
        #[command(subcommand)]
        command: LogCommand,
    },
    /// The admin API's description (no server needed).
    #[command(subcommand)]
    Api(ApiCommand),
    /// List every instrumentation event with its labels and metrics.
    Events {
        #[arg(long)]
        json: bool,
        /// The docs/events.md table.
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
    },
}

#[derive(Subcommand)]
pub enum ApiCommand {
    /// Print the GraphQL schema (SDL) served at /api/graphql.
    Schema,
}

#[derive(Subcommand)]
pub enum LogCommand {
    /// Show the level, or change it now (error, warn, info, debug, trace)
    /// until the next change or restart.
    Level { level: Option<String> },
}

/// A command's failure: the message and the exit code.
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve) {
        // A command whose output is cut short (`osprey account list | head`)
        // ends quietly, as `cat` does, instead of panicking on a write to a
        // closed pipe. The server keeps SIGPIPE ignored (its sockets).
        // SAFETY: setting a signal's disposition to its default, before any
        // other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Command::Events { json, markdown } = cli.command {
        print_events(json, markdown);
        return ExitCode::SUCCESS;
    }
    if let Command::Api(ApiCommand::Schema) = cli.command {
        // Built from the types alone: no configuration, storage or server.
        print!("{}", crate::http::graphql::sdl());
        return ExitCode::SUCCESS;
    }
    let config = match load_config(cli.config.as_deref()) {
        Ok(c) => c,
        Err(f) => return report(f),
    };
    if let Command::Top { target } = &cli.command {
        // The dashboard owns the terminal and its own runtime; no log output.
        return match trace::endpoint(target, &config) {
            Ok((url, token)) => match osprey_tui::run(osprey_tui::Options { url, token }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => report(Failure::new(1, e)),
            },
            Err(f) => report(f),
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return report(Failure::new(1, format!("cannot start the runtime: {e}"))),
    };
    let result = runtime.block_on(async move {
        let otel = crate::logging::init(&config);
        let result = match cli.command {
            Command::Serve => {
                announce(&config);
                crate::server::run(config)
                    .await
                    .map_err(|e| Failure::new(1, e.to_string()))
            }
            Command::Account(cmd) => account::run(cmd, &config).await,
            Command::Admin(cmd) => admin::run(cmd, &config).await,
            Command::Trace { target, command } => trace::run(command, target, &config).await,
            Command::Log {
                target,
                command: LogCommand::Level { level },
            } => log_level(&target, &config, level).await,
            Command::Events { .. } | Command::Top { .. } | Command::Api(_) => Ok(()),
        };
        if let Some(otel) = otel {
            // Flushes queued spans; it blocks, so off the async workers.
            let _ = tokio::task::spawn_blocking(move || otel.shutdown()).await;
        }
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => report(f),
    }
}

fn report(f: Failure) -> ExitCode {
    eprintln!("osprey: {}", f.message);
    ExitCode::from(f.code)
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config, Failure> {
    match path {
        Some(p) => Config::load(p).map_err(|e| Failure::new(2, e.to_string())),
        None => Ok(Config::default_for_no_file()),
    }
}

/// `osprey log level [LEVEL]`.
async fn log_level(
    target: &trace::Target,
    config: &Config,
    level: Option<String>,
) -> Result<(), Failure> {
    let reply = match level {
        None => trace::api_call(target, config, "GET", "/api/log", None).await?,
        Some(l) => {
            if crate::logging::parse_level(&l).is_none() {
                return Err(Failure::new(
                    2,
                    format!("{l}: expected error, warn, info, debug or trace"),
                ));
            }
            let body = serde_json::json!({ "level": l });
            trace::api_call(target, config, "PUT", "/api/log", Some(body)).await?
        }
    };
    match (reply["level"].as_str(), reply["previous"].as_str()) {
        (Some(now), Some(before)) => println!("log level: {now} (was {before})"),
        (Some(now), None) => println!("log level: {now}"),
        _ => return Err(Failure::new(1, format!("unexpected reply: {reply}"))),
    }
    Ok(())
}

/// The first lines say what is being served and from which configuration.
fn announce(config: &Config) {
    match &config.source {
        Some(p) => {
            tracing::info!(config = %p.display(), "osprey {} starting", env!("CARGO_PKG_VERSION"))
        }
        None => tracing::info!(
            "osprey {} starting with built-in defaults (no --config)",
            env!("CARGO_PKG_VERSION")
        ),
    }
    tracing::info!(
        hosts = ?config.general.hosts,
        data_dir = %config.general.data_dir.display(),
        storage = %crate::server::redact_url(&config.storage.url),
        "serving"
    );
    if let Some(o) = &config.instrumentation.otlp {
        tracing::info!(endpoint = %o.endpoint, sample_ratio = o.sample_ratio, "OTLP traces on");
    }
}

fn print_events(json: bool, markdown: bool) {
    use crate::events::{describe, markdown as md, CATALOGUE};
    if markdown {
        print!("{}", md());
    } else if json {
        let all: Vec<_> = CATALOGUE.iter().map(|e| describe(e)).collect();
        println!("{}", serde_json::Value::from(all));
    } else {
        for e in CATALOGUE {
            println!(
                "{}{}  [{}]  {}",
                e.name,
                if e.probe { " (probe)" } else { "" },
                e.labels.join(", "),
                e.help
            );
            for m in e.metrics {
                println!(
                    "    {:<40} {:<15} {}",
                    e.metric_name(m),
                    m.kind.as_str(),
                    m.help
                );
            }
        }
    }
}
