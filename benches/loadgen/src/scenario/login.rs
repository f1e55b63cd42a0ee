//! login: N accounts connect, authenticate and bind, at most C at once;
//! each session is closed right after its bind (in the background, so
//! closing does not slow the next login). With `login_for`, the accounts
//! are cycled through until that time has passed.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use super::Ctx;
use crate::config::ScenarioConfig;
use crate::error::Error;
use crate::proc::Sampler;
use crate::report::{LoginResult, Outcome, Report};
use crate::stats::Histogram;

pub async fn run(cfg: &ScenarioConfig) -> Result<Report, Error> {
    let ctx = Ctx::new(cfg).await?;
    let n = cfg.users;
    let until = cfg.login_for.map(|d| Instant::now() + d);
    // Once per account, or (login_for) until the time is up.
    let total = if until.is_some() { usize::MAX } else { n };
    let latency = Arc::new(Histogram::new());
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU64::new(0));
    let sampler = Sampler::start(&cfg.server_pids)?;
    let t0 = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..cfg.concurrency.min(n) {
        let (ctx, next, latency, ok, attempts) = (
            ctx.clone(),
            next.clone(),
            latency.clone(),
            ok.clone(),
            attempts.clone(),
        );
        workers.spawn(async move {
            let mut closing = tokio::task::JoinSet::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= total || until.is_some_and(|u| Instant::now() >= u) {
                    break;
                }
                attempts.fetch_add(1, Relaxed);
                let t = Instant::now();
                let login = if i < n {
                    ctx.login(i).await
                } else {
                    let pass = format!("{}{}", ctx.cfg.resource, i / n);
                    ctx.login_with_resource(i % n, &pass).await
                };
                // Finished sessions are reaped as we go: a long run
                // must not keep every close task until the end.
                while closing.try_join_next().is_some() {}
                match login {
                    Ok(c) => {
                        latency.record(t.elapsed().as_nanos() as u64);
                        ok.fetch_add(1, Relaxed);
                        closing.spawn(c.close());
                    }
                    Err(e) => ctx.failures.add(&e),
                }
            }
            closing
        });
    }
    let mut closing = Vec::new();
    while let Some(done) = workers.join_next().await {
        if let Ok(set) = done {
            closing.push(set);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let server = sampler.as_ref().map(Sampler::finish);
    for mut set in closing {
        while set.join_next().await.is_some() {}
    }
    let ok = ok.load(Relaxed);
    let attempted = attempts.load(Relaxed);
    let result = LoginResult {
        attempted,
        ok,
        failed: attempted.saturating_sub(ok),
        logins_per_s: ok as f64 / elapsed.max(1e-9),
        latency: latency.summary(),
        cpu_s_per_1k: server
            .as_ref()
            .filter(|_| ok > 0)
            .map(|s| s.cpu_seconds / ok as f64 * 1000.0),
    };
    Ok(ctx.report(Outcome::Login(result), server))
}
