//! ns per emit on a pre-resolved handle: no handlers, Prometheus only,
//! Prometheus + log at a disabled level, and the recording handler for
//! comparison. Run: `cargo bench -p osprey-instrument --bench emit`.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use osprey_instrument::log::LogHandler;
use osprey_instrument::{Buckets, EventSpec, Level, Meta, Metric, MetricType, Registry};

static ELEMENT_IN: EventSpec = EventSpec {
    name: "xmpp_element_in",
    help: "An element was received.",
    labels: &["connection_type", "host", "kind"],
    metrics: &[
        Metric {
            key: "count",
            kind: MetricType::Counter,
            help: "Elements.",
        },
        Metric {
            key: "bytes",
            kind: MetricType::Histogram(Buckets::Bytes),
            help: "Size.",
        },
    ],
    level: Level::Debug,
    probe: false,
};

static DATA_IN: EventSpec = EventSpec {
    name: "c2s_data_in",
    help: "Bytes in.",
    labels: &["listener", "transport"],
    metrics: &[Metric {
        key: "bytes",
        kind: MetricType::Counter,
        help: "Bytes.",
    }],
    level: Level::Trace,
    probe: false,
};

static CATALOGUE: &[&EventSpec] = &[&ELEMENT_IN, &DATA_IN];

fn bench(c: &mut Criterion) {
    let setups: Vec<(&str, std::sync::Arc<Registry>)> = vec![
        ("no handlers", Registry::disabled(CATALOGUE)),
        ("store", Registry::with_prometheus(CATALOGUE, Vec::new())),
        (
            "store + log (level off)",
            Registry::with_prometheus(
                CATALOGUE,
                vec![Box::new(LogHandler::new(Level::Info, HashMap::new()))],
            ),
        ),
    ];
    for (name, reg) in &setups {
        let counter = reg.resolve(&DATA_IN, &["c2s_5222", "tcp"]);
        c.bench_function(&format!("counter / {name}"), |b| {
            b.iter(|| counter.emit(black_box(&[("bytes", 512.0)]), &Meta::NONE))
        });
        let both = reg.resolve(&ELEMENT_IN, &["c2s", "localhost", "message"]);
        c.bench_function(&format!("counter+histogram / {name}"), |b| {
            b.iter(|| both.emit(black_box(&[("count", 1.0), ("bytes", 300.0)]), &Meta::NONE))
        });
    }
    let reg = Registry::with_prometheus(CATALOGUE, Vec::new());
    c.bench_function("resolve per call (cold path) / store", |b| {
        b.iter(|| {
            reg.emit(
                &DATA_IN,
                black_box(&["c2s_5222", "tcp"]),
                &[("bytes", 1.0)],
                &Meta::NONE,
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
