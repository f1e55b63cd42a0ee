//! The Graphite handler: every metric, pushed on an interval over the
//! plaintext protocol (`path value timestamp\n`) to one or more carbon
//! receivers.
//!
//! Values come from the [`Aggregate`] handler. Each receiver has its own pusher task
//! with a bounded line buffer: a receiver that is down is retried with
//! backoff, lines beyond the bound are dropped and counted (event
//! [`DROPPED`]), logged once per interval, and nothing ever waits on it.
//!
//! # What is pushed
//!
//! - Counters (`…_total`) and histograms' `.count` and `.sum`: totals since
//!   the gateway started, as Graphite counters are (apply
//!   `nonNegativeDerivative` or `perSecond`; `.sum` over `.count` of the
//!   derivatives is the mean of each interval). A restart starts them at 0.
//! - Gauges: the value at push time.
//! - Histograms' `.p50`, `.p90`, `.p99`: quantiles of the observations made
//!   **during the push interval** that ends at the line's timestamp, like
//!   MongooseIM's windowed exometer histograms: each target keeps the bucket
//!   counts of its previous push ([`Window`]) and pushes the quantiles of
//!   the difference, so two targets with different intervals each get their
//!   own window. The window is one tick of the target's timer even while
//!   its receiver is down (buffered lines keep their own window and
//!   timestamp); the first push covers everything since the gateway
//!   started. Within a bucket the value is interpolated linearly, as
//!   Prometheus' `histogram_quantile` does (the lowest bucket from 0; the
//!   +Inf bucket reports the highest finite bound): see
//!   [`crate::aggregate::quantile`]. An interval without observations
//!   pushes no quantile line for that series, so Graphite stores no value
//!   (a gap), never a stale one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::aggregate::{quantile, Aggregate, SeriesId, Value};
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

/// What one target pushed last: every histogram's bucket counts, so that
/// the next push's quantiles cover only what was observed since.
#[derive(Default)]
pub struct Window {
    previous: HashMap<SeriesId, Vec<u64>>,
}

impl Window {
    pub fn new() -> Self {
        Self::default()
    }
}

/// All lines for one push, with `prefix.` in front: the metric name,
/// then each label value as a path segment. Histogram quantiles cover the
/// observations made since the previous `render` with this `window`.
pub fn render(
    aggregate: &Aggregate,
    window: &mut Window,
    prefix: &str,
    timestamp: u64,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut seen = HashMap::new();
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
                ref bounds,
                ref buckets,
                count,
                sum,
            } => {
                line(".count", count as f64);
                line(".sum", sum);
                let id = r.id();
                let recent =
                    crate::aggregate::window(window.previous.get(&id).map(Vec::as_slice), buckets);
                for (q, name) in QUANTILES {
                    if let Some(v) = quantile(bounds, &recent, q) {
                        line(&format!(".{name}"), v);
                    }
                }
                seen.insert(id, buckets.clone());
            }
        }
    }
    window.previous = seen;
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
    let mut window = Window::new();
    let mut tick = tokio::time::interval(t.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let lost = buffer.push(render(&aggregate, &mut window, &t.prefix, now));
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
        let reg = Registry::with_store(CAT, Vec::new(), h.clone(), false);
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
        let lines = render(&h, &mut Window::new(), "osprey", 1000);
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
        // Rank 2.97 of 3: 0.97 of the way through (0.0064, 0.0128].
        let p99 = value(&lines, "osprey.router_routed_seconds.message.delivered.p99");
        assert!((p99.unwrap() - 0.012608).abs() < 1e-9, "{lines:#?}");
    }

    /// The value of `path` in rendered lines, if it was pushed.
    fn value(lines: &[String], path: &str) -> Option<f64> {
        lines.iter().find_map(|l| {
            let mut f = l.split(' ');
            (f.next()? == path).then(|| f.next()?.parse().ok())?
        })
    }

    const P: &str = "osprey.router_routed_seconds.message.delivered";

    fn observe(r: &crate::Labelled, n: usize, seconds: f64) {
        for _ in 0..n {
            r.emit(&[("count", 1.0), ("seconds", seconds)], &Meta::NONE);
        }
    }

    #[test]
    fn quantiles_cover_each_push_interval_only() {
        static CAT: crate::Catalogue = &[&EV];
        let a = Aggregate::new();
        let reg = Registry::with_store(CAT, Vec::new(), a.clone(), false);
        let r = reg.resolve(&EV, &["message", "delivered"]);
        let mut w = Window::new();
        // A long quiet run of fast observations…
        observe(&r, 1000, 0.0001);
        let first = render(&a, &mut w, "osprey", 10);
        let fast = value(&first, &format!("{P}.p99")).unwrap();
        assert!(fast <= 0.0001, "{first:#?}");
        // …then one interval with a spike: 10 slow among 90 fast.
        observe(&r, 90, 0.0001);
        observe(&r, 10, 2.0);
        let spike = render(&a, &mut w, "osprey", 20);
        // Rank 99 of 100: 0.9 of the way through (1.6384, 3.2768].
        let p99 = value(&spike, &format!("{P}.p99")).unwrap();
        assert!((p99 - (1.6384 + 1.6384 * 0.9)).abs() < 1e-9, "{spike:#?}");
        assert!(value(&spike, &format!("{P}.p50")).unwrap() <= 0.0001);
        // Cumulative since start, the spike would not reach the p99 at all.
        match a
            .read()
            .into_iter()
            .find(|r| r.key == "seconds")
            .unwrap()
            .value
        {
            Value::Histogram {
                bounds, buckets, ..
            } => assert!(quantile(&bounds, &buckets, 0.99).unwrap() <= 0.0001),
            v => panic!("{v:?}"),
        }
        // The counters stay totals.
        assert_eq!(value(&spike, &format!("{P}.count")), Some(1100.0));
        assert_eq!(
            value(&spike, "osprey.router_routed_total.message.delivered"),
            Some(1100.0)
        );
        // An interval without observations pushes no quantile, only totals.
        let quiet = render(&a, &mut w, "osprey", 30);
        assert_eq!(value(&quiet, &format!("{P}.count")), Some(1100.0));
        assert!(
            !quiet.iter().any(|l| l.starts_with(&format!("{P}.p"))),
            "{quiet:#?}"
        );
        // The next interval is fast again: the spike has left the window.
        observe(&r, 5, 0.0001);
        let after = render(&a, &mut w, "osprey", 40);
        assert!(value(&after, &format!("{P}.p99")).unwrap() <= 0.0001);
    }

    #[test]
    fn each_target_has_its_own_window() {
        static CAT: crate::Catalogue = &[&EV];
        let a = Aggregate::new();
        let reg = Registry::with_store(CAT, Vec::new(), a.clone(), false);
        let r = reg.resolve(&EV, &["message", "delivered"]);
        // `every` pushes each tick, `slow` every other tick.
        let (mut every, mut slow) = (Window::new(), Window::new());
        let p99 = |lines: &[String]| value(lines, &format!("{P}.p99"));
        observe(&r, 10, 0.0001);
        assert!(p99(&render(&a, &mut every, "osprey", 1)).is_some());
        assert!(p99(&render(&a, &mut slow, "osprey", 1)).is_some());
        // Tick 2: a spike, seen by `every` only (`slow` does not push).
        observe(&r, 1, 2.0);
        assert!(p99(&render(&a, &mut every, "osprey", 2)).unwrap() > 1.6384);
        // Tick 3: fast again. `every`'s window is the fast tick; `slow`'s
        // spans ticks 2 and 3 and still holds the spike.
        observe(&r, 1, 0.0001);
        let e = render(&a, &mut every, "osprey", 3);
        let s = render(&a, &mut slow, "osprey", 3);
        assert!(p99(&e).unwrap() <= 0.0001, "{e:#?}");
        // Rank 1.98 of 2: 0.98 of the way through (1.6384, 3.2768].
        let got = p99(&s).unwrap();
        assert!((got - (1.6384 + 1.6384 * 0.98)).abs() < 1e-9, "{s:#?}");
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
