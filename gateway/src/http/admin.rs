//! The admin API's REST routes (JSON, bearer token). Every operation is a
//! function of [`crate::admin`] (the GraphQL schema calls the same ones);
//! this file only maps paths, query strings and bodies onto them.
//!
//! Errors are `{"error": message, "code": wire_name}` with the status of
//! the error (400, 404, 409, 503, 500), or 401 for a missing or wrong token.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{json, Body, HttpCtx};
use crate::admin::{self, AdminError, AdminResult, Page};
use crate::server::Ctx;

/// The largest request body the admin API reads (a stanza to send fits).
const MAX_BODY: usize = 512 * 1024;

pub async fn handle(ctx: &Ctx, hctx: &HttpCtx, req: Request<Incoming>) -> Response<Body> {
    if !authorized(hctx, &req) {
        let mut r = json(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "missing or wrong bearer token (Authorization: Bearer …)", "code": "unauthorized"}),
        );
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    let path = req.uri().path().to_string();
    let query = super::query_pairs(req.uri().query());
    let segments: Vec<String> = path
        .trim_start_matches("/api/")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(super::percent_decode)
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = req.method().clone();
    match (&method, seg.as_slice()) {
        (_, ["trace", ..]) => super::trace::handle(ctx, req).await,
        (&Method::GET, ["events"]) => events(ctx),
        (&Method::GET, ["snapshot"]) => super::snapshot::latest(ctx),
        (&Method::GET, ["snapshot", "stream"]) => super::snapshot::stream(ctx),
        _ => match rest(ctx, &method, &seg, &query, req).await {
            Some(Ok(v)) => json(StatusCode::OK, &v),
            Some(Err(e)) => error(&e),
            None if allowed(&seg).is_some() => {
                let mut r = json(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &json!({"error": "method not allowed", "code": "method_not_allowed"}),
                );
                if let Some(Ok(v)) = allowed(&seg).map(hyper::header::HeaderValue::from_str) {
                    r.headers_mut().insert(hyper::header::ALLOW, v);
                }
                r
            }
            None => json(
                StatusCode::NOT_FOUND,
                &json!({"error": "not found", "code": "not_found"}),
            ),
        },
    }
}

/// The operations: `None` when no route matches.
async fn rest(
    ctx: &Ctx,
    method: &Method,
    seg: &[&str],
    query: &[(String, String)],
    req: Request<Incoming>,
) -> Option<AdminResult<Value>> {
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let out = match (method, seg) {
        // server
        (&Method::GET, ["status"]) => to_json(admin::server::status(ctx).await),
        (&Method::GET, ["cluster"]) => to_json(admin::cluster::status(ctx).await),
        (&Method::POST, ["cluster", "leave"]) => to_json(admin::cluster::leave(ctx).await),
        (&Method::GET, ["cluster", "sessions"]) => match page(&q) {
            Ok(p) => to_json(
                admin::cluster::sessions(ctx, q("filter").filter(|f| !f.is_empty()), p).await,
            ),
            Err(e) => Err(e),
        },
        (&Method::GET, ["log"]) => to_json(admin::server::log_level(ctx).await),
        (&Method::PUT, ["log"]) => match body(req).await {
            Ok(b) => match b.get("level").and_then(Value::as_str) {
                Some(l) => to_json(admin::server::set_log_level(ctx, l).await),
                None => Err(AdminError::bad(
                    "expected {\"level\": \"error|warn|info|debug|trace\"}",
                )),
            },
            Err(e) => Err(e),
        },
        (&Method::GET, ["stats"]) => to_json(admin::stats::hosts(ctx, q("host")).await),
        (&Method::POST, ["certificates", "reload"]) => {
            to_json(admin::server::reload_certificates(ctx).await)
        }
        // accounts
        (&Method::GET, ["accounts"]) => match page(&q) {
            Ok(p) => to_json(admin::accounts::list(ctx, q("host"), p).await),
            Err(e) => Err(e),
        },
        (&Method::GET, ["accounts", "count"]) => {
            to_json(admin::accounts::count(ctx, q("host")).await)
        }
        (&Method::POST, ["accounts"]) => match body(req).await {
            Ok(b) => match (str_field(&b, "jid"), str_field(&b, "password")) {
                (Ok(jid), Ok(pw)) => admin::accounts::register(ctx, jid, pw)
                    .await
                    .map(|j| json!({ "registered": j })),
                (Err(e), _) | (_, Err(e)) => Err(e),
            },
            Err(e) => Err(e),
        },
        (&Method::DELETE, ["accounts", jid]) => admin::accounts::remove(ctx, jid)
            .await
            .map(|j| json!({ "removed": j })),
        (&Method::PUT, ["accounts", jid, "password"]) => match body(req).await {
            Ok(b) => match str_field(&b, "password") {
                Ok(pw) => admin::accounts::change_password(ctx, jid, pw)
                    .await
                    .map(|j| json!({ "changed": j })),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        // sessions
        (&Method::GET, ["sessions"]) => match page(&q) {
            Ok(p) => to_json(admin::sessions::list(ctx, &filter(&q), p).await),
            Err(e) => Err(e),
        },
        (&Method::GET, ["sessions", "count"]) => admin::sessions::count(ctx, &filter(&q))
            .await
            .map(|n| json!({ "count": n })),
        // DELETE /api/sessions/{jid | session id}[/{resource}]?reason=…&condition=…
        (&Method::DELETE, ["sessions", target @ ..]) if !target.is_empty() => {
            let target = admin::sessions::Target::parse(&target.join("/"));
            to_json(admin::sessions::kick(ctx, &target, q("reason"), q("condition")).await)
        }
        // stanzas
        (&Method::POST, ["stanzas", "message"]) => match body(req).await {
            Ok(b) => match (
                str_field(&b, "from"),
                str_field(&b, "to"),
                str_field(&b, "body"),
            ) {
                (Ok(f), Ok(t), Ok(m)) => to_json(admin::stanza::send_message(ctx, f, t, m).await),
                (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => Err(e),
            },
            Err(e) => Err(e),
        },
        (&Method::POST, ["stanzas"]) => match body(req).await {
            Ok(b) => match str_field(&b, "stanza") {
                Ok(x) => to_json(admin::stanza::send(ctx, x).await),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        // rosters
        (&Method::GET, ["roster", user]) => to_json(admin::roster::list(ctx, user).await),
        (&Method::POST, ["roster", user]) => match body(req).await {
            Ok(b) => match new_item(&b) {
                Ok(item) => to_json(admin::roster::add(ctx, user, &item).await),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        (&Method::DELETE, ["roster", user, contact]) => admin::roster::remove(ctx, user, contact)
            .await
            .map(|c| json!({ "removed": c })),
        // offline messages
        (&Method::GET, ["offline", user]) => match page(&q) {
            Ok(p) => to_json(admin::offline::list(ctx, user, p).await),
            Err(e) => Err(e),
        },
        (&Method::GET, ["offline", user, "count"]) => admin::offline::count(ctx, user)
            .await
            .map(|n| json!({ "count": n })),
        (&Method::DELETE, ["offline", user]) => admin::offline::purge(ctx, user)
            .await
            .map(|n| json!({ "purged": n })),
        _ => return None,
    };
    Some(out)
}

/// The methods a path takes (the `Allow` header of a 405), `None` for a
/// path that does not exist.
fn allowed(seg: &[&str]) -> Option<&'static str> {
    Some(match seg {
        ["status" | "stats" | "events" | "snapshot" | "cluster"]
        | ["snapshot", "stream"]
        | ["cluster", "sessions"]
        | ["accounts" | "sessions", "count"]
        | ["offline", _, "count"] => "GET",
        ["log"] => "GET, PUT",
        ["certificates", "reload"]
        | ["stanzas"]
        | ["stanzas", "message"]
        | ["cluster", "leave"] => "POST",
        ["accounts"] => "GET, POST",
        ["accounts", _] | ["roster", _, _] => "DELETE",
        ["accounts", _, "password"] => "PUT",
        ["sessions"] => "GET",
        ["sessions", ..] => "DELETE",
        ["roster", _] => "GET, POST",
        ["offline", _] => "GET, DELETE",
        _ => return None,
    })
}

fn error(e: &AdminError) -> Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        status,
        &json!({"error": e.to_string(), "code": e.wire_name()}),
    )
}

fn to_json<T: Serialize>(r: AdminResult<T>) -> AdminResult<Value> {
    r.and_then(|v| serde_json::to_value(v).map_err(|e| AdminError::Internal(e.to_string())))
}

async fn body(req: Request<Incoming>) -> AdminResult<Value> {
    super::json_body(req, MAX_BODY)
        .await
        .map_err(AdminError::BadRequest)
}

fn str_field<'a>(b: &'a Value, key: &str) -> AdminResult<&'a str> {
    b.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| AdminError::bad(format!("expected a string field \"{key}\"")))
}

fn page<'a>(q: &impl Fn(&str) -> Option<&'a str>) -> AdminResult<Page> {
    let num = |k: &str| -> AdminResult<Option<usize>> {
        q(k).map(|v| {
            v.parse::<usize>()
                .map_err(|_| AdminError::bad(format!("{k} must be a number")))
        })
        .transpose()
    };
    Page::new(num("offset")?, num("limit")?)
}

fn filter<'a>(q: &impl Fn(&str) -> Option<&'a str>) -> admin::sessions::Filter {
    admin::sessions::Filter {
        text: q("filter").filter(|f| !f.is_empty()).map(str::to_string),
        host: q("host").map(str::to_string),
    }
}

fn new_item(b: &Value) -> AdminResult<admin::roster::NewItem> {
    let contact = str_field(b, "contact")?.to_string();
    let groups = match b.get("groups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|g| {
                g.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| AdminError::bad("groups must be strings"))
            })
            .collect::<AdminResult<_>>()?,
        Some(_) => return Err(AdminError::bad("groups must be an array of strings")),
    };
    Ok(admin::roster::NewItem {
        contact,
        name: b.get("name").and_then(Value::as_str).map(str::to_string),
        groups,
        subscription: b
            .get("subscription")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

pub(crate) fn authorized(hctx: &HttpCtx, req: &Request<Incoming>) -> bool {
    let Some(expected) = hctx.token.as_deref() else {
        return false;
    };
    let given = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| {
            v.get(..7)
                .filter(|s| s.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        })
        .unwrap_or("");
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
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
