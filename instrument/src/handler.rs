//! Handlers turn emissions into metrics, log lines, traces. Each opts in
//! per event and resolves a label set once.

use crate::registry::Meta;
use crate::spec::EventSpec;

pub trait Handler: Send + Sync {
    fn name(&self) -> &'static str;
    /// Whether this handler takes this event at all.
    fn wants(&self, spec: &EventSpec) -> bool;
    /// Prepares for one label set (label values in the order of
    /// `spec.labels`); `None` declines it.
    fn resolve(
        &self,
        spec: &'static EventSpec,
        labels: &[&str],
    ) -> Option<Box<dyn ResolvedHandler>>;
}

/// A handler bound to one event and label set: called on every emission,
/// so it must be quick and must not block.
pub trait ResolvedHandler: Send + Sync {
    fn handle(&self, measurements: &[(&'static str, f64)], meta: &Meta<'_>);
}

/// Whether two measurement keys are equal. Keys are short catalogue
/// constants, often the same address: pointers first, then the bytes in
/// an inline loop (a `memcmp` call costs more than the compare itself, and
/// this runs for every measurement of every emission).
#[inline]
pub(crate) fn key_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if std::ptr::eq(a.as_ptr(), b.as_ptr()) {
        return true;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A counter's increment from a measurement (`v` > 0), rounded; the usual
/// 1 needs no rounding call.
#[inline]
pub(crate) fn count_of(v: f64) -> u64 {
    if v == 1.0 {
        1
    } else {
        (v + 0.5) as u64
    }
}
