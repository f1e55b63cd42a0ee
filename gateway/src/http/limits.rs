//! What keeps the HTTP listener from being held open: the header-read
//! timeout (hyper's, on its timer), an idle watchdog per connection, a cap
//! on connections per listener, and accept errors backed off without a
//! warning storm. Its file descriptors are shared with c2s.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Body;
use crate::config::HttpListener;

/// Request line and headers together, at most (431 beyond it).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// One listener's limits (`[[listen.http]]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl From<&HttpListener> for HttpLimits {
    fn from(l: &HttpListener) -> Self {
        HttpLimits {
            max_connections: l.max_connections,
            header_read_timeout: Duration::from_secs(l.header_read_timeout),
            idle_timeout: Duration::from_secs(l.idle_timeout),
        }
    }
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits::from(&HttpListener::default())
    }
}

/// Serves one connection until it ends or the watchdog finds it idle.
///
/// hyper's header-read timeout runs from the moment a request head is
/// awaited: on a new connection, and again each time a kept-alive one goes
/// back to waiting, so it also bounds the wait between requests. The
/// watchdog covers the rest: nothing read or written for `idle_timeout`
/// while no response is streaming (a stalled body, a stuck handler), or a
/// response the client has not read from for `idle_timeout`. A streaming
/// response that is merely quiet (server-sent events) is never cut.
pub async fn serve_connection<I, F, Fut>(io: I, limits: HttpLimits, handler: F)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: io,
        activity: activity.clone(),
    });
    let handler = Arc::new(handler);
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |req| {
        let (handler, act) = (handler.clone(), act.clone());
        async move {
            let resp = handler(req).await;
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, act)))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .serve_connection(io, svc);
    tokio::select! {
        _ = conn => {}
        _ = watchdog(&activity, limits.idle_timeout) => {
            tracing::debug!("http connection idle: closed");
        }
    }
}

/// Returns when the connection has been idle for `idle` (see
/// [`serve_connection`]).
async fn watchdog(a: &Activity, idle: Duration) {
    loop {
        let now = a.now();
        let deadline = if a.responses.load(Ordering::Acquire) > 0 {
            match a.write_blocked_since.load(Ordering::Acquire) {
                NEVER => now + idle.as_millis() as u64,
                since => since + idle.as_millis() as u64,
            }
        } else {
            a.last.load(Ordering::Acquire) + idle.as_millis() as u64
        };
        if deadline <= now {
            return;
        }
        tokio::time::sleep(Duration::from_millis(deadline - now)).await;
    }
}

const NEVER: u64 = u64::MAX;

/// Milliseconds since the connection started, updated by its I/O.
struct Activity {
    start: Instant,
    /// Last time bytes were read or written.
    last: AtomicU64,
    /// Since when a write has been waiting for the client (NEVER: it is not).
    write_blocked_since: AtomicU64,
    /// Response bodies not yet sent in full.
    responses: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(NEVER),
            responses: AtomicUsize::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn moved(&self) {
        self.last.store(self.now(), Ordering::Release);
    }

    fn wrote(&self, res: &Poll<io::Result<usize>>) {
        match res {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.write_blocked_since.store(NEVER, Ordering::Release);
                self.moved();
            }
            Poll::Pending => {
                let _ = self.write_blocked_since.compare_exchange(
                    NEVER,
                    self.now(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
            }
            _ => {}
        }
    }
}

/// The connection's socket, noting each read and write in [`Activity`].
struct Watched<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.moved();
        }
        res
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(&res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(&res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A response body, counted in [`Activity::responses`] until dropped.
pub struct Tracked {
    inner: Body,
    activity: Arc<Activity>,
}

impl Tracked {
    fn new(inner: Body, activity: Arc<Activity>) -> Tracked {
        activity.responses.fetch_add(1, Ordering::AcqRel);
        Tracked { inner, activity }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.activity.responses.fetch_sub(1, Ordering::AcqRel);
        // The wait for the next request starts now.
        self.activity.moved();
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Connections refused over the cap, counted as `limit_hit` at most once a
/// second (with the number since), so that a flood is not a log storm.
pub struct Refusals {
    pending: u64,
    next: tokio::time::Instant,
}

impl Refusals {
    const EVERY: Duration = Duration::from_secs(1);

    pub fn new() -> Refusals {
        Refusals {
            pending: 0,
            next: tokio::time::Instant::now(),
        }
    }

    /// Counts one; returns how many to report now, if it is time.
    pub fn hit(&mut self) -> Option<u64> {
        self.pending += 1;
        (tokio::time::Instant::now() >= self.next).then(|| self.take())
    }

    /// When the ones still pending are due (`None`: there are none).
    pub fn due(&self) -> Option<tokio::time::Instant> {
        (self.pending > 0).then_some(self.next)
    }

    pub fn take(&mut self) -> u64 {
        self.next = tokio::time::Instant::now() + Self::EVERY;
        std::mem::take(&mut self.pending)
    }
}

impl Default for Refusals {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits(idle_ms: u64) -> HttpLimits {
        HttpLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(idle_ms),
        }
    }

    /// A body that sends a chunk, says nothing for `quiet`, then ends.
    fn slow_body(quiet: Duration, size: usize) -> Body {
        use http_body_util::BodyExt;
        let s = futures_util::stream::unfold(0u8, move |step| async move {
            match step {
                0 => Some((Ok(Frame::data(Bytes::from(vec![b'a'; size]))), 1)),
                1 => {
                    tokio::time::sleep(quiet).await;
                    Some((Ok(Frame::data(Bytes::from_static(b"end"))), 2))
                }
                _ => None,
            }
        });
        http_body_util::StreamBody::new(s).boxed()
    }

    async fn read_until_closed(c: &mut tokio::io::DuplexStream, within: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        tokio::time::timeout(within, c.read_to_end(&mut out))
            .await
            .expect("closed in time")
            .ok();
        out
    }

    #[tokio::test]
    async fn idle_connection_is_closed_by_the_watchdog() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let t0 = Instant::now();
        tokio::spawn(serve_connection(server, limits(300), |_req| async {
            super::super::text(hyper::StatusCode::OK, "ok")
        }));
        // A complete request, then nothing more.
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let out = read_until_closed(&mut client, Duration::from_secs(5)).await;
        assert!(out.starts_with(b"HTTP/1.1 200"), "{out:?}");
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_quiet_streaming_response_is_not_cut() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve_connection(server, limits(200), |_req| async {
            let mut r = Response::new(slow_body(Duration::from_millis(800), 10));
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            r
        }));
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let out = read_until_closed(&mut client, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("end"), "cut before the end: {text:?}");
    }

    #[tokio::test]
    async fn a_response_the_client_does_not_read_is_cut() {
        // A small pipe and a big body: the write blocks on the client.
        let (mut client, server) = tokio::io::duplex(1024);
        let done = Arc::new(tokio::sync::Notify::new());
        let notified = done.clone();
        tokio::spawn(async move {
            serve_connection(server, limits(300), |_req| async {
                Response::new(slow_body(Duration::from_secs(60), 1 << 20))
            })
            .await;
            notified.notify_one();
        });
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), done.notified())
            .await
            .expect("the blocked connection is closed");
    }

    #[tokio::test]
    async fn refusals_are_reported_at_most_once_a_second() {
        let mut r = Refusals::new();
        assert_eq!(r.hit(), Some(1), "the first one at once");
        assert_eq!(r.hit(), None);
        assert_eq!(r.hit(), None);
        assert!(r.due().is_some());
        assert_eq!(r.take(), 2);
        assert!(r.due().is_none());
    }
}
