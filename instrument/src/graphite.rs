//! The Graphite handler: every metric, pushed on an interval over the
//! plaintext protocol (`path value timestamp\n`) to one or more carbon
//! receivers.
//!
//! Emissions only touch atomics. Each receiver has its own pusher task
//! with a bounded line buffer: a receiver that is down is retried with
//! backoff, lines beyond the bound are dropped and counted (event
//! [`DROPPED`]), logged once per interval, and nothing ever waits on it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::handler::{Handler, ResolvedHandler};
use crate::registry::{Meta, Registry};
use crate::spec::{EventSpec, Level, Metric, MetricType};

/// Add this to the catalogue when a Graphite handler may run.
pub static DROPPED: EventSpec = EventSpec {
    name: "instrumentation_dropped",
    help: "A handler dropped data it could not deliver (e.g. a Graphite receiver down).",
    labels: &["handler"],
    metrics: &[Metric {
        key: "lines",
        kind: MetricType::Counter,
        help: "Lines or records dropped.",
    }],
    level: Level::Warn,
    probe: false,
};

/// Percentiles pushed for each histogram.
const QUANTILES: [(f64, &str); 3] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")];
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One receiver.
#[derive(Debug, Clone)]
pub struct GraphiteTarget {
    pub host: String,
    pub port: u16,
    pub interval: Duration,
    /// Already combined with the value of `env_prefix`, if any.
    pub prefix: String,
    pub connect_timeout: Duration,
    /// Lines kept while the receiver is unreachable.
    pub buffer_lines: usize,
}

enum Value {
    Counter(AtomicU64),
    /// f64 bits.
    Gauge(AtomicU64),
    Histogram {
        bounds: Vec<f64>,
        buckets: Vec<AtomicU64>,
        count: AtomicU64,
        /// f64 bits, updated with compare-and-swap.
        sum: AtomicU64,
    },
}

struct Series {
    /// `metric.labelvalue.labelvalue`, sanitised.
    paths: Vec<(&'static str, String, Value)>,
}

/// Collects every emission; pushers read it.
#[derive(Clone, Default)]
pub struct GraphiteHandler {
    series: Arc<Mutex<HashMap<String, Arc<Series>>>>,
}

impl GraphiteHandler {
    pub fn new() -> Self {
        Self::default()
    }

    /// All lines for one push, with `prefix.` in front.
    pub fn render(&self, prefix: &str, timestamp: u64) -> Vec<String> {
        let all: Vec<Arc<Series>> = match self.series.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return Vec::new(),
        };
        let mut lines = Vec::new();
        let mut line = |path: &str, v: f64| {
            lines.push(format!("{prefix}.{path} {v} {timestamp}"));
        };
        for s in all {
            for (_, path, value) in &s.paths {
                match value {
                    Value::Counter(c) => line(path, c.load(Ordering::Relaxed) as f64),
                    Value::Gauge(g) => line(path, f64::from_bits(g.load(Ordering::Relaxed))),
                    Value::Histogram {
                        bounds,
                        buckets,
                        count,
                        sum,
                    } => {
                        let n = count.load(Ordering::Relaxed);
                        line(&format!("{path}.count"), n as f64);
                        line(
                            &format!("{path}.sum"),
                            f64::from_bits(sum.load(Ordering::Relaxed)),
                        );
                        let counts: Vec<u64> =
                            buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
                        for (q, name) in QUANTILES {
                            if let Some(v) = quantile(bounds, &counts, n, q) {
                                line(&format!("{path}.{name}"), v);
                            }
                        }
                    }
                }
            }
        }
        lines.sort();
        lines
    }

    /// Starts one pusher per target; abort the handles to stop them.
    pub fn spawn_pushers(
        &self,
        registry: &Arc<Registry>,
        targets: Vec<GraphiteTarget>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        targets
            .into_iter()
            .map(|t| {
                let handler = self.clone();
                let dropped = registry.resolve(&DROPPED, &["graphite"]);
                tokio::spawn(push_loop(handler, t, dropped))
            })
            .collect()
    }
}

/// The upper-bound estimate of quantile `q` from bucket counts (each
/// bucket counts observations ≤ its bound, not cumulative).
fn quantile(bounds: &[f64], counts: &[u64], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bounds.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    bounds.last().copied()
}

/// Graphite path segments: no dots, spaces or slashes.
fn sanitise(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Handler for GraphiteHandler {
    fn name(&self) -> &'static str {
        "graphite"
    }

    fn wants(&self, spec: &EventSpec) -> bool {
        !spec.metrics.is_empty()
    }

    fn resolve(
        &self,
        spec: &'static EventSpec,
        labels: &[&str],
    ) -> Option<Box<dyn ResolvedHandler>> {
        let key = format!("{}\u{0}{}", spec.name, labels.join("\u{0}"));
        let mut map = self.series.lock().ok()?;
        let series = map
            .entry(key)
            .or_insert_with(|| {
                let suffix: String = labels.iter().map(|l| format!(".{}", sanitise(l))).collect();
                let paths = spec
                    .metrics
                    .iter()
                    .map(|m| {
                        let mut name = spec.metric_name(m);
                        if m.kind == MetricType::Counter {
                            name.push_str("_total");
                        }
                        let value = match m.kind {
                            MetricType::Counter => Value::Counter(AtomicU64::new(0)),
                            MetricType::Gauge | MetricType::UpDownCounter => {
                                Value::Gauge(AtomicU64::new(0f64.to_bits()))
                            }
                            MetricType::Histogram(b) => {
                                let bounds = b.bounds();
                                Value::Histogram {
                                    buckets: (0..=bounds.len())
                                        .map(|_| AtomicU64::new(0))
                                        .collect(),
                                    bounds,
                                    count: AtomicU64::new(0),
                                    sum: AtomicU64::new(0f64.to_bits()),
                                }
                            }
                        };
                        (m.key, format!("{name}{suffix}"), value)
                    })
                    .collect();
                Arc::new(Series { paths })
            })
            .clone();
        let kinds: Vec<MetricType> = spec.metrics.iter().map(|m| m.kind).collect();
        Some(Box::new(Resolved { series, kinds }))
    }
}

struct Resolved {
    series: Arc<Series>,
    kinds: Vec<MetricType>,
}

impl ResolvedHandler for Resolved {
    fn handle(&self, m: &[(&'static str, f64)], _: &Meta<'_>) {
        for (key, v) in m {
            for ((k, _, value), kind) in self.series.paths.iter().zip(&self.kinds) {
                if k != key {
                    continue;
                }
                match value {
                    Value::Counter(c) => {
                        if *v > 0.0 {
                            c.fetch_add(v.round() as u64, Ordering::Relaxed);
                        }
                    }
                    Value::Gauge(g) if *kind == MetricType::UpDownCounter => {
                        let _ = g.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                            Some((f64::from_bits(bits) + v).to_bits())
                        });
                    }
                    Value::Gauge(g) => g.store(v.to_bits(), Ordering::Relaxed),
                    Value::Histogram {
                        bounds,
                        buckets,
                        count,
                        sum,
                    } => {
                        let i = bounds.iter().position(|b| v <= b).unwrap_or(bounds.len());
                        buckets[i].fetch_add(1, Ordering::Relaxed);
                        count.fetch_add(1, Ordering::Relaxed);
                        let _ = sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                            Some((f64::from_bits(bits) + v).to_bits())
                        });
                    }
                }
            }
        }
    }
}

/// A bounded FIFO of lines: the oldest go first when it is full.
pub struct LineBuffer {
    lines: VecDeque<String>,
    max: usize,
}

impl LineBuffer {
    pub fn new(max: usize) -> Self {
        LineBuffer {
            lines: VecDeque::new(),
            max,
        }
    }

    /// Adds lines; returns how many (old) lines had to be dropped.
    pub fn push(&mut self, lines: Vec<String>) -> usize {
        self.lines.extend(lines);
        let over = self.lines.len().saturating_sub(self.max);
        self.lines.drain(..over);
        over
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn payload(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

async fn push_loop(handler: GraphiteHandler, t: GraphiteTarget, dropped: crate::Labelled) {
    let addr = format!("{}:{}", t.host, t.port);
    let mut buffer = LineBuffer::new(t.buffer_lines);
    let mut conn: Option<TcpStream> = None;
    let mut backoff = t.interval;
    let mut next_attempt = Instant::now();
    let mut tick = tokio::time::interval(t.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let lost = buffer.push(handler.render(&t.prefix, now));
        if lost > 0 {
            dropped.emit(&[("lines", lost as f64)], &Meta::NONE);
            // Once per interval, never per emission.
            tracing::warn!(receiver = %addr, dropped = lost, buffered = buffer.len(), "graphite: buffer full, oldest lines dropped");
        }
        if conn.is_none() {
            if Instant::now() < next_attempt {
                continue;
            }
            match tokio::time::timeout(t.connect_timeout, TcpStream::connect(&addr)).await {
                Ok(Ok(s)) => {
                    tracing::info!(receiver = %addr, "graphite: connected");
                    conn = Some(s);
                    backoff = t.interval;
                }
                _ => {
                    tracing::warn!(receiver = %addr, retry_in = ?backoff, buffered = buffer.len(), "graphite: receiver unreachable");
                    next_attempt = Instant::now() + backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF.max(t.interval));
                    continue;
                }
            }
        }
        if let Some(s) = conn.as_mut() {
            let payload = buffer.payload();
            match tokio::time::timeout(t.connect_timeout, s.write_all(payload.as_bytes())).await {
                Ok(Ok(())) => buffer = LineBuffer::new(t.buffer_lines),
                _ => {
                    tracing::warn!(receiver = %addr, "graphite: write failed; will reconnect");
                    conn = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Buckets;

    static EV: EventSpec = EventSpec {
        name: "router_routed",
        help: "",
        labels: &["kind", "outcome"],
        metrics: &[
            Metric {
                key: "count",
                kind: MetricType::Counter,
                help: "",
            },
            Metric {
                key: "seconds",
                kind: MetricType::Histogram(Buckets::Seconds),
                help: "",
            },
        ],
        level: Level::Debug,
        probe: false,
    };
    static G: EventSpec = EventSpec {
        name: "sm_sessions",
        help: "",
        labels: &[],
        metrics: &[Metric {
            key: "count",
            kind: MetricType::Gauge,
            help: "",
        }],
        level: Level::Debug,
        probe: true,
    };

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let h = GraphiteHandler::new();
        static CAT: crate::Catalogue = &[&EV, &G];
        let reg = Registry::new(CAT, vec![Box::new(h.clone())]);
        let r = reg.resolve(&EV, &["message", "delivered"]);
        for s in [0.0001, 0.0002, 0.01] {
            r.emit(&[("count", 1.0), ("seconds", s)], &Meta::NONE);
        }
        // A second resolve of the same label set shares the series.
        reg.emit(
            &EV,
            &["message", "delivered"],
            &[("count", 1.0)],
            &Meta::NONE,
        );
        reg.emit(&G, &[], &[("count", 7.0)], &Meta::NONE);
        let lines = h.render("osprey", 1000);
        let has = |l: &str| lines.iter().any(|x| x == l);
        assert!(
            has("osprey.router_routed_total.message.delivered 4 1000"),
            "{lines:#?}"
        );
        assert!(
            has("osprey.router_routed_seconds.message.delivered.count 3 1000"),
            "{lines:#?}"
        );
        assert!(has("osprey.sm_sessions 7 1000"), "{lines:#?}");
        assert!(lines.iter().any(|l| l.starts_with("osprey.router_routed_seconds.message.delivered.p99 0.0128")), "{lines:#?}");
    }

    #[test]
    fn buffer_is_bounded_and_drops_oldest() {
        let mut b = LineBuffer::new(3);
        assert_eq!(b.push(vec!["a".into(), "b".into()]), 0);
        assert_eq!(b.push(vec!["c".into(), "d".into()]), 1);
        assert_eq!(b.payload(), "b\nc\nd\n");
    }

    #[test]
    fn quantiles_from_buckets() {
        let bounds = [1.0, 2.0, 4.0];
        assert_eq!(quantile(&bounds, &[5, 4, 1, 0], 10, 0.5), Some(1.0));
        assert_eq!(quantile(&bounds, &[5, 4, 1, 0], 10, 0.9), Some(2.0));
        assert_eq!(quantile(&bounds, &[5, 4, 1, 0], 10, 0.99), Some(4.0));
        assert_eq!(quantile(&bounds, &[0, 0, 0, 0], 0, 0.5), None);
        assert_eq!(sanitise("c2s 5222/x.y"), "c2s_5222_x_y");
    }
}
