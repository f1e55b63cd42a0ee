//! The gateway's admin API over HTTP/1.1 with the bearer token: one
//! connection per request (the dashboard makes a few per second at most)
//! and server-sent event streams for the live feeds.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use serde::de::DeserializeOwned;

/// How long connecting may take before the gateway counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the gateway: {0}")]
    Unreachable(String),
    #[error("the admin API refused the token (HTTP 401)")]
    Unauthorized,
    #[error("{message} (HTTP {status})")]
    Status { status: u16, message: String },
    #[error("unexpected reply: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone)]
pub struct Api {
    /// `host:port`, what we connect to.
    authority: String,
    token: String,
}

impl Api {
    /// `url` is `http://host:port` (a path is ignored: the API lives at `/api`).
    pub fn new(url: &str, token: &str) -> Result<Api, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") | None => {}
            Some(s) => {
                return Err(format!(
                    "--url {url:?}: scheme {s} not supported (the admin API speaks plain HTTP on loopback)"
                ))
            }
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("--url {url:?} has no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        Ok(Api {
            authority: format!("{host}:{port}"),
            token: token.to_string(),
        })
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Response<Incoming>, ApiError> {
        let unreachable = |e: &dyn std::fmt::Display| ApiError::Unreachable(e.to_string());
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(&self.authority),
        )
        .await
        .map_err(|_| ApiError::Unreachable("connect timed out".into()))?
        .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.authority)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ApiError::Malformed(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(&e))?;
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::UNAUTHORIZED => Err(ApiError::Unauthorized),
            s => {
                let text = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
                    .unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or(text);
                Err(ApiError::Status {
                    status: s.as_u16(),
                    message,
                })
            }
        }
    }

    /// A request whose reply is text (e.g. a trace dump).
    pub async fn text(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<String, ApiError> {
        let resp = self.send(method, path, body).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::Unreachable(format!("reading the reply: {e}")))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A request whose reply is JSON.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<T, ApiError> {
        let text = self.text(method, path, body).await?;
        serde_json::from_str(&text).map_err(|e| ApiError::Malformed(e.to_string()))
    }

    /// A server-sent event stream.
    pub async fn events(&self, path: &str) -> Result<EventStream, ApiError> {
        let resp = self.send("GET", path, None).await?;
        Ok(EventStream {
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }
}

/// Percent-encodes a path segment or query value (JIDs carry `@` and
/// `/`): everything but RFC 3986's unreserved characters and `@`.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One server-sent event: its name (`message` when unnamed) and data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<Result<Event, ApiError>> {
        loop {
            if let Some(event) = take_event(&mut self.buf) {
                if let Some(e) = event {
                    return Some(Ok(e));
                }
                continue;
            }
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        self.buf.extend_from_slice(data);
                    }
                }
                Err(e) => return Some(Err(ApiError::Unreachable(e.to_string()))),
            }
        }
    }
}

/// Takes one complete event block off the buffer: `None` if none is
/// complete yet, `Some(None)` for a block with no data (a keep-alive).
fn take_event(buf: &mut Vec<u8>) -> Option<Option<Event>> {
    let end = buf.windows(2).position(|w| w == b"\n\n")?;
    let block: Vec<u8> = buf.drain(..end + 2).collect();
    let text = String::from_utf8_lossy(&block);
    let mut name = String::from("message");
    let mut data: Option<String> = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            let v = v.strip_prefix(' ').unwrap_or(v);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_string()),
            }
        }
    }
    Some(data.map(|data| Event { name, data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks() {
        let mut buf = b": keep-alive\n\nevent: snapshot\ndata: {\"a\":1}\n\nevent: rec".to_vec();
        assert_eq!(take_event(&mut buf), Some(None));
        assert_eq!(
            take_event(&mut buf),
            Some(Some(Event {
                name: "snapshot".into(),
                data: "{\"a\":1}".into()
            }))
        );
        assert_eq!(take_event(&mut buf), None);
        assert_eq!(buf, b"event: rec");
    }

    #[test]
    fn urls() {
        assert_eq!(
            Api::new("http://127.0.0.1:9091", "t").unwrap().authority(),
            "127.0.0.1:9091"
        );
        assert_eq!(
            Api::new("http://localhost", "t").unwrap().authority(),
            "localhost:80"
        );
        assert!(Api::new("https://x:1", "t").is_err());
        assert!(Api::new("not a url", "t").is_err());
    }

    #[test]
    fn segments() {
        assert_eq!(
            encode_segment("alice@localhost/phone 1"),
            "alice@localhost%2Fphone%201"
        );
        assert_eq!(encode_segment("a_b&c=d"), "a_b%26c%3Dd");
    }
}
