//! Client-to-server connections: one task per connection.
//!
//! The stream moves through explicit phases (MongooseIM's `mongoose_c2s`):
//! `WaitStream → Features → (STARTTLS) → Sasl → WaitStream → Bind →
//! Established → Closing`. `negotiate` runs everything up to a bound (or
//! resumed) session; `established` runs the session over the [`Transport`]
//! (`select!` over its input, the mailbox and shutdown); `dispatch` takes
//! each stanza of a bound session to the hooks and the router.

mod conn;
pub(crate) mod dispatch;
mod established;
mod negotiate;
mod sasl_flow;
mod shaper;
pub mod throttle;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use conn::Conn;
pub use transport::{TcpTransport, Transport};

use crate::config::{C2sListener, TlsMode};
use osprey_instrument::Meta;

use crate::errors::{SessionEnd, StreamCondition, StreamError};
use crate::events as ev;
use crate::server::Ctx;
use crate::tls::ReloadableIdentity;
use crate::xml::{Frame, Framer};

/// How long an authenticated client may stay silent during negotiation
/// (resource binding); the whole negotiation has its own deadline.
const NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Before authentication, an element may arrive slower than
/// `min_read_rate_pre_auth` for this long before the rate is enforced.
const SLOW_GRACE: Duration = Duration::from_secs(2);
/// After a stream error: how long to keep draining the peer's input so that
/// the error is not lost to a TCP reset (lingering close).
const LINGER: Duration = Duration::from_secs(2);

/// A c2s listener as its connections see it.
pub struct ListenerCtx {
    /// A bounded name for logs and metric labels, e.g. `c2s_5222`.
    pub name: String,
    pub config: C2sListener,
    /// Shared with `Ctx::certificates`, which reloads it.
    pub tls: Option<Arc<ReloadableIdentity>>,
    pub events: crate::instr::ListenerEvents,
}

/// Where a stream is in its negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    WaitStream,
    Features,
    Sasl,
    Bind,
    Established,
    Closing,
}

impl Phase {
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::WaitStream => "wait_stream",
            Phase::Features => "features",
            Phase::Sasl => "sasl",
            Phase::Bind => "bind",
            Phase::Established => "established",
            Phase::Closing => "closing",
        }
    }
}

/// One client connection: a transport, and the session it runs once bound.
pub(crate) struct Connection<T: Transport> {
    ctx: Arc<Ctx>,
    lst: Arc<ListenerCtx>,
    t: T,
    peer: SocketAddr,
    phase: Phase,
    stream_id: String,
    /// The domain this stream is for (the header's `to`).
    host: Option<String>,
    /// Our stream header went out (errors must follow a header).
    header_sent: bool,
    /// The authenticated localpart, once SASL succeeded.
    user: Option<String>,
    sasl_failures: u32,
    /// Failed logins on this stream, counted once per guess by the throttle.
    sasl_guesses: throttle::StreamFailures,
    /// The stream's host's pre-resolved event handles (after the header).
    host_ev: Option<Arc<crate::instr::HostEvents>>,
    /// The connection's OTLP span (none unless traced).
    session_span: tracing::Span,
    /// The session id, given at accept (records name the task before bind).
    id: u64,
    /// Live traces following this session.
    traces: crate::live::SessionTraces,
    /// Negotiation steps taken before the user is known (kept only while
    /// some trace runs; recorded if the login turns out to be traced).
    pending: Vec<(&'static str, String, Duration)>,
    /// Since when the framer holds part of an element (pre-auth read rate).
    partial_since: Option<std::time::Instant>,
    /// This connection's place under the connection caps.
    _ticket: crate::server::Admitted,
}

/// Serves one accepted TCP connection to its end.
pub async fn serve(
    ctx: Arc<Ctx>,
    lst: Arc<ListenerCtx>,
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: crate::server::Admitted,
) {
    let _ = tcp.set_nodelay(true);
    lst.events.accepted.count();
    lst.events.open.emit(&[("open", 1.0)], &Meta::NONE);
    let reason = serve_inner(ctx.clone(), lst.clone(), tcp, peer, ticket).await;
    debug_assert!(
        crate::instr::bounded::CONNECTION_CLOSED.contains(&reason),
        "close reason {reason} missing from instr::bounded::CONNECTION_CLOSED"
    );
    lst.events.open.emit(&[("open", -1.0)], &Meta::NONE);
    ctx.instr
        .count(&ev::CONNECTION_CLOSED, &[&lst.name, reason]);
}

/// Returns why the connection ended (a bounded label).
async fn serve_inner(
    ctx: Arc<Ctx>,
    lst: Arc<ListenerCtx>,
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: crate::server::Admitted,
) -> &'static str {
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(lst.config.negotiation_timeout);
    let conn = if lst.config.tls.mode == TlsMode::Direct {
        let Some(tls) = lst.tls.as_ref() else {
            return "no_certificate";
        };
        // Read once: a reload during the handshake does not affect it.
        let identity = tls.current();
        let handshake = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + TLS_HANDSHAKE_TIMEOUT),
            identity.acceptor.accept(tcp),
        );
        match handshake.await {
            Ok(Ok(s)) => {
                ctx.instr
                    .count(&ev::TLS_ESTABLISHED, &[&lst.name, "direct"]);
                Conn::Tls(Box::new(s))
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "direct TLS handshake failed");
                if let Some(r) = &lst.events.rejected_tls {
                    r.count();
                }
                return "tls_handshake";
            }
            Err(_) => {
                ctx.instr
                    .count(&ev::CONNECTION_REJECTED, &[&lst.name, "tls_timeout"]);
                return "tls_handshake";
            }
        }
    } else {
        Conn::Plain(tcp)
    };
    let max_pre_auth = lst.config.max_stanza_size_pre_auth;
    let xml_limits = lst.config.xml;
    let id = ctx.sessions.next_id();
    let session_span = crate::otel::session_span(&lst.name, lst.config.tls.mode == TlsMode::Direct);
    let mut c = Connection {
        ctx,
        lst,
        t: TcpTransport::new(conn, Framer::with_limits(max_pre_auth, xml_limits)),
        peer,
        phase: Phase::WaitStream,
        stream_id: new_stream_id(),
        host: None,
        header_sent: false,
        user: None,
        sasl_failures: 0,
        sasl_guesses: Default::default(),
        host_ev: None,
        session_span,
        id,
        traces: Default::default(),
        pending: Vec::new(),
        partial_since: None,
        _ticket: ticket,
    };
    let shutdown = c.ctx.shutdown.clone();
    // Negotiation, the session loop and closing are boxed one by one: the
    // connection's task then holds only the stage it is in, not the sum
    // of the largest (what an idle session costs in memory).
    let negotiated = tokio::select! {
        r = Box::pin(c.negotiate()) => r,
        _ = shutdown.cancelled() => Err(StreamError::new(StreamCondition::SystemShutdown).into()),
        _ = tokio::time::sleep_until(deadline) => Err(c.negotiation_overdue()),
    };
    let end = match negotiated {
        Ok(session) => Box::pin(c.run(session)).await,
        Err(end) => end,
    };
    let reason = end.reason();
    Box::pin(c.close(end)).await;
    reason
}

/// A connection over a cap: a stream error (when the listener speaks
/// plaintext first) and the socket closed, counted, without a session task.
pub fn refuse(
    ctx: &Arc<Ctx>,
    lst: &Arc<ListenerCtx>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    why: crate::server::Refused,
) {
    ctx.instr
        .count(&ev::CONNECTION_REJECTED, &[&lst.name, why.reason()]);
    ctx.instr.limit(why.reason());
    tracing::debug!(%peer, reason = why.reason(), "connection refused");
    if lst.config.tls.mode == TlsMode::Direct {
        return;
    }
    let condition = match why {
        crate::server::Refused::PerAddress => StreamCondition::PolicyViolation,
        crate::server::Refused::Total => StreamCondition::ResourceConstraint,
    };
    let xml = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' id='{}' version='1.0'>{}</stream:stream>",
        new_stream_id(),
        StreamError::with_text(condition, why.text()).to_xml()
    );
    // One small packet into an empty socket buffer: it does not wait on
    // the peer. A short lingering close keeps the error from being lost
    // to a reset, for a bounded number of refused connections at a time.
    let _ = tcp.try_write(xml.as_bytes());
    static LINGERING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    use std::sync::atomic::Ordering::Relaxed;
    if LINGERING.fetch_add(1, Relaxed) >= 64 {
        LINGERING.fetch_sub(1, Relaxed);
        return;
    }
    tokio::spawn(async move {
        let _ = tcp.shutdown().await;
        let drain = async {
            let mut sink = [0u8; 512];
            let mut total = 0usize;
            while total < 16 * 1024 {
                match tcp.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
        LINGERING.fetch_sub(1, Relaxed);
    });
}

fn new_stream_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

impl<T: Transport> Connection<T> {
    /// The next frame, reading from the socket as needed (negotiation only:
    /// the established loop reads inside its `select!`).
    async fn next_frame(&mut self) -> Result<Frame, SessionEnd> {
        loop {
            if let Some(frame) = self.t.next_frame().map_err(|e| self.xml_error(e))? {
                return Ok(frame);
            }
            let pre_auth = self.user.is_none();
            let idle = if pre_auth {
                Duration::from_secs(self.lst.config.pre_auth_idle_timeout)
            } else {
                NEGOTIATION_TIMEOUT
            };
            let read = self.t.read(usize::MAX);
            let n = match tokio::time::timeout(idle, read).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(StreamError::with_text(
                        StreamCondition::ConnectionTimeout,
                        format!("nothing received for {} s", idle.as_secs()),
                    )
                    .into())
                }
            };
            if n == 0 {
                return Err(SessionEnd::PeerClosed);
            }
            self.bytes_in(n);
            if pre_auth {
                self.check_read_rate()?;
            }
        }
    }

    /// Before authentication an element must keep arriving at the
    /// listener's minimum rate: one byte every few seconds is a way to hold
    /// a connection open for free (slowloris).
    fn check_read_rate(&mut self) -> Result<(), SessionEnd> {
        let held = self.t.buffered();
        if held == 0 {
            self.partial_since = None;
            return Ok(());
        }
        let since = *self
            .partial_since
            .get_or_insert_with(std::time::Instant::now);
        let took = since.elapsed();
        let min = self.lst.config.min_read_rate_pre_auth as f64;
        if took > SLOW_GRACE && (held as f64) < min * took.as_secs_f64() {
            self.ctx.instr.limit("slow_sender");
            return Err(StreamError::with_text(
                StreamCondition::ConnectionTimeout,
                format!(
                    "too slow: {held} bytes in {:.1} s, under {} bytes/s before authentication",
                    took.as_secs_f64(),
                    self.lst.config.min_read_rate_pre_auth
                ),
            )
            .into());
        }
        Ok(())
    }

    /// The negotiation deadline passed before a resource was bound.
    fn negotiation_overdue(&self) -> SessionEnd {
        self.ctx.instr.limit("negotiation_timeout");
        StreamError::with_text(
            StreamCondition::ConnectionTimeout,
            format!(
                "no session bound within {} s",
                self.lst.config.negotiation_timeout
            ),
        )
        .into()
    }

    fn transport(&self) -> usize {
        usize::from(self.t.is_tls())
    }

    fn bytes_in(&self, n: usize) {
        self.lst.events.data_in[self.transport()].emit(&[("bytes", n as f64)], &Meta::NONE);
    }

    fn bytes_out(&self, n: usize) {
        self.lst.events.data_out[self.transport()].emit(&[("bytes", n as f64)], &Meta::NONE);
    }

    /// An element arrived (`kind`: index into [`crate::instr::KINDS`]).
    fn element_in(&self, kind: usize, bytes: usize) {
        if let Some(h) = &self.host_ev {
            h.element_in[kind].emit(&[("count", 1.0), ("bytes", bytes as f64)], &Meta::NONE);
        }
    }

    fn element_out(&self, kind: usize, bytes: usize) {
        if let Some(h) = &self.host_ev {
            h.element_out[kind].emit(&[("count", 1.0), ("bytes", bytes as f64)], &Meta::NONE);
        }
    }

    /// Writes and flushes (negotiation replies).
    async fn send(&mut self, xml: &str) -> Result<(), SessionEnd> {
        self.t.write_all(xml.as_bytes()).await?;
        self.bytes_out(xml.len());
        self.element_out(4, xml.len());
        Ok(())
    }

    /// Our stream header, answering the client's.
    fn stream_header(&self) -> String {
        let from = self
            .host
            .as_deref()
            .or_else(|| self.ctx.config.general.hosts.first().map(String::as_str))
            .unwrap_or("localhost");
        self.t.stream_open(&self.stream_id, from)
    }

    /// Ends the stream: the error (after a header if none went out yet),
    /// the closing tag, then a lingering close.
    async fn close(&mut self, end: SessionEnd) {
        let end = match end {
            SessionEnd::TakenOver => {
                StreamError::with_text(StreamCondition::Conflict, "resumed on another connection")
                    .into()
            }
            other => other,
        };
        self.phase = Phase::Closing;
        let mut out = String::new();
        match &end {
            SessionEnd::Stream(err) => {
                if !self.header_sent {
                    out.push_str(&self.stream_header());
                }
                out.push_str(&err.to_xml());
                out.push_str(self.t.stream_close());
                {
                    let text = err.text.as_deref().unwrap_or("");
                    let (id, user) = (self.id, self.user.as_deref().unwrap_or(""));
                    let who: [(&'static str, &dyn std::fmt::Display); 4] = [
                        ("address", &self.peer),
                        ("session", &id),
                        ("user", &user),
                        ("text", &text),
                    ];
                    self.ctx.instr.emit_meta(
                        &ev::STREAM_ERROR,
                        &["c2s", err.condition.wire_name()],
                        &[("count", 1.0)],
                        &osprey_instrument::Meta::new(&who),
                    );
                }
                crate::otel::fail(&self.session_span, err.condition.wire_name());
                self.traces.record(
                    self.id,
                    osprey_instrument::live::Kind::Error,
                    "stream_error",
                    err.condition.wire_name(),
                    None,
                );
            }
            SessionEnd::PeerClosed => out.push_str(self.t.stream_close()),
            SessionEnd::Io(_) | SessionEnd::Dropped | SessionEnd::TakenOver => return,
        }
        let write = async {
            self.t.write_all(out.as_bytes()).await?;
            self.t.shutdown().await
        };
        if tokio::time::timeout(Duration::from_secs(1), write)
            .await
            .is_err()
        {
            return;
        }
        self.bytes_out(out.len());
        // Lingering close: drain what the peer still sends, so the kernel
        // does not answer it with a reset that destroys our error.
        let drain = async {
            let mut sink = [0u8; 1024];
            let mut total = 0usize;
            while total < 64 * 1024 {
                match self.t.discard(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }
}

impl<T: Transport> Connection<T> {
    /// A negotiation step finished: recorded in the traces following this
    /// login (kept aside until the user is known).
    fn step(&mut self, name: &'static str, data: String, started: std::time::Instant) {
        if !crate::live::active() {
            return;
        }
        let took = started.elapsed();
        let (Some(user), Some(host)) = (&self.user, &self.host) else {
            if self.pending.len() < 64 {
                self.pending.push((name, data, took));
            }
            return;
        };
        let jid = format!("{user}@{host}");
        self.traces.refresh(&self.ctx.live, &jid, self.id);
        let pending = std::mem::take(&mut self.pending);
        for (n, d, t) in pending.into_iter().chain([(name, data, took)]) {
            self.traces
                .record(self.id, osprey_instrument::live::Kind::Call, n, &d, None);
            self.traces.record(
                self.id,
                osprey_instrument::live::Kind::Return,
                n,
                "",
                Some(t),
            );
        }
    }

    /// A framer error becomes the stream error of the same name.
    fn xml_error(&self, e: crate::xml::XmlError) -> SessionEnd {
        if let Some(limit) = e.limit_label() {
            self.ctx.instr.limit(limit);
        }
        let condition = StreamCondition::from_wire(e.condition());
        SessionEnd::Stream(StreamError::with_text(condition, e.to_string()))
    }
}
