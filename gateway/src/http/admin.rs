//! The admin API (JSON, bearer token): status, sessions, kick, events.

use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{json, Body, HttpCtx};
use crate::errors::{StreamCondition, StreamError};
use crate::jid::Jid;
use crate::server::Ctx;

pub async fn handle(ctx: &Ctx, hctx: &HttpCtx, req: Request<Incoming>) -> Response<Body> {
    if !authorized(hctx, &req) {
        let mut r = json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "missing or wrong bearer token (Authorization: Bearer …)"}),
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/api/status") => status(ctx),
        (&Method::GET, "/api/sessions") => sessions(ctx, req.uri().query()),
        (&Method::GET, "/api/events") => events(ctx),
        (&Method::GET, "/api/snapshot") => super::snapshot::latest(ctx),
        (&Method::GET, "/api/snapshot/stream") => super::snapshot::stream(ctx),
        (&Method::DELETE, p) if p.starts_with("/api/sessions/") => {
            kick(ctx, &super::percent_decode(&p["/api/sessions/".len()..]))
        }
        (&Method::GET, "/api/log") => log_level(ctx),
        (&Method::PUT, "/api/log") => set_log_level(req).await,
        (_, p) if p == "/api/trace" || p.starts_with("/api/trace/") => {
            super::trace::handle(ctx, req).await
        }
        (
            _,
            "/api/status"
            | "/api/sessions"
            | "/api/events"
            | "/api/snapshot"
            | "/api/snapshot/stream"
            | "/api/log",
        ) => json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method not allowed"}),
        ),
        _ => json(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
    }
}

fn authorized(hctx: &HttpCtx, req: &Request<Incoming>) -> bool {
    let Some(expected) = hctx.token.as_deref() else {
        return false;
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// The log level now, and whether events are logged at all (`handler`:
/// the log handler is on only with an `[instrumentation.log]` section).
fn log_level(ctx: &Ctx) -> Response<Body> {
    json(
        StatusCode::OK,
        &json!({
            "level": crate::logging::level().as_str(),
            "handler": ctx.config.instrumentation.log.is_some(),
        }),
    )
}

/// `{"level": "debug"}`: changes the log level (events and Osprey's own
/// logs) until the next change or restart; logged at warn, so the change
/// shows whatever the new level.
async fn set_log_level(req: Request<Incoming>) -> Response<Body> {
    let bad = |m: String| json(StatusCode::BAD_REQUEST, &json!({"error": m}));
    let value = match super::json_body(req, 1024).await {
        Ok(v) => v,
        Err(m) => return bad(m),
    };
    let Some(level) = value
        .get("level")
        .and_then(|l| l.as_str())
        .and_then(crate::logging::parse_level)
    else {
        return bad("expected {\"level\": \"error|warn|info|debug|trace\"}".into());
    };
    let before = crate::logging::level();
    if let Err(e) = crate::logging::set_level(level) {
        return json(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": e}));
    }
    tracing::warn!(
        from = before.as_str(),
        to = level.as_str(),
        "log level changed through the admin API"
    );
    json(
        StatusCode::OK,
        &json!({"level": level.as_str(), "previous": before.as_str()}),
    )
}

fn status(ctx: &Ctx) -> Response<Body> {
    let uptime = ctx.started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    let listeners = crate::server::ListenerFile::read(&ctx.config.general.data_dir).ok();
    json(
        StatusCode::OK,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": uptime,
            "hosts": ctx.config.general.hosts,
            "sessions": ctx.sessions.len(),
            "users": ctx.sessions.unique_users(),
            "listeners": listeners.map(|l| json!({"c2s": l.c2s, "http": l.http})),
            "storage": ctx.storage.backend(),
            "handlers": ctx.instr.registry.handler_names(),
        }),
    )
}

/// `?filter=TEXT` keeps the sessions whose full JID (case insensitive) or
/// address contains it; `?limit=N` returns the first N by JID, so a dashboard on
/// a node with many thousands of sessions asks for one page, not all.
fn sessions(ctx: &Ctx, query: Option<&str>) -> Response<Body> {
    use std::sync::atomic::Ordering::Relaxed;
    let params = super::query_pairs(query);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let limit = match param("limit").map(str::parse::<usize>) {
        None => usize::MAX,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "limit must be a number"}),
            )
        }
    };
    let needle = param("filter").unwrap_or("").to_lowercase();
    let now = SystemTime::now();
    let mut handles: Vec<_> = ctx
        .sessions
        .all()
        .into_iter()
        // This node's sessions (remote ones are the cluster's to list).
        .filter_map(|s| s.local().cloned())
        .filter(|s| {
            needle.is_empty()
                || s.full().to_lowercase().contains(&needle)
                || s.info().peer.to_string().contains(&needle)
        })
        .collect();
    handles.sort_by(|a, b| a.full().cmp(b.full()));
    handles.truncate(limit);
    let list: Vec<_> = handles
        .iter()
        .map(|s| {
            let info = s.info();
            let p = s.presence();
            json!({
                "jid": s.full(),
                "bare": s.bare(),
                "resource": s.resource(),
                "session_id": s.id(),
                "address": info.peer.to_string(),
                "listener": info.listener,
                // The only transport so far (no WebSocket or BOSH).
                "transport": "tcp",
                "tls": info.tls,
                "connected_seconds": now.duration_since(info.connected_at).map(|d| d.as_secs()).unwrap_or(0),
                "stanzas_in": s.stanzas_in.load(Relaxed),
                "stanzas_out": s.stanzas_out.load(Relaxed),
                "queued_bytes": s.queued_bytes(),
                "available": p.available,
                "state": s.state().as_str(),
                "priority": p.priority,
            })
        })
        .collect();
    json(StatusCode::OK, &json!(list))
}

/// The catalogue as this gateway runs it: `level` is the level each event
/// is logged at (its `[instrumentation.log] events` override, or its own,
/// `default_level`), `logged` whether it is logged at the current level
/// (never without an `[instrumentation.log]` section).
fn events(ctx: &Ctx) -> Response<Body> {
    let emitted: std::collections::HashMap<_, _> =
        ctx.instr.registry.emitted().into_iter().collect();
    let log = ctx.config.instrumentation.log.as_ref();
    let max = osprey_instrument::log::max_level();
    let list: Vec<_> = crate::events::CATALOGUE
        .iter()
        .map(|e| {
            let mut v = crate::events::describe(e);
            let overridden = log.and_then(|l| l.events.get(e.name)).copied();
            let level = overridden.unwrap_or(e.level);
            v["level"] = json!(level.as_str());
            v["default_level"] = json!(e.level.as_str());
            v["overridden"] = json!(overridden.is_some());
            v["logged"] = json!(log.is_some() && level <= max);
            v["emitted"] = json!(emitted.get(e.name).copied().unwrap_or(false));
            v
        })
        .collect();
    json(StatusCode::OK, &json!(list))
}

/// A full JID closes that session; a bare JID closes all of its sessions.
fn kick(ctx: &Ctx, jid: &str) -> Response<Body> {
    let Ok(jid) = Jid::parse(jid) else {
        return json(StatusCode::BAD_REQUEST, &json!({"error": "malformed JID"}));
    };
    let targets: Vec<_> = match jid.resource() {
        Some(r) => ctx.sessions.full(&jid.bare(), r).into_iter().collect(),
        None => ctx.sessions.resources(&jid.bare()),
    };
    if targets.is_empty() {
        return json(StatusCode::NOT_FOUND, &json!({"error": "no such session"}));
    }
    for s in &targets {
        s.close(StreamError::with_text(
            StreamCondition::PolicyViolation,
            "disconnected by an administrator",
        ));
    }
    tracing::info!(jid = %jid, sessions = targets.len(), "sessions kicked by the admin API");
    json(StatusCode::OK, &json!({"kicked": targets.len()}))
}
