//! The Prometheus handler: one metric family per declared measurement,
//! label sets resolved once per handle, encoded as OpenMetrics (what
//! Prometheus asks for) or the classic text format (`promtool`, curl).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;

use crate::handler::{Handler, ResolvedHandler};
use crate::registry::Meta;
use crate::spec::{Catalogue, EventSpec, MetricType};

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type FGauge = Gauge<f64, AtomicU64>;
/// A counter of a total kept elsewhere (CPU seconds): fractional.
type FCounter = Counter<f64, AtomicU64>;

#[derive(Clone)]
struct Buckets(Arc<Vec<f64>>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.clone())
    }
}

/// A histogram updated without a lock. `prometheus_client`'s takes a mutex
/// for every observation, and one series (routing latency, say) is observed
/// by every session's task: a lock shared by every core on the message path.
#[derive(Debug, Clone)]
struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    /// Upper bounds, ascending; one more count than bounds (`+Inf`).
    bounds: Arc<Vec<f64>>,
    counts: Vec<AtomicU64>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    fn new(bounds: Arc<Vec<f64>>) -> Histogram {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(HistogramCells {
            bounds,
            counts,
            sum: AtomicU64::new(0f64.to_bits()),
        }))
    }

    fn observe(&self, v: f64) {
        let c = &*self.0;
        // The first bound >= v (`le` includes equality); NaN counts in +Inf.
        let i = if v.is_nan() {
            c.bounds.len()
        } else {
            c.bounds.partition_point(|b| *b < v)
        };
        c.counts[i].fetch_add(1, Ordering::Relaxed);
        let _ = c
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }
}

impl prometheus_client::metrics::TypedMetric for Histogram {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Histogram;
}

impl prometheus_client::encoding::EncodeMetric for Histogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let c = &*self.0;
        // Per-bucket counts (the encoder accumulates them); the count is
        // their sum, so the two always agree within one scrape.
        let buckets: Vec<(f64, u64)> = c
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(c.counts.iter().map(|n| n.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = f64::from_bits(c.sum.load(Ordering::Relaxed));
        encoder
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Histogram
    }
}

#[derive(Clone)]
enum Fam {
    Counter(Family<Labels, Counter>),
    Observed(Family<Labels, FCounter>),
    Gauge(Family<Labels, FGauge>),
    Histogram(Family<Labels, Histogram, Buckets>),
}

/// Every family, and the registry that encodes them.
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    families: HashMap<(&'static str, &'static str), Fam>,
}

impl Metrics {
    /// OpenMetrics text.
    pub fn openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text format (0.0.4).
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

pub struct PrometheusHandler {
    metrics: Arc<Metrics>,
}

impl PrometheusHandler {
    /// Registers a family for every metric of every event.
    pub fn new(catalogue: Catalogue) -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let mut families = HashMap::new();
        for spec in catalogue {
            for m in spec.metrics {
                let name = spec.metric_name(m);
                // prometheus-client ends help with a full stop itself.
                let help = format!("{} {}", spec.help, m.help);
                let help = help.trim_end_matches('.');
                let fam = match m.kind {
                    MetricType::Counter => {
                        let f = Family::<Labels, Counter>::default();
                        registry.register(&name, help, f.clone());
                        Fam::Counter(f)
                    }
                    MetricType::ObservedCounter => {
                        let f = Family::<Labels, FCounter>::default();
                        registry.register(&name, help, f.clone());
                        Fam::Observed(f)
                    }
                    MetricType::UpDownCounter | MetricType::Gauge => {
                        let f = Family::<Labels, FGauge>::default();
                        registry.register(&name, help, f.clone());
                        Fam::Gauge(f)
                    }
                    MetricType::Histogram(b) => {
                        let f = Family::new_with_constructor(Buckets(Arc::new(b.bounds())));
                        registry.register(&name, help, f.clone());
                        Fam::Histogram(f)
                    }
                };
                families.insert((spec.name, m.key), fam);
            }
        }
        PrometheusHandler {
            metrics: Arc::new(Metrics { registry, families }),
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }
}

enum Series {
    Counter(Counter),
    Observed(FCounter),
    UpDown(FGauge),
    Gauge(FGauge),
    Histogram(Histogram),
}

struct Resolved {
    series: Vec<(&'static str, Series)>,
}

impl Handler for PrometheusHandler {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn wants(&self, spec: &EventSpec) -> bool {
        !spec.metrics.is_empty()
    }

    fn resolve(
        &self,
        spec: &'static EventSpec,
        labels: &[&str],
    ) -> Option<Box<dyn ResolvedHandler>> {
        let set: Labels = spec
            .labels
            .iter()
            .zip(labels)
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        let series = spec
            .metrics
            .iter()
            .filter_map(|m| {
                let fam = self.metrics.families.get(&(spec.name, m.key))?;
                // Owned handles: holding two guards of one family deadlocks.
                let s = match (fam, m.kind) {
                    (Fam::Counter(f), _) => Series::Counter(f.get_or_create_owned(&set)),
                    (Fam::Observed(f), _) => Series::Observed(f.get_or_create_owned(&set)),
                    (Fam::Gauge(f), MetricType::UpDownCounter) => {
                        Series::UpDown(f.get_or_create_owned(&set))
                    }
                    (Fam::Gauge(f), _) => Series::Gauge(f.get_or_create_owned(&set)),
                    (Fam::Histogram(f), _) => Series::Histogram(f.get_or_create_owned(&set)),
                };
                Some((m.key, s))
            })
            .collect();
        Some(Box::new(Resolved { series }))
    }
}

impl ResolvedHandler for Resolved {
    fn handle(&self, measurements: &[(&'static str, f64)], _meta: &Meta<'_>) {
        for (key, value) in measurements {
            for (k, s) in &self.series {
                if !crate::handler::key_eq(k, key) {
                    continue;
                }
                match s {
                    Series::Counter(c) => {
                        if *value > 0.0 {
                            c.inc_by(crate::handler::count_of(*value));
                        }
                    }
                    Series::Observed(c) => {
                        // Set to the total by adding what is new; a lower
                        // total (never, for CPU time) leaves it as it is.
                        let seen = c.get();
                        if *value > seen {
                            c.inc_by(*value - seen);
                        }
                    }
                    Series::UpDown(g) => {
                        g.inc_by(*value);
                    }
                    Series::Gauge(g) => {
                        g.set(*value);
                    }
                    Series::Histogram(h) => h.observe(*value),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{EventSpec, Level, Metric};
    use crate::Registry;

    static CPU: EventSpec = EventSpec {
        name: "proc",
        help: "A process.",
        labels: &[],
        metrics: &[Metric {
            key: "cpu_seconds",
            kind: MetricType::ObservedCounter,
            help: "CPU time.",
        }],
        level: Level::Debug,
        probe: true,
    };

    #[test]
    fn an_observed_counter_is_a_counter_set_to_the_total() {
        static CAT: Catalogue = &[&CPU];
        let reg = Registry::with_prometheus(CAT, Vec::new());
        let h = reg.resolve(&CPU, &[]);
        for total in [0.25, 1.5, 1.0, 2.75] {
            h.emit(&[("cpu_seconds", total)], &Meta::NONE);
        }
        let text = reg.prometheus().unwrap().text();
        assert!(
            text.contains("# TYPE proc_cpu_seconds_total counter\n"),
            "{text}"
        );
        // 2.75: the lower total (1.0) was ignored, fractions kept.
        assert!(text.contains("\nproc_cpu_seconds_total 2.75\n"), "{text}");
        let om = reg.prometheus().unwrap().openmetrics();
        assert!(om.contains("# TYPE proc_cpu_seconds counter\n"), "{om}");
        assert!(om.contains("\nproc_cpu_seconds_total 2.75\n"), "{om}");
    }
}
