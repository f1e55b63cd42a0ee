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
