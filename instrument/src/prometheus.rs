//! `/metrics`: the registry's metric store encoded by prometheus-client,
//! as OpenMetrics (what Prometheus asks for) or the classic text format
//! (`promtool`, curl). The store keeps every series once; a collector
//! walks it at scrape time, so the message path pays nothing for
//! Prometheus beyond the store's own update.

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType as PromType;

use crate::aggregate::{Aggregate, Cell, Series};
use crate::spec::{Catalogue, MetricType};

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The encoder of one store: every declared metric of the catalogue, in
/// catalogue order, with the series that exist.
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
}

impl Metrics {
    pub fn new(catalogue: Catalogue, store: Aggregate) -> Metrics {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(StoreCollector { catalogue, store }));
        Metrics { registry }
    }

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

#[derive(Debug)]
struct StoreCollector {
    catalogue: Catalogue,
    store: Aggregate,
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The series of each event, in label order (a stable output).
        let mut by_event: HashMap<&'static str, Vec<Arc<Series>>> = HashMap::new();
        for s in self.store.all() {
            by_event.entry(s.event).or_default().push(s);
        }
        for series in by_event.values_mut() {
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        for spec in self.catalogue {
            let series = by_event.get(spec.name).map(Vec::as_slice).unwrap_or(&[]);
            for (i, m) in spec.metrics.iter().enumerate() {
                let name = spec.metric_name(m);
                let help = format!("{} {}", spec.help, m.help);
                let help = format!("{}.", help.trim_end_matches('.'));
                let kind = match m.kind {
                    MetricType::Counter | MetricType::ObservedCounter => PromType::Counter,
                    MetricType::Gauge | MetricType::UpDownCounter => PromType::Gauge,
                    MetricType::Histogram(_) => PromType::Histogram,
                };
                let mut family = encoder.encode_descriptor(&name, &help, None, kind)?;
                for s in series {
                    let Some(metric) = s.metrics.get(i) else {
                        continue;
                    };
                    let mut e = family.encode_family(&s.labels)?;
                    encode_cell(&metric.cell, &mut e)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_cell(
    cell: &Cell,
    e: &mut prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    use crate::aggregate::Value;
    match (cell, cell.value()) {
        (_, Value::Counter(n)) => e.encode_counter::<NoLabelSet, _, u64>(&n, None),
        (Cell::Observed(_), Value::Gauge(v)) => e.encode_counter::<NoLabelSet, _, f64>(&v, None),
        (_, Value::Gauge(v)) => e.encode_gauge(&v),
        (
            _,
            Value::Histogram {
                bounds,
                buckets,
                count,
                sum,
            },
        ) => {
            // Per-bucket counts (the encoder accumulates them), +Inf last.
            let buckets: Vec<(f64, u64)> = bounds
                .into_iter()
                .chain(std::iter::once(f64::MAX))
                .zip(buckets)
                .collect();
            e.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::Meta;
    use crate::spec::{Catalogue, EventSpec, Level, Metric, MetricType};
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
