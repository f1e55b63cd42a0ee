//! Event specs the handler tests share (test builds only).

use crate::spec::{Buckets, EventSpec, Level, Metric, MetricType};

/// A counter and a latency histogram with two labels.
pub static ROUTED: EventSpec = EventSpec {
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

/// An up/down counter without labels.
pub static CONNECTIONS: EventSpec = EventSpec {
    name: "c2s_connections",
    help: "",
    labels: &[],
    metrics: &[Metric {
        key: "open",
        kind: MetricType::UpDownCounter,
        help: "",
    }],
    level: Level::Debug,
    probe: false,
};

/// A probe's gauge.
pub static SESSIONS: EventSpec = EventSpec {
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
