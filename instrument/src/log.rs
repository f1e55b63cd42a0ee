//! The log handler: one line per event at its level, with the event's
//! labels, measurements and metadata (who, from where, why).
//!
//! - Text: a `tracing` event (target `osprey::event`) whose message is
//!   `name k=v …`, so the process's text subscriber writes it like any log.
//! - JSON: the handler writes the line itself, so labels, measurements and
//!   metadata are JSON objects rather than strings inside one:
//!   `{"timestamp":…,"level":"INFO","target":"osprey::event","event":…,
//!   "labels":{…},"measurements":{…},"meta":{…}}`.
//!
//! The level is checked per emission against a process-wide maximum that
//! can change at run time ([`set_max_level`]); per-event overrides set an
//! event's own level at start.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::handler::{Gate, Handler, ResolvedHandler};
use crate::registry::Meta;
use crate::spec::{EventSpec, Level};

/// How event lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
}

/// The most verbose level logged now (a `Level` as u8).
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Changes the most verbose level events are logged at, at run time.
pub fn set_max_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The most verbose level events are logged at now.
pub fn max_level() -> Level {
    match MAX_LEVEL.load(Ordering::Relaxed) {
        0 => Level::Error,
        1 => Level::Warn,
        2 => Level::Info,
        3 => Level::Debug,
        _ => Level::Trace,
    }
}

pub struct LogHandler {
    per_event: HashMap<String, Level>,
    output: Output,
}

impl LogHandler {
    /// Events up to `max_level` (per-event overrides replace an event's own
    /// level); text output. Sets the process-wide maximum.
    pub fn new(max_level: Level, per_event: HashMap<String, Level>) -> Self {
        set_max_level(max_level);
        LogHandler {
            per_event,
            output: Output::Text,
        }
    }

    pub fn with_output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    fn level_of(&self, spec: &EventSpec) -> Level {
        self.per_event.get(spec.name).copied().unwrap_or(spec.level)
    }
}

impl Handler for LogHandler {
    fn name(&self) -> &'static str {
        "log"
    }

    /// Every event: the level is checked per emission, as it can be raised
    /// at run time (its gate: one atomic load for an event not logged).
    fn wants(&self, _: &EventSpec) -> bool {
        true
    }

    fn resolve(
        &self,
        spec: &'static EventSpec,
        labels: &[&str],
    ) -> Option<Box<dyn ResolvedHandler>> {
        Some(Box::new(Resolved {
            event: spec.name,
            level: self.level_of(spec),
            labels: spec
                .labels
                .iter()
                .zip(labels)
                .map(|(k, v)| (*k, v.to_string()))
                .collect(),
            output: self.output,
        }))
    }
}

struct Resolved {
    event: &'static str,
    level: Level,
    labels: Vec<(&'static str, String)>,
    output: Output,
}

/// `name k=v …` for the text log; values with spaces are quoted.
struct Flat<'a> {
    r: &'a Resolved,
    m: &'a [(&'static str, f64)],
    meta: &'a Meta<'a>,
}

impl fmt::Display for Flat<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.r.event)?;
        for (k, v) in &self.r.labels {
            write!(f, " {k}={}", Quoted(v))?;
        }
        for (k, v) in self.m {
            write!(f, " {k}={v}")?;
        }
        for (k, v) in self.meta.fields() {
            write!(f, " {k}={}", Quoted(&v.to_string()))?;
        }
        Ok(())
    }
}

struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() || self.0.contains([' ', '"', '=']) {
            write!(f, "{:?}", self.0)
        } else {
            f.write_str(self.0)
        }
    }
}

macro_rules! log_at {
    ($lvl:expr, $flat:expr) => {
        tracing::event!(target: "osprey::event", $lvl, "{}", $flat)
    };
}

impl Resolved {
    fn json_line(&self, m: &[(&'static str, f64)], meta: &Meta<'_>) -> Vec<u8> {
        let mut o = serde_json::Map::new();
        let now = std::time::SystemTime::now();
        o.insert("timestamp".into(), rfc3339(now).into());
        o.insert(
            "level".into(),
            self.level.as_str().to_ascii_uppercase().into(),
        );
        o.insert("target".into(), "osprey::event".into());
        o.insert("event".into(), self.event.into());
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone().into()))
            .collect();
        o.insert("labels".into(), labels.into());
        let measurements: serde_json::Map<String, serde_json::Value> = m
            .iter()
            .map(|(k, v)| {
                let v =
                    serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into);
                (k.to_string(), v)
            })
            .collect();
        o.insert("measurements".into(), measurements.into());
        let fields: serde_json::Map<String, serde_json::Value> = meta
            .fields()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string().into()))
            .collect();
        o.insert("meta".into(), fields.into());
        let mut line = serde_json::Value::from(o).to_string().into_bytes();
        line.push(b'\n');
        line
    }
}

impl ResolvedHandler for Resolved {
    /// Called only while the event's level is logged.
    fn gate(&self) -> Gate {
        Gate::Level {
            cell: &MAX_LEVEL,
            level: self.level as u8,
        }
    }

    fn handle(&self, m: &[(&'static str, f64)], meta: &Meta<'_>) {
        if self.level as u8 > MAX_LEVEL.load(Ordering::Relaxed) {
            return;
        }
        match self.output {
            Output::Json => {
                // One write of the whole line: lines from several threads
                // never interleave.
                let _ = std::io::stderr().lock().write_all(&self.json_line(m, meta));
            }
            Output::Text => {
                let flat = Flat { r: self, m, meta };
                match self.level {
                    Level::Error => log_at!(tracing::Level::ERROR, flat),
                    Level::Warn => log_at!(tracing::Level::WARN, flat),
                    Level::Info => log_at!(tracing::Level::INFO, flat),
                    Level::Debug => log_at!(tracing::Level::DEBUG, flat),
                    Level::Trace => log_at!(tracing::Level::TRACE, flat),
                }
            }
        }
    }
}

/// `2026-12-02T14:05:09.123456Z` (UTC, microseconds), as the process log's
/// JSON lines write it.
fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, mo, da) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{da:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_789), (2026, 12, 2));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_796_219_109_123_456);
        assert_eq!(rfc3339(t), "2026-12-02T13:45:09.123456Z");
    }

    #[test]
    fn json_lines_have_objects() {
        let res = Resolved {
            event: "c2s_auth",
            level: Level::Info,
            labels: vec![("outcome", "failure".into())],
            output: Output::Json,
        };
        let user = "alice@localhost";
        let fields: [(&'static str, &dyn fmt::Display); 1] = [("user", &user)];
        let meta = Meta::new(&fields);
        let line = res.json_line(&[("count", 1.0)], &meta);
        let v: serde_json::Value = serde_json::from_slice(&line).expect("json");
        assert_eq!(v["labels"]["outcome"], "failure");
        assert_eq!(v["measurements"]["count"], 1.0);
        assert_eq!(v["meta"]["user"], "alice@localhost");
        assert_eq!(v["level"], "INFO");
    }

    #[test]
    fn text_is_flat_and_quoted() {
        let res = Resolved {
            event: "c2s_session_close",
            level: Level::Info,
            labels: vec![("reason", "peer_closed".into())],
            output: Output::Text,
        };
        let text = "bye now";
        let fields: [(&'static str, &dyn fmt::Display); 1] = [("text", &text)];
        let meta = Meta::new(&fields);
        let flat = Flat {
            r: &res,
            m: &[("duration_seconds", 2.5)],
            meta: &meta,
        };
        assert_eq!(
            flat.to_string(),
            "c2s_session_close reason=peer_closed duration_seconds=2.5 text=\"bye now\""
        );
    }
}
