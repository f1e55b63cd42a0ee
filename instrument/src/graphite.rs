//! The Graphite handler: every metric, pushed on an interval over the
//! plaintext protocol (`path value timestamp\n`) to one or more carbon
//! receivers.
//!
//! Values come from the [`Aggregate`] handler. Each receiver has its own pusher task
//! with a bounded line buffer: a receiver that is down is retried with
//! backoff, lines beyond the bound are dropped and counted (event
//! [`DROPPED`]), logged once per interval, and nothing ever waits on it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::aggregate::{quantile, Aggregate, Value};
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

/// All lines for one push, with `prefix.` in front: the metric name,
/// then each label value as a path segment.
pub fn render(aggregate: &Aggregate, prefix: &str, timestamp: u64) -> Vec<String> {
    let mut lines = Vec::new();
    for r in aggregate.read() {
        let mut path = r.name.clone();
        for (_, v) in &r.labels {
            path.push('.');
            path.push_str(&sanitise(v));
        }
        let mut line = |suffix: &str, v: f64| {
            lines.push(format!("{prefix}.{path}{suffix} {v} {timestamp}"));
        };
        match r.value {
            Value::Counter(c) => line("", c as f64),
            Value::Gauge(g) => line("", g),
            Value::Histogram {
                bounds,
                buckets,
                count,
                sum,
            } => {
                line(".count", count as f64);
                line(".sum", sum);
                for (q, name) in QUANTILES {
                    if let Some(v) = quantile(&bounds, &buckets, q) {
                        line(&format!(".{name}"), v);
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
    aggregate: &Aggregate,
    registry: &Arc<Registry>,
    targets: Vec<GraphiteTarget>,
) -> Vec<tokio::task::JoinHandle<()>> {
    targets
        .into_iter()
        .map(|t| {
            let dropped = registry.resolve(&DROPPED, &["graphite"]);
            tokio::spawn(push_loop(aggregate.clone(), t, dropped))
        })
        .collect()
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

async fn push_loop(aggregate: Aggregate, t: GraphiteTarget, dropped: crate::Labelled) {
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
        let lost = buffer.push(render(&aggregate, &t.prefix, now));
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
    use crate::fixtures::{ROUTED as EV, SESSIONS as G};

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let h = Aggregate::new();
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
        let lines = render(&h, "osprey", 1000);
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
    fn path_segments_are_sanitised() {
        assert_eq!(sanitise("c2s 5222/x.y"), "c2s_5222_x_y");
    }
}
