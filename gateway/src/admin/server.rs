//! The server itself: status, version and uptime, the log level, and
//! certificate reload (mongooseimctl's `server` category). The reload's
//! mechanism is `crate::tls::ReloadableIdentity` (each listener's current
//! certificate, swapped only when the new files load).

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

/// One listener's certificate after a reload.
#[derive(Debug, Clone, Serialize)]
pub struct Certificate {
    /// The listener's name, as in metric labels (`c2s_5222`).
    pub listener: String,
    pub certfile: String,
    /// The leaf's notAfter in Unix seconds, if it could be read.
    pub not_after: Option<i64>,
    /// The same, as RFC 3339.
    pub not_after_rfc3339: Option<String>,
    /// Whether the served chain differs from the one before the reload.
    pub changed: bool,
}

/// Reads every TLS listener's certificate and key again (mongooseimctl's
/// `reload_certificates`, also run on SIGHUP). New handshakes use the new
/// certificate; open connections keep theirs. Every listener is tried; one
/// that fails keeps its old certificate, and the error names each failed
/// listener and file.
pub async fn reload_certificates(ctx: &Ctx) -> AdminResult<Vec<Certificate>> {
    run(ctx, "server_reload_certificates", "certificates", async {
        let mut reloaded = Vec::new();
        let mut failed = Vec::new();
        // Set when a failure is the server's (generating, a panic), not the files'.
        let mut internal = false;
        for (listener, identity) in &ctx.certificates {
            let identity = identity.clone();
            // File reading and key parsing block: off the async workers.
            match tokio::task::spawn_blocking(move || identity.reload()).await {
                Ok(Ok(r)) => {
                    let not_after = r.identity.not_after_unix();
                    tracing::info!(
                        listener = %listener,
                        certfile = %r.identity.certfile.display(),
                        changed = r.changed,
                        "certificate reloaded"
                    );
                    reloaded.push(Certificate {
                        listener: listener.clone(),
                        certfile: r.identity.certfile.display().to_string(),
                        not_after,
                        not_after_rfc3339: not_after.and_then(rfc3339),
                        changed: r.changed,
                    });
                }
                Ok(Err(e)) => {
                    tracing::warn!(
                        listener = %listener,
                        error = %e,
                        "certificate not reloaded: the old one stays"
                    );
                    internal |= !matches!(
                        e,
                        crate::tls::TlsError::Pem { .. } | crate::tls::TlsError::Key { .. }
                    );
                    failed.push(format!("{listener}: {e}"));
                }
                Err(e) => {
                    internal = true;
                    failed.push(format!("{listener}: {e}"));
                }
            }
        }
        if failed.is_empty() {
            return Ok(reloaded);
        }
        let mut message = format!(
            "certificate reload failed, old certificate kept: {}",
            failed.join("; ")
        );
        if !reloaded.is_empty() {
            let names: Vec<&str> = reloaded.iter().map(|c| c.listener.as_str()).collect();
            message.push_str(&format!(" (reloaded: {})", names.join(", ")));
        }
        Err(if internal {
            AdminError::Internal(message)
        } else {
            AdminError::BadRequest(message)
        })
    })
    .await
}

fn rfc3339(unix: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}
