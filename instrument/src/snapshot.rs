//! Snapshots: every series' value with its rate and interval quantiles,
//! computed from two successive [`Aggregate`] reads. This is what live
//! consumers (the `osprey top` dashboard) get instead of Prometheus text.
//!
//! The window is the sampling interval (`interval_seconds`, one second in
//! the gateway): rates and a histogram's `p50`/`p99` cover only what was
//! observed since the previous sample, the quantiles interpolated within
//! their bucket ([`crate::aggregate::quantile`]). A histogram with no
//! observation in the window has no `p50`/`p99`; the first snapshot has
//! no window, so no rates or quantiles. A series that appears between two
//! samples was created during the window: all of its values count as new.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::aggregate::{quantile, window, Aggregate, SeriesId, Value};

/// The gateway's state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Unix time, milliseconds.
    pub time_ms: u64,
    pub version: String,
    pub uptime_seconds: f64,
    pub hosts: Vec<String>,
    /// Instrumentation handlers running.
    pub handlers: Vec<String>,
    /// The window rates and quantiles cover (0 for the first snapshot).
    pub interval_seconds: f64,
    /// Values the application reads directly at snapshot time (e.g.
    /// `sessions`), fresher than probes.
    #[serde(default)]
    pub live: BTreeMap<String, f64>,
    pub series: Vec<Series>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric of one label set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub event: String,
    /// The measurement key (`count`, `seconds`, `bytes`…).
    pub key: String,
    /// The exported metric name.
    pub name: String,
    pub kind: Kind,
    pub labels: BTreeMap<String, String>,
    /// Counter total, gauge value, or histogram observation count.
    pub value: f64,
    /// Per second over the interval (counters and histogram counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Histograms: quantiles of the observations made in the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

impl Snapshot {
    /// Series of one event.
    pub fn event<'a>(&'a self, event: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.series.iter().filter(move |s| s.event == event)
    }

    /// The sum of `value` over an event's series with this key whose
    /// labels match every `(name, value)` given.
    pub fn total(&self, event: &str, key: &str, matching: &[(&str, &str)]) -> f64 {
        self.matching(event, key, matching).map(|s| s.value).sum()
    }

    /// The sum of `rate` over the matching series.
    pub fn rate(&self, event: &str, key: &str, matching: &[(&str, &str)]) -> f64 {
        self.matching(event, key, matching)
            .filter_map(|s| s.rate)
            .sum()
    }

    fn matching<'a>(
        &'a self,
        event: &'a str,
        key: &'a str,
        matching: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Series> + 'a {
        self.event(event).filter(move |s| {
            s.key == key
                && matching
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

/// What a series looked like at the previous sample.
enum Previous {
    Counter(u64),
    Histogram(Vec<u64>),
}

/// Turns successive reads into snapshots with rates.
pub struct Sampler {
    aggregate: Aggregate,
    last: Option<Instant>,
    previous: HashMap<SeriesId, Previous>,
}

impl Sampler {
    pub fn new(aggregate: Aggregate) -> Self {
        Sampler {
            aggregate,
            last: None,
            previous: HashMap::new(),
        }
    }

    /// Reads every series; rates cover the time since the last call.
    /// The caller fills in the identity fields (version, hosts…).
    pub fn sample(&mut self, now: Instant) -> Snapshot {
        let interval = self
            .last
            .map(|l| now.saturating_duration_since(l).as_secs_f64())
            .unwrap_or(0.0);
        // On the first sample there is no window yet: nothing is new.
        let first = self.last.is_none();
        self.last = Some(now);
        let per_second = |delta: u64| (interval > 0.0).then(|| delta as f64 / interval);
        let mut series = Vec::new();
        for r in self.aggregate.read() {
            let id = r.id();
            let labels = r
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            let mut s = Series {
                event: r.event.to_string(),
                key: r.key.to_string(),
                name: r.name.clone(),
                kind: Kind::Gauge,
                labels,
                value: 0.0,
                rate: None,
                p50: None,
                p99: None,
            };
            match r.value {
                Value::Gauge(g) => s.value = g,
                Value::Counter(c) => {
                    s.kind = Kind::Counter;
                    s.value = c as f64;
                    let before = match self.previous.insert(id, Previous::Counter(c)) {
                        Some(Previous::Counter(p)) => p,
                        _ if first => c,
                        _ => 0,
                    };
                    s.rate = per_second(c.saturating_sub(before));
                }
                Value::Histogram {
                    bounds,
                    buckets,
                    count,
                    ..
                } => {
                    s.kind = Kind::Histogram;
                    s.value = count as f64;
                    let delta = match self.previous.get(&id) {
                        _ if first => vec![0; buckets.len()],
                        Some(Previous::Histogram(p)) => window(Some(p), &buckets),
                        _ => window(None, &buckets),
                    };
                    s.rate = per_second(delta.iter().sum());
                    s.p50 = quantile(&bounds, &delta, 0.5);
                    s.p99 = quantile(&bounds, &delta, 0.99);
                    self.previous.insert(id, Previous::Histogram(buckets));
                }
            }
            series.push(s);
        }
        series.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        Snapshot {
            interval_seconds: interval,
            series,
            ..Snapshot::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::ROUTED as EV;
    use crate::{Meta, Registry};
    use std::time::Duration;

    #[test]
    fn rates_and_quantiles_cover_the_interval_only() {
        static CAT: crate::Catalogue = &[&EV];
        let a = Aggregate::new();
        let reg = Registry::with_store(CAT, Vec::new(), a.clone(), false);
        let h = reg.resolve(&EV, &["message", "delivered"]);
        // Before the first sample: slow observations.
        for _ in 0..10 {
            h.emit(&[("count", 1.0), ("seconds", 1.0)], &Meta::NONE);
        }
        let mut s = Sampler::new(a);
        let t0 = Instant::now();
        let first = s.sample(t0);
        assert_eq!(first.interval_seconds, 0.0);
        assert_eq!(first.total("router_routed", "count", &[]), 10.0);
        assert_eq!(first.event("router_routed").next().unwrap().rate, None);
        for _ in 0..20 {
            h.emit(&[("count", 1.0), ("seconds", 0.0001)], &Meta::NONE);
        }
        let second = s.sample(t0 + Duration::from_secs(2));
        assert_eq!(second.interval_seconds, 2.0);
        assert_eq!(
            second.rate("router_routed", "count", &[("kind", "message")]),
            10.0
        );
        assert_eq!(
            second.rate("router_routed", "count", &[("kind", "iq")]),
            0.0
        );
        let hist = second
            .event("router_routed")
            .find(|s| s.key == "seconds")
            .unwrap();
        assert_eq!(hist.value, 30.0);
        assert_eq!(hist.rate, Some(10.0));
        // Only the fast observations of the interval count, interpolated
        // in their bucket (0.00005, 0.0001]: rank 19.8 of 20.
        let p99 = hist.p99.unwrap();
        assert!((p99 - 0.0000995).abs() < 1e-12, "{p99}");
        assert!((hist.p50.unwrap() - 0.000075).abs() < 1e-12);
        // The JSON round-trips (the dashboard reads it back).
        let text = serde_json::to_string(&second).unwrap();
        assert!(
            text.contains("\"labels\":{\"kind\":\"message\",\"outcome\":\"delivered\"}"),
            "{text}"
        );
        let back: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, second);
        // A window without observations has no quantiles.
        let third = s.sample(t0 + Duration::from_secs(3));
        let hist = third
            .event("router_routed")
            .find(|s| s.key == "seconds")
            .unwrap();
        assert_eq!((hist.rate, hist.p50, hist.p99), (Some(0.0), None, None));
        // A spike in the next window shows at once, after 30 fast ones.
        for _ in 0..9 {
            h.emit(&[("count", 1.0), ("seconds", 0.0001)], &Meta::NONE);
        }
        h.emit(&[("count", 1.0), ("seconds", 2.0)], &Meta::NONE);
        let fourth = s.sample(t0 + Duration::from_secs(4));
        let hist = fourth
            .event("router_routed")
            .find(|s| s.key == "seconds")
            .unwrap();
        // Rank 9.9 of 10: 0.9 of the way through (1.6384, 3.2768].
        let p99 = hist.p99.unwrap();
        assert!((p99 - 1.6384 * 1.9).abs() < 1e-9, "{p99}");
        assert!(hist.p50.unwrap() <= 0.0001);
    }

    #[test]
    fn a_series_born_between_samples_counts_in_full() {
        static CAT: crate::Catalogue = &[&EV];
        let a = Aggregate::new();
        let reg = Registry::with_store(CAT, Vec::new(), a.clone(), false);
        let mut s = Sampler::new(a);
        let t0 = Instant::now();
        s.sample(t0);
        let h = reg.resolve(&EV, &["iq", "delivered"]);
        for _ in 0..4 {
            h.emit(&[("count", 1.0), ("seconds", 2.0)], &Meta::NONE);
        }
        let snap = s.sample(t0 + Duration::from_secs(2));
        assert_eq!(snap.rate("router_routed", "count", &[("kind", "iq")]), 2.0);
        let hist = snap
            .event("router_routed")
            .find(|s| s.key == "seconds")
            .unwrap();
        assert_eq!(hist.rate, Some(2.0));
        assert!(hist.p99.unwrap() > 1.6384, "{hist:?}");
    }
}
