//! What a client session runs over: frames in, bytes out, the stream's
//! opening and closing markup, and (for TCP) the upgrade to TLS. TCP with
//! the XML framer ([`TcpTransport`]) is the first; RFC 7395 WebSocket
//! framing (`<open/>`/`<close/>`, one stanza per message) is another
//! implementation of the same trait.

use std::future::Future;
use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Conn;
use crate::xml::{Frame, Framer, XmlError};

pub trait Transport: Send {
    /// A bounded name for labels (`tcp`, `websocket`).
    fn name(&self) -> &'static str;
    fn is_tls(&self) -> bool;

    /// Reads what is available, at most `max` bytes, into the frame
    /// decoder: the byte count, 0 at the end of the stream. Cancel-safe.
    fn read(&mut self, max: usize) -> impl Future<Output = io::Result<usize>> + Send;
    /// The next complete frame, if one is buffered.
    fn next_frame(&mut self) -> Result<Option<Frame>, XmlError>;
    /// Bytes of an element not yet complete.
    fn buffered(&self) -> usize;
    /// Bytes the peer sent that are not read yet (shutdown reads them).
    fn pending_bytes(&self) -> usize;
    /// A stream restart (after TLS or SASL): decoding starts afresh.
    fn restart(&mut self);
    /// The largest element accepted from now on.
    fn set_max_element_bytes(&mut self, n: usize);

    /// Writes some of `bytes`: how many (0 means the peer is gone).
    fn write(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<usize>> + Send;
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes our sending side.
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads and discards (the lingering close after a stream error).
    fn discard(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;

    /// Our stream header for a stream `id` from domain `from`.
    fn stream_open(&self, id: &str, from: &str) -> String;
    /// The markup that ends our stream.
    fn stream_close(&self) -> &'static str;

    /// Upgrades the stream to TLS in place (STARTTLS); a transport that
    /// cannot (already TLS, or WebSocket over HTTPS) refuses.
    fn starttls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> impl Future<Output = io::Result<()>> + Send {
        let _ = acceptor;
        async { Err(io::Error::from(io::ErrorKind::Unsupported)) }
    }

    /// Writes all of `bytes` and flushes.
    fn write_all(&mut self, bytes: &[u8]) -> impl Future<Output = io::Result<()>> + Send {
        async move {
            let mut at = 0;
            while at < bytes.len() {
                match self.write(&bytes[at..]).await? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => at += n,
                }
            }
            self.flush().await
        }
    }
}

/// XMPP over TCP (RFC 6120), plain or TLS, with the incremental framer.
pub struct TcpTransport {
    pub(super) conn: Conn,
    framer: Framer,
    /// Read buffer of a TLS stream (plain TCP reads need none).
    tls_buf: Vec<u8>,
}

impl TcpTransport {
    pub fn new(conn: Conn, framer: Framer) -> TcpTransport {
        TcpTransport {
            conn,
            framer,
            tls_buf: Vec::new(),
        }
    }
}

impl Transport for TcpTransport {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn is_tls(&self) -> bool {
        self.conn.is_tls()
    }

    async fn read(&mut self, max: usize) -> io::Result<usize> {
        self.conn
            .read_at_most(&mut self.framer, &mut self.tls_buf, max)
            .await
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, XmlError> {
        self.framer.next_frame()
    }

    fn buffered(&self) -> usize {
        self.framer.buffered()
    }

    fn pending_bytes(&self) -> usize {
        self.conn.pending_bytes()
    }

    fn restart(&mut self) {
        self.framer.reset();
    }

    fn set_max_element_bytes(&mut self, n: usize) {
        self.framer.set_max_element_bytes(n);
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.conn.write(bytes).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.conn.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.shutdown().await
    }

    async fn discard(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.conn.read(buf).await
    }

    fn stream_open(&self, id: &str, from: &str) -> String {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' id='{}' from='{}' \
             version='1.0' xml:lang='en'>",
            id,
            crate::xml::escape_attr(from)
        )
    }

    fn stream_close(&self) -> &'static str {
        "</stream:stream>"
    }

    /// Swaps the TCP stream for its TLS session; anything the client
    /// pipelined in the clear is dropped first (STARTTLS command injection).
    fn starttls(
        &mut self,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> impl Future<Output = io::Result<()>> + Send {
        self.framer.reset();
        let tcp = match std::mem::replace(&mut self.conn, Conn::Upgrading) {
            Conn::Plain(tcp) => Ok(tcp),
            other => {
                self.conn = other;
                Err(io::Error::other("not a plain TCP stream"))
            }
        };
        let accept = tcp.map(|tcp| acceptor.accept(tcp));
        async move {
            let tls = accept?.await?;
            self.conn = Conn::Tls(Box::new(tls));
            Ok(())
        }
    }
}
