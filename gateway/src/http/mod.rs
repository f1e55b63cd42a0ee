//! The HTTP listener (hyper): `/metrics` and `/healthz` for the `metrics`
//! handler, `/api/...` (bearer token) for the `admin` handler. Bound to
//! loopback by default.

mod admin;
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
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::HttpHandler;
use crate::server::Ctx;

/// Whole bodies, or streams (server-sent events).
pub type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// One HTTP listener as its requests see it.
pub struct HttpCtx {
    pub handlers: Vec<HttpHandler>,
    /// The admin token (present when the admin handler is on).
    pub token: Option<String>,
}

pub async fn serve(ctx: Arc<Ctx>, hctx: Arc<HttpCtx>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (ctx, hctx) = (ctx.clone(), hctx.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (ctx, hctx) = (ctx.clone(), hctx.clone());
                async move { Ok::<_, Infallible>(route(&ctx, &hctx, req).await) }
            });
            let conn =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc);
            let _ = conn.await;
        });
    }
}

async fn route(ctx: &Ctx, hctx: &HttpCtx, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let metrics_on = hctx.handlers.contains(&HttpHandler::Metrics);
    let admin_on = hctx.handlers.contains(&HttpHandler::Admin);
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") if metrics_on => metrics(ctx, &req),
        (&Method::GET, "/healthz") if metrics_on => healthz(ctx).await,
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
