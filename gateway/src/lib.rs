//! Osprey: an observability-first XMPP gateway.
//!
//! # Layout
//!
//! Follow one message through the data path; each stage is a module:
//!
//! - [`config`]: the TOML configuration, with errors naming file, line and key.
//! - [`tls`]: certificates (loaded, or generated on first start) and acceptors.
//! - [`xml`]: the incremental framer (which enforces the XML caps before any
//!   parser sees a byte), stanza views (roxmltree) and the writer.
//! - [`c2s`]: one task per client connection: the negotiation state machine
//!   (stream header, STARTTLS, SASL, bind; one deadline for all of it) and the
//!   established session loop, paced by its input shapers.
//! - [`sasl`]: SCRAM-SHA-1/256 and PLAIN, server side, on stored SCRAM keys.
//! - [`router`]: the session table (JID → session handles) and delivery rules
//!   of RFC 6121 §8.
//! - [`modules`]: roster, presence, offline, disco, ping: each adds its
//!   features and IQ handlers in one place.
//! - [`storage`]: sqlx behind one interface, SQLite or PostgreSQL; per-account
//!   locks serialise read-modify-writes (roster, offline quota).
//! - [`errors`]: stream and stanza errors, with their wire names.
//! - [`jid`]: JID parsing and normalisation (RFC 7622).
//! - [`server`]: listeners, admission (connection caps per address and in
//!   total), accept loops and graceful shutdown.
//! - [`events`]: the catalogue of every instrumentation event.
//! - [`instr`]: the registry built from the configuration, pre-resolved handles.
//! - [`http`]: `/metrics`, `/healthz` and the admin API (hyper).
//! - [`snapshots`]: the once-a-second snapshot of every series, for `osprey top`.
//! - [`otel`]: OTLP traces of each stanza's journey.
//! - [`live`]: live tracing of chosen sessions and tasks (`osprey trace`).
//! - [`cli`]: the `osprey` command line.

pub mod c2s;
pub mod cli;
pub mod config;
pub mod errors;
pub mod events;
pub mod hooks;
pub mod http;
pub mod instr;
pub mod jid;
pub mod live;
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
