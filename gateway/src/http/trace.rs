//! `/api/trace`: start, list, stop, read and analyse live traces, and
//! follow one as server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use osprey_instrument::live::{dump, query, Kind, Options, Trace};
use serde::Deserialize;
use serde_json::json;

use super::{json, query_pairs, respond, Body};
use crate::live::Filter;
use crate::server::Ctx;

/// Largest start request accepted.
const MAX_BODY: usize = 16 * 1024;

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
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let rest = path
        .trim_start_matches("/api/trace")
        .trim_start_matches('/');
    let mut parts = rest.splitn(2, '/');
    let (id, sub) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
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
    let records = || trace.records();
    let number = |k: &str, default: usize| -> Result<usize, String> {
        match param(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("{k} must be a number")),
        }
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
        (&Method::GET, "records") => {
            let kind = match param("kind") {
                Some(k) => match Kind::parse(k) {
                    Some(k) => Some(k),
                    None => return bad(format!("unknown kind {k:?}")),
                },
                None => None,
            };
            let (offset, limit) = match (number("offset", 0), number("limit", 1000)) {
                (Ok(o), Ok(l)) => (o, l),
                (Err(e), _) | (_, Err(e)) => return bad(e),
            };
            let all = records();
            let sel = query::select(&all, kind, param("task"), param("contains"));
            let page: Vec<_> = sel.iter().skip(offset).take(limit).collect();
            json(
                StatusCode::OK,
                &json!({"total": sel.len(), "offset": offset, "records": page}),
            )
        }
        (&Method::GET, "stats") => {
            let by = param("by").unwrap_or("function");
            let sort = param("sort").unwrap_or("acc");
            if !["function", "task"].contains(&by) || !["acc", "own", "count"].contains(&sort) {
                return bad("by: function|task; sort: acc|own|count");
            }
            let limit = match number("limit", 50) {
                Ok(l) => l,
                Err(e) => return bad(e),
            };
            let mut stats = query::call_stat(&records(), by, sort);
            stats.truncate(limit);
            json(StatusCode::OK, &json!(stats))
        }
        (&Method::GET, "trees") => match number("top", 10) {
            Ok(top) => json(
                StatusCode::OK,
                &json!(query::top_call_trees(&records(), top)),
            ),
            Err(e) => bad(e),
        },
        (&Method::GET, "ranges") => {
            let Some(call) = param("call") else {
                return bad("ranges needs call=NAME");
            };
            let all = records();
            let r = query::ranges(
                &all,
                call,
                param("incomplete").is_some_and(|v| v == "1" || v == "true"),
            );
            json(StatusCode::OK, &json!(r))
        }
        (&Method::GET, "traceback") => {
            let Some(index) = param("index").and_then(|i| i.parse::<u64>().ok()) else {
                return bad("traceback needs index=N");
            };
            let all = records();
            match query::traceback(&all, index) {
                Some(tb) => json(StatusCode::OK, &json!(tb)),
                None => json(
                    StatusCode::NOT_FOUND,
                    &json!({"error": format!("no record {index}")}),
                ),
            }
        }
        (&Method::GET, "dump") => {
            let all = records();
            let header = dump::Header {
                format: dump::FORMAT.into(),
                id: trace.id,
                filter: trace.filter.clone(),
                stop_reason: trace.stop_reason(),
                records: all.len(),
            };
            let mut out = serde_json::to_string(&header).unwrap_or_default();
            out.push('\n');
            for r in &all {
                out.push_str(&serde_json::to_string(r).unwrap_or_default());
                out.push('\n');
            }
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
            tracing::info!(trace = t.id, filter = %t.filter, "live trace started");
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
