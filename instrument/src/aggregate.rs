//! The metric store: every series of every event with metrics, kept once
//! in atomics and readable back as plain values. `/metrics` is encoded
//! from it ([`crate::prometheus`]), Graphite pushes and the admin API's
//! snapshots read it. It is not a handler: the registry updates a series
//! in place on every emission (no dynamic call, no second copy per
//! consumer), which is most of what instrumentation costs per stanza.
//!
//! An emission touches only atomics of a series resolved once; a read
//! takes the series map's lock briefly and copies the values.
//!
//! Histograms are read back as cumulative-since-start bucket counts; their
//! consumers want recent latencies, so [`window`] takes the difference of
//! two reads and [`quantile`] estimates quantiles of that window,
//! interpolated inside the bucket as Prometheus' `histogram_quantile` does.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::spec::{EventSpec, MetricType};

pub(crate) enum Cell {
    Counter(AtomicU64),
    /// f64 bits.
    Gauge(AtomicU64),
    /// A total kept elsewhere (CPU seconds), as f64 bits: only ever raised.
    Observed(AtomicU64),
    /// f64 bits, added to.
    UpDown(AtomicU64),
    Histogram {
        bounds: Box<[f64]>,
        /// Per bucket (not cumulative); the last is +Inf. The count is
        /// their sum, so the two always agree within one read.
        buckets: Box<[AtomicU64]>,
        sum: Sum,
    },
}

/// A histogram's sum of observations. Latencies and sizes are kept as
/// integers (nanoseconds, bytes) and added with one `fetch_add`: exact,
/// and cheaper than a compare-and-swap loop on f64 bits, which only
/// custom-bucket histograms (any value) keep.
pub(crate) enum Sum {
    Nanos(AtomicU64),
    Units(AtomicU64),
    Float(AtomicU64),
}

impl Sum {
    fn for_buckets(b: crate::spec::Buckets) -> Sum {
        use crate::spec::Buckets;
        match b {
            Buckets::Seconds | Buckets::FastSeconds => Sum::Nanos(AtomicU64::new(0)),
            Buckets::Bytes => Sum::Units(AtomicU64::new(0)),
            Buckets::Custom(_) => Sum::Float(AtomicU64::new(0f64.to_bits())),
        }
    }

    #[inline]
    fn add(&self, v: f64) {
        match self {
            // A negative or NaN duration or size (never, from the clock or
            // a length) adds nothing rather than wrapping.
            Sum::Nanos(n) if v > 0.0 => {
                n.fetch_add((v * 1e9 + 0.5) as u64, Ordering::Relaxed);
            }
            Sum::Units(n) if v > 0.0 => {
                n.fetch_add((v + 0.5) as u64, Ordering::Relaxed);
            }
            Sum::Float(f) => add_f64(f, v),
            _ => {}
        }
    }

    fn get(&self) -> f64 {
        match self {
            Sum::Nanos(n) => n.load(Ordering::Relaxed) as f64 / 1e9,
            Sum::Units(n) => n.load(Ordering::Relaxed) as f64,
            Sum::Float(f) => f64::from_bits(f.load(Ordering::Relaxed)),
        }
    }
}

pub(crate) struct Metric {
    pub(crate) key: &'static str,
    /// The exported name (`<event>_<key>`, counters with `_total`).
    name: String,
    pub(crate) cell: Cell,
}

/// One label set of one event: a cell per declared measurement, in the
/// spec's order.
pub(crate) struct Series {
    pub(crate) event: &'static str,
    pub(crate) labels: Vec<(&'static str, String)>,
    pub(crate) metrics: Box<[Metric]>,
}

impl fmt::Debug for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Series({} {:?})", self.event, self.labels)
    }
}

/// One metric of one series, read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub event: &'static str,
    pub key: &'static str,
    pub name: String,
    pub labels: Vec<(&'static str, String)>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram {
        bounds: Vec<f64>,
        /// Per bucket, not cumulative; one more than `bounds` (+Inf).
        buckets: Vec<u64>,
        count: u64,
        sum: f64,
    },
}

/// Every series, shared by the registry (which writes) and its readers.
#[derive(Clone, Default)]
pub struct Aggregate {
    series: Arc<Mutex<HashMap<String, Arc<Series>>>>,
}

impl fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Aggregate")
    }
}

impl Aggregate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every series as it is now (the map's lock is held only to copy the
    /// handles).
    pub(crate) fn all(&self) -> Vec<Arc<Series>> {
        match self.series.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Every series' current values, in no particular order.
    pub fn read(&self) -> Vec<Reading> {
        let all = self.all();
        let mut out = Vec::with_capacity(all.len() * 2);
        for s in all {
            for m in s.metrics.iter() {
                out.push(Reading {
                    event: s.event,
                    key: m.key,
                    name: m.name.clone(),
                    labels: s.labels.clone(),
                    value: m.cell.value(),
                });
            }
        }
        out
    }

    /// The series of one label set, created at zero the first time.
    pub(crate) fn series(&self, spec: &'static EventSpec, labels: &[&str]) -> Option<Arc<Series>> {
        if spec.metrics.is_empty() {
            return None;
        }
        let key = format!("{}\u{0}{}", spec.name, labels.join("\u{0}"));
        let mut map = self.series.lock().ok()?;
        let series = map.entry(key).or_insert_with(|| {
            Arc::new(Series {
                event: spec.name,
                labels: spec
                    .labels
                    .iter()
                    .zip(labels)
                    .map(|(k, v)| (*k, v.to_string()))
                    .collect(),
                metrics: spec.metrics.iter().map(|m| Metric::new(spec, m)).collect(),
            })
        });
        Some(series.clone())
    }
}

impl Metric {
    fn new(spec: &EventSpec, m: &crate::spec::Metric) -> Metric {
        let mut name = spec.metric_name(m);
        if matches!(m.kind, MetricType::Counter | MetricType::ObservedCounter) {
            name.push_str("_total");
        }
        let zero = || AtomicU64::new(0f64.to_bits());
        let cell = match m.kind {
            MetricType::Counter => Cell::Counter(AtomicU64::new(0)),
            MetricType::Gauge => Cell::Gauge(zero()),
            MetricType::UpDownCounter => Cell::UpDown(zero()),
            MetricType::ObservedCounter => Cell::Observed(zero()),
            MetricType::Histogram(b) => {
                let bounds = b.bounds();
                Cell::Histogram {
                    buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                    bounds: bounds.into_boxed_slice(),
                    sum: Sum::for_buckets(b),
                }
            }
        };
        Metric {
            key: m.key,
            name,
            cell,
        }
    }
}

impl Cell {
    /// Counters, gauges and the observed total as values; histograms with
    /// their per-bucket counts.
    pub(crate) fn value(&self) -> Value {
        let f = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        match self {
            Cell::Counter(c) => Value::Counter(c.load(Ordering::Relaxed)),
            Cell::Gauge(g) | Cell::UpDown(g) | Cell::Observed(g) => Value::Gauge(f(g)),
            Cell::Histogram {
                bounds,
                buckets,
                sum,
            } => {
                let buckets: Vec<u64> = buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
                Value::Histogram {
                    bounds: bounds.to_vec(),
                    count: buckets.iter().sum(),
                    buckets,
                    sum: sum.get(),
                }
            }
        }
    }

    #[inline]
    fn record(&self, v: f64) {
        match self {
            Cell::Counter(c) => {
                // The usual 1 without a float conversion.
                if v == 1.0 {
                    c.fetch_add(1, Ordering::Relaxed);
                } else if v > 0.0 {
                    c.fetch_add(crate::handler::count_of(v), Ordering::Relaxed);
                }
            }
            Cell::Histogram {
                bounds,
                buckets,
                sum,
            } => {
                // The first bound >= v (`le` includes equality); NaN counts
                // in +Inf.
                let i = if v.is_nan() {
                    bounds.len()
                } else {
                    bounds.partition_point(|b| *b < v)
                };
                if let Some(b) = buckets.get(i) {
                    b.fetch_add(1, Ordering::Relaxed);
                }
                sum.add(v);
            }
            Cell::Gauge(g) => g.store(v.to_bits(), Ordering::Relaxed),
            Cell::UpDown(g) => add_f64(g, v),
            Cell::Observed(g) => {
                // Non-negative f64 bits order as the values do; a lower
                // total (never, for CPU time) leaves it as it is.
                if v >= 0.0 {
                    g.fetch_max(v.to_bits(), Ordering::Relaxed);
                }
            }
        }
    }
}

impl Series {
    /// Records one emission. Measurements come in the spec's order almost
    /// always, so the cell at the same position is tried first.
    #[inline]
    pub(crate) fn record(&self, measurements: &[(&'static str, f64)]) {
        for (i, (key, v)) in measurements.iter().enumerate() {
            let cell = match self.metrics.get(i) {
                Some(m) if crate::handler::key_eq(m.key, key) => m,
                _ => match self
                    .metrics
                    .iter()
                    .find(|m| crate::handler::key_eq(m.key, key))
                {
                    Some(m) => m,
                    None => continue,
                },
            };
            cell.cell.record(*v);
        }
    }
}

/// A series' identity across reads: its exported name and label values.
pub type SeriesId = (String, Vec<String>);

impl Reading {
    pub fn id(&self) -> SeriesId {
        (
            self.name.clone(),
            self.labels.iter().map(|(_, v)| v.clone()).collect(),
        )
    }
}

/// The per-bucket counts added between two reads of one histogram: the
/// window a periodic consumer (each Graphite target, the snapshot sampler)
/// computes its quantiles over. `before` is `None` for a series the
/// consumer has not read before: a series appears in every read once it
/// exists, so all of its observations are then new. A bucket layout that
/// changed (it cannot, short of a bug) also counts as new.
pub fn window(before: Option<&[u64]>, now: &[u64]) -> Vec<u64> {
    match before {
        Some(p) if p.len() == now.len() => now
            .iter()
            .zip(p)
            .map(|(n, p)| n.saturating_sub(*p))
            .collect(),
        _ => now.to_vec(),
    }
}

/// Quantile `q` (0..=1) of the observations counted per bucket (`counts`
/// per bucket, not cumulative, the last one +Inf), estimated like
/// Prometheus' `histogram_quantile`: find the bucket holding the
/// observation of rank `q × total`, and interpolate linearly inside it,
/// `lower + (upper − lower) × (rank − below) / in_bucket`, as if its
/// observations were spread evenly. The lowest bucket starts at 0 (or is
/// reported as its bound when that is ≤ 0); a rank in the +Inf bucket
/// reports the highest finite bound, the most that can be said of it.
/// `None` when there is no observation (or no finite bound).
pub fn quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || bounds.is_empty() {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        if (below + c) as f64 >= rank {
            let Some(&upper) = bounds.get(i) else {
                break;
            };
            if i == 0 && upper <= 0.0 {
                return Some(upper);
            }
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let fraction = (rank - below as f64) / c as f64;
            return Some(lower + (upper - lower) * fraction);
        }
        below += c;
    }
    bounds.last().copied()
}

#[inline]
fn add_f64(cell: &AtomicU64, v: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + v).to_bits())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{CONNECTIONS as UD, ROUTED as EV};
    use crate::{Meta, Registry};

    #[test]
    fn reads_back_what_was_emitted() {
        static CAT: crate::Catalogue = &[&EV, &UD];
        let a = Aggregate::new();
        let reg = Registry::with_store(CAT, Vec::new(), a.clone(), false);
        let r = reg.resolve(&EV, &["message", "delivered"]);
        for s in [0.0001, 0.0002, 0.01] {
            r.emit(&[("count", 1.0), ("seconds", s)], &Meta::NONE);
        }
        let o = reg.resolve(&UD, &[]);
        o.emit(&[("open", 1.0)], &Meta::NONE);
        o.emit(&[("open", 1.0)], &Meta::NONE);
        o.emit(&[("open", -1.0)], &Meta::NONE);
        let all = a.read();
        let get = |name: &str| all.iter().find(|r| r.name == name).unwrap().clone();
        let c = get("router_routed_total");
        assert_eq!(c.value, Value::Counter(3));
        assert_eq!(
            c.labels,
            vec![("kind", "message".into()), ("outcome", "delivered".into())]
        );
        match get("router_routed_seconds").value {
            Value::Histogram {
                bounds,
                buckets,
                count,
                sum,
            } => {
                assert_eq!(count, 3);
                // Kept in nanoseconds: exact to the nanosecond.
                assert!((sum - 0.0103).abs() < 1e-12, "{sum}");
                // Rank 1.5: half way through (0.0001, 0.0002].
                assert_close(quantile(&bounds, &buckets, 0.5), 0.00015);
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(get("c2s_connections_open").value, Value::Gauge(1.0));
    }

    #[test]
    fn quantiles_are_interpolated_within_their_bucket() {
        let bounds = [1.0, 2.0, 4.0];
        let q = |counts: &[u64], q| quantile(&bounds, counts, q);
        // Rank 5 of 10 ends the first bucket; 9 ends the second.
        assert_eq!(q(&[5, 4, 1, 0], 0.5), Some(1.0));
        assert_eq!(q(&[5, 4, 1, 0], 0.9), Some(2.0));
        // Rank 9.9: 0.9 of the way through (2, 4].
        assert_close(q(&[5, 4, 1, 0], 0.99), 3.8);
        // The lowest bucket starts at 0: rank 2 of 4 in (0, 1].
        assert_close(q(&[4, 0, 0, 0], 0.5), 0.5);
        // Empty buckets are skipped: rank 1 of 2 is in (2, 4].
        assert_close(q(&[0, 0, 2, 0], 0.5), 3.0);
        // The +Inf bucket reports the highest finite bound.
        assert_eq!(q(&[0, 0, 0, 1], 0.5), Some(4.0));
        assert_eq!(q(&[9, 0, 0, 1], 0.99), Some(4.0));
        assert_eq!(q(&[0, 0, 0, 0], 0.5), None);
        // A lowest bound ≤ 0 is reported as is (nothing to interpolate from).
        assert_eq!(quantile(&[0.0, 1.0], &[3, 1, 0], 0.5), Some(0.0));
        assert_close(quantile(&[0.0, 1.0], &[3, 1, 0], 0.99), 0.96);
    }

    #[test]
    fn window_is_the_difference_since_the_previous_read() {
        assert_eq!(window(Some(&[1, 2, 3]), &[1, 5, 3]), vec![0, 3, 0]);
        // A series not read before: everything is new.
        assert_eq!(window(None, &[1, 5, 3]), vec![1, 5, 3]);
        assert_eq!(window(Some(&[1]), &[1, 5, 3]), vec![1, 5, 3]);
    }

    fn assert_close(got: Option<f64>, want: f64) {
        let got = got.expect("a quantile");
        assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
    }
}
