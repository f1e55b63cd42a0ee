//! idle: hold N sessions with initial presence; the server's RSS before
//! the first connection and after all are online and have been held for
//! `duration`, divided by the sessions online.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::{close_all, login_many, Ctx};
use crate::config::ScenarioConfig;
use crate::error::Error;
use crate::proc::Sampler;
use crate::report::{IdleResult, Outcome, Report};
use crate::stats::Histogram;

pub async fn run(cfg: &ScenarioConfig) -> Result<Report, Error> {
    let ctx = Ctx::new(cfg).await?;
    let n = cfg.users;
    // The baseline: before any connection.
    let sampler = Sampler::start(&cfg.server_pids)?;
    let t0 = Instant::now();
    let clients = login_many(&ctx, n, &Arc::new(Histogram::new())).await;
    let login_s = t0.elapsed().as_secs_f64();
    let online = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut held = tokio::task::JoinSet::new();
    for c in clients.into_iter().flatten() {
        let (mut reader, mut writer) = c.into_split();
        let (online, mut stop, ctx) = (online.clone(), stop_rx.clone(), ctx.clone());
        online.fetch_add(1, Relaxed);
        // Read (and drop) whatever arrives, so the server never blocks on
        // us (acknowledging it with stream management on); a session that
        // ends early no longer counts as online.
        held.spawn(async move {
            loop {
                let r = tokio::select! {
                    r = reader.next_element() => r.map(|_| reader.take_ack()),
                    _ = stop.wait_for(|s| *s) => return Some((writer, reader)),
                };
                let r = match r {
                    Ok(Some(ack)) => writer.send(&ack).await,
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                };
                if let Err(e) = r {
                    ctx.failures.add(&e);
                    online.fetch_sub(1, Relaxed);
                    return None;
                }
            }
        });
    }
    let cpu_hold_start = sampler.as_ref().map(Sampler::cpu_so_far);
    let hold = Instant::now();
    tokio::time::sleep(cfg.duration).await;
    let hold_s = hold.elapsed().as_secs_f64();
    let server = sampler.as_ref().map(Sampler::finish);
    let online = online.load(Relaxed);
    let _ = stop_tx.send(true);
    let mut sessions = Vec::new();
    while let Some(done) = held.join_next().await {
        if let Ok(Some(s)) = done {
            sessions.push(s);
        }
    }
    close_all(sessions).await;
    let result = IdleResult {
        target: n as u64,
        online,
        failed: n as u64 - online.min(n as u64),
        login_s,
        hold_s,
        rss_per_session_bytes: server
            .as_ref()
            .filter(|_| online > 0)
            .map(|s| (s.rss_after_bytes as f64 - s.rss_before_bytes as f64) / online as f64),
        cpu_s_per_s_idle: match (&server, cpu_hold_start) {
            (Some(s), Some(c0)) => Some((s.cpu_seconds - c0) / hold_s.max(1e-9)),
            _ => None,
        },
    };
    Ok(ctx.report(Outcome::Idle(result), server))
}
