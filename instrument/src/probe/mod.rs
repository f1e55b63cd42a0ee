//! Probes: measurements taken on an interval (gauges), e.g. sessions,
//! memory, pool sizes. Each runs once at start, then every interval.

pub mod process;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::registry::{Meta, Registry};
use crate::spec::EventSpec;

/// One label set's measurements.
pub struct Sample {
    pub labels: Vec<String>,
    pub measurements: Vec<(&'static str, f64)>,
}

pub trait Probe: Send + Sync {
    fn spec(&self) -> &'static EventSpec;
    fn sample(&self, out: &mut Vec<Sample>);
}

/// Runs the probes until the task is aborted. A probe that panics is
/// logged and skipped for that round; the others go on.
pub fn spawn_probes(
    registry: Arc<Registry>,
    interval: Duration,
    probes: Vec<Box<dyn Probe>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            run_once(&registry, &probes);
        }
    })
}

/// One round of every probe.
pub fn run_once(registry: &Arc<Registry>, probes: &[Box<dyn Probe>]) {
    let mut out = Vec::new();
    for p in probes {
        out.clear();
        if catch_unwind(AssertUnwindSafe(|| p.sample(&mut out))).is_err() {
            tracing::warn!(probe = p.spec().name, "probe panicked; skipped this round");
            continue;
        }
        for s in &out {
            let labels: Vec<&str> = s.labels.iter().map(String::as_str).collect();
            registry.emit(p.spec(), &labels, &s.measurements, &Meta::NONE);
        }
    }
}
