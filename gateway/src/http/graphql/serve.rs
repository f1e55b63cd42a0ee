//! `/api/graphql` over HTTP: the token, the request (a POST's JSON body or
//! a GET's query string), the reply.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::{schema, MAX_BODY};
use crate::http::{Body, HttpCtx};
use crate::server::Ctx;

pub async fn handle(ctx: &Arc<Ctx>, hctx: &HttpCtx, req: Request<Incoming>) -> Response<Body> {
    // Before the body is read: an unauthenticated client costs nothing more.
    if !authorized(hctx, &req) {
        let mut r = Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer …)",
        )
        .response();
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let request = match *req.method() {
        Method::POST => from_body(req).await,
        Method::GET => from_query(req.uri().query()),
        _ => Err(Refusal::not_allowed(
            "GraphQL takes POST (or GET for queries)",
            "GET, POST",
        )),
    };
    match request {
        Ok(r) => reply(&schema().execute(r.data(ctx.clone())).await),
        Err(refusal) => refusal.response(),
    }
}

/// GraphQL errors are part of a 200 reply (`application/json`, as the
/// GraphQL-over-HTTP spec has it for that type); only HTTP-level
/// failures (token, body, method) have other statuses.
fn reply(response: &async_graphql::Response) -> Response<Body> {
    match serde_json::to_string(response) {
        Ok(body) => crate::http::respond(StatusCode::OK, "application/json", body),
        Err(e) => {
            Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()).response()
        }
    }
}

/// The REST routes' check (`http::admin`), repeated: constant-time, so the
/// token cannot be guessed byte by byte from timings.
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

/// The body as one GraphQL request, read up to [`MAX_BODY`] bytes.
async fn from_body(req: Request<Incoming>) -> Result<async_graphql::Request, Refusal> {
    use http_body_util::BodyExt;
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_request",
            format!("the request body must be under {MAX_BODY} bytes"),
        )
    };
    // A declared length over the limit is refused without reading a byte.
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        // Chunked, or a length that lied: refused once over the limit.
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => return Err(Refusal::bad(format!("reading the body: {e}"))),
    };
    // One request object; a batch (a JSON array) is refused here too.
    serde_json::from_slice(&body).map_err(|e| {
        Refusal::bad(format!(
            "expected a JSON object {{\"query\", \"variables\", \"operationName\"}}: {e}"
        ))
    })
}

/// `?query=…&variables=…&operationName=…`: queries only.
fn from_query(q: Option<&str>) -> Result<async_graphql::Request, Refusal> {
    let pairs = crate::http::query_pairs(q);
    let param = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let Some(query) = param("query") else {
        return Err(Refusal::bad("a GET needs a query parameter"));
    };
    let mut request = async_graphql::Request::new(query);
    if let Some(name) = param("operationName") {
        request = request.operation_name(name);
    }
    if let Some(vars) = param("variables") {
        let value: serde_json::Value = serde_json::from_str(vars)
            .map_err(|e| Refusal::bad(format!("variables must be a JSON object: {e}")))?;
        request = request.variables(async_graphql::Variables::from_json(value));
    }
    // A GET may be prefetched, cached or replayed from a log: it must not
    // change anything (GraphQL over HTTP), so mutations need a POST.
    if !is_query(&mut request) {
        return Err(Refusal::not_allowed("mutations need a POST", "POST"));
    }
    Ok(request)
}

/// Whether the operation to run is a query. A text that does not parse
/// counts as one: executing it reports the syntax error as usual.
fn is_query(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else {
        return true;
    };
    match &doc.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Query,
        DocumentOperations::Multiple(ops) => ops
            .iter()
            .filter(|(n, _)| name.as_deref().is_none_or(|want| n.as_str() == want))
            .all(|(_, op)| op.node.ty == OperationType::Query),
    }
}

/// An HTTP-level refusal, answered in the GraphQL error shape so that a
/// client reads every failure the same way.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The `Allow` header of a 405.
    allow: Option<&'static str>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    fn bad(message: impl Into<String>) -> Refusal {
        Refusal::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_allowed(message: &str, allow: &'static str) -> Refusal {
        Refusal {
            allow: Some(allow),
            ..Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "bad_request", message)
        }
    }

    fn response(self) -> Response<Body> {
        let mut r = crate::http::json(
            self.status,
            &json!({"errors": [{"message": self.message, "extensions": {"code": self.code}}]}),
        );
        if let Some(allow) = self.allow {
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        r
    }
}
