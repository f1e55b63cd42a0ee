//! Osprey's instrumentation core. It knows nothing of XMPP.
//!
//! Instrumented code emits an **event**: a name, label values for the
//! event's fixed label keys, and measurements. Every event is declared in a
//! catalogue and registered before use; **handlers** (Prometheus, log, and
//! a recording handler for tests) opt in per event and turn emissions into
//! metrics and log lines. The model is MongooseIM's `mongoose_instrument`,
//! made typed and cheap: code resolves a [`Labelled`] handle once (per
//! session, per connection) and each emission is then a few increments.
//!
//! # Layout
//!
//! - [`spec`]: [`EventSpec`], [`Metric`], [`MetricType`], [`Level`] — what an
//!   event is.
//! - [`registry`]: [`Registry`] (catalogue, metric store, handlers),
//!   [`Labelled`] (pre-resolved handle), [`Meta`] (log/trace-only fields).
//! - [`aggregate`]: the metric store: every series once, in atomics,
//!   updated in place by the registry and readable back as values.
//! - [`handler`]: the [`Handler`] traits and their [`Gate`]s; a panicking
//!   handler is isolated.
//! - [`prometheus`]: the store encoded by prometheus-client (a collector)
//!   as OpenMetrics or Prometheus text.
//! - [`log`]: events as `tracing` events at their level.
//! - [`snapshot`]: rates and interval quantiles from successive reads, as
//!   serialisable [`snapshot::Snapshot`]s (the live dashboard's data).
//! - [`graphite`]: periodic push of the aggregate to carbon receivers.
//! - [`recording`]: an in-memory handler for tests.
//! - [`probe`]: periodic measurements, and a ready process probe.
//! - [`live`]: live tracing of chosen tasks (erlang_doctor's `tr`): bounded
//!   recorder, queries, dump/load.
//! - `fixtures.rs`, `tests.rs`: event specs the handler tests share, and the
//!   registry's tests (test builds only).

pub mod aggregate;
pub mod graphite;
pub mod handler;
pub mod live;
pub mod log;
pub mod probe;
pub mod prometheus;
pub mod recording;
pub mod registry;
pub mod snapshot;
pub mod spec;

pub use handler::{Gate, Handler, ResolvedHandler};
pub use registry::{Labelled, Meta, Registry};
pub use spec::{Buckets, Catalogue, EventSpec, Level, Metric, MetricType};

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
