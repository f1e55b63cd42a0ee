//! The process log: the `tracing` subscriber (text or JSON on stderr,
//! colours only on a terminal), its filter taken from the configuration's
//! `[instrumentation.log] level` (so `level = "debug"` works without
//! `RUST_LOG`), and the level changed at run time ([`set_level`], from the
//! admin API and `osprey log level`).
//!
//! Events are filtered by the log handler itself (one atomic per
//! emission, see `osprey_instrument::log`); the filter here lets all of
//! `osprey::event` through and holds Osprey's own logs at the configured
//! level and every other crate at `info`. `RUST_LOG`, when set, replaces
//! that filter until a run-time change.

use std::io::IsTerminal;
use std::sync::OnceLock;

use osprey_instrument::Level;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{Config, LogFormat};

type Reload = reload::Handle<EnvFilter, Registry>;

static RELOAD: OnceLock<Reload> = OnceLock::new();

/// The filter for Osprey's logs at `level` (events pass; their handler
/// decides), other crates at `info`, OTLP spans never in the log.
fn filter_for(level: Level) -> EnvFilter {
    let spec = format!(
        "info,osprey={},osprey::event=trace,osprey::otel=off",
        level.as_str()
    );
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the subscriber. With `[instrumentation.otlp]`, an OpenTelemetry
/// layer takes the `osprey::otel` spans, which the log never shows.
pub fn init(config: &Config) -> Option<crate::otel::Otel> {
    let log = config.instrumentation.log.as_ref();
    let level = log.map_or(Level::Info, |l| l.level);
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(format!("{v},osprey::otel=off"))
            .unwrap_or_else(|_| filter_for(level)),
        _ => filter_for(level),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let _ = RELOAD.set(handle);
    let json = log.is_some_and(|l| l.format == LogFormat::Json);
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed()
    };
    let (otel, layer) = match &config.instrumentation.otlp {
        Some(o) => match crate::otel::Otel::start(o) {
            Ok((otel, layer)) => (Some(otel), Some(layer)),
            Err(e) => {
                eprintln!("osprey: {e}; continuing without traces");
                (None, None)
            }
        },
        None => (None, None),
    };
    // The filter is the log's own (per layer): the OTLP layer sees the
    // `osprey::otel` spans the log never shows.
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(layer)
        .init();
    otel
}

/// Changes the log level now: events (the log handler's maximum) and
/// Osprey's own logs alike.
pub fn set_level(level: Level) -> Result<(), String> {
    osprey_instrument::log::set_max_level(level);
    match RELOAD.get() {
        Some(h) => h
            .reload(filter_for(level))
            .map_err(|e| format!("cannot change the log filter: {e}")),
        None => Ok(()),
    }
}

/// The level events are logged at now.
pub fn level() -> Level {
    osprey_instrument::log::max_level()
}

/// A level by its name (`error` … `trace`).
pub fn parse_level(s: &str) -> Option<Level> {
    Some(match s.to_ascii_lowercase().as_str() {
        "error" => Level::Error,
        "warn" | "warning" => Level::Warn,
        "info" => Level::Info,
        "debug" => Level::Debug,
        "trace" => Level::Trace,
        _ => return None,
    })
}
