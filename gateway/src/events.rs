//! The catalogue: every instrumentation event the gateway emits, in one
//! place. `osprey events` lists it and `docs/events.md` is generated from it.
//!
//! Names follow one rule: dimensions are labels, never part of a name; label
//! values are bounded (no JIDs, no addresses); the metric name is
//! `<event>_<measurement>` (the measurement `count` gives `<event>_total`),
//! so units sit in the measurement key (`seconds`, `bytes`).

use osprey_instrument::{Buckets, EventSpec, Level, Metric, MetricType};

const fn counter(key: &'static str, help: &'static str) -> Metric {
    Metric {
        key,
        kind: MetricType::Counter,
        help,
    }
}

const fn seconds(help: &'static str) -> Metric {
    Metric {
        key: "seconds",
        kind: MetricType::Histogram(Buckets::Seconds),
        help,
    }
}

/// Latency of an in-memory step (routing, a module handler): buckets from 1 µs.
const fn fast_seconds(help: &'static str) -> Metric {
    Metric {
        key: "seconds",
        kind: MetricType::Histogram(Buckets::FastSeconds),
        help,
    }
}

const fn gauge(key: &'static str, help: &'static str) -> Metric {
    Metric {
        key,
        kind: MetricType::Gauge,
        help,
    }
}

const COUNT: Metric = counter("count", "How many times it happened.");

macro_rules! event {
    ($id:ident, $name:literal, $level:ident, [$($label:literal),*], [$($metric:expr),* $(,)?], $help:literal) => {
        pub static $id: EventSpec = EventSpec {
            name: $name,
            help: $help,
            labels: &[$($label),*],
            metrics: &[$($metric),*],
            level: Level::$level,
            probe: false,
        };
    };
    (probe $id:ident, $name:literal, [$($label:literal),*], [$($metric:expr),* $(,)?], $help:literal) => {
        pub static $id: EventSpec = EventSpec {
            name: $name,
            help: $help,
            labels: &[$($label),*],
            metrics: &[$($metric),*],
            level: Level::Debug,
            probe: true,
        };
    };
}

// --- connections and bytes -------------------------------------------------

event!(
    CONNECTION_ACCEPTED,
    "c2s_connection_accepted",
    Debug,
    ["listener"],
    [COUNT],
    "A TCP connection was accepted on a c2s listener."
);
event!(
    CONNECTION_CLOSED,
    "c2s_connection_closed",
    Debug,
    ["listener", "reason"],
    [COUNT],
    "A c2s connection ended; reason: peer_closed, stream_error, io_error, shutdown, replaced, tls_handshake, no_certificate."
);
event!(
    CONNECTION_REJECTED,
    "c2s_connection_rejected",
    Info,
    ["listener", "reason"],
    [COUNT],
    "A connection was dropped before a stream began: tls_handshake, tls_timeout, too_many_from_address, too_many_connections, accept_error."
);
event!(
    CONNECTIONS_OPEN,
    "c2s_connections",
    Debug,
    ["listener"],
    [Metric {
        key: "open",
        kind: MetricType::UpDownCounter,
        help: "Connections open now."
    }],
    "Open c2s connections."
);
event!(
    TLS_ESTABLISHED,
    "c2s_tls_established",
    Debug,
    ["listener", "method"],
    [COUNT],
    "TLS was established (method: starttls or direct)."
);
event!(
    DATA_IN,
    "c2s_data_in",
    Trace,
    ["listener", "transport"],
    [counter(
        "bytes",
        "Bytes read from clients (after TLS decryption)."
    )],
    "Bytes received on c2s connections."
);
event!(
    DATA_OUT,
    "c2s_data_out",
    Trace,
    ["listener", "transport"],
    [counter(
        "bytes",
        "Bytes written to clients (before TLS encryption)."
    )],
    "Bytes sent on c2s connections."
);

// --- XML elements and stream errors ------------------------------------------

const ELEMENT_BYTES: Metric = Metric {
    key: "bytes",
    kind: MetricType::Histogram(Buckets::Bytes),
    help: "Size of the element in bytes.",
};

event!(
    ELEMENT_IN,
    "xmpp_element_in",
    Trace,
    ["connection_type", "host", "kind"],
    [COUNT, ELEMENT_BYTES],
    "A top-level XML element was received; kind: message, iq, presence, error, negotiation."
);
event!(
    ELEMENT_OUT,
    "xmpp_element_out",
    Trace,
    ["connection_type", "host", "kind"],
    [COUNT, ELEMENT_BYTES],
    "A top-level XML element was sent to a client."
);
event!(
    STREAM_ERROR,
    "xmpp_stream_error",
    Info,
    ["connection_type", "condition"],
    [COUNT],
    "A stream error was sent; condition: its RFC 6120 §4.9.3 wire name (policy-violation); the stream is closed."
);
event!(
    STANZA_ERROR,
    "xmpp_stanza_error",
    Debug,
    ["connection_type", "condition"],
    [COUNT],
    "A stanza error was returned to a sender; condition: its RFC 6120 §8.3.3 wire name (service-unavailable)."
);

// --- authentication and sessions ---------------------------------------------

event!(
    AUTH,
    "c2s_auth",
    Info,
    ["host", "mechanism", "outcome", "reason"],
    [
        COUNT,
        seconds("Time from <auth/> to the answer, less any login-throttling delay.")
    ],
    "A SASL authentication attempt ended; outcome: success or failure, reason: the SASL condition."
);
event!(
    LOGIN_THROTTLED,
    "c2s_login_throttled",
    Warn,
    ["scope"],
    [COUNT, seconds("Delay imposed (not part of c2s_auth_seconds).")],
    "A login attempt was held back after repeated failed logins; scope: address (from its IP address) or account (for the account it names). Also counted in limit_hit, limit auth_attempts."
);
event!(
    SESSION_OPEN,
    "c2s_session_open",
    Info,
    ["host"],
    [COUNT],
    "A resource was bound: a session is established."
);
event!(SESSION_CLOSE, "c2s_session_close", Info, ["host", "reason"],
    [COUNT, Metric { key: "duration_seconds", kind: MetricType::Histogram(Buckets::Custom(&[1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 14400.0, 86400.0])), help: "How long the session lasted." }],
    "An established session ended; reason: peer_closed, replaced, kicked, slow_consumer, shutdown, stream_error, io_error, sm_timeout, sm_abandoned.");
event!(
    SESSION_REPLACED,
    "c2s_session_replaced",
    Info,
    ["host"],
    [COUNT],
    "A new login with the same full JID replaced an older session (conflict)."
);

// --- routing -------------------------------------------------------------------

event!(ROUTED, "router_routed", Debug, ["kind", "outcome"], [COUNT, fast_seconds("Time spent routing the stanza.")],
    "A stanza from a session was routed; outcome: delivered, offline_stored, bounced, dropped, no_route.");

// --- modules -------------------------------------------------------------------

event!(
    HANDLER,
    "module_handler",
    Debug,
    ["module", "operation"],
    [COUNT, fast_seconds("Handler time.")],
    "A module handled a request (e.g. roster get, presence broadcast, offline deliver). Write hooks (CSI, XEP-0198 counting), which run for every stanza written, report once per written batch: the count is exact, the time observed is the batch's mean per call."
);

event!(
    MODULE_DATA,
    "module_data",
    Debug,
    ["module", "operation"],
    [
        COUNT,
        counter("rows", "Items written (stored) or returned (queried) by these operations."),
        seconds("Time of the operation, storage included.")
    ],
    "A module stored or read its users' data: operation stored (MAM archived a message, PEP published an item, a vCard or private XML element was set, an account registered), queried (a MAM page, PEP items, a vCard or private XML get), removed (retracted, purged, unregistered). rows: the items written or returned."
);

/// A module's handler as one typed value: the `module_handler` labels,
/// the OTLP span's attributes and the live-trace call name (`call`). Every
/// hook registration names one of these (see [`handlers`]).
#[derive(Debug)]
pub struct Handler {
    pub module: &'static str,
    pub operation: &'static str,
    /// `module.<module>.<operation>`, the live-trace call name.
    pub call: &'static str,
}

macro_rules! handler {
    ($id:ident, $module:literal, $op:literal) => {
        pub static $id: super::Handler = super::Handler {
            module: $module,
            operation: $op,
            call: concat!("module.", $module, ".", $op),
        };
    };
}

/// Every module handler, by module. A new module adds its own here.
pub mod handlers {
    handler!(ROSTER_GET, "roster", "get");
    handler!(ROSTER_SET, "roster", "set");
    handler!(ROSTER_PUSH, "roster", "push");
    handler!(ROSTER_FEATURES, "roster", "features");
    handler!(PRESENCE_SEND, "presence", "send");
    handler!(PRESENCE_BROADCAST, "presence", "broadcast");
    handler!(PRESENCE_DIRECTED, "presence", "directed");
    handler!(PRESENCE_PROBE, "presence", "probe");
    handler!(PRESENCE_SUBSCRIBE, "presence", "subscribe");
    handler!(PRESENCE_SUBSCRIBED, "presence", "subscribed");
    handler!(PRESENCE_UNSUBSCRIBE, "presence", "unsubscribe");
    handler!(PRESENCE_UNSUBSCRIBED, "presence", "unsubscribed");
    handler!(PRESENCE_UNAVAILABLE, "presence", "unavailable");
    handler!(OFFLINE_STORE, "offline", "store");
    handler!(OFFLINE_DELIVER, "offline", "deliver");
    handler!(OFFLINE_INITIAL, "offline", "initial_presence");
    handler!(DISCO_INFO, "disco", "info");
    handler!(DISCO_ITEMS, "disco", "items");
    handler!(PING_GET, "ping", "get");
    handler!(VERSION_GET, "version", "get");
    handler!(TIME_GET, "time", "get");
    handler!(LAST_GET, "last", "get");
    handler!(LAST_PRESENCE, "last", "presence");
    handler!(LAST_CLOSED, "last", "closed");
    handler!(SM_NONZA, "stream_management", "nonza");
    handler!(SM_CLOSED, "stream_management", "closed");
    handler!(SM_COUNT, "stream_management", "count");
    handler!(SM_DETACH, "stream_management", "detach");
    handler!(SM_FEATURES, "stream_management", "features");
    handler!(CSI_STATE, "csi", "state");
    handler!(CSI_FILTER, "csi", "filter");
    handler!(CSI_FEATURES, "csi", "features");
    handler!(CARBONS_SET, "carbons", "set");
    handler!(CARBONS_SENT, "carbons", "sent");
    handler!(CARBONS_RECEIVED, "carbons", "received");
    handler!(CARBONS_CLOSED, "carbons", "closed");
    handler!(BLOCKING_GET, "blocking", "get");
    handler!(BLOCKING_SET, "blocking", "set");
    handler!(BLOCKING_CHECK, "blocking", "check");
    handler!(BLOCKING_SESSION, "blocking", "session");
    handler!(BLOCKING_REMOVED, "blocking", "account_removed");
    handler!(PRIVATE_GET, "private", "get");
    handler!(PRIVATE_SET, "private", "set");
    handler!(VCARD_GET, "vcard", "get");
    handler!(VCARD_SET, "vcard", "set");
    handler!(VCARD_PRESENCE, "vcard", "presence");
    handler!(MAM_GET, "mam", "get");
    handler!(MAM_SET, "mam", "set");
    handler!(MAM_STAMP, "mam", "stamp");
    handler!(MAM_ARCHIVE, "mam", "archive");
    handler!(MAM_SERVER, "mam", "server");
    handler!(PEP_GET, "pep", "get");
    handler!(PEP_SET, "pep", "set");
    handler!(PEP_OWNER, "pep", "owner");
    handler!(PEP_PRESENCE, "pep", "presence");
    handler!(PEP_IQ_RESPONSE, "pep", "iq_response");
    handler!(PEP_CAPS, "pep", "caps");
    handler!(PEP_CLOSED, "pep", "closed");
    handler!(REGISTER_FORM, "register", "form");
    handler!(REGISTER_CREATE, "register", "create");
    handler!(REGISTER_GET, "register", "get");
    handler!(REGISTER_SET, "register", "set");
    handler!(REGISTER_FEATURES, "register", "features");
    handler!(REGISTER_CLOSED, "register", "closed");
}

// --- stream management (XEP-0198) -------------------------------------------------

event!(
    SM_ENABLED,
    "sm_enabled",
    Info,
    ["mode"],
    [COUNT],
    "A session enabled stream management; mode: ack (acks only) or resume."
);
event!(
    SM_RESUMED,
    "sm_resumed",
    Info,
    [],
    [
        COUNT,
        counter(
            "replayed",
            "Unacknowledged stanzas written again on resumes."
        )
    ],
    "A detached session was resumed on a new connection."
);
event!(
    SM_FAILED,
    "sm_failed",
    Info,
    ["reason"],
    [COUNT],
    "A resume was refused (item_not_found) or a detached session timed out (timeout)."
);
event!(
    SM_DETACHED,
    "sm_detached",
    Info,
    [],
    [
        COUNT,
        Metric {
            key: "unacked",
            kind: MetricType::Histogram(Buckets::Custom(&[0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0])),
            help: "Unacknowledged stanzas when the connection dropped."
        }
    ],
    "A resumable session lost its connection and waits for a resume."
);
event!(
    SM_ACK,
    "sm_ack",
    Debug,
    [],
    [
        COUNT,
        seconds("From the oldest unacknowledged stanza to the ack that covered it.")
    ],
    "The client acknowledged stanzas (<a/>)."
);

// --- cluster -------------------------------------------------------------------

event!(
    CLUSTER_NODE_DOWN,
    "cluster_node_down",
    Warn,
    [],
    [COUNT],
    "Another node of the cluster stopped sending heartbeats for cluster.node_timeout: its sessions were dropped from this node's registry and their contacts here got unavailable presence."
);

event!(
    CLUSTER_STANZA_OUT,
    "cluster_stanza_out",
    Debug,
    [],
    [
        COUNT,
        counter("bytes", "Bytes published (header and stanza).")
    ],
    "A stanza was published to another node's session over NATS."
);
event!(
    CLUSTER_STANZA_IN,
    "cluster_stanza_in",
    Debug,
    ["outcome"],
    [
        COUNT,
        fast_seconds("From the routing on the sending node to the receipt here (the nodes' clocks must agree).")
    ],
    "A stanza from another node arrived for a session here; outcome: delivered, offline (the session was gone: a message kept for later) or dropped (not storable, or unreadable: a damaged frame or batch)."
);
event!(
    CLUSTER_REPLACED,
    "cluster_replaced",
    Warn,
    [],
    [COUNT, counter("stanzas", "Stanzas placed again.")],
    "Another node died or restarted before acknowledging stanzas this node sent it: they were placed again for their bare JID (another resource on any node, else offline storage)."
);
event!(
    CLUSTER_SYNC,
    "cluster_sync",
    Info,
    [],
    [
        COUNT,
        counter("sessions", "Sessions in the snapshots applied."),
        seconds("From the snapshot's taking on the other node to its applied state here (the sync time; the nodes' clocks must agree).")
    ],
    "A snapshot of another node's sessions was applied (it started, reconnected to NATS, or answered this node's hello)."
);
event!(probe CLUSTER, "cluster", [],
    [gauge("sessions_local", "Sessions on this node."),
     gauge("sessions_remote", "Sessions on other nodes, as this node's registry knows them."),
     gauge("nodes_alive", "Nodes with a recent heartbeat, this one included."),
     gauge("nats_connected", "1 while connected to NATS."),
     gauge("queue", "Registry changes and stanzas waiting for NATS."),
     gauge("unacked", "Stanzas sent to other nodes and not yet acknowledged (a node acknowledges once it wrote a stanza out or stored it): kept here, placed again if that node dies. Growing: a stalled client there, or a lost node.")],
    "This node's view of the cluster (probe; only with [cluster]).");

// --- storage -------------------------------------------------------------------

event!(
    STORAGE_QUERY,
    "storage_query",
    Debug,
    ["backend", "operation", "outcome"],
    [
        COUNT,
        seconds("Query time, including waiting for a connection.")
    ],
    "A storage operation finished; outcome: ok or error."
);

// --- limits ----------------------------------------------------------------------

event!(
    LIMIT_HIT,
    "limit_hit",
    Warn,
    ["limit"],
    [COUNT],
    "A protective limit was hit: stanza_too_large, slow_consumer, offline_full, auth_attempts (a login attempt throttled, or a stream closed after 5 failed ones), http_connections, blocklist_items, private_bytes (a private XML element too large), private_items (too many private XML namespaces), vcard_bytes (a vCard too large), mam_queue (an archived message dropped: the archive writer's queue stayed full for a second), mam_archive_full (an archive trimmed to max_messages_per_user), mam_page (a MAM query asked for more than max_page_size results), pep_item_bytes (a PEP item too large), pep_nodes (too many PEP nodes), registration_rate (an in-band registration refused: the address created an account less than modules.register.interval_per_address ago), cluster_held (stanzas from another node held by stalled sessions here past 1,024 per sending node, acknowledged to it anyway: a kill now loses those), slow_sender, negotiation_timeout, stanza_rate, shaper, too_many_from_address, too_many_connections, and the XML shape caps xml_depth, xml_attributes, xml_namespaces, xml_namespaces_per_stanza, xml_name_length, xml_attribute_length."
);

// --- probes ------------------------------------------------------------------------

event!(probe SESSIONS, "sm_sessions", [],
    [gauge("count", "Established sessions."), gauge("users", "Distinct users online.")],
    "Sessions on this node (probe).");
event!(probe RUNTIME, "runtime", [],
    [gauge("tasks", "Tokio tasks alive."), gauge("workers", "Tokio worker threads.")],
    "The async runtime (probe).");
event!(probe STORAGE_POOL, "storage_pool", ["backend"],
    [gauge("size", "Connections in the pool."), gauge("idle", "Idle connections.")],
    "The storage connection pool (probe).");
event!(probe HANDLER_PANICS, "instrumentation_handler", [],
    [Metric { key: "panics", kind: MetricType::ObservedCounter, help: "Handler calls that panicked since start (each disables that handler for its series)." }],
    "Instrumentation handlers that panicked: the event went on without them; their series stop updating.");

event!(probe TLS_CERTIFICATE, "tls_certificate", ["listener"],
    [gauge("expiry_timestamp_seconds", "When the certificate expires (its notAfter), in Unix seconds.")],
    "The TLS certificate of each listener (probe).");

// --- the build -------------------------------------------------------------------

event!(
    BUILD_INFO,
    "osprey_build",
    Info,
    ["version"],
    [gauge("info", "Always 1; the build is in the labels.")],
    "This build (emitted once at start): version, the crate version."
);

// --- administration ------------------------------------------------------------

event!(
    ADMIN_OPERATION,
    "admin_operation",
    Info,
    ["operation", "outcome"],
    [
        COUNT,
        seconds("Time to carry the operation out.")
    ],
    "An admin API operation (REST, GraphQL or the CLI through them) ended; operation: its name (account_register, session_kick, …), outcome: ok or the error's wire name (bad_request, not_found, conflict, storage_error, internal). Logged with the operation's target: the audit trail of administration."
);

/// Every event of the gateway, in documentation order.
pub static CATALOGUE: &[&EventSpec] = &[
    &CONNECTION_ACCEPTED,
    &CONNECTION_CLOSED,
    &CONNECTION_REJECTED,
    &CONNECTIONS_OPEN,
    &TLS_ESTABLISHED,
    &DATA_IN,
    &DATA_OUT,
    &ELEMENT_IN,
    &ELEMENT_OUT,
    &STREAM_ERROR,
    &STANZA_ERROR,
    &AUTH,
    &LOGIN_THROTTLED,
    &SESSION_OPEN,
    &SESSION_CLOSE,
    &SESSION_REPLACED,
    &ROUTED,
    &HANDLER,
    &MODULE_DATA,
    &CLUSTER_NODE_DOWN,
    &CLUSTER_STANZA_OUT,
    &CLUSTER_STANZA_IN,
    &CLUSTER_REPLACED,
    &CLUSTER_SYNC,
    &CLUSTER,
    &SM_ENABLED,
    &SM_RESUMED,
    &SM_FAILED,
    &SM_DETACHED,
    &SM_ACK,
    &STORAGE_QUERY,
    &LIMIT_HIT,
    &SESSIONS,
    &RUNTIME,
    &STORAGE_POOL,
    &TLS_CERTIFICATE,
    &HANDLER_PANICS,
    &BUILD_INFO,
    &ADMIN_OPERATION,
    &osprey_instrument::probe::process::PROCESS,
    &osprey_instrument::graphite::DROPPED,
];

/// One event as JSON (for `osprey events --json` and the admin API).
pub fn describe(e: &EventSpec) -> serde_json::Value {
    serde_json::json!({
        "name": e.name,
        "help": e.help,
        "labels": e.labels,
        "level": e.level.as_str(),
        "probe": e.probe,
        "metrics": e.metrics.iter().map(|m| serde_json::json!({
            "name": e.metric_name(m),
            "measurement": m.key,
            "type": m.kind.as_str(),
            "help": m.help,
        })).collect::<Vec<_>>(),
    })
}

/// `docs/events.md`, generated from the catalogue.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Instrumentation events\n\n\
         Generated from `gateway/src/events.rs` by `osprey events --markdown`; a test keeps \
         it in sync.\nEvery event is registered before use. Prometheus names: \
         `<event>_<measurement>`, and `<event>_total` for the `count` counter.\n\n\
         | event | labels | metrics (Prometheus) | level | meaning |\n|---|---|---|---|---|\n",
    );
    for e in CATALOGUE {
        let metrics: Vec<String> = e
            .metrics
            .iter()
            .map(|m| {
                let name = e.metric_name(m);
                let shown = match m.kind {
                    MetricType::Counter | MetricType::ObservedCounter => {
                        format!("`{name}_total`")
                    }
                    MetricType::Histogram(_) => format!("`{name}` (histogram)"),
                    _ => format!("`{name}` ({})", m.kind.as_str()),
                };
                shown
            })
            .collect();
        out.push_str(&format!(
            "| `{}`{} | {} | {} | {} | {} |\n",
            e.name,
            if e.probe { " (probe)" } else { "" },
            e.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", "),
            metrics.join("<br>"),
            e.level.as_str(),
            e.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_events_md_is_in_sync() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == super::markdown(),
            "docs/events.md is stale: run `cargo run --bin osprey -- events --markdown > docs/events.md`"
        );
    }

    #[test]
    fn catalogue_is_valid_and_labels_are_bounded() {
        osprey_instrument::spec::validate(super::CATALOGUE).unwrap();
        // Never a JID or an address as a label.
        for e in super::CATALOGUE {
            for l in e.labels {
                assert!(
                    !["jid", "user", "address", "ip", "peer"].contains(l),
                    "{}: {l}",
                    e.name
                );
            }
        }
    }
}
