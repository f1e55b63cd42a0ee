//! The aggregate handler: every metric series kept in atomics, readable as
//! plain values. Graphite pushes and the admin API's snapshots read it;
//! prometheus-client keeps its own state and offers no way to read bucket
//! counts back, so this is the one place other consumers can.
//!
//! An emission touches only atomics of a series resolved once; a read
//! takes the series map's lock briefly and copies the values.
//!
//! Histograms are read back as cumulative-since-start bucket counts; their
//! consumers want recent latencies, so [`window`] takes the difference of
//! two reads and [`quantile`] estimates quantiles of that window,
//! interpolated inside the bucket as Prometheus' `histogram_quantile` does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::handler::{Handler, ResolvedHandler};
use crate::registry::Meta;
use crate::spec::{EventSpec, MetricType};

enum Cell {
    Counter(AtomicU64),
    /// f64 bits.
    Gauge(AtomicU64),
    Histogram {
        bounds: Vec<f64>,
        /// Per bucket (not cumulative); the last is +Inf.
        buckets: Vec<AtomicU64>,
        count: AtomicU64,
        /// f64 bits, updated with compare-and-swap.
        sum: AtomicU64,
    },
}

struct Metric {
    key: &'static str,
    /// The exported name (`<event>_<key>`, counters with `_total`).
    name: String,
    kind: MetricType,
    cell: Cell,
}

struct Series {
    event: &'static str,
    labels: Vec<(&'static str, String)>,
    metrics: Vec<Metric>,
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

/// Collects every emission of events that have metrics.
#[derive(Clone, Default)]
pub struct Aggregate {
    series: Arc<Mutex<HashMap<String, Arc<Series>>>>,
}

impl Aggregate {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every series' current values, in no particular order.
    pub fn read(&self) -> Vec<Reading> {
        let all: Vec<Arc<Series>> = match self.series.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return Vec::new(),
        };
        let mut out = Vec::with_capacity(all.len() * 2);
        for s in all {
            for m in &s.metrics {
                let value = match &m.cell {
                    Cell::Counter(c) => Value::Counter(c.load(Ordering::Relaxed)),
                    Cell::Gauge(g) => Value::Gauge(f64::from_bits(g.load(Ordering::Relaxed))),
                    Cell::Histogram {
                        bounds,
                        buckets,
                        count,
                        sum,
                    } => Value::Histogram {
                        bounds: bounds.clone(),
                        buckets: buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
                        count: count.load(Ordering::Relaxed),
                        sum: f64::from_bits(sum.load(Ordering::Relaxed)),
                    },
                };
                out.push(Reading {
                    event: s.event,
                    key: m.key,
                    name: m.name.clone(),
                    labels: s.labels.clone(),
                    value,
                });
            }
        }
        out
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

impl Handler for Aggregate {
    fn name(&self) -> &'static str {
        "aggregate"
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
                let metrics = spec
                    .metrics
                    .iter()
                    .map(|m| {
                        let mut name = spec.metric_name(m);
                        if matches!(m.kind, MetricType::Counter | MetricType::ObservedCounter) {
                            name.push_str("_total");
                        }
                        let cell = match m.kind {
                            MetricType::Counter => Cell::Counter(AtomicU64::new(0)),
                            // An observed total is read back as its value.
                            MetricType::Gauge
                            | MetricType::UpDownCounter
                            | MetricType::ObservedCounter => {
                                Cell::Gauge(AtomicU64::new(0f64.to_bits()))
                            }
                            MetricType::Histogram(b) => {
                                let bounds = b.bounds();
                                Cell::Histogram {
                                    buckets: (0..=bounds.len())
                                        .map(|_| AtomicU64::new(0))
                                        .collect(),
                                    bounds,
                                    count: AtomicU64::new(0),
                                    sum: AtomicU64::new(0f64.to_bits()),
                                }
                            }
                        };
                        Metric {
                            key: m.key,
                            name,
                            kind: m.kind,
                            cell,
                        }
                    })
                    .collect();
                Arc::new(Series {
                    event: spec.name,
                    labels: spec
                        .labels
                        .iter()
                        .zip(labels)
                        .map(|(k, v)| (*k, v.to_string()))
                        .collect(),
                    metrics,
                })
            })
            .clone();
        Some(Box::new(Resolved { series }))
    }
}

struct Resolved {
    series: Arc<Series>,
}

fn add_f64(cell: &AtomicU64, v: f64) {
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        Some((f64::from_bits(bits) + v).to_bits())
    });
}

impl ResolvedHandler for Resolved {
    fn handle(&self, measurements: &[(&'static str, f64)], _: &Meta<'_>) {
        for (key, v) in measurements {
            let Some(m) = self
                .series
                .metrics
                .iter()
                .find(|m| crate::handler::key_eq(m.key, key))
            else {
                continue;
            };
            match &m.cell {
                Cell::Counter(c) => {
                    if *v > 0.0 {
                        c.fetch_add(crate::handler::count_of(*v), Ordering::Relaxed);
                    }
                }
                Cell::Gauge(g) if m.kind == MetricType::UpDownCounter => add_f64(g, *v),
                Cell::Gauge(g) => g.store(v.to_bits(), Ordering::Relaxed),
                Cell::Histogram {
                    bounds,
                    buckets,
                    count,
                    sum,
                } => {
                    let i = bounds.iter().position(|b| v <= b).unwrap_or(bounds.len());
                    buckets[i].fetch_add(1, Ordering::Relaxed);
                    count.fetch_add(1, Ordering::Relaxed);
                    add_f64(sum, *v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{CONNECTIONS as UD, ROUTED as EV};
    use crate::Registry;

    #[test]
    fn reads_back_what_was_emitted() {
        static CAT: crate::Catalogue = &[&EV, &UD];
        let a = Aggregate::new();
        let reg = Registry::new(CAT, vec![Box::new(a.clone())]);
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
                ..
            } => {
                assert_eq!(count, 3);
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
