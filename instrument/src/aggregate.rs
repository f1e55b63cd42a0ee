//! The aggregate handler: every metric series kept in atomics, readable as
//! plain values. Graphite pushes and the admin API's snapshots read it;
//! prometheus-client keeps its own state and offers no way to read bucket
//! counts back, so this is the one place other consumers can.
//!
//! An emission touches only atomics of a series resolved once; a read
//! takes the series map's lock briefly and copies the values.

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

/// The upper-bound estimate of quantile `q` from per-bucket counts.
pub fn quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
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
                        if m.kind == MetricType::Counter {
                            name.push_str("_total");
                        }
                        let cell = match m.kind {
                            MetricType::Counter => Cell::Counter(AtomicU64::new(0)),
                            MetricType::Gauge | MetricType::UpDownCounter => {
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
            let Some(m) = self.series.metrics.iter().find(|m| m.key == *key) else {
                continue;
            };
            match &m.cell {
                Cell::Counter(c) => {
                    if *v > 0.0 {
                        c.fetch_add(v.round() as u64, Ordering::Relaxed);
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
                assert_eq!(quantile(&bounds, &buckets, 0.5), Some(0.0002));
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(get("c2s_connections_open").value, Value::Gauge(1.0));
    }

    #[test]
    fn quantiles_from_buckets() {
        let bounds = [1.0, 2.0, 4.0];
        assert_eq!(quantile(&bounds, &[5, 4, 1, 0], 0.5), Some(1.0));
        assert_eq!(quantile(&bounds, &[5, 4, 1, 0], 0.9), Some(2.0));
        assert_eq!(quantile(&bounds, &[5, 4, 1, 0], 0.99), Some(4.0));
        assert_eq!(quantile(&bounds, &[0, 0, 0, 1], 0.5), Some(f64::INFINITY));
        assert_eq!(quantile(&bounds, &[0, 0, 0, 0], 0.5), None);
    }
}
