//! The log handler: each event as a `tracing` event (target
//! `osprey::event`) at its level, so the process's subscriber decides text
//! or JSON. Levels are checked at resolve time: a disabled event costs
//! nothing per emission.

use std::collections::HashMap;
use std::fmt;

use crate::handler::{Handler, ResolvedHandler};
use crate::registry::Meta;
use crate::spec::{EventSpec, Level};

pub struct LogHandler {
    max_level: Level,
    per_event: HashMap<String, Level>,
}

impl LogHandler {
    /// Events up to `max_level` (per-event overrides replace an event's own level).
    pub fn new(max_level: Level, per_event: HashMap<String, Level>) -> Self {
        LogHandler {
            max_level,
            per_event,
        }
    }

    fn level_of(&self, spec: &EventSpec) -> Level {
        self.per_event.get(spec.name).copied().unwrap_or(spec.level)
    }
}

impl Handler for LogHandler {
    fn name(&self) -> &'static str {
        "log"
    }

    fn wants(&self, spec: &EventSpec) -> bool {
        self.level_of(spec) <= self.max_level
    }

    fn resolve(
        &self,
        spec: &'static EventSpec,
        labels: &[&str],
    ) -> Option<Box<dyn ResolvedHandler>> {
        let rendered = spec
            .labels
            .iter()
            .zip(labels)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        Some(Box::new(Resolved {
            event: spec.name,
            level: self.level_of(spec),
            labels: rendered,
        }))
    }
}

struct Resolved {
    event: &'static str,
    level: Level,
    labels: String,
}

/// Formats measurements only if a subscriber writes the event.
struct Measures<'a>(&'a [(&'static str, f64)]);

impl fmt::Display for Measures<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

struct Fields<'a, 'b>(&'a Meta<'b>);

impl fmt::Display for Fields<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.fields().iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

macro_rules! log_at {
    ($lvl:expr, $r:expr, $m:expr, $meta:expr) => {
        tracing::event!(
            target: "osprey::event",
            $lvl,
            event = $r.event,
            labels = %$r.labels,
            measurements = %Measures($m),
            meta = %Fields($meta),
        )
    };
}

impl ResolvedHandler for Resolved {
    fn handle(&self, m: &[(&'static str, f64)], meta: &Meta<'_>) {
        match self.level {
            Level::Error => log_at!(tracing::Level::ERROR, self, m, meta),
            Level::Warn => log_at!(tracing::Level::WARN, self, m, meta),
            Level::Info => log_at!(tracing::Level::INFO, self, m, meta),
            Level::Debug => log_at!(tracing::Level::DEBUG, self, m, meta),
            Level::Trace => log_at!(tracing::Level::TRACE, self, m, meta),
        }
    }
}
