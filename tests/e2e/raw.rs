//! A raw XML-over-TCP client for protocol-level tests: it sends exactly the
//! bytes a test gives it (including malformed ones) and reads what comes
//! back. Real-client behaviour is tested with slixmpp (see `slixmpp.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub const HEADER: &str =
    "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Raw {
    io: Box<dyn Io>,
    /// Everything received and not yet consumed by `expect`.
    pub buf: String,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        Raw {
            io: Box::new(tcp),
            buf: String::new(),
        }
    }

    pub async fn send(&mut self, s: &str) {
        self.io.write_all(s.as_bytes()).await.expect("send");
        self.io.flush().await.expect("flush");
    }

    /// Sends, ignoring errors (the server may already have closed).
    pub async fn try_send(&mut self, s: &[u8]) -> std::io::Result<()> {
        self.io.write_all(s).await?;
        self.io.flush().await
    }

    /// Reads until `needle` has been received; returns everything up to and
    /// including it, and keeps the rest.
    pub async fn expect(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = self.buf.find(needle) {
                let end = i + needle.len();
                let out = self.buf[..end].to_string();
                self.buf.drain(..end);
                return out;
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout_at(deadline, self.io.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}; got {:?}", self.buf))
                .expect("read");
            assert!(
                n > 0,
                "closed while waiting for {needle:?}; got {:?}",
                self.buf
            );
            self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// Reads until the server closes the connection; returns all of it.
    pub async fn read_to_close(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
                Err(_) => panic!("server did not close; got {:?}", self.buf),
                Ok(Ok(0)) | Ok(Err(_)) => return std::mem::take(&mut self.buf),
                Ok(Ok(n)) => self.buf.push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
    }

    /// Nothing arrives within `d` (the connection stays open and quiet).
    pub async fn expect_silence(&mut self, d: Duration) {
        let mut chunk = [0u8; 1024];
        if let Ok(Ok(n)) = tokio::time::timeout(d, self.io.read(&mut chunk)).await {
            panic!(
                "expected silence, got {:?}",
                String::from_utf8_lossy(&chunk[..n])
            );
        }
    }

    /// Opens a stream and returns the features.
    pub async fn open(&mut self) -> String {
        self.send(HEADER).await;
        self.expect("</stream:features>").await
    }

    /// STARTTLS with a client that trusts any certificate (the server's is
    /// self-signed); returns the new stream's features.
    pub async fn starttls(mut self) -> Raw {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        self.expect("<proceed").await;
        self.expect("/>").await;
        self.tls_upgrade().await
    }

    /// A direct TLS connection (XEP-0368).
    pub async fn connect_tls(addr: SocketAddr) -> Raw {
        Raw::connect(addr).await.tls_upgrade().await
    }

    /// The TLS handshake alone (after `<proceed/>` was read).
    pub async fn tls_upgrade(self) -> Raw {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        // The inner stream must be the TCP stream itself.
        let tcp: Box<dyn Io> = self.io;
        let tls = connector.connect(name, tcp).await.expect("TLS handshake");
        Raw {
            io: Box::new(tls),
            buf: String::new(),
        }
    }

    /// PLAIN login + bind on an open stream; returns the bound full JID.
    pub async fn login_plain(&mut self, user: &str, password: &str, resource: &str) -> String {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await;
        let reply = self.expect("/>").await;
        assert!(reply.contains("<success"), "login failed: {reply}");
        self.open().await;
        self.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{resource}</resource></bind></iq>"
        ))
        .await;
        let bound = self.expect("</iq>").await;
        let start = bound.find("<jid>").expect("bound jid") + 5;
        let end = bound.find("</jid>").expect("bound jid");
        bound[start..end].to_string()
    }

    /// A fresh plaintext connection, logged in and bound.
    pub async fn login(addr: SocketAddr, user: &str, password: &str, resource: &str) -> Raw {
        let mut c = Raw::connect(addr).await;
        c.open().await;
        c.login_plain(user, password, resource).await;
        c
    }
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
