//! The scenarios, and what they share: logging many accounts in, the
//! message format that carries its send time, and reading what arrives.

pub mod chat;
pub mod idle;
pub mod login;
pub mod mixed;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use crate::client::{Client, ConnectOptions, Reader, Writer};
use crate::config::ScenarioConfig;
use crate::error::Error;
use crate::report::{Failures, Outcome, Params, Report, ServerUsage};
use crate::scan;
use crate::stats::{now_ns, Histogram};

/// What every scenario task needs.
pub(crate) struct Ctx {
    pub cfg: ScenarioConfig,
    pub opts: ConnectOptions,
    /// chat: the login options of the second user of each pair (the same
    /// as `opts` unless `peer_host`/`peer_port` say otherwise).
    pub peer_opts: ConnectOptions,
    pub failures: Failures,
    started_unix: u64,
    t0: Instant,
    /// This process's CPU seconds at the start (the generator's own cost).
    cpu0: f64,
}

impl Ctx {
    pub async fn new(cfg: &ScenarioConfig) -> Result<Arc<Ctx>, Error> {
        cfg.check()?;
        // Start the clock now so every timestamp is on one epoch.
        now_ns();
        let opts = cfg.connect_options().await?;
        let peer_opts = if cfg.has_peer() {
            cfg.peer_connect_options().await?
        } else {
            opts.clone()
        };
        Ok(Arc::new(Ctx {
            opts,
            peer_opts,
            cfg: cfg.clone(),
            failures: Failures::default(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            t0: Instant::now(),
            cpu0: self_cpu(),
        }))
    }

    /// Logs account `i` in (chat: the second user of each pair, odd `i`,
    /// on the peer's address).
    pub async fn login(&self, i: usize) -> Result<Client, Error> {
        let opts = if i % 2 == 1 && self.cfg.has_peer() {
            &self.peer_opts
        } else {
            &self.opts
        };
        let source = self.cfg.source_ip(opts.addr, i);
        Client::login(opts, source, &self.cfg.user(i), &self.cfg.password).await
    }

    /// Logs account `i` in with another resource (repeated logins).
    pub async fn login_with_resource(&self, i: usize, resource: &str) -> Result<Client, Error> {
        let source = self.cfg.source_ip(self.opts.addr, i);
        let opts = ConnectOptions {
            resource: resource.to_string(),
            ..self.opts.clone()
        };
        Client::login(&opts, source, &self.cfg.user(i), &self.cfg.password).await
    }

    pub fn report(&self, result: Outcome, server: Option<ServerUsage>) -> Report {
        let errors: BTreeMap<String, u64> = self.failures.take();
        Report {
            scenario: self.cfg.scenario,
            label: self.cfg.label.clone(),
            started_unix: self.started_unix,
            elapsed_s: self.t0.elapsed().as_secs_f64(),
            params: Params::of(&self.cfg),
            result,
            server,
            generator_cpu_s: self_cpu() - self.cpu0,
            errors,
        }
    }
}

fn self_cpu() -> f64 {
    crate::proc::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// Logs accounts `0..n` in with at most `concurrency` logins in flight,
/// sending `<presence/>` after each bind; `None` where a login failed
/// (counted in `ctx.failures`). Login latencies go to `latency`.
pub(crate) async fn login_many(
    ctx: &Arc<Ctx>,
    n: usize,
    latency: &Arc<Histogram>,
) -> Vec<Option<Client>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..ctx.cfg.concurrency.min(n) {
        let (ctx, next, latency) = (ctx.clone(), next.clone(), latency.clone());
        workers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    return mine;
                }
                let t = Instant::now();
                let result = match ctx.login(i).await {
                    Ok(mut c) => match c.send(b"<presence/>").await {
                        Ok(()) => Ok(c),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                match result {
                    Ok(c) => {
                        latency.record(t.elapsed().as_nanos() as u64);
                        mine.push((i, c));
                    }
                    Err(e) => ctx.failures.add(&e),
                }
            }
        });
    }
    let mut out: Vec<Option<Client>> = (0..n).map(|_| None).collect();
    while let Some(done) = workers.join_next().await {
        for (i, c) in done.unwrap_or_default() {
            out[i] = Some(c);
        }
    }
    out
}

/// Message totals of a run, shared by every sender and receiver.
#[derive(Default)]
pub(crate) struct Totals {
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    /// `now_ns()` of the latest delivery.
    pub last_delivery_ns: AtomicU64,
    pub latency: Histogram,
}

impl Totals {
    /// Waits until everything sent has arrived, or `grace` has passed.
    pub async fn settle(&self, grace: std::time::Duration) {
        let until = tokio::time::Instant::now() + grace;
        while self.delivered.load(Relaxed) + self.errors.load(Relaxed) < self.sent.load(Relaxed)
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Appends one chat message to `out`: its id carries the send time
/// (`L` + nanoseconds on this process's clock), read back on receipt.
pub(crate) fn push_message(out: &mut Vec<u8>, to: &str, body: &str) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "<message to='{to}' type='chat' id='L{}'><body>{body}</body></message>",
        now_ns()
    );
}

/// The message body of `n` bytes (plain ASCII, nothing to escape).
pub(crate) fn body(n: usize) -> String {
    const TEXT: &[u8] = b"The quick brown fox jumps over the lazy dog. ";
    (0..n).map(|i| TEXT[i % TEXT.len()] as char).collect()
}

/// Which incoming flow counters a delivery updates (besides the totals).
pub(crate) type OnDelivery = Box<dyn Fn() + Send + Sync>;

/// Reads one session's incoming stanzas until `stop` turns true or the
/// connection ends: timestamps of our messages become latencies, error
/// stanzas are counted, and IQs from the server (roster pushes, pings)
/// get an answer through `replies`, as do stream management acks when
/// they are due. Returns the reader for closing, or `None` when the
/// connection ended early.
pub(crate) async fn receive(
    mut reader: Reader,
    totals: Arc<Totals>,
    on_delivery: Option<OnDelivery>,
    replies: mpsc::UnboundedSender<Vec<u8>>,
    mut stop: watch::Receiver<bool>,
    ctx: Arc<Ctx>,
) -> Option<Reader> {
    loop {
        let range = tokio::select! {
            r = reader.next_element() => r,
            _ = stop.wait_for(|s| *s) => return Some(reader),
        };
        let range = match range {
            Ok(r) => r,
            Err(e) => {
                ctx.failures.add(&e);
                return None;
            }
        };
        if let Some(ack) = reader.take_ack() {
            let _ = replies.send(ack);
        }
        let el = reader.bytes(range);
        match scan::tag_name(el) {
            b"message" => {
                // Settle probes (id P…, chat), late or bounced, are no
                // part of the measurement.
                if scan::attr(el, "id").is_some_and(|id| id.starts_with(b"P")) {
                    continue;
                }
                if scan::attr(el, "type") == Some(b"error") {
                    totals.errors.fetch_add(1, Relaxed);
                    continue;
                }
                let Some(sent) = scan::attr(el, "id")
                    .and_then(|id| id.strip_prefix(b"L"))
                    .and_then(|ns| std::str::from_utf8(ns).ok())
                    .and_then(|ns| ns.parse::<u64>().ok())
                else {
                    continue;
                };
                let now = now_ns();
                totals.latency.record(now.saturating_sub(sent));
                totals.delivered.fetch_add(1, Relaxed);
                totals.last_delivery_ns.fetch_max(now, Relaxed);
                if let Some(f) = &on_delivery {
                    f();
                }
            }
            b"iq" => {
                if let Some(reply) = iq_reply(el) {
                    let _ = replies.send(reply);
                }
            }
            _ => {}
        }
    }
}

/// The answer to an IQ get/set from the server: a result for roster
/// pushes and pings, service-unavailable for any other get.
pub(crate) fn iq_reply(el: &[u8]) -> Option<Vec<u8>> {
    let kind = scan::attr(el, "type")?;
    if kind != b"get" && kind != b"set" {
        return None;
    }
    let id = String::from_utf8_lossy(scan::attr(el, "id")?);
    let to = scan::attr(el, "from")
        .map(|f| format!(" to='{}'", String::from_utf8_lossy(f)))
        .unwrap_or_default();
    let known = kind == b"set" || scan::has_child(el, "ping");
    Some(if known {
        format!("<iq type='result' id='{id}'{to}/>").into_bytes()
    } else {
        format!(
            "<iq type='error' id='{id}'{to}><error type='cancel'><service-unavailable \
             xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        )
        .into_bytes()
    })
}

/// Closes every session (both halves) concurrently.
pub(crate) async fn close_all(sessions: Vec<(Writer, Reader)>) {
    let mut set = tokio::task::JoinSet::new();
    for (w, r) in sessions {
        set.spawn(w.close(r));
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_carries_its_send_time() {
        let mut out = Vec::new();
        let before = now_ns();
        push_message(&mut out, "user2@localhost/load", &body(10));
        let id = scan::attr(&out, "id").expect("id");
        let ns: u64 = std::str::from_utf8(&id[1..])
            .expect("utf8")
            .parse()
            .expect("ns");
        assert!(ns >= before && ns <= now_ns());
        assert!(out.ends_with(b"<body>The quick </body></message>"));
    }

    #[test]
    fn iq_replies() {
        let push = b"<iq type='set' id='p1' from='u@l'><query xmlns='jabber:iq:roster'/></iq>";
        assert_eq!(
            iq_reply(push).expect("reply"),
            b"<iq type='result' id='p1' to='u@l'/>"
        );
        let ping = b"<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>";
        assert_eq!(
            iq_reply(ping).expect("reply"),
            b"<iq type='result' id='x'/>"
        );
        let other = b"<iq type='get' id='v'><query xmlns='jabber:iq:version'/></iq>";
        assert!(String::from_utf8(iq_reply(other).expect("reply"))
            .expect("utf8")
            .contains("service-unavailable"));
        assert_eq!(iq_reply(b"<iq type='result' id='r'/>"), None);
    }
}
