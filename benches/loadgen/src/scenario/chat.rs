//! chat: P pairs (user 2k-1 ⇄ user 2k) exchange messages for `duration`.
//!
//! At the maximum rate (`rate` 0) each direction keeps `window` messages
//! in flight: a closed loop, so the server sets the pace and its queues
//! stay bounded. At a target rate each direction sends on its own
//! schedule (catching up in bursts when late), with at most
//! [`MAX_IN_FLIGHT`] unanswered messages, beyond which sending waits.
//!
//! Messages go to the receiver's full JID (what the server bound), so
//! delivery never depends on presence having been processed first.
//!
//! With `peer_host`/`peer_port` the second user of each pair logs in
//! there (another node of a cluster): both directions of every pair then
//! cross from one node to the other.
//!
//! Before the measured part, each pair settles: a probe message (id
//! `P…`, not counted) goes each way and must arrive, sent again every
//! [`PROBE_RETRY`] until it does (at most [`SETTLE_LIMIT`]). On a cluster
//! this is the proof that the sender's node knows where the receiver's
//! session is (the registry replicates over NATS); on one server it costs
//! a round trip.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};

use super::{body, close_all, iq_reply, login_many, push_message, receive, Ctx, Totals};
use crate::client::{Client, Writer};
use crate::config::ScenarioConfig;
use crate::error::Error;
use crate::proc::Sampler;
use crate::report::{ChatResult, Outcome, Report};
use crate::scan;
use crate::stats::{now_ns, Histogram};

/// The settle phase's limit: pairs not through by then start anyway
/// (counted as `unsettled`).
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// A probe not seen within this is sent again.
const PROBE_RETRY: Duration = Duration::from_millis(200);

/// Per direction, in target-rate mode: beyond this the server is not
/// keeping up, and sending more would only grow its queues.
const MAX_IN_FLIGHT: u64 = 1000;
/// Most messages written in one go (one syscall) when catching up.
const MAX_BATCH: u64 = 64;

/// One direction of one pair.
#[derive(Default)]
struct Flow {
    sent: AtomicU64,
    received: AtomicU64,
    /// Woken on each delivery: the sender may have room again.
    room: Notify,
}

impl Flow {
    fn in_flight(&self) -> u64 {
        self.sent
            .load(Relaxed)
            .saturating_sub(self.received.load(Relaxed))
    }
}

pub async fn run(cfg: &ScenarioConfig) -> Result<Report, Error> {
    let ctx = Ctx::new(cfg).await?;
    let clients = login_many(&ctx, cfg.pairs * 2, &Arc::new(Histogram::new())).await;
    let totals = Arc::new(Totals::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let body = Arc::new(body(cfg.body_size));
    let mut pairs = Vec::new();
    let mut login_failed = 0;
    let mut it = clients.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        match (a, b) {
            (Some(a), Some(b)) => pairs.push((a, b)),
            (a, b) => {
                login_failed += 1;
                for c in [a, b].into_iter().flatten() {
                    c.close().await;
                }
            }
        }
    }
    let settle_t = std::time::Instant::now();
    let (pairs, unsettled) = settle(pairs).await;
    let settle_s = settle_t.elapsed().as_secs_f64();
    let live_pairs = pairs.len();
    let flows: usize = live_pairs * 2;
    // Per direction: the target rate's share, as a gap between messages.
    let gap =
        (cfg.rate > 0.0 && flows > 0).then(|| Duration::from_secs_f64(flows as f64 / cfg.rate));
    let sampler = Sampler::start(&cfg.server_pids)?;
    let start = tokio::time::Instant::now();
    let start_ns = now_ns();
    let deadline = start + cfg.duration;
    let mut senders = tokio::task::JoinSet::new();
    let mut readers = tokio::task::JoinSet::new();
    let mut slot = 0usize;
    for (a, b) in pairs {
        let (a_jid, b_jid) = (a.jid.clone(), b.jid.clone());
        let ab = Arc::new(Flow::default());
        let ba = Arc::new(Flow::default());
        for (client, to, out, inbound) in [(a, b_jid, ab.clone(), ba.clone()), (b, a_jid, ba, ab)] {
            let (reader, writer) = client.into_split();
            let (reply_tx, reply_rx) = mpsc::unbounded_channel();
            let on_delivery = {
                let inbound = inbound.clone();
                Box::new(move || {
                    inbound.received.fetch_add(1, Relaxed);
                    inbound.room.notify_one();
                }) as super::OnDelivery
            };
            let rx = receive(
                reader,
                totals.clone(),
                Some(on_delivery),
                reply_tx,
                stop_rx.clone(),
                ctx.clone(),
            );
            readers.spawn(async move { (slot, rx.await) });
            let sender = Sender {
                writer,
                to,
                flow: out,
                totals: totals.clone(),
                replies: reply_rx,
                body: body.clone(),
                window: cfg.window as u64,
                deadline,
            };
            // Each flow's schedule is offset by its share of the gap, so
            // the target rate arrives evenly instead of as one burst of
            // every flow each gap (which measured the burst, not latency).
            let phase = gap.map(|g| g.mul_f64(slot as f64 / flows as f64));
            let tx = sender.run(gap, start + phase.unwrap_or_default());
            senders.spawn(async move { (slot, tx.await) });
            slot += 1;
        }
    }
    let mut writers: Vec<_> = (0..slot).map(|_| None).collect();
    while let Some(done) = senders.join_next().await {
        match done {
            Ok((i, Ok(w))) => writers[i] = Some(w),
            Ok((_, Err(e))) => ctx.failures.add(&e),
            Err(_) => {}
        }
    }
    totals.settle(cfg.grace).await;
    let server = sampler.as_ref().map(Sampler::finish);
    let _ = stop_tx.send(true);
    let mut readers_back: Vec<_> = (0..slot).map(|_| None).collect();
    while let Some(done) = readers.join_next().await {
        if let Ok((i, Some(r))) = done {
            readers_back[i] = Some(r);
        }
    }
    // Sessions whose either half failed are simply dropped.
    let sessions = writers
        .into_iter()
        .zip(readers_back)
        .filter_map(|(w, r)| Some((w?, r?)))
        .collect();
    close_all(sessions).await;

    let sent = totals.sent.load(Relaxed);
    let delivered = totals.delivered.load(Relaxed);
    let last = totals.last_delivery_ns.load(Relaxed).max(start_ns);
    let sending_s = ((last - start_ns) as f64 / 1e9).max(cfg.duration.as_secs_f64().min(1e-3));
    let result = ChatResult {
        pairs: cfg.pairs as u64,
        login_failed,
        target_rate: cfg.rate,
        sent,
        delivered,
        lost: sent.saturating_sub(delivered),
        errors: totals.errors.load(Relaxed),
        delivered_per_s: delivered as f64 / sending_s,
        latency: totals.latency.summary(),
        cpu_s_per_1k: server
            .as_ref()
            .filter(|_| delivered > 0)
            .map(|s| s.cpu_seconds / delivered as f64 * 1000.0),
        cpu_s_per_1k_each: server
            .iter()
            .filter(|_| delivered > 0)
            .flat_map(|s| &s.each)
            .map(|s| s.cpu_seconds / delivered as f64 * 1000.0)
            .collect(),
        settle_s,
        unsettled,
    };
    Ok(ctx.report(Outcome::Chat(result), server))
}

/// Sends a probe each way across every pair, concurrently, until each
/// has arrived (or [`SETTLE_LIMIT`]); returns the pairs in their order
/// and how many did not get through.
async fn settle(pairs: Vec<(Client, Client)>) -> (Vec<(Client, Client)>, u64) {
    let until = tokio::time::Instant::now() + SETTLE_LIMIT;
    let mut set = tokio::task::JoinSet::new();
    for (k, (mut a, mut b)) in pairs.into_iter().enumerate() {
        set.spawn(async move {
            let mut ok = matches!(probe(&mut a, &mut b, until).await, Ok(true));
            ok = ok && matches!(probe(&mut b, &mut a, until).await, Ok(true));
            (k, a, b, ok)
        });
    }
    let mut back = Vec::new();
    let mut unsettled = 0;
    while let Some(done) = set.join_next().await {
        // A probe's task does not panic; a lost pair is simply dropped.
        if let Ok((k, a, b, ok)) = done {
            unsettled += u64::from(!ok);
            back.push((k, a, b));
        }
    }
    back.sort_by_key(|p| p.0);
    (
        back.into_iter().map(|(_, a, b)| (a, b)).collect(),
        unsettled,
    )
}

/// One probe from `from` to `to`, sent again every [`PROBE_RETRY`] until
/// `to` reads one (true) or `until` passes (false). Bounces and late
/// copies are skipped later by `receive` (their id starts with `P`).
async fn probe(
    from: &mut Client,
    to: &mut Client,
    until: tokio::time::Instant,
) -> Result<bool, Error> {
    let msg = format!(
        "<message to='{}' type='chat' id='P{}'><body>probe</body></message>",
        to.jid,
        now_ns()
    );
    loop {
        if tokio::time::Instant::now() >= until {
            return Ok(false);
        }
        from.send(msg.as_bytes()).await?;
        let retry = (tokio::time::Instant::now() + PROBE_RETRY).min(until);
        while let Ok(el) = tokio::time::timeout_at(retry, to.next_owned()).await {
            let el = el?;
            match scan::tag_name(&el) {
                b"message"
                    if scan::attr(&el, "type") != Some(b"error")
                        && scan::attr(&el, "id").is_some_and(|id| id.starts_with(b"P")) =>
                {
                    return Ok(true)
                }
                b"iq" => {
                    if let Some(reply) = iq_reply(&el) {
                        to.send(&reply).await?;
                    }
                }
                _ => {}
            }
        }
    }
}

struct Sender {
    writer: Writer,
    to: String,
    flow: Arc<Flow>,
    totals: Arc<Totals>,
    replies: mpsc::UnboundedReceiver<Vec<u8>>,
    body: Arc<String>,
    window: u64,
    deadline: tokio::time::Instant,
}

impl Sender {
    /// Sends until the deadline; returns the writer for closing.
    async fn run(
        mut self,
        gap: Option<Duration>,
        start: tokio::time::Instant,
    ) -> Result<Writer, Error> {
        let mut batch = Vec::with_capacity(4096);
        // Target-rate mode: index of the next message on the schedule.
        let mut next: u64 = 0;
        loop {
            let now = tokio::time::Instant::now();
            if now >= self.deadline {
                return Ok(self.writer);
            }
            let (due, limit) = match gap {
                None => (self.window, self.window),
                Some(gap) => {
                    let at = start + gap.mul_f64(next as f64);
                    if at > now {
                        self.wait_until(at).await?;
                        continue;
                    }
                    let behind = ((now - start).as_secs_f64() / gap.as_secs_f64()) as u64 + 1;
                    (
                        behind.saturating_sub(next).clamp(1, MAX_BATCH),
                        MAX_IN_FLIGHT,
                    )
                }
            };
            let room = limit.saturating_sub(self.flow.in_flight());
            let k = due.min(room);
            if k == 0 {
                self.wait_for_room().await?;
                continue;
            }
            batch.clear();
            // Answers and acks the reader queued go out with the messages.
            while let Ok(r) = self.replies.try_recv() {
                batch.extend_from_slice(&r);
            }
            for _ in 0..k {
                push_message(&mut batch, &self.to, &self.body);
            }
            // Counted before writing: a fast reply must never find
            // received > sent.
            self.flow.sent.fetch_add(k, Relaxed);
            self.totals.sent.fetch_add(k, Relaxed);
            next += k;
            self.writer.send(&batch).await?;
        }
    }

    /// Until `at` (or the deadline), answering server IQs meanwhile.
    async fn wait_until(&mut self, at: tokio::time::Instant) -> Result<(), Error> {
        let at = at.min(self.deadline);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(at) => return Ok(()),
                Some(r) = self.replies.recv() => self.writer.send(&r).await?,
            }
        }
    }

    /// Until a delivery frees room (or the deadline).
    async fn wait_for_room(&mut self) -> Result<(), Error> {
        tokio::select! {
            _ = self.flow.room.notified() => Ok(()),
            _ = tokio::time::sleep_until(self.deadline) => Ok(()),
            Some(r) = self.replies.recv() => self.writer.send(&r).await,
        }
    }
}
