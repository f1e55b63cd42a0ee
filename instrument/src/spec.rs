//! What an event is: its name, label keys, measurements and their metric
//! types, help text and log level.

use std::fmt;
use std::str::FromStr;

/// Log level of an event (most severe first).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            other => return Err(format!("unknown level {other:?}")),
        })
    }
}

/// Histogram buckets.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Buckets {
    /// Latencies: 50 µs to ~13 s, doubling.
    Seconds,
    /// Latencies of in-memory steps (routing, module handlers), most of
    /// them well under 50 µs: 1 µs to 10 s, 1–2.5–5 per decade.
    FastSeconds,
    /// Sizes: 64 B to 4 MiB, ×4.
    Bytes,
    Custom(&'static [f64]),
}

impl Buckets {
    pub fn bounds(&self) -> Vec<f64> {
        match self {
            Buckets::Seconds => (0..19).map(|i| 0.000_05 * f64::from(1u32 << i)).collect(),
            Buckets::FastSeconds => FAST_SECONDS.to_vec(),
            Buckets::Bytes => (0..9).map(|i| 64.0 * f64::from(1u32 << (2 * i))).collect(),
            Buckets::Custom(b) => b.to_vec(),
        }
    }
}

/// [`Buckets::FastSeconds`], written out: computed bounds would show as
/// `2.5000000000000004e-6` in the `le` label.
const FAST_SECONDS: [f64; 22] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum MetricType {
    /// Only goes up: each measurement adds.
    Counter,
    /// Only goes up, but the total is kept elsewhere (the kernel's CPU
    /// time): each measurement is the total so far, and the metric is a
    /// counter set to it (OpenTelemetry's observable counter). A total
    /// lower than the last one is ignored.
    ObservedCounter,
    /// Goes up and down: each measurement adds (may be negative).
    UpDownCounter,
    /// Each measurement sets the value.
    Gauge,
    /// Each measurement is observed.
    Histogram(Buckets),
}

impl MetricType {
    pub fn as_str(&self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::ObservedCounter => "observed_counter",
            MetricType::UpDownCounter => "updown_counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram(_) => "histogram",
        }
    }
}

/// A measurement key that becomes a metric.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Metric {
    pub key: &'static str,
    pub kind: MetricType,
    pub help: &'static str,
}

/// A declared event.
#[derive(Debug, PartialEq, serde::Serialize)]
pub struct EventSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    pub metrics: &'static [Metric],
    pub level: Level,
    /// Emitted by a probe on an interval.
    pub probe: bool,
}

impl EventSpec {
    /// The metric name of one measurement: `<event>_<key>`, or `<event>`
    /// for the key `count` (a counter then shows as `<event>_total`).
    pub fn metric_name(&self, m: &Metric) -> String {
        if m.key == "count" {
            self.name.to_string()
        } else {
            format!("{}_{}", self.name, m.key)
        }
    }
}

/// Every event a program may emit.
pub type Catalogue = &'static [&'static EventSpec];

/// Checks a catalogue: legal, unique event and metric names; labels legal
/// and unique per event. The error says what is wrong.
pub fn validate(catalogue: Catalogue) -> Result<(), String> {
    let legal = |s: &str| {
        !s.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    let mut events = std::collections::HashSet::new();
    let mut metrics = std::collections::HashSet::new();
    for spec in catalogue {
        if !legal(spec.name) {
            return Err(format!("illegal event name {:?}", spec.name));
        }
        if !events.insert(spec.name) {
            return Err(format!("event {:?} declared twice", spec.name));
        }
        let mut labels = std::collections::HashSet::new();
        for l in spec.labels {
            if !legal(l) || !labels.insert(*l) {
                return Err(format!(
                    "event {:?}: bad or repeated label {l:?}",
                    spec.name
                ));
            }
        }
        let mut keys = std::collections::HashSet::new();
        for m in spec.metrics {
            if !legal(m.key) || !keys.insert(m.key) {
                return Err(format!(
                    "event {:?}: bad or repeated measurement {:?}",
                    spec.name, m.key
                ));
            }
            let name = spec.metric_name(m);
            if !metrics.insert(name.clone()) {
                return Err(format!("metric {name:?} declared twice"));
            }
        }
    }
    Ok(())
}
