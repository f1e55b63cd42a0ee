//! Osprey: an observability-first XMPP gateway.
//!
//! # Layout
//!
//! Follow one message through the data path (`docs/architecture.md` tells
//! the same story in prose); each stage is a module:
//!
//! - [`config`]: the TOML configuration, with errors naming file, line and key.
//! - [`tls`]: certificates (loaded, or generated on first start) and acceptors.
//! - [`xml`]: the incremental framer (which enforces the XML caps before any
//!   parser sees a byte), element views (roxmltree) and the writer.
//! - [`c2s`]: one task per client connection over a `Transport` (TCP/TLS and
//!   the framer first): negotiation (stream header, STARTTLS, SASL, bind or a
//!   module's resume; one deadline for all of it), then the session loop,
//!   paced by its input shapers.
//! - [`session`]: a bound session as a value that can outlive its transport
//!   (identity, mailbox, per-module state, counters); `Session::encode` is
//!   the one way out, through the write hooks.
//! - [`stanza`]: a client's stanza parsed once (kind, JIDs, element, bytes).
//! - [`hooks`]: the typed hook registry modules register into, and the one
//!   wrapper that instruments every hook call.
//! - [`modules`]: every XMPP feature as a `Module` (roster, presence,
//!   offline, disco, ping, version, stream management, CSI, carbons,
//!   blocking), configured as `[modules.NAME]`.
//! - [`router`]: the one entry point (`router::route`), destination classes
//!   (local, component, remote) and RFC 6121 §8 over a `SessionRegistry`.
//! - [`sasl`]: SCRAM-SHA-1/256 and PLAIN, server side, on stored SCRAM keys.
//! - [`storage`]: traits per domain (accounts, roster, offline, blocking)
//!   with the sqlx implementation (SQLite or PostgreSQL) and an in-memory one;
//!   per-account locks serialise read-modify-writes.
//! - [`errors`]: stream and stanza errors, with their wire names.
//! - [`jid`]: JID parsing and normalisation (RFC 7622).
//! - [`server`]: listeners, admission (connection caps per address and in
//!   total), accept loops and graceful shutdown.
//! - [`events`]: the catalogue of every instrumentation event and module
//!   handler name.
//! - [`instr`]: the registry built from the configuration, pre-resolved handles.
//! - [`logging`]: the process log (text or JSON), its level from the
//!   configuration, changed at run time.
//! - [`cluster`]: `[cluster]` nodes: the replicated session registry (a
//!   `SessionRegistry` backend), NATS links between nodes, discovery and
//!   node loss through the shared database.
//! - [`admin`]: every administration operation (accounts, sessions,
//!   stanzas, rosters, offline messages, statistics, the server) as one
//!   typed function, instrumented and audited; REST, GraphQL and the CLI
//!   are layers over it.
//! - [`http`]: `/metrics`, `/healthz` and the admin API (hyper).
//! - [`snapshots`]: the once-a-second snapshot of every series, for `osprey top`.
//! - [`otel`]: OTLP traces of each stanza's journey.
//! - [`live`]: live tracing of chosen sessions and tasks (`osprey trace`).
//! - [`cli`]: the `osprey` command line.

pub mod admin;
pub mod c2s;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod errors;
pub mod events;
pub mod hooks;
pub mod http;
pub mod instr;
pub mod jid;
pub mod live;
pub mod logging;
pub mod modules;
pub mod otel;
pub mod router;
pub mod sasl;
pub mod server;
pub mod session;
pub mod snapshots;
pub mod stanza;
pub mod storage;
pub mod tls;
pub mod xml;
