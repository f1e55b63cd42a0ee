//! `/api/trace`: start, list, stop, read and analyse live traces, follow
//! one as server-sent events, and load a dump back as a queryable trace.
//! The analysis queries themselves are `osprey_instrument::live::api`'s.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use osprey_instrument::live::{api, dump, Options, Trace};
use serde::Deserialize;
use serde_json::json;

use super::{json, query_pairs, respond, Body};
use crate::live::Filter;
use crate::server::Ctx;

/// Largest start request accepted.
const MAX_BODY: usize = 16 * 1024;
/// Largest dump accepted by `POST /api/trace/load` (bigger ones are
/// queried from the file: `osprey trace records FILE`).
const MAX_DUMP: usize = 64 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    jid: Option<String>,
    session: Option<u64>,
    task: Option<String>,
    event: Option<String>,
    limit: Option<usize>,
    duration_seconds: Option<f64>,
    #[serde(default)]
    messages: bool,
    #[serde(default)]
    payload: bool,
    /// Who asks, as the client says (for the audit log line).
    by: Option<String>,
}

fn bad(msg: impl Into<String>) -> Response<Body> {
    json(StatusCode::BAD_REQUEST, &json!({"error": msg.into()}))
}

fn not_found(id: &str) -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        &json!({"error": format!("no trace {id}")}),
    )
}

pub async fn handle(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let params = query_pairs(req.uri().query());
    let rest = path
        .trim_start_matches("/api/trace")
        .trim_start_matches('/');
    let mut parts = rest.splitn(2, '/');
    let (id, sub) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if id == "load" && sub.is_empty() && req.method() == Method::POST {
        return load(ctx, req).await;
    }
    if id.is_empty() {
        return match *req.method() {
            Method::POST => start(ctx, req).await,
            Method::GET => {
                ctx.live.changed();
                let all: Vec<_> = ctx.live.tracer.list().iter().map(|t| t.status()).collect();
                json(StatusCode::OK, &json!(all))
            }
            _ => json(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "method not allowed"}),
            ),
        };
    }
    let Some(trace) = id.parse::<u64>().ok().and_then(|n| ctx.live.tracer.get(n)) else {
        return not_found(id);
    };
    match (req.method(), sub) {
        (&Method::GET, "") => {
            ctx.live.changed();
            json(StatusCode::OK, &trace.status())
        }
        (&Method::DELETE, "") => match ctx.live.stop(trace.id) {
            Ok(()) => json(StatusCode::OK, &trace.status()),
            Err(e) => bad(e),
        },
        (&Method::GET, q) if api::QUERIES.contains(&q) => {
            let (records, started_us) = (trace.records(), trace.started_us());
            let q = q.to_string();
            // A query over a million records is work: off the async workers.
            let answer = tokio::task::spawn_blocking(move || {
                let view = api::View {
                    records: &records,
                    started_us,
                };
                api::answer(&view, &q, &params)
            })
            .await;
            match answer {
                Ok(Ok(v)) => json(StatusCode::OK, &v),
                Ok(Err(r)) => json(
                    StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
                    &json!({"error": r.message}),
                ),
                Err(_) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "the query failed"}),
                ),
            }
        }
        (&Method::GET, "dump") => {
            let all = trace.records();
            let out = dump::to_text(&trace.header(all.len()), &all);
            respond(StatusCode::OK, "application/x-ndjson", out)
        }
        (&Method::GET, "stream") => stream(trace),
        _ => json(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
    }
}

async fn start(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    let r: StartRequest = match super::json_body(req, MAX_BODY)
        .await
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()))
    {
        Ok(r) => r,
        Err(e) => return bad(format!("malformed trace request: {e}")),
    };
    let defaults = Options::default();
    let duration = r
        .duration_seconds
        .unwrap_or(defaults.duration.as_secs_f64());
    if !(duration > 0.0 && duration <= 86_400.0) {
        return bad("duration_seconds must be between 0 and 86400");
    }
    let options = Options {
        limit: r.limit.unwrap_or(defaults.limit),
        duration: Duration::from_secs_f64(duration),
        messages: r.messages,
        payload: r.payload,
    };
    let filter = Filter {
        jid: r.jid,
        session: r.session,
        task: r.task,
        event: r.event,
    };
    match ctx.live.start(&filter, options) {
        Ok(t) => {
            let by = r.by.as_deref().unwrap_or("unknown");
            if t.options.payload {
                // Stanza text (message bodies) is captured: an audit event.
                tracing::warn!(
                    trace = t.id,
                    filter = %t.filter,
                    by,
                    limit = t.options.limit,
                    duration_seconds = t.options.duration.as_secs_f64(),
                    "live trace started capturing stanza payloads"
                );
            } else {
                tracing::info!(trace = t.id, filter = %t.filter, by, "live trace started");
            }
            let live = ctx.live.clone();
            let (id, d) = (t.id, t.options.duration);
            // The time limit holds even when nothing is recorded.
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if let Some(t) = live.tracer.get(id) {
                    t.stop(format!("time limit of {d:?} reached"));
                }
                live.changed();
            });
            json(StatusCode::CREATED, &t.status())
        }
        // Several traces may run, with distinct filters: a clash is a conflict.
        Err(e) if e.contains("running") => json(StatusCode::CONFLICT, &json!({"error": e})),
        Err(e) => bad(e),
    }
}

/// `POST /api/trace/load`: a dump (the body) becomes a stopped trace,
/// queried like any other under the id it is given.
async fn load(ctx: &Ctx, req: Request<Incoming>) -> Response<Body> {
    use http_body_util::BodyExt;
    let body = match http_body_util::Limited::new(req.into_body(), MAX_DUMP)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return bad(format!(
                "a dump over {MAX_DUMP} bytes: query the file itself (osprey trace records FILE)"
            ))
        }
    };
    let (header, records) = match dump::parse(&body[..], "the uploaded dump") {
        Ok(d) => d,
        Err(e) => return bad(e.to_string()),
    };
    let from = header.id;
    match ctx
        .live
        .tracer
        .adopt(header, records, false, format!("loaded (was trace {from})"))
    {
        Ok(t) => {
            tracing::info!(trace = t.id, records = t.len(), "trace dump loaded");
            ctx.live.changed();
            json(StatusCode::CREATED, &t.status())
        }
        Err(e) => bad(e),
    }
}

/// Records as server-sent events, until the trace stops.
fn stream(trace: std::sync::Arc<Trace>) -> Response<Body> {
    let rx = trace.subscribe();
    let s = futures_util::stream::unfold((rx, trace, true), |(mut rx, trace, open)| async move {
        if !open {
            return None;
        }
        let frame = match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Ok(r)) => format!(
                "event: record\ndata: {}\n\n",
                serde_json::to_string(&r).unwrap_or_default()
            ),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                format!(": {n} records skipped\n\n")
            }
            Ok(Err(_)) => return None,
            Err(_) if !trace.is_running() => {
                let reason = trace.stop_reason().unwrap_or_default();
                let end = format!("event: stopped\ndata: {}\n\n", json!({"reason": reason}));
                return Some((
                    Ok::<_, Infallible>(Frame::data(Bytes::from(end))),
                    (rx, trace, false),
                ));
            }
            Err(_) => ": keep-alive\n\n".to_string(),
        };
        Some((Ok(Frame::data(Bytes::from(frame))), (rx, trace, true)))
    });
    super::event_stream(s)
}
