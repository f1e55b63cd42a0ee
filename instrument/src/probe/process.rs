//! The process probe: resident memory, CPU time, open file descriptors,
//! threads and uptime, read from /proc/self (Linux; elsewhere it reports
//! only uptime). CPU time is a counter (`process_cpu_seconds_total`, as
//! the Prometheus client libraries name it): the probe reads the kernel's
//! total and the counter is set to it.

use std::time::Instant;

use super::{Probe, Sample};
use crate::spec::{EventSpec, Level, Metric, MetricType};

const fn gauge(key: &'static str, help: &'static str) -> Metric {
    Metric {
        key,
        kind: MetricType::Gauge,
        help,
    }
}

/// Add this to the program's catalogue when using [`ProcessProbe`].
pub static PROCESS: EventSpec = EventSpec {
    name: "process",
    help: "This process (probe).",
    labels: &[],
    metrics: &[
        gauge("resident_memory_bytes", "Resident set size."),
        Metric {
            key: "cpu_seconds",
            kind: MetricType::ObservedCounter,
            help: "CPU time used, user plus system.",
        },
        gauge("open_fds", "Open file descriptors."),
        gauge("threads", "Operating-system threads."),
        gauge("uptime_seconds", "Time since start."),
    ],
    level: Level::Debug,
    probe: true,
};

pub struct ProcessProbe {
    started: Instant,
}

impl ProcessProbe {
    pub fn new() -> Self {
        ProcessProbe {
            started: Instant::now(),
        }
    }
}

impl Default for ProcessProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe for ProcessProbe {
    fn spec(&self) -> &'static EventSpec {
        &PROCESS
    }

    fn sample(&self, out: &mut Vec<Sample>) {
        let mut m = vec![("uptime_seconds", self.started.elapsed().as_secs_f64())];
        if let Some(rss) = rss_bytes() {
            m.push(("resident_memory_bytes", rss));
        }
        if let Some(cpu) = cpu_seconds() {
            m.push(("cpu_seconds", cpu));
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            m.push(("open_fds", dir.count() as f64));
        }
        if let Some(t) = status_field("Threads:") {
            m.push(("threads", t));
        }
        out.push(Sample {
            labels: Vec::new(),
            measurements: m,
        });
    }
}

/// VmRSS from /proc/self/status, in bytes.
pub fn rss_bytes() -> Option<f64> {
    status_field("VmRSS:").map(|kb| kb * 1024.0)
}

fn status_field(name: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// utime + stime from /proc/self/stat; the kernel counts in ticks of
/// 1/100 s (USER_HZ, fixed at 100 on Linux).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
