//! The gateway's probes: sessions, runtime, storage pool, certificates.

use std::sync::{Arc, Weak};

use osprey_instrument::probe::{Probe, Sample};
use osprey_instrument::EventSpec;

use super::Ctx;
use crate::events as ev;
use crate::tls::ReloadableIdentity;

/// Probes hold the context weakly: they never keep a stopped server alive.
pub struct Sessions(pub Weak<Ctx>);
pub struct Runtime;
/// This node's view of the cluster (nothing without `[cluster]`).
pub struct Cluster(pub Weak<Ctx>);

impl Probe for Cluster {
    fn spec(&self) -> &'static EventSpec {
        &ev::CLUSTER
    }
    fn sample(&self, out: &mut Vec<Sample>) {
        let Some(ctx) = self.0.upgrade() else {
            return;
        };
        let Some(c) = &ctx.cluster else {
            return;
        };
        let st = c.status();
        out.push(Sample {
            labels: vec![],
            measurements: vec![
                ("sessions_local", st.local_sessions as f64),
                ("sessions_remote", st.remote_sessions as f64),
                (
                    "nodes_alive",
                    st.nodes.iter().filter(|n| n.alive).count() as f64,
                ),
                (
                    "nats_connected",
                    f64::from(u8::from(st.nats == "connected")),
                ),
                ("queue", c.registry.queued() as f64),
                ("unacked", c.registry.unacked_len() as f64),
            ],
        });
    }
}
pub struct StoragePool(pub Weak<Ctx>);
/// Each listener's current certificate (a reload shows at the next round).
pub struct Certificates(pub Vec<(String, Arc<ReloadableIdentity>)>);

impl Probe for Sessions {
    fn spec(&self) -> &'static EventSpec {
        &ev::SESSIONS
    }
    fn sample(&self, out: &mut Vec<Sample>) {
        if let Some(ctx) = self.0.upgrade() {
            out.push(Sample {
                labels: vec![],
                measurements: vec![
                    ("count", ctx.sessions.len() as f64),
                    ("users", ctx.sessions.unique_users() as f64),
                ],
            });
        }
    }
}

impl Probe for Runtime {
    fn spec(&self) -> &'static EventSpec {
        &ev::RUNTIME
    }
    fn sample(&self, out: &mut Vec<Sample>) {
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            let m = h.metrics();
            out.push(Sample {
                labels: vec![],
                measurements: vec![
                    ("tasks", m.num_alive_tasks() as f64),
                    ("workers", m.num_workers() as f64),
                ],
            });
        }
    }
}

impl Probe for StoragePool {
    fn spec(&self) -> &'static EventSpec {
        &ev::STORAGE_POOL
    }
    fn sample(&self, out: &mut Vec<Sample>) {
        if let Some(ctx) = self.0.upgrade() {
            let s = ctx.storage.pool_stats();
            out.push(Sample {
                labels: vec![ctx.storage.backend().to_string()],
                measurements: vec![("size", f64::from(s.size)), ("idle", f64::from(s.idle))],
            });
        }
    }
}

impl Probe for Certificates {
    fn spec(&self) -> &'static EventSpec {
        &ev::TLS_CERTIFICATE
    }
    fn sample(&self, out: &mut Vec<Sample>) {
        for (listener, id) in &self.0 {
            if let Some(at) = id.current().expiry_timestamp() {
                out.push(Sample {
                    labels: vec![listener.clone()],
                    measurements: vec![("expiry_timestamp_seconds", at)],
                });
            }
        }
    }
}

/// Spans lost by the OTLP exporter since the last round.
pub struct OtlpDrops;

impl Probe for OtlpDrops {
    fn spec(&self) -> &'static EventSpec {
        &osprey_instrument::graphite::DROPPED
    }
    fn sample(&self, out: &mut Vec<Sample>) {
        let n = crate::otel::take_dropped();
        if n > 0 {
            out.push(Sample {
                labels: vec!["otlp".into()],
                measurements: vec![("lines", n as f64)],
            });
        }
    }
}

/// Instrumentation handler calls that panicked (a running total, from 0).
pub struct HandlerPanics(Weak<Ctx>);

impl Probe for HandlerPanics {
    fn spec(&self) -> &'static EventSpec {
        &crate::events::HANDLER_PANICS
    }
    fn sample(&self, out: &mut Vec<Sample>) {
        if let Some(ctx) = self.0.upgrade() {
            out.push(Sample {
                labels: vec![],
                measurements: vec![("panics", ctx.instr.registry.handler_panics() as f64)],
            });
        }
    }
}

pub fn all(ctx: &Arc<Ctx>, certs: Vec<(String, Arc<ReloadableIdentity>)>) -> Vec<Box<dyn Probe>> {
    vec![
        Box::new(OtlpDrops),
        Box::new(HandlerPanics(Arc::downgrade(ctx))),
        Box::new(Sessions(Arc::downgrade(ctx))),
        Box::new(Runtime),
        Box::new(StoragePool(Arc::downgrade(ctx))),
        Box::new(Certificates(certs)),
        Box::new(Cluster(Arc::downgrade(ctx))),
        Box::new(osprey_instrument::probe::process::ProcessProbe::new()),
    ]
}
