//! A minimal HTTP/1.1 client for the metrics and admin endpoints (enough
//! for GET/DELETE with a bearer token; the server is ours, on loopback).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    accept: Option<&str>,
) -> Reply {
    request_with_body(addr, method, path, token, accept, None).await
}

/// A request with a JSON body.
pub async fn send_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Reply {
    request_with_body(addr, method, path, token, None, Some(body)).await
}

/// A request with the whole `Authorization` header value given (another
/// scheme, another case).
pub async fn request_authorized(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: &str,
) -> Reply {
    send(
        addr,
        method,
        path,
        Some(authorization.to_string()),
        None,
        None,
    )
    .await
}

async fn request_with_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    accept: Option<&str>,
    body: Option<&str>,
) -> Reply {
    send(
        addr,
        method,
        path,
        token.map(|t| format!("Bearer {t}")),
        accept,
        body,
    )
    .await
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<String>,
    accept: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = authorization {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    if let Some(a) = accept {
        req.push_str(&format!("Accept: {a}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).await.expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read reply");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    Reply {
        status,
        headers: head.to_string(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    }
}

/// A chunked HTTP/1.1 body (as large Prometheus answers come) as one text.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}

pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    request(addr, "GET", path, token, None).await
}

/// The session `jid` (full JID) as the admin API lists it
/// (`GET /api/sessions`), if it is there.
pub async fn session_info(addr: SocketAddr, jid: &str) -> Option<serde_json::Value> {
    let r = get(addr, "/api/sessions", Some(crate::harness::TOKEN)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    list["items"]
        .as_array()?
        .iter()
        .find(|e| e["jid"] == jid)
        .cloned()
}
