//! The registry: the catalogue, the handlers, and pre-resolved handles.

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::aggregate::{Aggregate, Series};
use crate::handler::{Gate, Handler, ResolvedHandler};
use crate::spec::{validate, Catalogue, EventSpec};

/// Fields for log and trace handlers only (a JID, a stanza id): never
/// labels, never metrics.
pub struct Meta<'a> {
    fields: &'a [(&'static str, &'a dyn fmt::Display)],
}

impl<'a> Meta<'a> {
    pub const NONE: Meta<'static> = Meta { fields: &[] };

    pub fn new(fields: &'a [(&'static str, &'a dyn fmt::Display)]) -> Self {
        Meta { fields }
    }

    pub fn fields(&self) -> &[(&'static str, &'a dyn fmt::Display)] {
        self.fields
    }
}

struct Slot {
    spec: &'static EventSpec,
    /// Shared with every handle of the event: marking is one load.
    emitted: Arc<AtomicBool>,
}

pub struct Registry {
    catalogue: Catalogue,
    slots: HashMap<&'static str, Slot>,
    handlers: Vec<Box<dyn Handler>>,
    panics: AtomicU64,
    /// Where metric series are kept (none: emissions update no metric).
    store: Option<Aggregate>,
    prometheus: Option<Arc<crate::prometheus::Metrics>>,
}

impl Registry {
    /// Builds a registry without a metric store: handlers only. A bad
    /// catalogue is a programming error: the message says what is wrong.
    pub fn new(catalogue: Catalogue, handlers: Vec<Box<dyn Handler>>) -> Arc<Registry> {
        Arc::new(Registry::build(catalogue, handlers))
    }

    /// Metrics kept in `store` (which Graphite and snapshots read), and
    /// encoded for Prometheus from it when `prometheus` is set.
    pub fn with_store(
        catalogue: Catalogue,
        handlers: Vec<Box<dyn Handler>>,
        store: Aggregate,
        prometheus: bool,
    ) -> Arc<Registry> {
        let mut reg = Registry::build(catalogue, handlers);
        if prometheus {
            reg.prometheus = Some(Arc::new(crate::prometheus::Metrics::new(
                catalogue,
                store.clone(),
            )));
        }
        reg.store = Some(store);
        Arc::new(reg)
    }

    /// A store of its own, encoded for Prometheus.
    pub fn with_prometheus(catalogue: Catalogue, handlers: Vec<Box<dyn Handler>>) -> Arc<Registry> {
        Registry::with_store(catalogue, handlers, Aggregate::new(), true)
    }

    fn build(catalogue: Catalogue, handlers: Vec<Box<dyn Handler>>) -> Registry {
        if let Err(e) = validate(catalogue) {
            panic!("invalid event catalogue: {e}");
        }
        let slots = catalogue
            .iter()
            .map(|s| {
                (
                    s.name,
                    Slot {
                        spec: s,
                        emitted: Arc::new(AtomicBool::new(false)),
                    },
                )
            })
            .collect();
        Registry {
            catalogue,
            slots,
            handlers,
            panics: AtomicU64::new(0),
            store: None,
            prometheus: None,
        }
    }

    /// No store, no handlers: emitting costs next to nothing.
    pub fn disabled(catalogue: Catalogue) -> Arc<Registry> {
        Registry::new(catalogue, Vec::new())
    }

    pub fn catalogue(&self) -> Catalogue {
        self.catalogue
    }

    /// The handlers' names, with `store` first when metrics are kept.
    pub fn handler_names(&self) -> Vec<&'static str> {
        self.store
            .iter()
            .map(|_| "store")
            .chain(self.prometheus.iter().map(|_| "prometheus"))
            .chain(self.handlers.iter().map(|h| h.name()))
            .collect()
    }

    /// The metric store, when metrics are kept.
    pub fn store(&self) -> Option<&Aggregate> {
        self.store.as_ref()
    }

    /// A handle for one label set (values in the order of `spec.labels`).
    /// An unregistered event or a wrong number of labels is a programming
    /// error: it fails debug builds and gives a handle that does nothing.
    pub fn resolve(self: &Arc<Self>, spec: &'static EventSpec, labels: &[&str]) -> Labelled {
        let slot = self
            .slots
            .get(spec.name)
            .filter(|s| std::ptr::eq(s.spec, spec));
        let registered = slot.is_some();
        debug_assert!(registered, "event {} is not in the catalogue", spec.name);
        debug_assert_eq!(
            labels.len(),
            spec.labels.len(),
            "event {}: labels {:?}",
            spec.name,
            spec.labels
        );
        if !registered || labels.len() != spec.labels.len() {
            return Labelled::noop(spec);
        }
        let handlers = self
            .handlers
            .iter()
            .filter(|h| h.wants(spec))
            .filter_map(|h| h.resolve(spec, labels).map(|r| (h.name(), r)))
            .map(|(name, r)| Guarded {
                name,
                gate: r.gate(),
                inner: r,
                broken: AtomicBool::new(false),
            })
            .collect();
        let series = self.store.as_ref().and_then(|s| s.series(spec, labels));
        Labelled {
            inner: Arc::new(Inner {
                spec,
                series,
                handlers,
                registry: Some(self.clone()),
                emitted: slot.map(|s| s.emitted.clone()),
            }),
        }
    }

    /// Resolves and emits once (cold paths).
    pub fn emit(
        self: &Arc<Self>,
        spec: &'static EventSpec,
        labels: &[&str],
        m: &[(&'static str, f64)],
        meta: &Meta<'_>,
    ) {
        self.resolve(spec, labels).emit(m, meta);
    }

    /// Every event and whether it has been emitted since start.
    pub fn emitted(&self) -> Vec<(&'static str, bool)> {
        self.catalogue
            .iter()
            .map(|s| {
                let e = self
                    .slots
                    .get(s.name)
                    .is_some_and(|slot| slot.emitted.load(Ordering::Relaxed));
                (s.name, e)
            })
            .collect()
    }

    /// Handler calls that panicked (each disables that handler for its handle).
    pub fn handler_panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// The Prometheus handler's metrics, if it is on.
    pub fn prometheus(&self) -> Option<&crate::prometheus::Metrics> {
        self.prometheus.as_deref()
    }
}

struct Guarded {
    /// The handler's name, for the log line when it panics.
    name: &'static str,
    gate: Gate,
    inner: Box<dyn ResolvedHandler>,
    broken: AtomicBool,
}

struct Inner {
    spec: &'static EventSpec,
    /// The store's series of this label set, updated in place.
    series: Option<Arc<Series>>,
    handlers: Vec<Guarded>,
    registry: Option<Arc<Registry>>,
    emitted: Option<Arc<AtomicBool>>,
}

impl Inner {
    /// Calls one handler, out of line (the caller is inlined at every
    /// emission site, this is not).
    #[inline(never)]
    fn call(&self, h: &Guarded, m: &[(&'static str, f64)], meta: &Meta<'_>) {
        if catch_unwind(AssertUnwindSafe(|| h.inner.handle(m, meta))).is_err() {
            h.broken.store(true, Ordering::Relaxed);
            if let Some(r) = &self.registry {
                r.panics.fetch_add(1, Ordering::Relaxed);
            }
            // Not through the event machinery (the log handler may be the
            // one that panicked).
            tracing::error!(
                target: "osprey::instrument",
                handler = h.name,
                event = self.spec.name,
                "instrumentation handler panicked; disabled for this series"
            );
        }
    }
}

/// A pre-resolved event + label set. Cheap to clone.
#[derive(Clone)]
pub struct Labelled {
    inner: Arc<Inner>,
}

impl Labelled {
    fn noop(spec: &'static EventSpec) -> Labelled {
        Labelled {
            inner: Arc::new(Inner {
                spec,
                series: None,
                handlers: Vec::new(),
                registry: None,
                emitted: None,
            }),
        }
    }

    pub fn spec(&self) -> &'static EventSpec {
        self.inner.spec
    }

    /// Anything listening: a metric series or a handler.
    pub fn is_enabled(&self) -> bool {
        self.inner.series.is_some() || !self.inner.handlers.is_empty()
    }

    /// Emits: the metric series first, then every handler whose gate is
    /// open; a handler that panics is disabled for this handle and
    /// counted, and the caller never sees it.
    #[inline]
    pub fn emit(&self, m: &[(&'static str, f64)], meta: &Meta<'_>) {
        let inner = &*self.inner;
        if let Some(flag) = &inner.emitted {
            // A read first: after the first emission the flag is only read,
            // so cores do not fight over its cache line.
            if !flag.load(Ordering::Relaxed) {
                flag.store(true, Ordering::Relaxed);
            }
        }
        if let Some(s) = &inner.series {
            s.record(m);
        }
        for h in &inner.handlers {
            if h.gate.open() && !h.broken.load(Ordering::Relaxed) {
                inner.call(h, m, meta);
            }
        }
    }

    /// Shorthand for a single `count = 1` measurement.
    pub fn count(&self) {
        self.emit(&[("count", 1.0)], &Meta::NONE);
    }
}
