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

/// The bounded label values of the limit, close and routing events. Each
/// series is created at zero at start (with the stream and stanza error
/// conditions and the storage operations), so that a dashboard shows 0,
/// not "no data", before the first one happens; emitting a value missing
/// here is a bug that a debug build asserts on.
pub mod bounded {
    /// `limit_hit{limit}`.
    pub const LIMITS: &[&str] = &[
        "stanza_too_large",
        "slow_consumer",
        "offline_full",
        "auth_attempts",
        "http_connections",
        "blocklist_items",
        "private_bytes",
        "private_items",
        "vcard_bytes",
        "mam_queue",
        "mam_archive_full",
        "mam_page",
        "pep_item_bytes",
        "pep_nodes",
        "registration_rate",
        "cluster_held",
        "slow_sender",
        "negotiation_timeout",
        "stanza_rate",
        "shaper",
        "too_many_from_address",
        "too_many_connections",
        "xml_depth",
        "xml_attributes",
        "xml_namespaces",
        "xml_namespaces_per_stanza",
        "xml_name_length",
        "xml_attribute_length",
    ];
    /// `c2s_session_close{reason}`.
    pub const SESSION_CLOSE: &[&str] = &[
        "peer_closed",
        "replaced",
        "kicked",
        "slow_consumer",
        "shutdown",
        "stream_error",
        "io_error",
        "sm_timeout",
        "sm_abandoned",
    ];
    /// `c2s_connection_closed{reason}`.
    pub const CONNECTION_CLOSED: &[&str] = &[
        "peer_closed",
        "stream_error",
        "io_error",
        "shutdown",
        "replaced",
        "tls_handshake",
        "no_certificate",
    ];
    /// `c2s_connection_rejected{reason}`.
    pub const CONNECTION_REJECTED: &[&str] = &[
        "tls_handshake",
        "tls_timeout",
        "too_many_from_address",
        "too_many_connections",
        "accept_error",
    ];
    /// `router_routed{kind, outcome}`: the outcomes each kind can have.
    pub const ROUTES: &[(&str, &[&str])] = &[
        (
            "message",
            &[
                "delivered",
                "offline_stored",
                "bounced",
                "dropped",
                "no_route",
            ],
        ),
        ("iq", &["delivered", "bounced"]),
        ("presence", &["delivered", "dropped"]),
    ];
}

/// Per host: element counters for both directions, resolved at start.
pub struct HostEvents {
    pub element_in: [Labelled; 5],
    pub element_out: [Labelled; 5],
    pub session_open: Labelled,
    pub session_replaced: Labelled,
    /// `c2s_session_close` at zero for every reason.
    _closed: Vec<Labelled>,
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
    /// Every close and reject reason at zero.
    _preset: Vec<Labelled>,
}

pub struct Instr {
    pub registry: Arc<Registry>,
    /// Series created at zero so that dashboards show 0, not "no data".
    _preset: Vec<Labelled>,
    /// The metric store (Prometheus, snapshots, Graphite); `None` when
    /// none of them is configured.
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
            let output = match log.format {
                crate::config::LogFormat::Json => osprey_instrument::log::Output::Json,
                crate::config::LogFormat::Text => osprey_instrument::log::Output::Text,
            };
            handlers.push(Box::new(
                LogHandler::new(log.level, per_event).with_output(output),
            ));
        }
        let graphite = graphite_targets(config).unwrap_or_default();
        let admin = config
            .listen
            .http
            .iter()
            .any(|l| l.handlers.contains(&crate::config::HttpHandler::Admin));
        let prometheus = config.instrumentation.prometheus.is_some();
        // One store for every metric consumer (Prometheus, the admin API's
        // snapshots, Graphite): each series is kept once.
        let aggregate = (admin || prometheus || !graphite.is_empty()).then(Aggregate::new);
        let registry = match &aggregate {
            Some(a) => Registry::with_store(CATALOGUE, handlers, a.clone(), prometheus),
            None => Registry::new(CATALOGUE, handlers),
        };
        let hosts = config
            .general
            .hosts
            .iter()
            .map(|h| (h.clone(), Arc::new(HostEvents::new(&registry, h))))
            .collect();
        let mut preset: Vec<Labelled> = bounded::LIMITS
            .iter()
            .map(|l| registry.resolve(&ev::LIMIT_HIT, &[l]))
            .collect();
        for scope in ["address", "account"] {
            preset.push(registry.resolve(&ev::LOGIN_THROTTLED, &[scope]));
        }
        for h in ["graphite", "otlp"] {
            preset.push(registry.resolve(&osprey_instrument::graphite::DROPPED, &[h]));
        }
        // Every error condition at zero (c2s is the one connection type).
        for c in crate::errors::StreamCondition::ALL {
            preset.push(registry.resolve(&ev::STREAM_ERROR, &["c2s", c.wire_name()]));
        }
        for c in crate::errors::StanzaCondition::ALL {
            preset.push(registry.resolve(&ev::STANZA_ERROR, &["c2s", c.wire_name()]));
        }
        // Every admin operation's successes at zero (errors appear when
        // they happen: admin calls are rare, and 6 outcomes × 21 operations
        // of histograms would weigh on every scrape).
        for op in crate::admin::OPERATIONS {
            preset.push(registry.resolve(&ev::ADMIN_OPERATION, &[op, "ok"]));
        }
        let build = registry.resolve(&ev::BUILD_INFO, &[env!("CARGO_PKG_VERSION")]);
        build.emit(&[("info", 1.0)], &Meta::NONE);
        preset.push(build);
        let instr = Instr {
            _preset: preset,
            registry,
            aggregate,
            graphite,
            hosts,
            storage: DashMap::new(),
            pairs: DashMap::default(),
        };
        for (kind, outcomes) in bounded::ROUTES {
            for outcome in *outcomes {
                instr.with_pair(&ev::ROUTED, kind, outcome, |_| ());
            }
        }
        Ok(instr)
    }

    /// Creates every storage operation's series at zero, both outcomes
    /// (once the backend is known).
    pub fn preset_storage(&self, backend: &'static str) {
        for op in crate::storage::OPERATIONS {
            for failed in [false, true] {
                self.storage.entry((op, failed)).or_insert_with(|| {
                    let outcome = if failed { "error" } else { "ok" };
                    self.registry
                        .resolve(&ev::STORAGE_QUERY, &[backend, op, outcome])
                });
            }
        }
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
            _preset: bounded::CONNECTION_CLOSED
                .iter()
                .map(|why| r.resolve(&ev::CONNECTION_CLOSED, &[name, why]))
                .chain(
                    bounded::CONNECTION_REJECTED
                        .iter()
                        .map(|why| r.resolve(&ev::CONNECTION_REJECTED, &[name, why])),
                )
                .collect(),
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

    /// [`Instr::emit`] with metadata (who, from where, why) for the log
    /// and trace handlers; metric handlers never read it.
    pub fn emit_meta(
        &self,
        spec: &'static osprey_instrument::EventSpec,
        labels: &[&str],
        m: &[(&'static str, f64)],
        meta: &Meta<'_>,
    ) {
        self.registry.emit(spec, labels, m, meta);
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

    /// A module stored, read or removed its users' data (`module_data`):
    /// `rows` items written or returned, in `took`.
    pub fn module_data(
        &self,
        module: &'static str,
        operation: &'static str,
        rows: u64,
        took: Duration,
    ) {
        self.with_pair(&ev::MODULE_DATA, module, operation, |h| {
            h.emit(
                &[
                    ("count", 1.0),
                    ("rows", rows as f64),
                    ("seconds", took.as_secs_f64()),
                ],
                &Meta::NONE,
            )
        });
    }

    /// A stanza was routed (`took`: the routing time, when measured).
    pub fn routed(&self, kind: &'static str, outcome: &'static str, took: Option<Duration>) {
        debug_assert!(
            bounded::ROUTES
                .iter()
                .any(|(k, o)| *k == kind && o.contains(&outcome)),
            "router_routed {kind}/{outcome} missing from instr::bounded::ROUTES"
        );
        self.with_pair(&ev::ROUTED, kind, outcome, |h| match took {
            Some(t) => h.emit(&[("count", 1.0), ("seconds", t.as_secs_f64())], &Meta::NONE),
            None => h.count(),
        });
    }

    pub fn limit(&self, limit: &str) {
        debug_assert!(
            bounded::LIMITS.contains(&limit),
            "limit {limit} missing from instr::bounded::LIMITS"
        );
        self.count(&ev::LIMIT_HIT, &[limit]);
    }

    pub fn stanza_error(&self, condition: &crate::errors::StanzaCondition) {
        self.count(&ev::STANZA_ERROR, &["c2s", condition.wire_name()]);
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
            _closed: bounded::SESSION_CLOSE
                .iter()
                .map(|why| r.resolve(&ev::SESSION_CLOSE, &[host, why]))
                .collect(),
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

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn bounded_sets_hold_every_value_their_sources_give() {
        for l in crate::xml::XmlLimit::ALL {
            assert!(bounded::LIMITS.contains(&l.label()), "{}", l.label());
        }
        for why in [
            crate::server::Refused::PerAddress,
            crate::server::Refused::Total,
        ] {
            assert!(bounded::LIMITS.contains(&why.reason()));
            assert!(bounded::CONNECTION_REJECTED.contains(&why.reason()));
        }
        for end in [
            crate::errors::SessionEnd::PeerClosed,
            crate::errors::SessionEnd::Dropped,
            crate::errors::SessionEnd::TakenOver,
            crate::errors::SessionEnd::Io(std::io::ErrorKind::BrokenPipe.into()),
            crate::errors::SessionEnd::Io(std::io::ErrorKind::UnexpectedEof.into()),
        ]
        .into_iter()
        .chain(
            crate::errors::StreamCondition::ALL
                .iter()
                .map(|c| crate::errors::SessionEnd::Stream(crate::errors::StreamError::new(*c))),
        ) {
            assert!(bounded::SESSION_CLOSE.contains(&end.reason()), "{end}");
            assert!(bounded::CONNECTION_CLOSED.contains(&end.reason()), "{end}");
        }
    }

    /// Error, close, limit, routing and storage series exist at 0 before
    /// anything happens; the build info is 1; conditions are wire names.
    #[test]
    fn bounded_series_exist_at_zero_from_the_start() {
        let config = crate::config::Config::parse(
            "[general]\nhosts = ['localhost']\n[instrumentation.prometheus]\n",
            std::path::Path::new("test.toml"),
        )
        .expect("config");
        let instr = super::Instr::from_config(&config, Vec::new()).expect("instr");
        let _listener = instr.listener("c2s_5222", true);
        instr.preset_storage("sqlite");
        let text = instr.registry.prometheus().expect("prometheus").text();
        for line in [
            "xmpp_stanza_error_total{connection_type=\"c2s\",condition=\"service-unavailable\"} 0",
            "xmpp_stream_error_total{connection_type=\"c2s\",condition=\"policy-violation\"} 0",
            "c2s_session_close_total{host=\"localhost\",reason=\"sm_timeout\"} 0",
            "c2s_connection_closed_total{listener=\"c2s_5222\",reason=\"io_error\"} 0",
            "c2s_connection_rejected_total{listener=\"c2s_5222\",reason=\"tls_timeout\"} 0",
            "limit_hit_total{limit=\"xml_depth\"} 0",
            "router_routed_total{kind=\"message\",outcome=\"no_route\"} 0",
            "storage_query_total{backend=\"sqlite\",operation=\"roster_get\",outcome=\"error\"} 0",
            &format!(
                "osprey_build_info{{version=\"{}\"}} 1.0",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} not in /metrics:\n{text}"
            );
        }
        assert!(!text.contains("condition=\"service_unavailable\""));
        // Routing has buckets from 1 µs.
        assert!(
            text.contains(
                "router_routed_seconds_bucket{kind=\"message\",outcome=\"delivered\",le=\"1e-06\"} 0\n"
            ),
            "{text}"
        );
    }
}
