//! Hostile connections, a few at a time, to 127.0.0.1 only. Each one does
//! one bad thing and expects the server to end the stream with a stream
//! error; the outcome is counted by kind:
//!
//! - `trickle`: opens a stream, then sends one byte every `trickle_every`;
//! - `nest`: before authentication, 4000 nested `<a>` never closed;
//! - `nest-stanza`: after authentication, an IQ 4000 elements deep;
//! - `attrs`: after authentication, an IQ with 10,000 attributes;
//! - `xmlns`: after authentication, an IQ with 10,000 `xmlns:pN` declarations;
//! - `charref`: before authentication, `&#xD800;` (not a character);
//! - `oversize`: after authentication, a 300 KiB message;
//! - `badpass`: wrong passwords on one stream until the server gives up.
//!
//! The post-authentication kinds log in as the account after the
//! sessions' (`Config::attack_user`), without presence, from 127.0.1.2;
//! `badpass` tries `Config::badpass_user` from 127.0.1.3: the server's
//! per-address login throttling and connection caps never touch the
//! sessions' own addresses (127.0.0.x).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osprey_loadgen::client::{Client, ConnectOptions};
use osprey_loadgen::scan::{self, Frame, Scanner};
use osprey_loadgen::Error;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, sleep_until, timeout_at, Instant};

use crate::session::{Phase, Shared};

const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// After the server answered an attack stanza instead of closing: how long
/// to wait for a stream error anyway before calling it accepted.
const ACCEPT_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Trickle,
    Nest,
    NestStanza,
    Attrs,
    Xmlns,
    Charref,
    Oversize,
    Badpass,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Trickle,
        Kind::Nest,
        Kind::NestStanza,
        Kind::Attrs,
        Kind::Xmlns,
        Kind::Charref,
        Kind::Oversize,
        Kind::Badpass,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Trickle => "trickle",
            Kind::Nest => "nest",
            Kind::NestStanza => "nest-stanza",
            Kind::Attrs => "attrs",
            Kind::Xmlns => "xmlns",
            Kind::Charref => "charref",
            Kind::Oversize => "oversize",
            Kind::Badpass => "badpass",
        }
    }
}

/// How one attack connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server sent a stream error (its condition): what is expected.
    StreamError(String),
    /// The connection ended without a stream error.
    ClosedWithoutError(String),
    /// The server answered and went on as if nothing were wrong.
    Accepted,
    /// Still open when the attack's time was up.
    NotClosed,
    /// The attack could not be made (connect or login failed).
    Failed(String),
}

/// Per kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindStats {
    pub made: u64,
    pub closed_with_error: u64,
    pub closed_without_error: u64,
    pub accepted: u64,
    pub not_closed: u64,
    pub failed: u64,
    /// Stream error conditions and other endings, with counts.
    pub endings: BTreeMap<String, u64>,
}

#[derive(Default)]
pub struct Stats {
    pub made: AtomicU64,
    pub closed_with_error: AtomicU64,
    by_kind: Mutex<BTreeMap<&'static str, KindStats>>,
}

impl Stats {
    fn start(&self, kind: Kind) {
        self.made.fetch_add(1, Relaxed);
        if let Ok(mut m) = self.by_kind.lock() {
            m.entry(kind.name()).or_default().made += 1;
        }
    }

    pub fn record(&self, kind: Kind, outcome: &Outcome) {
        if matches!(outcome, Outcome::StreamError(_)) {
            self.closed_with_error.fetch_add(1, Relaxed);
        }
        let Ok(mut m) = self.by_kind.lock() else {
            return;
        };
        let k = m.entry(kind.name()).or_default();
        let ending = match outcome {
            Outcome::StreamError(c) => {
                k.closed_with_error += 1;
                c.clone()
            }
            Outcome::ClosedWithoutError(why) => {
                k.closed_without_error += 1;
                format!("closed without stream error ({why})")
            }
            Outcome::Accepted => {
                k.accepted += 1;
                "accepted".into()
            }
            Outcome::NotClosed => {
                k.not_closed += 1;
                "still open at its time limit".into()
            }
            Outcome::Failed(why) => {
                k.failed += 1;
                format!("not made: {why}")
            }
        };
        if k.endings.len() < 10 || k.endings.contains_key(&ending) {
            *k.endings.entry(ending).or_insert(0) += 1;
        }
    }

    pub fn by_kind(&self) -> BTreeMap<&'static str, KindStats> {
        self.by_kind.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Source addresses: attacks, and wrong passwords (throttled apart).
const ATTACK_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 2));
const BADPASS_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 3));

/// Attacker `k`: one connection after another, cycling over the kinds,
/// until the run phase ends or `end`.
pub async fn attacker(sh: Arc<Shared>, k: usize, end: Instant) {
    let kinds = &sh.cfg.attack_kinds;
    let mut phase = sh.phase.subscribe();
    let mut i = k;
    while sh.phase() == Phase::Run && !sh.aborted() && Instant::now() < end {
        let kind = kinds[i % kinds.len()];
        i += 1;
        let deadline = end.min(Instant::now() + sh.cfg.attack_max);
        sh.attacks.start(kind);
        let outcome = timeout_at(
            deadline + Duration::from_secs(5),
            one(&sh, kind, k, deadline),
        )
        .await
        .unwrap_or(Outcome::NotClosed);
        sh.attacks.record(kind, &outcome);
        tokio::select! {
            _ = sleep(sh.cfg.attack_pause) => {}
            _ = crate::session::reached(&mut phase, |p| *p != Phase::Run) => {}
        }
    }
}

async fn one(sh: &Shared, kind: Kind, k: usize, deadline: Instant) -> Outcome {
    let domain = &sh.cfg.domain;
    match kind {
        Kind::Trickle => match Raw::open(sh.opts.addr, ATTACK_SOURCE, domain).await {
            Ok(mut raw) => raw.trickle(sh.cfg.trickle_every, deadline).await,
            Err(o) => o,
        },
        Kind::Nest => pre_auth(sh, &"<a>".repeat(4000), None, deadline).await,
        Kind::Charref => {
            let auth = format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'>&#xD800;</auth>");
            pre_auth(sh, &auth, Some(ACCEPT_WAIT), deadline).await
        }
        Kind::Badpass => match Raw::open(sh.opts.addr, BADPASS_SOURCE, domain).await {
            Ok(mut raw) => raw.bad_passwords(&sh.cfg.badpass_user(), deadline).await,
            Err(o) => o,
        },
        Kind::NestStanza => {
            let payload = format!(
                "<iq type='get' id='nest' to='{domain}'>{}{}</iq>",
                "<a>".repeat(4000),
                "</a>".repeat(4000)
            );
            post_auth(sh, k, &payload, deadline).await
        }
        Kind::Attrs => {
            let attrs: String = (0..10_000).map(|i| format!(" a{i}='x'")).collect();
            let payload = format!(
                "<iq type='get' id='attrs' to='{domain}'{attrs}><ping xmlns='urn:xmpp:ping'/></iq>"
            );
            post_auth(sh, k, &payload, deadline).await
        }
        Kind::Xmlns => {
            let decls: String = (0..10_000).map(|i| format!(" xmlns:p{i}='u'")).collect();
            let payload = format!(
                "<iq type='get' id='xmlns' to='{domain}'{decls}><ping xmlns='urn:xmpp:ping'/></iq>"
            );
            post_auth(sh, k, &payload, deadline).await
        }
        Kind::Oversize => {
            let payload = format!(
                "<message type='chat' id='big' to='{}@{domain}'><body>{}</body></message>",
                sh.cfg.attack_user(),
                "x".repeat(300 * 1024)
            );
            post_auth(sh, k, &payload, deadline).await
        }
    }
}

/// Opens a stream, sends `payload` before authenticating, and waits for
/// the server to end it (`accept_wait`: the payload is complete, so an
/// answer without a stream error means it was accepted).
async fn pre_auth(
    sh: &Shared,
    payload: &str,
    accept_wait: Option<Duration>,
    deadline: Instant,
) -> Outcome {
    let mut raw = match Raw::open(sh.opts.addr, ATTACK_SOURCE, &sh.cfg.domain).await {
        Ok(r) => r,
        Err(o) => return o,
    };
    // A write error means the server already closed: read why.
    let _ = raw.tcp.write_all(payload.as_bytes()).await;
    raw.wait_end(deadline, accept_wait).await
}

/// Logs in as the attack account and sends `payload`.
async fn post_auth(sh: &Shared, k: usize, payload: &str, deadline: Instant) -> Outcome {
    let opts = ConnectOptions {
        resource: format!("attack{k}"),
        ..sh.opts.clone()
    };
    let user = sh.cfg.attack_user();
    let login = Client::login(&opts, Some(ATTACK_SOURCE), &user, &sh.cfg.password);
    let mut c = match timeout_at(deadline, login).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Outcome::Failed(format!("login: {}", e.kind())),
        Err(_) => return Outcome::Failed("login: timeout".into()),
    };
    let _ = timeout_at(deadline, c.send(payload.as_bytes())).await;
    let mut answered: Option<Instant> = None;
    loop {
        let until = answered.map_or(deadline, |t| deadline.min(t + ACCEPT_WAIT));
        match timeout_at(until, c.next_owned()).await {
            Ok(Ok(_)) => {
                answered.get_or_insert_with(Instant::now);
            }
            Ok(Err(e)) => return ending(e),
            Err(_) if answered.is_some() => {
                c.close().await;
                return Outcome::Accepted;
            }
            Err(_) => return Outcome::NotClosed,
        }
    }
}

fn ending(e: Error) -> Outcome {
    match e {
        Error::StreamError(c) => Outcome::StreamError(c),
        other => Outcome::ClosedWithoutError(other.kind()),
    }
}

/// A bare TCP connection with a frame scanner: for what a well-behaved
/// client would never send.
struct Raw {
    tcp: TcpStream,
    scan: Scanner,
}

impl Raw {
    /// Connects from `source` and opens a stream (header sent, features read).
    async fn open(addr: SocketAddr, source: IpAddr, domain: &str) -> Result<Raw, Outcome> {
        let failed =
            |what: &str, e: std::io::Error| Outcome::Failed(format!("{what}: {}", e.kind()));
        let socket = TcpSocket::new_v4().map_err(|e| failed("socket", e))?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| failed("bind", e))?;
        let tcp = match tokio::time::timeout(Duration::from_secs(10), socket.connect(addr)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(failed("connect", e)),
            Err(_) => return Err(Outcome::Failed("connect: timeout".into())),
        };
        let _ = tcp.set_nodelay(true);
        let mut raw = Raw {
            tcp,
            scan: Scanner::new(1 << 20),
        };
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        );
        raw.tcp
            .write_all(header.as_bytes())
            .await
            .map_err(|e| failed("write", e))?;
        let until = Instant::now() + Duration::from_secs(10);
        match timeout_at(until, raw.element()).await {
            Ok(Ok(el)) if scan::tag_name(&el) == b"stream:features" => Ok(raw),
            Ok(Ok(_)) => Err(Outcome::Failed("no stream features".into())),
            Ok(Err(e)) => Err(ending(e)),
            Err(_) => Err(Outcome::Failed("no stream features: timeout".into())),
        }
    }

    /// The next top-level element; a stream error, the stream's end or the
    /// connection's is an error.
    async fn element(&mut self) -> Result<Vec<u8>, Error> {
        loop {
            match self.scan.next_frame()? {
                Some(Frame::Element(a, b)) => {
                    let el = self.scan.slice(a, b).to_vec();
                    if scan::tag_name(&el) == b"stream:error" {
                        return Err(Error::StreamError(
                            scan::first_child_name(&el).unwrap_or_else(|| "unknown".into()),
                        ));
                    }
                    return Ok(el);
                }
                Some(Frame::End) => return Err(Error::Closed("end of stream")),
                Some(Frame::Header(..)) => continue,
                None => {
                    if self.tcp.read_buf(self.scan.spare(4096)).await? == 0 {
                        return Err(Error::Closed("connection closed"));
                    }
                }
            }
        }
    }

    /// Reads until the server ends the stream, or `deadline`; with
    /// `accept_wait`, an answer followed by that much silence is "accepted".
    async fn wait_end(&mut self, deadline: Instant, accept_wait: Option<Duration>) -> Outcome {
        let mut answered: Option<Instant> = None;
        loop {
            let until = match (answered, accept_wait) {
                (Some(t), Some(w)) => deadline.min(t + w),
                _ => deadline,
            };
            match timeout_at(until, self.element()).await {
                Ok(Ok(_)) => {
                    answered.get_or_insert_with(Instant::now);
                }
                Ok(Err(e)) => return ending(e),
                Err(_) if answered.is_some() && accept_wait.is_some() => return Outcome::Accepted,
                Err(_) => return Outcome::NotClosed,
            }
        }
    }

    /// One byte of a never-ending `<auth>` every `every`.
    async fn trickle(&mut self, every: Duration, deadline: Instant) -> Outcome {
        let head = format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'>");
        let mut bytes = head.into_bytes().into_iter().chain(std::iter::repeat(b'A'));
        let mut next = Instant::now();
        loop {
            tokio::select! {
                r = self.element() => match r {
                    Ok(_) => continue,
                    Err(e) => return ending(e),
                },
                _ = sleep_until(next) => {
                    next += every;
                    let b = bytes.next().unwrap_or(b'A');
                    if self.tcp.write_all(&[b]).await.is_err() {
                        // Closed: what remains to read says how.
                        return match timeout_at(Instant::now() + Duration::from_secs(2), self.element()).await {
                            Ok(Err(e)) => ending(e),
                            _ => Outcome::ClosedWithoutError("write failed".into()),
                        };
                    }
                }
                _ = sleep_until(deadline) => return Outcome::NotClosed,
            }
        }
    }

    /// PLAIN with a wrong password, again and again on the same stream.
    async fn bad_passwords(&mut self, user: &str, deadline: Instant) -> Outcome {
        use base64::Engine;
        let creds =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0not-the-password"));
        let auth = format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{creds}</auth>");
        for _ in 0..20 {
            if self.tcp.write_all(auth.as_bytes()).await.is_err() {
                return match timeout_at(Instant::now() + Duration::from_secs(2), self.element())
                    .await
                {
                    Ok(Err(e)) => ending(e),
                    _ => Outcome::ClosedWithoutError("write failed".into()),
                };
            }
            match timeout_at(deadline, self.element()).await {
                Ok(Ok(el)) if scan::tag_name(&el) == b"failure" => continue,
                Ok(Ok(el)) if scan::tag_name(&el) == b"success" => {
                    return Outcome::Failed("a wrong password was accepted".into())
                }
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return ending(e),
                Err(_) => return Outcome::NotClosed,
            }
        }
        Outcome::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_kind() {
        let s = Stats::default();
        s.start(Kind::Nest);
        s.record(Kind::Nest, &Outcome::StreamError("policy-violation".into()));
        s.start(Kind::Nest);
        s.record(Kind::Nest, &Outcome::NotClosed);
        s.start(Kind::Trickle);
        s.record(Kind::Trickle, &Outcome::ClosedWithoutError("i/o".into()));
        assert_eq!(s.made.load(Relaxed), 3);
        assert_eq!(s.closed_with_error.load(Relaxed), 1);
        let by = s.by_kind();
        assert_eq!(
            (
                by["nest"].made,
                by["nest"].closed_with_error,
                by["nest"].not_closed
            ),
            (2, 1, 1)
        );
        assert_eq!(by["nest"].endings["policy-violation"], 1);
        assert_eq!(by["trickle"].closed_without_error, 1);
        assert_eq!(Kind::ALL.len(), 8);
        assert_eq!(Kind::NestStanza.name(), "nest-stanza");
    }
}
