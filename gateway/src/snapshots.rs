//! The live snapshot the admin API serves (`/api/snapshot`, and every
//! second on `/api/snapshot/stream`): one sampler for all viewers, so any
//! number of dashboards costs the gateway one read of the registry per
//! second.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use osprey_instrument::snapshot::{Sampler, Snapshot};
use tokio::sync::watch;

use crate::server::Ctx;

/// How often a snapshot is taken.
pub const INTERVAL: Duration = Duration::from_secs(1);

pub type Snapshots = watch::Sender<Arc<Snapshot>>;

pub fn channel() -> Snapshots {
    watch::Sender::new(Arc::new(Snapshot::default()))
}

/// Samples every [`INTERVAL`] until shutdown (nothing without an admin
/// API, the snapshots' only reader).
pub fn spawn(ctx: Arc<Ctx>) -> Option<tokio::task::JoinHandle<()>> {
    let admin = ctx
        .config
        .listen
        .http
        .iter()
        .any(|l| l.handlers.contains(&crate::config::HttpHandler::Admin));
    let aggregate = ctx.instr.aggregate.clone().filter(|_| admin)?;
    Some(tokio::spawn(async move {
        let mut sampler = Sampler::new(aggregate);
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ctx.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let snap = take(&ctx, &mut sampler);
            ctx.snapshots.send_replace(Arc::new(snap));
        }
    }))
}

fn take(ctx: &Ctx, sampler: &mut Sampler) -> Snapshot {
    let mut s = sampler.sample(Instant::now());
    let now = SystemTime::now();
    s.time_ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    s.version = env!("CARGO_PKG_VERSION").to_string();
    s.uptime_seconds = now
        .duration_since(ctx.started)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    s.hosts = ctx.config.general.hosts.clone();
    s.handlers = ctx
        .instr
        .registry
        .handler_names()
        .into_iter()
        .map(String::from)
        .collect();
    s.live.insert("sessions".into(), ctx.sessions.len() as f64);
    s.live
        .insert("users".into(), ctx.sessions.unique_users() as f64);
    // Read every second (cheap: one small /proc file each) so the
    // dashboard's CPU and memory move live, not at the probe interval.
    use osprey_instrument::probe::process;
    if let Some(v) = process::cpu_seconds() {
        s.live.insert("cpu_seconds".into(), v);
    }
    if let Some(v) = process::rss_bytes() {
        s.live.insert("rss_bytes".into(), v);
    }
    s
}
