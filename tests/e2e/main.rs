//! End-to-end tests: start the real `osprey` binary and talk to it.
//!
//! - [`harness`]: starts servers (SQLite or PostgreSQL), runs the CLI.
//! - [`raw`]: a byte-exact client for protocol and bad-input tests.
//! - `slixmpp`: scenarios driven by a real XMPP client library.
//! - `load`: a short smoke run of each load-generator scenario.
//! - `soak`: a short run of the soak benchmark (benches/soak).
//! - `attacks`: every hostile input that once hurt the server, as bytes.
//! - `fuzz_regressions`: replays fuzz/regressions/ through the fuzz harnesses
//!   (no server: plain calls into the library).

mod harness;
mod raw;

mod account_removal;
mod admin_cli;
mod admin_rest;
mod alerts;
mod attacks;
mod bad_input;
mod blocking;
mod carbons;
mod cert_reload;
mod cli;
mod cluster;
mod cluster_deploy;
mod csi;
mod dashboards;
mod db_outage;
mod events;
mod fuzz_regressions;
mod graphite;
mod graphql;
mod http;
mod http_limits;
mod lifecycle;
mod load;
mod logs;
mod mam;
mod metrics;
mod modules;
mod otlp;
mod pep;
mod plain_timing;
mod private_storage;
mod register;
mod roster_race;
mod shaping;
mod slixmpp;
mod slixmpp_xeps;
mod soak;
mod stream_mgmt;
mod throttle;
mod time_last;
mod top;
mod trace;
mod vcard;
