//! The sessions: each account has one task that logs in, sends initial
//! presence, then reads (accounting every message that arrives) and writes
//! what the scheduler asks of it, until churn logs it out (it comes back
//! after a pause), the connection drops (it comes back at once) or the run
//! ends. The first `slow_readers` accounts are slow readers instead: they
//! never send, and now and then stop reading while the others flood them,
//! until the server gives up on them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use osprey_loadgen::client::{Client, ConnectOptions, Io, Reader, Writer};
use osprey_loadgen::report::Failures;
use osprey_loadgen::{scan, Error};
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::time::{sleep, sleep_until, timeout, Instant};

use crate::attack;
use crate::ledger::{Ledger, Receipt};
use crate::Config;

/// Where the run is. Sessions watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Logging everyone in.
    Ramp,
    /// Chat, churn, stalls, attacks.
    Run,
    /// No more sending: everyone logs in and takes what it is owed.
    Drain,
    /// Everyone logs out.
    Stop,
}

/// What the schedulers ask of a session.
#[derive(Debug)]
pub enum Cmd {
    /// Send one message to account `to` (`big`: a slow reader's flood).
    Send { to: u32, big: bool },
    /// Log out, stay away this long, log back in.
    Logout { pause: Duration },
}

/// Counters of the sessions (all monotonic except `online`).
#[derive(Default)]
pub struct SessionStats {
    pub online: AtomicU64,
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    /// Connections of ordinary sessions that ended without being asked to.
    pub dropped: AtomicU64,
    /// Churn logouts.
    pub churned: AtomicU64,
    /// Sends the scheduler could not place (no sender online) or that a
    /// sender going offline never wrote; not in the ledger.
    pub skipped: AtomicU64,
    pub write_failures: AtomicU64,
    pub slow_stalls: AtomicU64,
    /// Slow readers' connections that ended after a stall.
    pub slow_closes: AtomicU64,
    pub slow_close_conditions: Mutex<BTreeMap<String, u64>>,
    /// Slow-reader closes that ended inside a stanza.
    pub slow_cut: AtomicU64,
    /// Failed connects in a row (any session), to tell a dead server.
    pub connect_streak: AtomicU64,
    /// Duplicates/misroutes reported on stderr so far (capped).
    reported: AtomicU64,
}

/// What every task of a run shares.
pub struct Shared {
    pub cfg: Config,
    pub opts: ConnectOptions,
    pub ledger: Ledger,
    /// Epoch of `online_since`.
    base: Instant,
    /// Per account: 0 when not online, else 1 + ns since `base` at login.
    online_since: Vec<AtomicU64>,
    pub cmds: Vec<mpsc::UnboundedSender<Cmd>>,
    pub phase: watch::Sender<Phase>,
    /// Set (with the reason) when the run cannot go on: the server died.
    pub abort: watch::Sender<Option<String>>,
    logins: Semaphore,
    pub stats: SessionStats,
    pub failures: Failures,
    /// Slow readers ask here for a flood; answered when it is over.
    pub flood: mpsc::UnboundedSender<(u32, oneshot::Sender<()>)>,
    pub attacks: attack::Stats,
    body: String,
    big_body: String,
    /// Source addresses the sessions spread over (0 or 1: the kernel's choice).
    source_ips: usize,
}

/// The receiving ends made with [`Shared::new`]: one command queue per
/// session, and the flood requests.
pub struct Receivers {
    pub cmds: Vec<mpsc::UnboundedReceiver<Cmd>>,
    pub flood: mpsc::UnboundedReceiver<(u32, oneshot::Sender<()>)>,
}

impl Shared {
    pub fn new(cfg: &Config, opts: ConnectOptions, run_id: String) -> (Arc<Shared>, Receivers) {
        let opts_loopback =
            matches!(opts.addr, std::net::SocketAddr::V4(a) if a.ip().is_loopback());
        let (cmd_tx, cmd_rx): (Vec<_>, Vec<_>) =
            (0..cfg.sessions).map(|_| mpsc::unbounded_channel()).unzip();
        let (flood_tx, flood_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            opts,
            ledger: Ledger::new(run_id),
            base: Instant::now(),
            online_since: (0..cfg.sessions).map(|_| AtomicU64::new(0)).collect(),
            cmds: cmd_tx,
            phase: watch::channel(Phase::Ramp).0,
            abort: watch::channel(None).0,
            logins: Semaphore::new(cfg.concurrency),
            stats: SessionStats::default(),
            failures: Failures::default(),
            flood: flood_tx,
            attacks: attack::Stats::default(),
            body: text(cfg.body_size),
            big_body: text(cfg.slow_body),
            source_ips: match opts_loopback {
                false => 0,
                true if cfg.source_ips > 0 => cfg.source_ips,
                true => cfg.sessions.div_ceil(200).min(250),
            },
        });
        (
            shared,
            Receivers {
                cmds: cmd_rx,
                flood: flood_rx,
            },
        )
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn aborted(&self) -> bool {
        self.abort.borrow().is_some()
    }

    fn set_online(&self, i: u32, on: bool) {
        let v = if on {
            self.base.elapsed().as_nanos() as u64 + 1
        } else {
            0
        };
        let was = self.online_since[i as usize].swap(v, Relaxed);
        match (was != 0, on) {
            (false, true) => {
                self.stats.online.fetch_add(1, Relaxed);
            }
            (true, false) => {
                self.stats.online.fetch_sub(1, Relaxed);
            }
            _ => {}
        }
    }

    pub fn is_online(&self, i: u32) -> bool {
        self.online_since[i as usize].load(Relaxed) != 0
    }

    /// Since when account `i` has been online (`None`: it is not).
    pub fn online_since(&self, i: u32) -> Option<std::time::Instant> {
        match self.online_since[i as usize].load(Relaxed) {
            0 => None,
            ns => Some(self.base.into_std() + Duration::from_nanos(ns - 1)),
        }
    }

    /// The source address of account `i`'s connections.
    pub fn source(&self, i: u32) -> Option<std::net::IpAddr> {
        (self.source_ips > 1)
            .then(|| std::net::IpAddr::from([127, 0, 0, 1 + (i as usize % self.source_ips) as u8]))
    }

    /// A random online ordinary session other than `not`, if one is found
    /// in a few tries.
    pub fn pick_sender(&self, not: u32) -> Option<u32> {
        let (lo, hi) = (self.cfg.slow_readers as u32, self.cfg.sessions as u32);
        let mut rng = rand::thread_rng();
        (0..32)
            .map(|_| rng.gen_range(lo..hi))
            .find(|&i| i != not && self.is_online(i))
    }

    /// A random account other than `not` (online or not).
    pub fn pick_recipient(&self, not: u32) -> u32 {
        let n = self.cfg.sessions as u32;
        let i = rand::thread_rng().gen_range(0..n - 1);
        if i >= not {
            i + 1
        } else {
            i
        }
    }

    fn message(&self, to: u32, id: &str, big: bool) -> Vec<u8> {
        let body = if big { &self.big_body } else { &self.body };
        format!(
            "<message to='{}@{}' type='chat' id='{id}'><body>{body}</body></message>",
            self.cfg.user(to as usize),
            self.cfg.domain
        )
        .into_bytes()
    }

    /// Sleeps `d`, cut short by `Drain` (or later) or an abort.
    async fn nap(&self, d: Duration, phase: &mut watch::Receiver<Phase>) {
        tokio::select! {
            _ = sleep(d) => {}
            _ = reached(phase, |p| *p >= Phase::Drain) => {}
        }
    }

    /// Logs account `i` in (retrying every second) and sends initial
    /// presence; `None` once the run stops or is aborted. `rcvbuf` fixes
    /// the socket's receive buffer (a slow reader's: otherwise the kernel
    /// grows it to megabytes after one fast read).
    async fn login(
        &self,
        i: u32,
        phase: &mut watch::Receiver<Phase>,
        rcvbuf: Option<usize>,
    ) -> Option<(Reader, Writer)> {
        let mut failures = 0u32;
        loop {
            if *phase.borrow() == Phase::Stop || self.aborted() {
                return None;
            }
            let permit = self.logins.acquire().await.ok()?;
            let r = Client::login(
                &self.opts,
                self.source(i),
                &self.cfg.user(i as usize),
                &self.cfg.password,
            )
            .await;
            drop(permit);
            let e = match r {
                Ok(c) => {
                    self.stats.connect_streak.store(0, Relaxed);
                    if let Some(n) = rcvbuf {
                        set_rcvbuf(&c.io, n);
                    }
                    let (r, mut w) = c.into_split();
                    match timeout(Duration::from_secs(10), w.send(b"<presence/>")).await {
                        Ok(Ok(())) => {
                            self.stats.logins.fetch_add(1, Relaxed);
                            return Some((r, w));
                        }
                        Ok(Err(e)) => e,
                        Err(_) => Error::Timeout("initial presence"),
                    }
                }
                Err(e) => {
                    if matches!(e, Error::Connect(_)) {
                        self.stats.connect_streak.fetch_add(1, Relaxed);
                    }
                    e
                }
            };
            self.failures.add(&e);
            self.stats.login_failures.fetch_add(1, Relaxed);
            // 0.5 s, doubling up to 10 s: a server refusing everyone must
            // not be hammered by every session every second.
            let pause = Duration::from_millis(500 << failures.min(5)).min(Duration::from_secs(10));
            failures += 1;
            tokio::select! {
                _ = sleep(pause) => {}
                _ = reached(phase, |p| *p == Phase::Stop) => return None,
            }
        }
    }

    /// Accounts one incoming element; IQ requests get their answer in `out`.
    fn on_element(&self, me: u32, el: &[u8], out: &mut Vec<u8>) {
        match scan::tag_name(el) {
            b"message" => {
                let Some(id) = scan::attr(el, "id") else {
                    return;
                };
                let seq = match self.ledger.parse_id(id) {
                    Some(Some(seq)) => seq,
                    Some(None) => return self.ledger.stale(),
                    None => return,
                };
                if scan::attr(el, "type") == Some(b"error") {
                    return self.ledger.bounced(seq);
                }
                let offline = scan::has_child(el, "delay");
                let receipt = self.ledger.received(seq, me, offline);
                if matches!(receipt, Receipt::Duplicate | Receipt::Misrouted)
                    && self.stats.reported.fetch_add(1, Relaxed) < 20
                {
                    eprintln!(
                        "osprey-soak: {receipt:?}: message {} at {} ({})",
                        String::from_utf8_lossy(id),
                        self.cfg.user(me as usize),
                        if offline {
                            "from offline storage"
                        } else {
                            "live"
                        }
                    );
                }
            }
            b"iq" => iq_reply(el, out),
            _ => {}
        }
    }
}

/// A slow reader's receive buffer (the kernel doubles it for overhead).
const SLOW_RCVBUF: usize = 64 * 1024;

/// Sets SO_RCVBUF, which also stops the kernel's autotuning of it.
fn set_rcvbuf(io: &Io, bytes: usize) {
    use std::os::fd::AsRawFd;
    let fd = match io {
        Io::Plain(tcp) => tcp.as_raw_fd(),
        Io::Tls(tls) => tls.get_ref().0.as_raw_fd(),
        Io::Gone => return,
    };
    let v = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt on a socket we own, with a pointer to a c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        eprintln!(
            "osprey-soak: warning: SO_RCVBUF: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Resolves once the phase satisfies `f` (or the run is torn down); owns
/// nothing across awaits, so that the futures holding it stay `Send`.
pub async fn reached(phase: &mut watch::Receiver<Phase>, f: impl FnMut(&Phase) -> bool) {
    let _ = phase.wait_for(f).await;
}

/// The body text of `n` bytes (plain ASCII, nothing to escape).
fn text(n: usize) -> String {
    const TEXT: &[u8] = b"Soak test: every message is counted exactly once. ";
    (0..n).map(|i| TEXT[i % TEXT.len()] as char).collect()
}

/// The answer to an IQ get/set from the server (pings and roster pushes:
/// a result; any other get: service-unavailable).
fn iq_reply(el: &[u8], out: &mut Vec<u8>) {
    let Some(kind) = scan::attr(el, "type") else {
        return;
    };
    if kind != b"get" && kind != b"set" {
        return;
    }
    let id = String::from_utf8_lossy(scan::attr(el, "id").unwrap_or_default());
    let to = scan::attr(el, "from")
        .map(|f| format!(" to='{}'", String::from_utf8_lossy(f)))
        .unwrap_or_default();
    let reply = if kind == b"set" || scan::has_child(el, "ping") {
        format!("<iq type='result' id='{id}'{to}/>")
    } else {
        format!(
            "<iq type='error' id='{id}'{to}><error type='cancel'><service-unavailable \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
    };
    out.extend_from_slice(reply.as_bytes());
}

/// Why a session's connection loop ended.
enum End {
    Logout(Duration),
    Dropped(Error),
    Stop,
    /// The slow reader's time to stall.
    Deadline,
}

/// Writes with a bound on the time (a server that stops reading must not
/// hold a session forever).
async fn write(w: &mut Writer, bytes: &[u8]) -> Result<(), Error> {
    match timeout(Duration::from_secs(10), w.send(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout("write")),
    }
}

/// Reads and writes until something ends the connection.
async fn serve(
    sh: &Shared,
    me: u32,
    conn: &mut (Reader, Writer),
    cmds: Option<&mut mpsc::UnboundedReceiver<Cmd>>,
    phase: &mut watch::Receiver<Phase>,
    deadline: Option<Instant>,
) -> End {
    let (reader, writer) = conn;
    let mut out = Vec::new();
    let mut no_cmds = mpsc::unbounded_channel().1;
    let accept_cmds = cmds.is_some();
    let cmds = cmds.unwrap_or(&mut no_cmds);
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    loop {
        tokio::select! {
            r = reader.next_element() => {
                let range = match r {
                    Ok(range) => range,
                    Err(e) => return End::Dropped(e),
                };
                out.clear();
                sh.on_element(me, reader.bytes(range), &mut out);
                if !out.is_empty() {
                    if let Err(e) = write(writer, &out).await {
                        return End::Dropped(e);
                    }
                }
            }
            c = cmds.recv(), if accept_cmds => match c {
                Some(Cmd::Send { to, big }) => {
                    let (seq, id) = sh.ledger.send(to);
                    if let Err(e) = write(writer, &sh.message(to, &id, big)).await {
                        sh.ledger.send_failed(seq);
                        sh.stats.write_failures.fetch_add(1, Relaxed);
                        return End::Dropped(e);
                    }
                }
                Some(Cmd::Logout { pause }) => return End::Logout(pause),
                None => return End::Stop,
            },
            _ = reached(phase, |p| *p == Phase::Stop) => return End::Stop,
            _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => return End::Deadline,
        }
    }
}

/// Ends the stream and keeps reading (and accounting) until the server's
/// end: whatever it still had queued for us arrives first.
async fn close(sh: &Shared, me: u32, conn: (Reader, Writer)) {
    let (mut reader, mut writer) = conn;
    if write(&mut writer, b"</stream:stream>").await.is_err() {
        return;
    }
    let mut ignored = Vec::new();
    let _ = timeout(Duration::from_secs(10), async {
        while let Ok(range) = reader.next_element().await {
            sh.on_element(me, reader.bytes(range), &mut ignored);
        }
    })
    .await;
}

/// An ordinary session: chats, is churned, comes back.
pub async fn ordinary(sh: Arc<Shared>, me: u32, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    let mut phase = sh.phase.subscribe();
    loop {
        let Some(mut conn) = sh.login(me, &mut phase, None).await else {
            return;
        };
        sh.set_online(me, true);
        let end = serve(&sh, me, &mut conn, Some(&mut cmds), &mut phase, None).await;
        sh.set_online(me, false);
        match end {
            End::Logout(pause) => {
                sh.stats.churned.fetch_add(1, Relaxed);
                close(&sh, me, conn).await;
                // Requests that come in meanwhile are not sent.
                let until = Instant::now() + pause;
                loop {
                    tokio::select! {
                        _ = sleep_until(until) => break,
                        c = cmds.recv() => match c {
                            Some(Cmd::Send { .. }) => { sh.stats.skipped.fetch_add(1, Relaxed); }
                            Some(Cmd::Logout { .. }) => {}
                            None => return,
                        },
                        _ = reached(&mut phase, |p| *p >= Phase::Drain) => break,
                    }
                }
            }
            End::Dropped(e) => {
                sh.failures.add(&e);
                sh.stats.dropped.fetch_add(1, Relaxed);
                drop(conn);
                sh.nap(Duration::from_millis(500), &mut phase).await;
            }
            End::Stop | End::Deadline => {
                close(&sh, me, conn).await;
                return;
            }
        }
    }
}

/// A slow reader: reads normally for `slow_every`, then stops reading
/// while the others send it `slow_bytes` of messages, then reads again:
/// what the server wrote before giving up arrives, then (if it did give
/// up) the stream's end; it logs in again and takes the rest from offline
/// storage.
pub async fn slow(sh: Arc<Shared>, me: u32) {
    let mut phase = sh.phase.subscribe();
    loop {
        let Some(mut conn) = sh.login(me, &mut phase, Some(SLOW_RCVBUF)).await else {
            return;
        };
        sh.set_online(me, true);
        let mut stalled = false;
        let end = loop {
            let deadline = (sh.phase() <= Phase::Run).then(|| Instant::now() + sh.cfg.slow_every);
            match serve(&sh, me, &mut conn, None, &mut phase, deadline).await {
                End::Deadline if sh.phase() == Phase::Run => {
                    stall(&sh, me, &mut phase).await;
                    stalled = true;
                }
                End::Deadline => {}
                other => break other,
            }
        };
        sh.set_online(me, false);
        match end {
            End::Dropped(e) if stalled => {
                sh.stats.slow_closes.fetch_add(1, Relaxed);
                let mut how = match &e {
                    Error::StreamError(c) => c.clone(),
                    other => format!("no stream error ({})", other.kind()),
                };
                // The stream ended inside a stanza: the server cut it
                // mid-write (that message is lost unless kept offline).
                let scan = &mut conn.0.scan;
                let _ = scan.next_frame(); // skips trailing whitespace
                if !matches!(e, Error::StreamError(_)) && scan.pending() > 0 {
                    how.push_str(", a stanza cut off");
                    sh.stats.slow_cut.fetch_add(1, Relaxed);
                }
                if let Ok(mut m) = sh.stats.slow_close_conditions.lock() {
                    *m.entry(how).or_insert(0) += 1;
                }
            }
            End::Dropped(e) => {
                sh.failures.add(&e);
                sh.stats.dropped.fetch_add(1, Relaxed);
                sh.nap(Duration::from_millis(500), &mut phase).await;
            }
            _ => {
                close(&sh, me, conn).await;
                return;
            }
        }
    }
}

/// Not reading: asks for the flood and waits for its end, plus a moment
/// for the server to act on the last of it.
async fn stall(sh: &Shared, me: u32, phase: &mut watch::Receiver<Phase>) {
    sh.set_online(me, false);
    sh.stats.slow_stalls.fetch_add(1, Relaxed);
    let (tx, rx) = oneshot::channel();
    if sh.flood.send((me, tx)).is_ok() {
        tokio::select! {
            _ = rx => {}
            _ = reached(phase, |p| *p >= Phase::Drain) => {}
        }
    }
    sh.nap(Duration::from_secs(2), phase).await;
    sh.set_online(me, true);
}

/// Sends `slow_bytes` of big messages to stalled reader `to`, at
/// `slow_rate`, each from a random online ordinary session.
pub async fn flood(
    sh: Arc<Shared>,
    mut requests: mpsc::UnboundedReceiver<(u32, oneshot::Sender<()>)>,
) {
    while let Some((to, done)) = requests.recv().await {
        let sh = sh.clone();
        tokio::spawn(async move {
            let n = sh.cfg.slow_bytes.div_ceil(sh.cfg.slow_body.max(1));
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / sh.cfg.slow_rate));
            for _ in 0..n {
                tick.tick().await;
                if sh.phase() != Phase::Run {
                    break;
                }
                match sh.pick_sender(to) {
                    Some(s) => {
                        let _ = sh.cmds[s as usize].send(Cmd::Send { to, big: true });
                    }
                    None => {
                        sh.stats.skipped.fetch_add(1, Relaxed);
                    }
                }
            }
            let _ = done.send(());
        });
    }
}

/// Sends `rate` messages per second between random pairs and logs out
/// `churn` sessions per second, until the run phase ends.
pub async fn schedule(sh: Arc<Shared>) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut sent, mut churned) = (0u64, 0u64);
    let mut rng = rand::rngs::StdRng::from_entropy();
    let ordinary = sh.cfg.slow_readers as u32..sh.cfg.sessions as u32;
    while sh.phase() == Phase::Run {
        tick.tick().await;
        let t = start.elapsed().as_secs_f64();
        while (sent as f64) < t * sh.cfg.rate {
            sent += 1;
            let placed = sh.pick_sender(u32::MAX).is_some_and(|s| {
                let to = sh.pick_recipient(s);
                sh.cmds[s as usize]
                    .send(Cmd::Send { to, big: false })
                    .is_ok()
            });
            if !placed {
                sh.stats.skipped.fetch_add(1, Relaxed);
            }
        }
        while (churned as f64) < t * sh.cfg.churn {
            churned += 1;
            let lo = sh.cfg.offline_min.as_secs_f64();
            let hi = sh.cfg.offline_max.as_secs_f64().max(lo);
            let pause = Duration::from_secs_f64(rng.gen_range(lo..=hi));
            if let Some(s) = (0..32)
                .map(|_| rng.gen_range(ordinary.clone()))
                .find(|&i| sh.is_online(i))
            {
                let _ = sh.cmds[s as usize].send(Cmd::Logout { pause });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iq_answers() {
        let mut out = Vec::new();
        iq_reply(
            b"<iq type='get' id='p' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            &mut out,
        );
        assert_eq!(out, b"<iq type='result' id='p' to='localhost'/>");
        out.clear();
        iq_reply(b"<iq type='result' id='r'/>", &mut out);
        assert!(out.is_empty());
        iq_reply(
            b"<iq type='get' id='v'><query xmlns='jabber:iq:version'/></iq>",
            &mut out,
        );
        assert!(String::from_utf8_lossy(&out).contains("service-unavailable"));
    }

    fn shared(sessions: usize) -> Arc<Shared> {
        let mut cfg = Config::new();
        cfg.sessions = sessions;
        cfg.body_size = 5;
        let opts = ConnectOptions {
            addr: "127.0.0.1:1".parse().unwrap(),
            domain: "localhost".into(),
            mech: osprey_loadgen::Mech::Plain,
            tls: osprey_loadgen::TlsMode::None,
            resource: "soak".into(),
            timeout: Duration::from_secs(1),
            max_element: 1 << 20,
            stream_management: None,
        };
        Shared::new(&cfg, opts, "c0ffee".into()).0
    }

    #[tokio::test]
    async fn incoming_messages_reach_the_ledger() {
        let sh = shared(4);
        let (seq, id) = sh.ledger.send(2);
        let msg = sh.message(2, &id, false);
        assert_eq!(
            String::from_utf8_lossy(&msg),
            format!("<message to='user3@localhost' type='chat' id='c0ffee.{seq}'><body>Soak </body></message>")
        );
        let mut out = Vec::new();
        sh.on_element(2, &msg, &mut out);
        sh.on_element(2, &msg, &mut out);
        let (b, bid) = sh.ledger.send(1);
        let bounce = format!("<message type='error' id='{bid}' from='user2@localhost'><error type='cancel'/></message>");
        sh.on_element(0, bounce.as_bytes(), &mut out);
        sh.on_element(1, b"<message id='ffffff.3'><body/></message>", &mut out);
        sh.on_element(1, b"<message id='other'><body/></message>", &mut out);
        let c = sh.ledger.counts();
        assert_eq!(
            (
                c.sent,
                c.delivered,
                c.duplicates,
                c.bounced,
                c.stale,
                c.pending
            ),
            (2, 1, 1, 1, 1, 0)
        );
        assert!(out.is_empty());
        let _ = b;
    }

    #[tokio::test]
    async fn picks_online_senders_and_other_recipients() {
        let sh = shared(5);
        assert_eq!(sh.pick_sender(u32::MAX), None);
        sh.set_online(3, true);
        sh.set_online(3, true);
        assert_eq!(sh.stats.online.load(Relaxed), 1);
        assert_eq!(sh.pick_sender(u32::MAX), Some(3));
        assert_eq!(sh.pick_sender(3), None);
        // Account 0 is the slow reader: never a sender.
        sh.set_online(0, true);
        for _ in 0..50 {
            assert_eq!(sh.pick_sender(3), None);
            assert_ne!(sh.pick_recipient(4), 4);
        }
        assert!(sh.online_since(3).is_some() && sh.online_since(2).is_none());
        // Few sessions: one address (the kernel's choice); many: spread.
        assert_eq!(sh.source(1), None);
        let many = shared(1000);
        let ips: Vec<_> = (0..6).map(|i| many.source(i).expect("spread")).collect();
        assert_eq!(ips[0].to_string(), "127.0.0.1");
        assert_eq!(ips[4].to_string(), "127.0.0.5");
        assert_eq!(ips[5], ips[0]);
        sh.set_online(3, false);
        assert_eq!(sh.stats.online.load(Relaxed), 1);
    }
}
