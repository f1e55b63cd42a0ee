//! The gateway's instrumentation: the registry built from the
//! configuration, and handles resolved once so that the stanza path only
//! increments.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use osprey_instrument::aggregate::Aggregate;
use osprey_instrument::graphite::GraphiteTarget;
use osprey_instrument::log::LogHandler;
use osprey_instrument::{Handler, Labelled, Meta, Registry};

use crate::config::Config;
use crate::events as ev;

/// Element kinds used as the `kind` label.
pub const KINDS: [&str; 5] = ["message", "iq", "presence", "error", "negotiation"];

/// Per host: element counters for both directions, resolved at start.
pub struct HostEvents {
    pub element_in: [Labelled; 5],
    pub element_out: [Labelled; 5],
    pub session_open: Labelled,
    pub session_replaced: Labelled,
}

/// Per c2s listener: connection and byte counters.
pub struct ListenerEvents {
    /// TLS handshakes that failed (direct TLS or STARTTLS).
    pub rejected_tls: Option<Labelled>,
    pub accepted: Labelled,
    pub open: Labelled,
    /// [tcp, tls]
    pub data_in: [Labelled; 2],
    pub data_out: [Labelled; 2],
}

pub struct Instr {
    pub registry: Arc<Registry>,
    /// Series created at zero so that dashboards show 0, not "no data".
    _preset: Vec<Labelled>,
    /// Every series readable back (snapshots, Graphite); `None` when
    /// neither the admin API nor Graphite is configured.
    pub aggregate: Option<Aggregate>,
    /// Graphite receivers, when configured.
    graphite: Vec<GraphiteTarget>,
    hosts: HashMap<String, Arc<HostEvents>>,
    storage: DashMap<(&'static str, bool), Labelled>,
    /// Handles of events whose two labels are static strings (routing,
    /// module handlers), resolved on first use: a lookup, not a resolve.
    /// Hashed with foldhash: looked up for several events of every stanza,
    /// by keys that are program constants (no HashDoS exposure).
    pairs:
        DashMap<(&'static str, &'static str, &'static str), Labelled, foldhash::fast::RandomState>,
}

/// The whole catalogue (the gateway's events and the process probe's).
pub use crate::events::CATALOGUE;

impl Instr {
    /// Handlers as configured: none unless their `[instrumentation.*]`
    /// section is present. `extra` handlers (tests) are added.
    pub fn from_config(
        config: &Config,
        extra: Vec<Box<dyn Handler>>,
    ) -> Result<Instr, crate::config::ConfigError> {
        let mut handlers = extra;
        if let Some(log) = &config.instrumentation.log {
            if let Some(unknown) = log
                .events
                .keys()
                .find(|k| !CATALOGUE.iter().any(|e| e.name == k.as_str()))
            {
                return Err(config.error_at(
                    &format!("instrumentation.log.events.{unknown}"),
                    "no such event (see `osprey events`)",
                ));
            }
            let per_event = log.events.iter().map(|(k, v)| (k.clone(), *v)).collect();
            handlers.push(Box::new(LogHandler::new(log.level, per_event)));
        }
        let graphite = graphite_targets(config).unwrap_or_default();
        let admin = config
            .listen
            .http
            .iter()
            .any(|l| l.handlers.contains(&crate::config::HttpHandler::Admin));
        let aggregate = (admin || !graphite.is_empty()).then(|| {
            let a = Aggregate::new();
            handlers.push(Box::new(a.clone()));
            a
        });
        let registry = if config.instrumentation.prometheus.is_some() {
            Registry::with_prometheus(CATALOGUE, handlers)
        } else {
            Registry::new(CATALOGUE, handlers)
        };
        let hosts = config
            .general
            .hosts
            .iter()
            .map(|h| (h.clone(), Arc::new(HostEvents::new(&registry, h))))
            .collect();
        let mut preset: Vec<Labelled> = [
            "stanza_too_large",
            "slow_consumer",
            "offline_full",
            "auth_attempts",
            "http_connections",
        ]
        .iter()
        .map(|l| registry.resolve(&ev::LIMIT_HIT, &[l]))
        .collect();
        preset.push(registry.resolve(&ev::LOGIN_THROTTLED, &[]));
        for h in ["graphite", "otlp"] {
            preset.push(registry.resolve(&osprey_instrument::graphite::DROPPED, &[h]));
        }
        Ok(Instr {
            _preset: preset,
            registry,
            aggregate,
            graphite,
            hosts,
            storage: DashMap::new(),
            pairs: DashMap::default(),
        })
    }

    /// Starts the Graphite pushers (none unless configured).
    pub fn spawn_graphite(&self) -> Vec<tokio::task::JoinHandle<()>> {
        match &self.aggregate {
            Some(a) if !self.graphite.is_empty() => {
                osprey_instrument::graphite::spawn_pushers(a, &self.registry, self.graphite.clone())
            }
            _ => Vec::new(),
        }
    }

    /// The handles of a served host (every host was resolved at start).
    pub fn host(&self, host: &str) -> Option<Arc<HostEvents>> {
        self.hosts.get(host).cloned()
    }

    pub fn listener(&self, name: &str, tls: bool) -> ListenerEvents {
        let r = &self.registry;
        ListenerEvents {
            rejected_tls: tls
                .then(|| r.resolve(&ev::CONNECTION_REJECTED, &[name, "tls_handshake"])),
            accepted: r.resolve(&ev::CONNECTION_ACCEPTED, &[name]),
            open: r.resolve(&ev::CONNECTIONS_OPEN, &[name]),
            data_in: [
                r.resolve(&ev::DATA_IN, &[name, "tcp"]),
                r.resolve(&ev::DATA_IN, &[name, "tls"]),
            ],
            data_out: [
                r.resolve(&ev::DATA_OUT, &[name, "tcp"]),
                r.resolve(&ev::DATA_OUT, &[name, "tls"]),
            ],
        }
    }

    /// Cold-path emission (resolves per call).
    pub fn emit(
        &self,
        spec: &'static osprey_instrument::EventSpec,
        labels: &[&str],
        m: &[(&'static str, f64)],
    ) {
        self.registry.emit(spec, labels, m, &Meta::NONE);
    }

    pub fn count(&self, spec: &'static osprey_instrument::EventSpec, labels: &[&str]) {
        self.emit(spec, labels, &[("count", 1.0)]);
    }

    /// A storage operation finished (called by the storage observer).
    pub fn storage_query(
        &self,
        backend: &'static str,
        op: &'static str,
        took: Duration,
        failed: bool,
    ) {
        let handle = self
            .storage
            .entry((op, failed))
            .or_insert_with(|| {
                let outcome = if failed { "error" } else { "ok" };
                self.registry
                    .resolve(&ev::STORAGE_QUERY, &[backend, op, outcome])
            })
            .clone();
        handle.emit(
            &[("count", 1.0), ("seconds", took.as_secs_f64())],
            &Meta::NONE,
        );
    }

    fn pair(
        &self,
        spec: &'static osprey_instrument::EventSpec,
        a: &'static str,
        b: &'static str,
    ) -> Labelled {
        self.with_pair(spec, a, b, Labelled::clone)
    }

    /// Runs `f` on the series of (spec, a, b), resolved the first time
    /// (no reference count touched once it is).
    fn with_pair<R>(
        &self,
        spec: &'static osprey_instrument::EventSpec,
        a: &'static str,
        b: &'static str,
        f: impl FnOnce(&Labelled) -> R,
    ) -> R {
        if let Some(h) = self.pairs.get(&(spec.name, a, b)) {
            return f(&h);
        }
        let h = self.registry.resolve(spec, &[a, b]);
        let out = f(&h);
        self.pairs.insert((spec.name, a, b), h);
        out
    }

    /// The `module_handler` series of one (module, operation), to keep.
    pub fn handler_series(&self, module: &'static str, operation: &'static str) -> Labelled {
        self.pair(&ev::HANDLER, module, operation)
    }

    /// Times a module handler.
    pub fn handler(&self, module: &'static str, operation: &'static str, took: Duration) {
        self.with_pair(&ev::HANDLER, module, operation, |h| {
            h.emit(
                &[("count", 1.0), ("seconds", took.as_secs_f64())],
                &Meta::NONE,
            )
        });
    }

    /// `calls` calls of a module handler, reported at once with their mean
    /// duration (per-stanza write hooks, once per written batch).
    pub fn handler_calls(
        &self,
        module: &'static str,
        operation: &'static str,
        calls: u64,
        mean: f64,
    ) {
        self.with_pair(&ev::HANDLER, module, operation, |h| {
            h.emit(&[("count", calls as f64), ("seconds", mean)], &Meta::NONE)
        });
    }

    /// A stanza was routed (`took`: the routing time, when measured).
    pub fn routed(&self, kind: &'static str, outcome: &'static str, took: Option<Duration>) {
        self.with_pair(&ev::ROUTED, kind, outcome, |h| match took {
            Some(t) => h.emit(&[("count", 1.0), ("seconds", t.as_secs_f64())], &Meta::NONE),
            None => h.count(),
        });
    }

    pub fn limit(&self, limit: &str) {
        self.count(&ev::LIMIT_HIT, &[limit]);
    }

    pub fn stanza_error(&self, condition: &crate::errors::StanzaCondition) {
        self.count(&ev::STANZA_ERROR, &["c2s", condition.label()]);
    }
}

impl HostEvents {
    fn new(r: &Arc<Registry>, host: &str) -> HostEvents {
        let kinds = |spec| KINDS.map(|k| r.resolve(spec, &["c2s", host, k]));
        HostEvents {
            element_in: kinds(&ev::ELEMENT_IN),
            element_out: kinds(&ev::ELEMENT_OUT),
            session_open: r.resolve(&ev::SESSION_OPEN, &[host]),
            session_replaced: r.resolve(&ev::SESSION_REPLACED, &[host]),
        }
    }
}

/// Index into [`KINDS`] for an element.
pub fn kind_index(name: &str, typ: Option<&str>) -> usize {
    match (name, typ) {
        (_, Some("error")) => 3,
        ("message", _) => 0,
        ("iq", _) => 1,
        ("presence", _) => 2,
        _ => 4,
    }
}

/// Index into [`KINDS`] from the start of serialized XML (outgoing).
pub fn kind_of_xml(xml: &str) -> usize {
    let b = xml.as_bytes();
    match b.get(1) {
        Some(b'm') => 0,
        Some(b'i') => 1,
        Some(b'p') => 2,
        _ => 4,
    }
}

/// The receivers, with `env_prefix` resolved (MongooseIM's habit: the
/// variable's value, when set, goes before the prefix).
fn graphite_targets(config: &Config) -> Option<Vec<GraphiteTarget>> {
    let sections = &config.instrumentation.graphite;
    if sections.is_empty() {
        return None;
    }
    Some(
        sections
            .iter()
            .map(|g| {
                let env = g.env_prefix.as_deref().and_then(|name| {
                    let v = std::env::var(name).ok().filter(|v| !v.is_empty());
                    if v.is_none() {
                        tracing::warn!(variable = name, "graphite env_prefix variable is not set");
                    }
                    v
                });
                GraphiteTarget {
                    host: g.host.clone(),
                    port: g.port,
                    interval: Duration::from_secs(g.interval),
                    prefix: match env {
                        Some(e) => format!("{e}.{}", g.prefix),
                        None => g.prefix.clone(),
                    },
                    connect_timeout: Duration::from_secs(g.connect_timeout),
                    buffer_lines: g.buffer_lines,
                }
            })
            .collect(),
    )
}
