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
        .with_custom_certificate_verifier(Arc::new(AcceptAny::default()))
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

    /// A fresh STARTTLS connection, logged in (PLAIN) and bound.
    pub async fn login_starttls(
        addr: SocketAddr,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Raw {
        let mut c = Raw::connect(addr).await;
        c.open().await;
        let mut c = c.starttls().await;
        c.open().await;
        c.login_plain(user, password, resource).await;
        c
    }

    /// A fresh STARTTLS connection whose PLAIN login (alice, a wrong
    /// password) has just failed; the stream stays open.
    pub async fn failed_login_starttls(addr: SocketAddr) -> Raw {
        let mut c = Raw::connect(addr).await;
        c.open().await;
        let mut c = c.starttls().await;
        c.open().await;
        c.send(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>",
        )
        .await;
        c.expect("</failure>").await;
        c
    }

    /// A fresh plaintext connection, logged in and bound.
    pub async fn login(addr: SocketAddr, user: &str, password: &str, resource: &str) -> Raw {
        let mut c = Raw::connect(addr).await;
        c.open().await;
        c.login_plain(user, password, resource).await;
        c
    }
}

/// Trusts any certificate (the test servers' are self-signed) and keeps
/// the last one a server sent (which certificate was served).
#[derive(Debug, Default)]
pub struct AcceptAny(pub std::sync::Mutex<Option<Vec<u8>>>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(end_entity.to_vec());
        }
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

// --- Structured reading: whole elements, parsed ------------------------------
//
// `expect` matches bytes; the helpers below frame the stream into top-level
// elements and parse each one (namespaces resolved), so tests can look at
// attributes and children whatever their order or quoting.

pub const NS_CLIENT: &str = "jabber:client";
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// How long the structured reads wait (as `expect` does).
const READ_LIMIT: Duration = Duration::from_secs(10);

/// One element of the stream, parsed. A top-level `</stream:stream>` is
/// represented by an element named `stream-end` (see [`Xml::is_stream_end`]).
#[derive(Debug, Clone, Default)]
pub struct Xml {
    /// Local name.
    pub name: String,
    /// Namespace URI ("" for none).
    pub ns: String,
    /// Attributes by local name (`xml:lang` is `lang`).
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Xml>,
    /// The direct text content, concatenated.
    pub text: String,
    /// The element as received (top-level elements only).
    pub raw: String,
}

impl Xml {
    /// Parses one top-level element as the server sent it (in the
    /// `jabber:client` default namespace, with the `stream` prefix bound).
    pub fn parse(raw: &str) -> Xml {
        if raw.starts_with("</stream:stream") {
            return Xml {
                name: "stream-end".into(),
                ns: NS_STREAMS.into(),
                raw: raw.into(),
                ..Xml::default()
            };
        }
        let doc_text = format!(
            "<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>{raw}</stream:stream>"
        );
        let doc = roxmltree::Document::parse(&doc_text)
            .unwrap_or_else(|e| panic!("the server sent XML that does not parse ({e}): {raw}"));
        let el = doc
            .root_element()
            .first_element_child()
            .unwrap_or_else(|| panic!("no element in {raw:?}"));
        let mut x = Xml::from_node(el);
        x.raw = raw.to_string();
        x
    }

    /// Every complete top-level element in `s` (e.g. what `read_to_close`
    /// returned), parsed.
    pub fn all(s: &str) -> Vec<Xml> {
        element_ranges(s)
            .into_iter()
            .map(|r| Xml::parse(&s[r]))
            .collect()
    }

    fn from_node(n: roxmltree::Node<'_, '_>) -> Xml {
        let mut x = Xml {
            name: n.tag_name().name().to_string(),
            ns: n.tag_name().namespace().unwrap_or("").to_string(),
            attrs: n
                .attributes()
                .map(|a| (a.name().to_string(), a.value().to_string()))
                .collect(),
            ..Xml::default()
        };
        for c in n.children() {
            if c.is_element() {
                x.children.push(Xml::from_node(c));
            } else if c.is_text() {
                x.text.push_str(c.text().unwrap_or(""));
            }
        }
        x
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// The first child element `name` in `ns`.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Xml> {
        self.children.iter().find(|c| c.is(name, ns))
    }

    /// All child elements `name` in `ns`.
    pub fn children_named<'a>(
        &'a self,
        name: &'a str,
        ns: &'a str,
    ) -> impl Iterator<Item = &'a Xml> {
        self.children.iter().filter(move |c| c.is(name, ns))
    }

    /// Any descendant (or this element) `name` in `ns`.
    pub fn find(&self, name: &str, ns: &str) -> Option<&Xml> {
        if self.is(name, ns) {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name, ns))
    }

    pub fn is_stream_end(&self) -> bool {
        self.name == "stream-end" && self.ns == NS_STREAMS
    }

    /// A `jabber:client` message, presence or iq.
    pub fn is_stanza(&self) -> bool {
        self.ns == NS_CLIENT && matches!(self.name.as_str(), "message" | "presence" | "iq")
    }

    pub fn is_message(&self) -> bool {
        self.is("message", NS_CLIENT)
    }

    pub fn is_presence(&self) -> bool {
        self.is("presence", NS_CLIENT)
    }

    pub fn is_iq(&self) -> bool {
        self.is("iq", NS_CLIENT)
    }

    pub fn from(&self) -> &str {
        self.attr("from").unwrap_or("")
    }

    pub fn to(&self) -> &str {
        self.attr("to").unwrap_or("")
    }

    pub fn id(&self) -> &str {
        self.attr("id").unwrap_or("")
    }

    /// The `type` attribute ("" when absent).
    pub fn typ(&self) -> &str {
        self.attr("type").unwrap_or("")
    }

    /// The text of the `jabber:client` `<body/>`, if any.
    pub fn body(&self) -> Option<&str> {
        self.child("body", NS_CLIENT).map(|b| b.text.as_str())
    }

    /// The presence's `<show/>` ("" when absent).
    pub fn show(&self) -> &str {
        self.child("show", NS_CLIENT)
            .map(|b| b.text.as_str())
            .unwrap_or("")
    }

    /// The defined condition of a stanza error (`<error><COND xmlns=stanzas/>`).
    pub fn error_condition(&self) -> Option<&str> {
        self.child("error", NS_CLIENT)?
            .children
            .iter()
            .find(|c| c.ns == NS_STANZA_ERRORS && c.name != "text")
            .map(|c| c.name.as_str())
    }

    /// A stanza error answer's defined condition and text (asserts it is
    /// an error).
    pub fn refusal(&self) -> (String, String) {
        assert_eq!(self.typ(), "error", "{}", self.raw);
        let text = self
            .child("error", NS_CLIENT)
            .and_then(|e| e.find("text", NS_STANZA_ERRORS))
            .map(|t| t.text.clone())
            .unwrap_or_default();
        (self.error_condition().unwrap_or("").to_string(), text)
    }

    /// The text of a stream error (`<stream:error><text/>`), or "".
    pub fn stream_error_text(&self) -> String {
        self.child("text", NS_STREAM_ERRORS)
            .map(|t| t.text.clone())
            .unwrap_or_default()
    }

    /// The stream error a closed connection's output ended with.
    pub fn stream_error_in(out: &str) -> Xml {
        Xml::all(out)
            .into_iter()
            .find(|x| x.stream_error_condition().is_some())
            .unwrap_or_else(|| panic!("no stream error in {out:?}"))
    }

    /// The defined condition of a stream error (`<stream:error>`).
    pub fn stream_error_condition(&self) -> Option<&str> {
        if !self.is("error", NS_STREAMS) {
            return None;
        }
        self.children
            .iter()
            .find(|c| c.ns == NS_STREAM_ERRORS && c.name != "text")
            .map(|c| c.name.as_str())
    }
}

/// Byte ranges of the complete top-level elements in `s`; the XML
/// declaration, stream headers and whitespace between are skipped, and a
/// `</stream:stream>` counts as an element. Stops at the first incomplete one.
pub fn element_ranges(s: &str) -> Vec<std::ops::Range<usize>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let rest = &s[i..];
        if b[i] != b'<' {
            // Stray text at the top level: skip to the next tag.
            match rest.find('<') {
                Some(j) => {
                    i += j;
                    continue;
                }
                None => break,
            }
        }
        if rest.starts_with("<?") {
            match rest.find("?>") {
                Some(j) => i += j + 2,
                None => break,
            }
            continue;
        }
        if rest.starts_with("<stream:stream") {
            match tag_end(b, i) {
                Some(e) => i = e,
                None => break,
            }
            continue;
        }
        if rest.starts_with("</stream:stream") {
            match rest.find('>') {
                Some(j) => {
                    out.push(i..i + j + 1);
                    i += j + 1;
                }
                None => break,
            }
            continue;
        }
        match element_end(b, i) {
            Some(e) => {
                out.push(i..e);
                i = e;
            }
            None => break,
        }
    }
    out
}

/// The index just past the `>` of the tag that starts at `i` (quotes aware).
fn tag_end(b: &[u8], i: usize) -> Option<usize> {
    let mut quote = None;
    for (k, &c) in b.iter().enumerate().skip(i) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'>' => return Some(k + 1),
            None => {}
        }
    }
    None
}

fn find_from(b: &[u8], i: usize, needle: &[u8]) -> Option<usize> {
    b[i..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| i + p)
}

/// The index just past the element that starts at `start`.
fn element_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    loop {
        while i < b.len() && b[i] != b'<' {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let rest = &b[i..];
        if rest.starts_with(b"<![CDATA[") {
            i = find_from(b, i, b"]]>")? + 3;
            continue;
        }
        if rest.starts_with(b"<!--") {
            i = find_from(b, i, b"-->")? + 3;
            continue;
        }
        if rest.starts_with(b"<?") {
            i = find_from(b, i, b"?>")? + 2;
            continue;
        }
        let end = tag_end(b, i)?;
        if rest.get(1) == Some(&b'/') {
            depth = depth.saturating_sub(1);
        } else if b[end - 2] != b'/' {
            depth += 1;
        }
        i = end;
        if depth == 0 {
            return Some(end);
        }
    }
}

static PING_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Raw {
    /// A plaintext connection whose drop resets it (SO_LINGER 0): the server
    /// sees the TCP connection die without `</stream:stream>`.
    pub async fn connect_abortable(addr: SocketAddr) -> Raw {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_zero_linger().expect("SO_LINGER 0");
        Raw {
            io: Box::new(tcp),
            buf: String::new(),
        }
    }

    /// Like [`Raw::login`] on a connection whose drop resets it.
    pub async fn login_abortable(
        addr: SocketAddr,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Raw {
        let mut c = Raw::connect_abortable(addr).await;
        c.open().await;
        c.login_plain(user, password, resource).await;
        c
    }

    /// On a fresh connection: stream header, SASL PLAIN, stream restart.
    /// Returns the post-authentication stream features (nothing is bound).
    pub async fn authenticate(&mut self, user: &str, password: &str) -> Xml {
        self.send(HEADER).await;
        let features = self
            .take("stream features", |x| x.is("features", NS_STREAMS))
            .await;
        assert!(
            features
                .find("mechanism", "urn:ietf:params:xml:ns:xmpp-sasl")
                .is_some(),
            "no SASL mechanisms offered: {}",
            features.raw
        );
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await;
        let reply = self.next_el().await;
        assert!(reply.name == "success", "login failed: {}", reply.raw);
        self.send(HEADER).await;
        self.take("post-auth stream features", |x| {
            x.is("features", NS_STREAMS)
        })
        .await
    }

    /// Binds `resource` (after [`Raw::authenticate`]); returns the full JID.
    pub async fn bind(&mut self, resource: &str) -> String {
        self.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{resource}</resource></bind></iq>"
        ))
        .await;
        let r = self
            .take("bind result", |x| x.is_iq() && x.id() == "bind1")
            .await;
        assert_eq!(r.typ(), "result", "bind failed: {}", r.raw);
        r.find("jid", "urn:ietf:params:xml:ns:xmpp-bind")
            .map(|j| j.text.clone())
            .unwrap_or_else(|| panic!("no bound JID: {}", r.raw))
    }

    /// Reads more into `buf`; false on end of stream. Panics at `deadline`
    /// only through the caller (returns Err on timeout).
    async fn fill_until(&mut self, deadline: tokio::time::Instant) -> Result<bool, ()> {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
            Err(_) => Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => Ok(false),
            Ok(Ok(n)) => {
                self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
                Ok(true)
            }
        }
    }

    /// The first element already received that matches `pred`, removed;
    /// None without waiting.
    pub fn take_buffered_now(&mut self, pred: impl Fn(&Xml) -> bool) -> Option<Xml> {
        self.take_buffered(&pred)
    }

    /// Like [`Raw::take_within`], but a closed connection is `Err` (with
    /// what it had buffered matching nothing), not a panic.
    pub async fn take_or_closed(
        &mut self,
        d: Duration,
        pred: impl Fn(&Xml) -> bool,
    ) -> Result<Option<Xml>, ()> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(x) = self.take_buffered(&pred) {
                return Ok(Some(x));
            }
            match self.fill_until(deadline).await {
                Err(()) => return Ok(None),
                Ok(true) => {}
                Ok(false) => return self.take_buffered(&pred).map(Some).ok_or(()),
            }
        }
    }

    /// Removes and returns the first buffered element matching `pred`,
    /// leaving the others buffered in order.
    fn take_buffered(&mut self, pred: &dyn Fn(&Xml) -> bool) -> Option<Xml> {
        for r in element_ranges(&self.buf) {
            let x = Xml::parse(&self.buf[r.clone()]);
            if pred(&x) {
                self.buf.replace_range(r, "");
                return Some(x);
            }
        }
        None
    }

    /// The buffered complete elements, parsed (not consumed).
    pub fn buffered(&self) -> Vec<Xml> {
        Xml::all(&self.buf)
    }

    /// The first element (received or still to come within `d`) that
    /// matches `pred`, removed from the stream; the elements it skips stay
    /// buffered, in order, for later reads. None when `d` runs out; panics
    /// if the connection closes first.
    pub async fn take_within(&mut self, d: Duration, pred: impl Fn(&Xml) -> bool) -> Option<Xml> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            if let Some(x) = self.take_buffered(&pred) {
                return Some(x);
            }
            match self.fill_until(deadline).await {
                Err(()) => return None,
                Ok(true) => {}
                Ok(false) => {
                    if let Some(x) = self.take_buffered(&pred) {
                        return Some(x);
                    }
                    panic!("connection closed; buffered: {:?}", self.buf);
                }
            }
        }
    }

    /// Like [`Raw::take_within`] with the usual 10 s limit; panics with
    /// `what` and everything buffered when nothing matches.
    pub async fn take(&mut self, what: &str, pred: impl Fn(&Xml) -> bool) -> Xml {
        match self.take_within(READ_LIMIT, pred).await {
            Some(x) => x,
            None => panic!(
                "timed out waiting for {what}; buffered instead: {:?}",
                self.buffered().iter().map(|x| &x.raw).collect::<Vec<_>>()
            ),
        }
    }

    /// The next element of the stream, whatever it is.
    pub async fn next_el(&mut self) -> Xml {
        self.take("any element", |_| true).await
    }

    /// Waits `d`, then fails if anything received so far matches `pred`
    /// (nothing is consumed).
    pub async fn absent(&mut self, d: Duration, what: &str, pred: impl Fn(&Xml) -> bool) {
        let deadline = tokio::time::Instant::now() + d;
        while let Ok(true) = self.fill_until(deadline).await {}
        if let Some(x) = self.buffered().into_iter().find(|x| pred(x)) {
            panic!("unexpected {what}: {}", x.raw);
        }
    }

    /// Drops every complete element buffered so far; returns them.
    pub fn discard_buffered(&mut self) -> Vec<Xml> {
        let all = self.buffered();
        if let Some(last) = element_ranges(&self.buf).last() {
            self.buf.drain(..last.end);
        }
        all
    }

    /// Sends an IQ (`stanza`, whose id is `id`) and returns its result or
    /// error; other elements stay buffered.
    pub async fn iq(&mut self, id: &str, stanza: &str) -> Xml {
        self.send(stanza).await;
        self.take(&format!("the answer to iq {id}"), |x| {
            x.is_iq() && x.id() == id && matches!(x.typ(), "result" | "error")
        })
        .await
    }

    /// A ping round trip (the server has handled everything sent before),
    /// then a short quiet spell; everything received meanwhile is dropped.
    pub async fn settle(&mut self) -> Vec<Xml> {
        let n = PING_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("settle{n}");
        let r = self
            .iq(
                &id,
                &format!(
                    "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
                ),
            )
            .await;
        assert_eq!(r.typ(), "result", "{}", r.raw);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(250);
        while let Ok(true) = self.fill_until(deadline).await {}
        self.discard_buffered()
    }

    /// The server's disco#info features.
    pub async fn disco_features(&mut self) -> Vec<String> {
        let r = self
            .iq(
                "disco-features",
                &format!(
                    "<iq type='get' id='disco-features' to='localhost'><query xmlns='{NS_DISCO_INFO}'/></iq>"
                ),
            )
            .await;
        assert_eq!(r.typ(), "result", "{}", r.raw);
        let q = r
            .child("query", NS_DISCO_INFO)
            .unwrap_or_else(|| panic!("no disco#info query: {}", r.raw));
        q.children_named("feature", NS_DISCO_INFO)
            .filter_map(|f| f.attr("var").map(str::to_string))
            .collect()
    }
}

/// Both users subscribe to each other's presence (RFC 6121 §3.1), each
/// approving the other's request; `a` and `b` are logged in as the bare JIDs
/// `a_bare` and `b_bare`. Everything received on the way is dropped.
pub async fn subscribe_both(a: &mut Raw, a_bare: &str, b: &mut Raw, b_bare: &str) {
    subscribe_one(a, a_bare, b, b_bare).await;
    subscribe_one(b, b_bare, a, a_bare).await;
    a.settle().await;
    b.settle().await;
}

/// `from` subscribes to `to`'s presence and `to` approves.
async fn subscribe_one(from: &mut Raw, from_bare: &str, to: &mut Raw, to_bare: &str) {
    from.send(&format!("<presence to='{to_bare}' type='subscribe'/>"))
        .await;
    to.take(&format!("{from_bare}'s subscription request"), |x| {
        x.is_presence() && x.typ() == "subscribe" && x.from() == from_bare
    })
    .await;
    to.send(&format!("<presence to='{from_bare}' type='subscribed'/>"))
        .await;
    from.take(&format!("{to_bare}'s approval"), |x| {
        x.is_presence() && x.typ() == "subscribed" && bare(x.from()) == to_bare
    })
    .await;
}

/// The bare part of a JID.
pub fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}
