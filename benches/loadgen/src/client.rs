//! A lean XMPP client: TCP (optionally from a chosen loopback source
//! address), STARTTLS, SASL, resource binding; then raw stanzas out and
//! scanned elements in (see [`crate::scan`]). Nothing is parsed beyond
//! what a scenario reads.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use crate::error::Error;
use crate::sasl::{Exchange, Mech};
use crate::scan::{self, Frame, Scanner};
use crate::sm::{self, SmCounter};

const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// Bytes asked of the socket per read: enough for a batch of small
/// stanzas, small enough that 50k idle connections stay cheap.
const READ_CHUNK: usize = 4096;

/// Whether the client negotiates TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    None,
    Starttls,
}

/// How every connection of a run logs in.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub addr: SocketAddr,
    pub domain: String,
    pub mech: Mech,
    pub tls: TlsMode,
    /// The resource asked for at bind.
    pub resource: String,
    /// For the whole login (connect to bound).
    pub timeout: Duration,
    /// Largest element accepted from the server.
    pub max_element: usize,
    /// `Some(every)`: enable stream management (XEP-0198) with resume
    /// right after bind, count the stanzas received and acknowledge every
    /// `every` of them (0: only when the server asks), and each `<r/>`.
    pub stream_management: Option<u32>,
}

/// The socket, before or after TLS.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Only while STARTTLS swaps one for the other.
    Gone,
}

fn gone() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost during STARTTLS",
    )
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Io::Gone => Poll::Ready(Err(gone())),
        }
    }
}

/// The next complete top-level element, as a range of `scan`'s buffer.
/// A stream error or the end of the stream is an error.
async fn next_element<R: AsyncRead + Unpin>(
    io: &mut R,
    scan: &mut Scanner,
) -> Result<(usize, usize), Error> {
    loop {
        match scan.next_frame()? {
            Some(Frame::Element(a, b)) => {
                let el = scan.slice(a, b);
                if scan::tag_name(el) == b"stream:error" {
                    return Err(Error::StreamError(stream_condition(el)));
                }
                return Ok((a, b));
            }
            Some(Frame::End) => return Err(Error::Closed("end of stream")),
            Some(Frame::Header(..)) => continue,
            None => {
                if io.read_buf(scan.spare(READ_CHUNK)).await? == 0 {
                    return Err(Error::Closed("connection closed"));
                }
            }
        }
    }
}

/// The defined condition of a `<stream:error>` (its first child's name).
fn stream_condition(el: &[u8]) -> String {
    let inner = el
        .iter()
        .position(|&b| b == b'>')
        .map(|k| &el[k + 1..])
        .unwrap_or_default();
    let name = if inner.first() == Some(&b'<') {
        scan::tag_name(inner)
    } else {
        b"unknown"
    };
    String::from_utf8_lossy(name).into_owned()
}

/// A connected, authenticated, bound client.
pub struct Client {
    /// The socket (public so that a caller can tune it, e.g. its buffers).
    pub io: Io,
    scan: Scanner,
    /// The full JID the server bound.
    pub jid: String,
    /// Stream management's count, once the server said `<enabled/>`.
    sm: Option<SmCounter>,
    /// The stream id `<enabled/>` gave for a resume.
    pub sm_id: Option<String>,
}

impl Client {
    /// Connects, negotiates and binds; the whole within `opts.timeout`.
    pub async fn login(
        opts: &ConnectOptions,
        source: Option<IpAddr>,
        user: &str,
        password: &str,
    ) -> Result<Client, Error> {
        tokio::time::timeout(
            opts.timeout,
            Self::login_inner(opts, source, user, password),
        )
        .await
        .map_err(|_| Error::Timeout("login"))?
    }

    async fn login_inner(
        opts: &ConnectOptions,
        source: Option<IpAddr>,
        user: &str,
        password: &str,
    ) -> Result<Client, Error> {
        let socket = match opts.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(Error::Connect)?;
        if let Some(ip) = source {
            // Many source addresses: one address has only ~28k ports.
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(Error::Connect)?;
        }
        let tcp = socket.connect(opts.addr).await.map_err(Error::Connect)?;
        // Stanzas are small and latency is measured: no Nagle delay.
        tcp.set_nodelay(true)?;
        let mut c = Client {
            io: Io::Plain(tcp),
            scan: Scanner::new(opts.max_element),
            jid: String::new(),
            sm: None,
            sm_id: None,
        };
        let mut features = c.open_stream(&opts.domain).await?;
        if opts.tls == TlsMode::Starttls {
            if !scan::has_child(&features, "starttls") {
                return Err(Error::Tls("the server does not offer STARTTLS".into()));
            }
            c.send(format!("<starttls xmlns='{NS_TLS}'/>").as_bytes())
                .await?;
            let reply = c.next_owned().await?;
            if scan::tag_name(&reply) != b"proceed" {
                return Err(Error::Tls("STARTTLS refused".into()));
            }
            c.start_tls(&opts.domain).await?;
            features = c.open_stream(&opts.domain).await?;
        }
        c.authenticate(&features, opts.mech, user, password).await?;
        let features = c.open_stream(&opts.domain).await?;
        c.bind(&features, &opts.resource).await?;
        if let Some(every) = opts.stream_management {
            c.enable_sm(&features, every).await?;
        }
        Ok(c)
    }

    /// Sends our stream header; returns the server's `<stream:features/>`.
    async fn open_stream(&mut self, domain: &str) -> Result<Vec<u8>, Error> {
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        );
        self.send(header.as_bytes()).await?;
        let features = self.next_owned().await?;
        if scan::tag_name(&features) != b"stream:features" {
            return Err(Error::Protocol(format!(
                "expected stream features, got <{}>",
                String::from_utf8_lossy(scan::tag_name(&features))
            )));
        }
        Ok(features)
    }

    async fn start_tls(&mut self, domain: &str) -> Result<(), Error> {
        // Anything after <proceed/> was sent in the clear: never used.
        self.scan.clear();
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            return Err(Error::Tls("TLS already on".into()));
        };
        let name = rustls::pki_types::ServerName::try_from(domain.to_string())
            .map_err(|e| Error::Tls(format!("server name {domain:?}: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(crate::tls::client_config()?);
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| Error::Tls(e.to_string()))?;
        self.io = Io::Tls(Box::new(tls));
        Ok(())
    }

    async fn authenticate(
        &mut self,
        features: &[u8],
        mech: Mech,
        user: &str,
        password: &str,
    ) -> Result<(), Error> {
        let offered = scan::child_texts(features, "mechanism");
        if !offered.iter().any(|m| *m == mech.name().as_bytes()) {
            let list: Vec<_> = offered.iter().map(|m| String::from_utf8_lossy(m)).collect();
            return Err(Error::Auth(format!(
                "{} not offered (offered: {})",
                mech.name(),
                list.join(" ")
            )));
        }
        let (mut exchange, first) = Exchange::start(mech, user, password);
        self.send(
            format!(
                "<auth xmlns='{NS_SASL}' mechanism='{}'>{}</auth>",
                mech.name(),
                B64.encode(first)
            )
            .as_bytes(),
        )
        .await?;
        loop {
            let el = self.next_owned().await?;
            let data = || {
                let text = scan::text(&el);
                B64.decode(text.trim_ascii())
                    .map_err(|_| Error::Auth("SASL data is not base64".into()))
            };
            match scan::tag_name(&el) {
                b"challenge" => {
                    let response = exchange.respond(&data()?)?;
                    self.send(
                        format!(
                            "<response xmlns='{NS_SASL}'>{}</response>",
                            B64.encode(response)
                        )
                        .as_bytes(),
                    )
                    .await?;
                }
                b"success" => return exchange.finish(&data()?),
                b"failure" => {
                    let inner = scan::first_child_name(&el).unwrap_or_else(|| "failure".into());
                    return Err(Error::Auth(inner));
                }
                other => {
                    return Err(Error::Protocol(format!(
                        "unexpected <{}> during SASL",
                        String::from_utf8_lossy(other)
                    )))
                }
            }
        }
    }

    async fn bind(&mut self, features: &[u8], resource: &str) -> Result<(), Error> {
        if !scan::has_child(features, "bind") {
            return Err(Error::Protocol("no resource binding offered".into()));
        }
        self.send(
            format!(
                "<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>{resource}</resource></bind></iq>"
            )
            .as_bytes(),
        )
        .await?;
        let el = self.reply_to("bind1").await?;
        self.jid = scan::child_text(&el, "jid")
            .map(|j| String::from_utf8_lossy(j).into_owned())
            .filter(|j| !j.is_empty())
            .ok_or_else(|| Error::Protocol("bind result without a JID".into()))?;
        // RFC 3921 sessions: only when the server says they are required.
        if scan::has_child(features, "session") && !scan::has_child(features, "optional") {
            self.send(
                format!("<iq type='set' id='sess1'><session xmlns='{NS_SESSION}'/></iq>")
                    .as_bytes(),
            )
            .await?;
            self.reply_to("sess1").await?;
        }
        Ok(())
    }

    /// `<enable resume='true'/>`, then waits for `<enabled/>` (anything
    /// before it was sent before the server's count started: not counted).
    async fn enable_sm(&mut self, features: &[u8], every: u32) -> Result<(), Error> {
        if !scan::child_attrs(features, "sm", "xmlns")
            .iter()
            .any(|ns| *ns == sm::NS_SM.as_bytes())
        {
            return Err(Error::Protocol(
                "the server does not offer stream management (urn:xmpp:sm:3)".into(),
            ));
        }
        self.send(sm::ENABLE.as_bytes()).await?;
        loop {
            let el = self.next_owned().await?;
            if !sm::is_sm(&el) {
                continue;
            }
            match scan::tag_name(&el) {
                b"enabled" => {
                    self.sm_id =
                        scan::attr(&el, "id").map(|i| String::from_utf8_lossy(i).into_owned());
                    self.sm = Some(SmCounter::new(every));
                    return Ok(());
                }
                b"failed" => {
                    return Err(Error::Protocol(format!(
                        "stream management refused: {}",
                        scan::first_child_name(&el).unwrap_or_else(|| "failed".into())
                    )))
                }
                _ => {}
            }
        }
    }

    /// Sends the stream management ack that is due, if any.
    async fn send_ack_if_due(&mut self, ack: Option<u32>) -> Result<(), Error> {
        if let Some(h) = ack {
            self.send(&sm::ack(h)).await?;
        }
        Ok(())
    }

    /// Waits for the `<iq>` answering `id` (anything else is skipped);
    /// an error reply is an error.
    pub async fn reply_to(&mut self, id: &str) -> Result<Vec<u8>, Error> {
        loop {
            let el = self.next_owned().await?;
            if scan::tag_name(&el) != b"iq" || scan::attr(&el, "id") != Some(id.as_bytes()) {
                continue;
            }
            if scan::attr(&el, "type") == Some(b"result") {
                return Ok(el);
            }
            return Err(Error::Protocol(format!(
                "iq {id} failed: {}",
                scan::error_condition(&el)
            )));
        }
    }

    /// Waits for `n` `<iq>` replies whose id starts with `prefix`, in any
    /// order (pipelined requests); returns how many were results.
    pub async fn collect_replies(&mut self, prefix: &str, n: usize) -> Result<usize, Error> {
        let (mut seen, mut ok) = (0, 0);
        while seen < n {
            let (a, b) = next_element(&mut self.io, &mut self.scan).await?;
            let el = self.scan.slice(a, b);
            let ack = self.sm.as_mut().and_then(|s| s.on_element(el));
            self.send_ack_if_due(ack).await?;
            let el = self.scan.slice(a, b);
            if scan::tag_name(el) != b"iq"
                || !scan::attr(el, "id").is_some_and(|id| id.starts_with(prefix.as_bytes()))
            {
                continue;
            }
            match scan::attr(el, "type") {
                Some(b"result") => ok += 1,
                Some(b"error") => {}
                _ => continue,
            }
            seen += 1;
        }
        Ok(ok)
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next element, copied (negotiation is not the hot path).
    pub async fn next_owned(&mut self) -> Result<Vec<u8>, Error> {
        let (a, b) = next_element(&mut self.io, &mut self.scan).await?;
        let el = self.scan.slice(a, b).to_vec();
        let ack = self.sm.as_mut().and_then(|s| s.on_element(&el));
        self.send_ack_if_due(ack).await?;
        Ok(el)
    }

    /// Separate halves for a reading task and a writing task.
    pub fn into_split(self) -> (Reader, Writer) {
        let (r, w) = tokio::io::split(self.io);
        (
            Reader {
                io: r,
                scan: self.scan,
                sm: self.sm,
                ack_due: None,
            },
            Writer { io: w },
        )
    }

    /// Ends the stream politely and waits (briefly) for the server to
    /// close, so that neither side resets the connection.
    pub async fn close(self) {
        let (reader, writer) = self.into_split();
        writer.close(reader).await;
    }
}

/// The receiving half.
pub struct Reader {
    io: ReadHalf<Io>,
    /// What was received and not yet returned (public: a caller may ask
    /// whether the stream ended inside an element).
    pub scan: Scanner,
    /// Stream management's count (when enabled at login).
    sm: Option<SmCounter>,
    /// The `h` an ack is due for (taken with [`Reader::take_ack`]).
    ack_due: Option<u32>,
}

impl Reader {
    /// The next element; read it with [`Reader::bytes`]. With stream
    /// management on it is counted, and an ack may become due: send
    /// [`Reader::take_ack`]'s bytes on the writer.
    pub async fn next_element(&mut self) -> Result<(usize, usize), Error> {
        let (a, b) = next_element(&mut self.io, &mut self.scan).await?;
        if let Some(sm) = &mut self.sm {
            if let Some(h) = sm.on_element(self.scan.slice(a, b)) {
                self.ack_due = Some(h);
            }
        }
        Ok((a, b))
    }

    /// The `<a h='N'/>` due (stream management on), if any, once.
    pub fn take_ack(&mut self) -> Option<Vec<u8>> {
        self.ack_due.take().map(sm::ack)
    }

    /// Stream management's count of stanzas received, if it is on.
    pub fn sm_h(&self) -> Option<u32> {
        self.sm.as_ref().map(SmCounter::h)
    }

    pub fn bytes(&self, (a, b): (usize, usize)) -> &[u8] {
        self.scan.slice(a, b)
    }

    /// Reads and discards until the connection ends (idle sessions).
    pub async fn drain(mut self) -> Error {
        loop {
            if let Err(e) = self.next_element().await {
                return e;
            }
        }
    }
}

/// The sending half.
pub struct Writer {
    io: WriteHalf<Io>,
}

impl Writer {
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    /// `</stream:stream>` (after a last `<a h/>` with stream management,
    /// so nothing is left unacknowledged), then wait up to 2 s for the
    /// server's end.
    pub async fn close(mut self, mut reader: Reader) {
        let mut end = reader
            .sm
            .as_mut()
            .map(|s| sm::ack(s.acked()))
            .unwrap_or_default();
        end.extend_from_slice(b"</stream:stream>");
        if self.send(&end).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                let mut sink = [0u8; 1024];
                while matches!(reader.io.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        let _ = self.io.shutdown().await;
    }
}
