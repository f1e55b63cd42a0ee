//! Certificate reload without a restart: the files are replaced, SIGHUP (or
//! the admin function) reloads them, new handshakes get the new certificate
//! while open connections go on; broken files keep the old certificate and
//! the error names the listener and the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{Backend, Options, Server};
use crate::http::request;
use crate::raw::HEADER;

/// A self-signed certificate for `localhost` with `cn` as its common name,
/// valid for `days`; returns (certificate PEM, key PEM, notAfter in Unix
/// seconds).
fn make_pair(cn: &str, days: i64) -> (String, String, i64) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("cert params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    // Whole seconds, as the certificate stores them.
    let not_after = (now + time::Duration::days(days))
        .replace_nanosecond(0)
        .expect("whole seconds");
    params.not_after = not_after;
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-signed");
    (cert.pem(), key.serialize_pem(), not_after.unix_timestamp())
}

struct Files {
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(dir: &Path, name: &str) -> Files {
        Files {
            cert: dir.join(format!("{name}-cert.pem")),
            key: dir.join(format!("{name}-key.pem")),
        }
    }

    /// Writes a pair; returns its notAfter.
    fn write(&self, cn: &str, days: i64) -> i64 {
        let (cert, key, not_after) = make_pair(cn, days);
        std::fs::write(&self.cert, cert).expect("write cert");
        std::fs::write(&self.key, key).expect("write key");
        not_after
    }

    fn toml(&self) -> String {
        format!(
            "tls.certfile = \"{}\"\ntls.keyfile = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A client connection and the common name of the certificate it was served.
struct Conn {
    io: Box<dyn Io>,
    buf: String,
    cn: String,
}

impl Conn {
    async fn send(&mut self, s: &str) {
        self.io.write_all(s.as_bytes()).await.expect("send");
        self.io.flush().await.expect("flush");
    }

    async fn expect(&mut self, needle: &str) -> String {
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
            assert!(n > 0, "closed waiting for {needle:?}; got {:?}", self.buf);
            self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }

    /// The TLS handshake over `io`; records the served certificate's CN.
    async fn handshake(io: Box<dyn Io>) -> Conn {
        let recorder = Arc::new(crate::raw::AcceptAny::default());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let tls = connector.connect(name, io).await.expect("TLS handshake");
        let der = recorder
            .0
            .lock()
            .expect("recorder")
            .clone()
            .expect("a certificate");
        Conn {
            io: Box::new(tls),
            buf: String::new(),
            cn: common_name(&der),
        }
    }

    /// STARTTLS on a fresh connection; the stream is open again after it.
    async fn starttls(addr: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut plain = Conn {
            io: Box::new(tcp),
            buf: String::new(),
            cn: String::new(),
        };
        plain.send(HEADER).await;
        plain.expect("</stream:features>").await;
        plain
            .send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        plain.expect("<proceed").await;
        plain.expect("/>").await;
        let mut c = Conn::handshake(plain.io).await;
        c.send(HEADER).await;
        c.expect("</stream:features>").await;
        c
    }

    /// Direct TLS (XEP-0368); the stream is open after it.
    async fn direct(addr: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let mut c = Conn::handshake(Box::new(tcp)).await;
        c.send(HEADER).await;
        c.expect("</stream:features>").await;
        c
    }

    /// PLAIN login and bind on the open stream.
    async fn login(&mut self, user: &str, password: &str) {
        use base64::Engine;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await;
        let reply = self.expect("/>").await;
        assert!(reply.contains("<success"), "login failed: {reply}");
        self.send(HEADER).await;
        self.expect("</stream:features>").await;
        self.send(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>r</resource></bind></iq>",
        )
        .await;
        self.expect("</iq>").await;
    }

    /// A round trip on the established session.
    async fn ping(&mut self, id: &str) {
        self.send(&format!(
            "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await;
        let reply = self.expect(id).await;
        assert!(reply.contains("<iq"), "{reply}");
    }
}

fn common_name(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("served certificate");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default();
    cn.to_string()
}

fn sighup(server: &Server) {
    let ok = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -HUP");
}

/// Waits until the server log holds `needle` `n` times.
async fn log_count(server: &Server, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = server.log();
        if log.matches(needle).count() >= n {
            return log;
        }
        assert!(Instant::now() < deadline, "no {needle:?} x{n} in:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the expiry gauge of `listener` to be `want`.
async fn expiry_is(server: &Server, listener: &str, want: i64) {
    let series = format!("tls_certificate_expiry_timestamp_seconds{{listener=\"{listener}\"}} ");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = request(server.http, "GET", "/metrics", None, None).await;
        let got = r
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if got == Some(want as f64) {
            return;
        }
        assert!(Instant::now() < deadline, "{series}= {got:?}, want {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The process as operators run it: STARTTLS with files, SIGHUP to reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_files() {
    let certs = tempfile::tempdir().expect("temp dir");
    let files = Files::new(certs.path(), "c2s");
    let first_expiry = files.write("reload-one", 30);
    let mut server = Server::start(Options {
        c2s_extra: files.toml(),
        ..Options::new(Backend::Sqlite)
    });
    server.register("alice@localhost", "secret");
    let listener = format!("c2s_{}", server.c2s.port());

    let mut open = Conn::starttls(server.c2s).await;
    assert_eq!(open.cn, "reload-one");
    open.login("alice", "secret").await;
    expiry_is(&server, &listener, first_expiry).await;

    let second_expiry = files.write("reload-two", 60);
    sighup(&server);
    log_count(&server, "SIGHUP: certificates reloaded", 1).await;
    let fresh = Conn::starttls(server.c2s).await;
    assert_eq!(
        fresh.cn, "reload-two",
        "a new handshake gets the new certificate"
    );
    open.ping("after-reload").await;
    assert_eq!(open.cn, "reload-one");
    expiry_is(&server, &listener, second_expiry).await;

    // A broken certificate file: the old certificate stays, the log says why.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").expect("write");
    sighup(&server);
    let log = log_count(&server, "SIGHUP: certificate reload failed", 1).await;
    let line = log
        .lines()
        .find(|l| l.contains("SIGHUP: certificate reload failed"))
        .unwrap_or_default();
    assert!(
        line.contains(&listener) && line.contains(&files.cert.display().to_string()),
        "the error names the listener and the file: {line}"
    );
    let after_failure = Conn::starttls(server.c2s).await;
    assert_eq!(after_failure.cn, "reload-two", "the old certificate kept");
    open.ping("after-failure").await;
    expiry_is(&server, &listener, second_expiry).await;
    server.assert_alive();
}

/// Two listeners reloaded through the admin function: what it reports, and
/// a failure on one that keeps its old certificate while the other reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_reports_each_listener() {
    use osprey::admin::{server::reload_certificates, AdminError};

    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (Files::new(dir.path(), "a"), Files::new(dir.path(), "b"));
    a.write("a-one", 30);
    b.write("b-one", 30);
    let text = format!(
        r#"[general]
hosts = ["localhost"]
data_dir = "{dir}"
[[listen.c2s]]
address = "127.0.0.1"
port = 0
tls.mode = "starttls"
{a}
[[listen.c2s]]
address = "127.0.0.1"
port = 0
tls.mode = "direct"
{b}
"#,
        dir = dir.path().display(),
        a = a.toml(),
        b = b.toml(),
    );
    let config =
        osprey::config::Config::parse(&text, &dir.path().join("osprey.toml")).expect("config");
    let running = osprey::server::start(config, vec![]).await.expect("start");
    let addr = |i: usize| -> SocketAddr { running.listeners.c2s[i].parse().expect("address") };
    let (starttls, direct) = (addr(0), addr(1));
    let names = [
        format!("c2s_{}", starttls.port()),
        format!("c2s_{}", direct.port()),
    ];
    let ctx = running.ctx.clone();

    // The same files: reloaded, not changed.
    let same = reload_certificates(&ctx).await.expect("reload");
    assert_eq!(same.len(), 2);
    assert!(same.iter().all(|c| !c.changed), "{same:?}");

    let a_expiry = a.write("a-two", 90);
    let b_expiry = b.write("b-two", 120);
    assert_eq!(Conn::direct(direct).await.cn, "b-one");
    let certs = reload_certificates(&ctx).await.expect("reload");
    for (c, (name, (files, expiry))) in certs
        .iter()
        .zip(names.iter().zip([(&a, a_expiry), (&b, b_expiry)]))
    {
        assert_eq!(&c.listener, name);
        assert_eq!(c.certfile, files.cert.display().to_string());
        assert!(c.changed, "{c:?}");
        assert_eq!(c.not_after, Some(expiry));
        let rfc = time::OffsetDateTime::from_unix_timestamp(expiry)
            .expect("timestamp")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("rfc3339");
        assert_eq!(c.not_after_rfc3339.as_deref(), Some(rfc.as_str()));
    }
    assert_eq!(Conn::starttls(starttls).await.cn, "a-two");
    assert_eq!(Conn::direct(direct).await.cn, "b-two");

    // a: a key that does not go with its certificate; b: a new pair.
    let (_, other_key, _) = make_pair("stray", 30);
    std::fs::write(&a.key, other_key).expect("write key");
    b.write("b-three", 30);
    let err = reload_certificates(&ctx)
        .await
        .expect_err("a mismatched key");
    let AdminError::BadRequest(message) = &err else {
        panic!("expected bad_request, got {err:?}");
    };
    assert!(
        message.contains(&names[0])
            && message.contains(&a.cert.display().to_string())
            && message.contains(&a.key.display().to_string()),
        "names the listener and its files: {message}"
    );
    assert!(message.contains("does not match"), "{message}");
    assert!(
        !message.contains(&format!("{}:", names[1])),
        "only the failed listener as failed: {message}"
    );
    assert_eq!(Conn::starttls(starttls).await.cn, "a-two", "old one kept");
    assert_eq!(
        Conn::direct(direct).await.cn,
        "b-three",
        "the other reloaded"
    );

    // A missing certificate file.
    std::fs::remove_file(&a.cert).expect("remove");
    let err = reload_certificates(&ctx).await.expect_err("missing file");
    assert!(
        err.to_string().contains(&a.cert.display().to_string()),
        "{err}"
    );
    assert_eq!(Conn::starttls(starttls).await.cn, "a-two");

    // Fixed again: the next reload takes it.
    a.write("a-four", 30);
    reload_certificates(&ctx).await.expect("reload");
    assert_eq!(Conn::starttls(starttls).await.cn, "a-four");
    running.shutdown().await;
}
