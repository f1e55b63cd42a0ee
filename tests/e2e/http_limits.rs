//! The HTTP listener cannot be held open: idle and half-sent requests are
//! closed by the header-read timeout, connections beyond the cap are
//! refused at once (and counted), and server-sent event streams still flow
//! past the idle timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Backend, Options, Server, TOKEN};

fn server(http_extra: &str) -> Server {
    Server::start(Options {
        http_extra: http_extra.to_string(),
        ..Options::new(Backend::Sqlite)
    })
}

/// Reads until the server closes (EOF or reset); returns what came and
/// when it closed, or panics after `within`.
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> (String, Duration) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at((t0 + within).into(), tcp.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), t0.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One request on a kept-alive connection; returns the status line and body.
async fn keep_alive_get(tcp: &mut TcpStream, path: &str) -> (String, String) {
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if body.len() >= len {
                return (head.lines().next().unwrap().to_string(), body.to_string());
            }
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), tcp.read(&mut buf))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(n > 0, "closed mid-reply: {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

/// `/healthz` on a fresh connection: the status, or `None` when the
/// connection was closed without a reply.
async fn healthz(addr: SocketAddr) -> Option<u16> {
    let mut tcp = TcpStream::connect(addr).await.ok()?;
    let req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    tcp.write_all(req.as_bytes()).await.ok()?;
    let (reply, _) = closed_within(&mut tcp, Duration::from_secs(5)).await;
    reply.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_by_the_header_read_timeout() {
    let s = server("header_read_timeout = 2\nidle_timeout = 60\n");
    // Connected, nothing sent.
    let mut silent = TcpStream::connect(s.http).await.unwrap();
    // Kept alive after one request, then nothing.
    let mut kept = TcpStream::connect(s.http).await.unwrap();
    let (status, body) = keep_alive_get(&mut kept, "/healthz").await;
    assert!(status.contains("200") && body == "ok\n", "{status} {body}");
    let (got, took) = closed_within(&mut silent, Duration::from_secs(6)).await;
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {took:?}"
    );
    assert!(!got.contains("200"), "{got}");
    let (_, took) = closed_within(&mut kept, Duration::from_secs(6)).await;
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_trickled_a_byte_at_a_time_are_cut_at_the_deadline() {
    let s = server("header_read_timeout = 2\nidle_timeout = 60\n");
    let tcp = TcpStream::connect(s.http).await.unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let t0 = Instant::now();
    // 1 byte every 500 ms: these headers would take about 30 s to send.
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20)
    );
    let writer = tokio::spawn(async move {
        for b in request.bytes() {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut got = Vec::new();
    let closed = loop {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout_at((t0 + Duration::from_secs(8)).into(), rd.read(&mut buf)).await
        {
            Err(_) => break None,
            Ok(Ok(0)) | Ok(Err(_)) => break Some(t0.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    writer.abort();
    let took = closed.unwrap_or_else(|| {
        panic!(
            "a trickling client still holds the connection after 8 s: {:?}",
            String::from_utf8_lossy(&got)
        )
    });
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_and_counted() {
    let s = server("max_connections = 4\nheader_read_timeout = 30\nidle_timeout = 60\n");
    // Four kept-alive connections fill the listener.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut tcp = TcpStream::connect(s.http).await.unwrap();
        let (status, _) = keep_alive_get(&mut tcp, "/healthz").await;
        assert!(status.contains("200"), "{status}");
        held.push(tcp);
    }
    // Beyond the cap: closed at once, nothing read.
    for i in 0..5 {
        let mut tcp = TcpStream::connect(s.http).await.unwrap();
        let _ = tcp
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let (got, took) = closed_within(&mut tcp, Duration::from_secs(3)).await;
        assert!(
            got.is_empty(),
            "connection {i} over the cap was served: {got:?}"
        );
        assert!(took < Duration::from_secs(1), "refused only after {took:?}");
    }
    assert_eq!(
        healthz(s.http).await,
        None,
        "a bystander is refused too while full"
    );
    // The held connections go: a bystander is served again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if healthz(s.http).await == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz not served after the cap freed up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The refusals are counted (coalesced: at most one report a second).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = crate::http::get(s.http, "/metrics", None).await.body;
        let line = m
            .lines()
            .find(|l| l.starts_with("limit_hit_total{") && l.contains("limit=\"http_connections\""))
            .map(str::to_string)
            .unwrap_or_default();
        let n: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if n >= 6.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "6 refusals not counted: {line:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads a response stream for `d`; panics if the server closes it.
async fn stream_for(tcp: &mut TcpStream, d: Duration) -> String {
    let t0 = Instant::now();
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 16384];
        match tokio::time::timeout_at((t0 + d).into(), tcp.read(&mut buf)).await {
            Err(_) => return String::from_utf8_lossy(&got).into(),
            Ok(Ok(0)) | Ok(Err(_)) => panic!(
                "stream cut after {:?}: {:?}",
                t0.elapsed(),
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_flow_past_the_idle_timeout() {
    let s = server("header_read_timeout = 1\nidle_timeout = 1\n");
    let mut snap = TcpStream::connect(s.http).await.unwrap();
    snap.write_all(
        format!(
            "GET /api/snapshot/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // A trace of an account nobody uses: its stream only sends keep-alives.
    let mut tcp = TcpStream::connect(s.http).await.unwrap();
    let body = "{\"jid\": \"nobody@localhost\"}";
    tcp.write_all(format!("POST /api/trace HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes()).await.unwrap();
    let (reply, _) = closed_within(&mut tcp, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let id = reply
        .split("\"id\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .expect("trace id")
        .to_string();
    let mut follow = TcpStream::connect(s.http).await.unwrap();
    follow
        .write_all(
            format!("GET /api/trace/{id}/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    // Four times the idle (and header-read) timeout.
    let (snaps, traced) = tokio::join!(
        stream_for(&mut snap, Duration::from_secs(4)),
        stream_for(&mut follow, Duration::from_secs(4))
    );
    assert!(snaps.contains("text/event-stream"), "{snaps}");
    assert!(
        snaps.matches("event: snapshot").count() >= 3,
        "snapshots stopped: {snaps}"
    );
    assert!(traced.contains("text/event-stream"), "{traced}");
    assert!(traced.contains(": keep-alive"), "{traced}");
}
