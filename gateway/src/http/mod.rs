//! The HTTP listener (hyper): `/metrics` and `/healthz` for the `metrics`
//! handler, `/api/...` (bearer token) for the `admin` handler. Bound to
//! loopback by default; [`limits`] keeps idle or slow clients from holding
//! its connections.

mod admin;
pub mod graphql;
pub mod limits;
mod snapshot;
pub mod token;
mod trace;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;

pub use self::limits::HttpLimits;
use self::limits::Refusals;
use crate::config::HttpHandler;
use crate::server::AcceptBackoff;
use crate::server::Ctx;

/// Whole bodies, or streams (server-sent events).
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// One HTTP listener as its requests see it.
pub struct HttpCtx {
    pub handlers: Vec<HttpHandler>,
    /// The admin token (present when the admin handler is on).
    pub token: Option<String>,
}

/// Serves a listener with the limits of its `[[listen.http]]` section.
/// Serves one HTTP listener with its limits until shutdown.
pub async fn serve(ctx: Arc<Ctx>, hctx: Arc<HttpCtx>, listener: TcpListener, limits: HttpLimits) {
    let name = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let over_cap = ctx
        .instr
        .registry
        .resolve(&crate::events::LIMIT_HIT, &["http_connections"]);
    let mut backoff = AcceptBackoff::new();
    let mut refusals = Refusals::new();
    loop {
        let flush_at = refusals.due();
        let flush = async move {
            match flush_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = flush => {
                count(&over_cap, refusals.take());
                continue;
            }
            a = listener.accept() => a,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => {
                backoff.succeeded();
                tcp
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                let pause = backoff.failed(&name, &e);
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the cap: closed at once, before reading a byte.
            drop(tcp);
            if let Some(n) = refusals.hit() {
                count(&over_cap, n);
            }
            continue;
        };
        let (ctx, hctx) = (ctx.clone(), hctx.clone());
        tokio::spawn(async move {
            limits::serve_connection(tcp, limits, move |req| {
                let (ctx, hctx) = (ctx.clone(), hctx.clone());
                async move { route(&ctx, &hctx, req).await }
            })
            .await;
            drop(permit);
        });
    }
}

fn count(handle: &osprey_instrument::Labelled, n: u64) {
    if n > 0 {
        handle.emit(&[("count", n as f64)], &osprey_instrument::Meta::NONE);
    }
}

async fn route(ctx: &Arc<Ctx>, hctx: &HttpCtx, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let metrics_on = hctx.handlers.contains(&HttpHandler::Metrics);
    let admin_on = hctx.handlers.contains(&HttpHandler::Admin);
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") if metrics_on => metrics(ctx, &req),
        (&Method::GET, "/healthz") if metrics_on => healthz(ctx).await,
        (_, "/api/graphql") if admin_on => graphql::handle(ctx, hctx, req).await,
        (_, p) if admin_on && p.starts_with("/api/") => admin::handle(ctx, hctx, req).await,
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found"}),
        ),
    }
}

/// Prometheus asks for OpenMetrics; anything else gets the classic text.
fn metrics(ctx: &Ctx, req: &Request<Incoming>) -> Response<Body> {
    use osprey_instrument::prometheus::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
    let Some(m) = ctx.instr.registry.prometheus() else {
        return text(
            StatusCode::NOT_FOUND,
            "the Prometheus handler is off: add [instrumentation.prometheus] to the configuration\n",
        );
    };
    let openmetrics = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let (body, ctype) = if openmetrics {
        (m.openmetrics(), OPENMETRICS_CONTENT_TYPE)
    } else {
        (m.text(), TEXT_CONTENT_TYPE)
    };
    respond(StatusCode::OK, ctype, body)
}

/// Ready when storage answers within a second.
async fn healthz(ctx: &Ctx) -> Response<Body> {
    match tokio::time::timeout(Duration::from_secs(1), ctx.storage.ping()).await {
        Ok(Ok(())) => text(StatusCode::OK, "ok\n"),
        Ok(Err(e)) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("storage: {e}\n")),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "storage: timeout\n"),
    }
}

pub(crate) fn respond(status: StatusCode, ctype: &str, body: String) -> Response<Body> {
    use http_body_util::BodyExt;
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// A server-sent event stream (`text/event-stream`, not cached).
pub(crate) fn event_stream<S>(frames: S) -> Response<Body>
where
    S: futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, Infallible>>
        + Send
        + Sync
        + 'static,
{
    use http_body_util::BodyExt;
    let mut r = Response::new(http_body_util::StreamBody::new(frames).boxed());
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-cache"),
    );
    r
}

/// A request's body as JSON, read up to `max` bytes; the error is the
/// message for a 400.
pub(crate) async fn json_body(
    req: Request<Incoming>,
    max: usize,
) -> Result<serde_json::Value, String> {
    use http_body_util::BodyExt;
    let body = http_body_util::Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|_| format!("the request body must be JSON under {max} bytes"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| format!("malformed JSON: {e}"))
}

pub(crate) fn text(status: StatusCode, body: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body.to_string())
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

/// `a=1&b=x%20y` → pairs, percent-decoded.
pub(crate) fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
