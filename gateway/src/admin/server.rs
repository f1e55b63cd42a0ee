//! The server itself: status, version and uptime, the log level
//! (mongooseimctl's `server` category). Certificate reload is in
//! `crate::tls` (it swaps each listener's acceptor).

use serde::Serialize;

use super::{run, AdminError, AdminResult};
use crate::server::Ctx;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub hosts: Vec<String>,
    pub sessions: usize,
    pub users: usize,
    /// Bound addresses: c2s and HTTP.
    pub listeners: Option<Listeners>,
    /// sqlite or postgres.
    pub storage: &'static str,
    /// Instrumentation handlers on.
    pub handlers: Vec<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Listeners {
    pub c2s: Vec<String>,
    pub http: Vec<String>,
}

pub async fn status(ctx: &Ctx) -> AdminResult<Status> {
    run(ctx, "server_status", "server", async {
        let uptime_seconds = ctx.started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
        let listeners = crate::server::ListenerFile::read(&ctx.config.general.data_dir)
            .ok()
            .map(|l| Listeners {
                c2s: l.c2s,
                http: l.http,
            });
        Ok(Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds,
            hosts: ctx.config.general.hosts.clone(),
            sessions: ctx.sessions.len(),
            users: ctx.sessions.unique_users(),
            listeners,
            storage: ctx.storage.backend(),
            handlers: ctx.instr.registry.handler_names(),
        })
    })
    .await
}

#[derive(Debug, Clone, Serialize)]
pub struct LogLevel {
    pub level: &'static str,
    /// Set when the level was just changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<&'static str>,
    /// Whether events are logged at all (an `[instrumentation.log]` section).
    pub handler: bool,
}

pub async fn log_level(ctx: &Ctx) -> AdminResult<LogLevel> {
    run(ctx, "server_log_level", "log", async {
        Ok(LogLevel {
            level: crate::logging::level().as_str(),
            previous: None,
            handler: ctx.config.instrumentation.log.is_some(),
        })
    })
    .await
}

/// Changes the level of events and of Osprey's own logs until the next
/// change or restart; logged at warn, so the change shows at any level.
pub async fn set_log_level(ctx: &Ctx, level: &str) -> AdminResult<LogLevel> {
    run(ctx, "server_set_log_level", level, async {
        let Some(new) = crate::logging::parse_level(level) else {
            return Err(AdminError::bad(format!(
                "{level}: expected error, warn, info, debug or trace"
            )));
        };
        let before = crate::logging::level();
        crate::logging::set_level(new).map_err(AdminError::Internal)?;
        tracing::warn!(
            from = before.as_str(),
            to = new.as_str(),
            "log level changed through the admin API"
        );
        Ok(LogLevel {
            level: new.as_str(),
            previous: Some(before.as_str()),
            handler: ctx.config.instrumentation.log.is_some(),
        })
    })
    .await
}
