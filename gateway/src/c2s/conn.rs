//! The client's byte stream: plain TCP, or TLS after STARTTLS / on a direct
//! TLS listener (XEP-0368).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::xml::Framer;

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the TCP stream is handed to the TLS handshake.
    Upgrading,
}

fn upgrading() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "TLS upgrade in progress")
}

/// What one read takes at most.
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// Plain TCP reads land here and go straight into the connection's
    /// framer, so an idle connection holds no read buffer of its own.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into_boxed_slice());
}

impl Conn {
    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    /// Bytes the kernel holds for us, not yet read (TLS: still encrypted).
    pub fn pending_bytes(&self) -> usize {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Conn::Plain(s) => s.as_raw_fd(),
            Conn::Tls(s) => s.get_ref().0.as_raw_fd(),
            Conn::Upgrading => return 0,
        };
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int into `n`; the fd is open (we own it).
        let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
        if r == 0 {
            n.max(0) as usize
        } else {
            0
        }
    }

    /// Reads what is available into `framer`: the byte count, 0 at the end
    /// of the stream. Cancel-safe (bytes are handed over without an await
    /// in between). TLS reads go through `tls_buf`, sized on first use.
    pub async fn read_into(
        &mut self,
        framer: &mut Framer,
        tls_buf: &mut Vec<u8>,
    ) -> io::Result<usize> {
        self.read_at_most(framer, tls_buf, usize::MAX).await
    }

    /// [`Conn::read_into`], taking at most `max` bytes (a shaper's budget).
    pub async fn read_at_most(
        &mut self,
        framer: &mut Framer,
        tls_buf: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<usize> {
        let max = max.clamp(1, READ_CHUNK);
        if let Conn::Plain(tcp) = self {
            loop {
                tcp.readable().await?;
                let read = SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    let r = tcp.try_read(&mut s[..max]);
                    if let Ok(n) = r {
                        framer.push(&s[..n]);
                    }
                    r
                });
                match read {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    other => return other,
                }
            }
        }
        if tls_buf.is_empty() {
            // rustls keeps the record it decrypts; this only takes plaintext.
            tls_buf.resize(4096, 0);
        }
        let n = self.read(&mut tls_buf[..max.min(4096)]).await?;
        framer.push(&tls_buf[..n]);
        Ok(n)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}
