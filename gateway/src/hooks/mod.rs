//! The hook registry: typed, ordered points where modules plug into the
//! data path (Prosody's `module:hook`, MongooseIM's `mongoose_c2s_hooks`),
//! built once at start from the configured module list and then read-only.
//!
//! Every call into a module goes through [`call`] or [`call_sync`], the one
//! wrapper that emits the `module_handler` event, opens the OTLP span and
//! records the live-trace call/return, all named by a typed
//! [`Handler`](crate::events::Handler) from the catalogue.
//!
//! Points (see `points.rs` for their contexts):
//! - stream features, pre- and post-authentication ([`FeaturesHook`]);
//! - nonzas by namespace ([`NonzaHook`]);
//! - a user sends a stanza, per kind ([`SendHook`]);
//! - route, before and after, per kind ([`RouteHook`]), and amend: change
//!   what recipients get before it is routed ([`AmendHook`]);
//! - a user's available presence before it is broadcast ([`PresenceHook`]);
//! - deliver to a session: before it is queued ([`DeliverHook`]) and before
//!   it is written ([`WriteHook`]);
//! - session opened, bound, resumed, detached, closed ([`SessionHook`]) and
//!   the hand-over of a session whose transport broke ([`DetachHook`]);
//! - IQ get/set by namespace ([`IqHandler`]);
//! - IQ get/set by namespace before authentication ([`PreAuthIqHook`]);
//! - disco features and identities (data, not calls);
//! - account removed ([`AccountHook`]);
//! - the server started and is stopping ([`ServerHook`]).

mod points;
mod registry;

pub use points::*;
pub use registry::Hooks;

use std::future::Future;
use std::time::Instant;

use tracing::Instrument;

use crate::events::Handler;
use crate::server::Ctx;

/// What a hook decides about the stanza it was shown.
#[derive(Debug)]
pub enum Flow {
    /// Not mine, or done with it: the next hook (then the default) runs.
    Continue,
    /// Consumed: no later hook and no default handling.
    Handled,
    /// Discarded silently.
    Drop,
    /// Refused: the sender gets this error (unless the stanza is an error).
    Bounce(crate::errors::StanzaError),
}

/// Where a hook call is: its handler name and, once resolved, its
/// `module_handler` series.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    pub name: &'static Handler,
    pub ev: Option<&'a osprey_instrument::Labelled>,
}

impl From<&'static Handler> for Site<'static> {
    fn from(name: &'static Handler) -> Self {
        Site { name, ev: None }
    }
}

impl Site<'_> {
    /// `calls` calls that took `took` in all, as one emission: the count
    /// is exact, the duration observed is their mean.
    fn done_many(&self, ctx: &Ctx, calls: u64, took: std::time::Duration) {
        let mean = took.as_secs_f64() / calls as f64;
        match self.ev {
            Some(ev) => ev.emit(
                &[("count", calls as f64), ("seconds", mean)],
                &osprey_instrument::Meta::NONE,
            ),
            None => ctx
                .instr
                .handler_calls(self.name.module, self.name.operation, calls, mean),
        }
    }

    fn done(&self, ctx: &Ctx, took: std::time::Duration) {
        match self.ev {
            Some(ev) => ev.emit(
                &[("count", 1.0), ("seconds", took.as_secs_f64())],
                &osprey_instrument::Meta::NONE,
            ),
            None => ctx
                .instr
                .handler(self.name.module, self.name.operation, took),
        }
    }
}

/// The write hooks' calls over one written batch, per hook: they run for
/// every stanza written, so their `module_handler` event is emitted once
/// per batch (exact count, mean duration) rather than once per call.
#[derive(Default)]
pub struct WriteTally(Vec<(u64, std::time::Duration)>);

impl WriteTally {
    fn add(&mut self, hook: usize, took: std::time::Duration) {
        if self.0.len() <= hook {
            self.0.resize(hook + 1, (0, std::time::Duration::ZERO));
        }
        let t = &mut self.0[hook];
        t.0 += 1;
        t.1 += took;
    }
}

/// Whether a hook call needs its span and live-trace records.
fn observed() -> bool {
    crate::otel::in_trace() || crate::live::active()
}

/// Runs an async hook: the one place that times, spans and traces it.
pub async fn call<'a, F: Future>(ctx: &Ctx, site: impl Into<Site<'a>>, fut: F) -> F::Output {
    let site = site.into();
    let h = site.name;
    let started = Instant::now();
    let out = if observed() {
        let span = crate::child_span!("module.handler", module = h.module, operation = h.operation);
        crate::live::call("module", || h.call.to_string(), fut.instrument(span)).await
    } else {
        fut.await
    };
    site.done(ctx, started.elapsed());
    out
}

/// [`call`] without an OTLP span of its own (the caller's span covers it).
pub async fn call_unspanned<'a, F: Future>(
    ctx: &Ctx,
    site: impl Into<Site<'a>>,
    fut: F,
) -> F::Output {
    let site = site.into();
    let h = site.name;
    let started = Instant::now();
    let out = crate::live::call("module", || h.call.to_string(), fut).await;
    site.done(ctx, started.elapsed());
    out
}

/// Runs a synchronous hook (the per-delivery points): the same event, span
/// and live-trace records as [`call`].
pub fn call_sync<'a, R>(ctx: &Ctx, site: impl Into<Site<'a>>, f: impl FnOnce() -> R) -> R {
    let site = site.into();
    let h = site.name;
    let started = Instant::now();
    let out = if observed() {
        let span = crate::child_span!("module.handler", module = h.module, operation = h.operation);
        let traced = crate::live::active();
        if traced {
            crate::live::record(
                osprey_instrument::live::Kind::Call,
                h.call,
                String::new(),
                None,
            );
        }
        let out = span.in_scope(f);
        if traced {
            crate::live::record(
                osprey_instrument::live::Kind::Return,
                h.call,
                String::new(),
                Some(started.elapsed()),
            );
        }
        out
    } else {
        f()
    };
    site.done(ctx, started.elapsed());
    out
}
