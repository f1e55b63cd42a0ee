//! mixed: an amoc-style population. Users arrive evenly over `ramp`
//! (default: the first third of `duration`); each logs in, makes sure its
//! roster holds its contacts (the `contacts` neighbours by index; missing
//! items are added with roster sets, so only the first run against a
//! server writes them), sends initial presence, then sends a message to a
//! random online contact every `interval` (±50 %) until `duration` ends.
//! Messages go to the contact's full JID (see `chat`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{body, close_all, push_message, receive, Ctx, Totals};
use crate::client::{Client, Reader, Writer};
use crate::config::ScenarioConfig;
use crate::error::Error;
use crate::proc::Sampler;
use crate::report::{MixedResult, Outcome, Report};
use crate::scan;
use crate::stats::Histogram;

/// The contacts of user `i` of `n`: its neighbours by index, alternately
/// after and before it (wrapping), at most `k`, never itself.
pub fn contacts(i: usize, n: usize, k: usize) -> Vec<usize> {
    let k = k.min(n.saturating_sub(1));
    let mut out = Vec::with_capacity(k);
    let mut d = 1;
    while out.len() < k {
        for c in [(i + d) % n, (i + n - d % n) % n] {
            if out.len() < k && c != i && !out.contains(&c) {
                out.push(c);
            }
        }
        d += 1;
    }
    out
}

#[derive(Default)]
struct Shared {
    online: AtomicU64,
    login_failed: AtomicU64,
    dropped: AtomicU64,
    roster_added: AtomicU64,
    login_latency: Histogram,
    /// The roster get's round trip, as the roster grows.
    roster_latency: Histogram,
}

type Held = (Writer, JoinHandle<Option<Reader>>);

pub async fn run(cfg: &ScenarioConfig) -> Result<Report, Error> {
    let ctx = Ctx::new(cfg).await?;
    let n = cfg.users;
    let ramp = cfg.ramp.unwrap_or(cfg.duration / 3);
    let jids: Arc<Vec<OnceLock<String>>> = Arc::new((0..n).map(|_| OnceLock::new()).collect());
    let totals = Arc::new(Totals::default());
    let shared = Arc::new(Shared::default());
    let body = Arc::new(body(cfg.body_size));
    let (stop_tx, stop_rx) = watch::channel(false);
    let sampler = Sampler::start(&cfg.server_pids)?;
    let start = tokio::time::Instant::now();
    let deadline = start + cfg.duration;
    let mut users = tokio::task::JoinSet::new();
    for i in 0..n {
        let user = User {
            i,
            ctx: ctx.clone(),
            jids: jids.clone(),
            totals: totals.clone(),
            shared: shared.clone(),
            body: body.clone(),
            stop: stop_rx.clone(),
            arrive: start + ramp.mul_f64(i as f64 / n as f64),
            deadline,
        };
        users.spawn(user.run());
    }
    let mut held: Vec<Held> = Vec::new();
    while let Some(done) = users.join_next().await {
        if let Ok(Some(h)) = done {
            held.push(h);
        }
    }
    let online = shared.online.load(Relaxed);
    totals.settle(cfg.grace).await;
    let server = sampler.as_ref().map(Sampler::finish);
    let _ = stop_tx.send(true);
    let mut sessions = Vec::new();
    for (w, r) in held {
        if let Ok(Some(r)) = r.await {
            sessions.push((w, r));
        }
    }
    close_all(sessions).await;
    let sent = totals.sent.load(Relaxed);
    let delivered = totals.delivered.load(Relaxed);
    let result = MixedResult {
        users: n as u64,
        online,
        login_failed: shared.login_failed.load(Relaxed),
        login_latency: shared.login_latency.summary(),
        roster_latency: shared.roster_latency.summary(),
        roster_items_added: shared.roster_added.load(Relaxed),
        sent,
        delivered,
        lost: sent.saturating_sub(delivered),
        errors: totals.errors.load(Relaxed),
        latency: totals.latency.summary(),
        dropped: shared.dropped.load(Relaxed),
        cpu_s_per_1k: server
            .as_ref()
            .filter(|_| delivered > 0)
            .map(|s| s.cpu_seconds / delivered as f64 * 1000.0),
    };
    Ok(ctx.report(Outcome::Mixed(result), server))
}

struct User {
    i: usize,
    ctx: Arc<Ctx>,
    jids: Arc<Vec<OnceLock<String>>>,
    totals: Arc<Totals>,
    shared: Arc<Shared>,
    body: Arc<String>,
    stop: watch::Receiver<bool>,
    arrive: tokio::time::Instant,
    deadline: tokio::time::Instant,
}

impl User {
    async fn run(self) -> Option<Held> {
        tokio::time::sleep_until(self.arrive).await;
        if tokio::time::Instant::now() >= self.deadline {
            return None;
        }
        let cfg = &self.ctx.cfg;
        let mine = contacts(self.i, cfg.users, cfg.contacts);
        let t = Instant::now();
        let mut client = match self.ctx.login(self.i).await {
            Ok(c) => c,
            Err(e) => {
                self.ctx.failures.add(&e);
                self.shared.login_failed.fetch_add(1, Relaxed);
                return None;
            }
        };
        self.shared
            .login_latency
            .record(t.elapsed().as_nanos() as u64);
        let setup = async {
            if cfg.roster {
                let added =
                    ensure_roster(&mut client, &self.ctx, &mine, &self.shared.roster_latency)
                        .await?;
                self.shared.roster_added.fetch_add(added, Relaxed);
            }
            client.send(b"<presence/>").await
        };
        if let Err(e) = setup.await {
            self.ctx.failures.add(&e);
            self.shared.dropped.fetch_add(1, Relaxed);
            return None;
        }
        let _ = self.jids[self.i].set(client.jid.clone());
        self.shared.online.fetch_add(1, Relaxed);
        let (reader, mut writer) = client.into_split();
        let (reply_tx, mut replies) = mpsc::unbounded_channel();
        let reader = tokio::spawn(receive(
            reader,
            self.totals.clone(),
            None,
            reply_tx,
            self.stop.clone(),
            self.ctx.clone(),
        ));
        let mut rng = rand::rngs::StdRng::from_entropy();
        let interval = cfg.interval.as_secs_f64();
        // The first message comes at a random point of the first interval,
        // so users that arrived together do not send together.
        let mut next =
            tokio::time::Instant::now() + Duration::from_secs_f64(rng.gen_range(0.0..interval));
        let mut out = Vec::with_capacity(256);
        let sent: Result<(), Error> = async {
            loop {
                let until = next.min(self.deadline);
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    Some(r) = replies.recv() => {
                        writer.send(&r).await?;
                        continue;
                    }
                }
                if tokio::time::Instant::now() >= self.deadline {
                    return Ok(());
                }
                next += Duration::from_secs_f64(interval * rng.gen_range(0.5..1.5));
                // A random contact that is online (a few tries; none online
                // yet early in the ramp means no message this time).
                let to = (0..3).find_map(|_| {
                    let c = *mine.get(rng.gen_range(0..mine.len().max(1)))?;
                    self.jids[c].get()
                });
                let Some(to) = to else { continue };
                out.clear();
                push_message(&mut out, to, &self.body);
                self.totals.sent.fetch_add(1, Relaxed);
                writer.send(&out).await?;
            }
        }
        .await;
        if let Err(e) = sent {
            self.ctx.failures.add(&e);
            self.shared.dropped.fetch_add(1, Relaxed);
            return None;
        }
        Some((writer, reader))
    }
}

/// Adds to the roster whichever of `contacts` it lacks (pipelined roster
/// sets); returns how many were added.
async fn ensure_roster(
    client: &mut Client,
    ctx: &Ctx,
    contacts: &[usize],
    latency: &Histogram,
) -> Result<u64, Error> {
    let t = Instant::now();
    client
        .send(b"<iq type='get' id='roster0'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    let roster = client.reply_to("roster0").await?;
    latency.record(t.elapsed().as_nanos() as u64);
    let have: HashSet<&[u8]> = scan::child_attrs(&roster, "item", "jid")
        .into_iter()
        .collect();
    let mut batch = String::new();
    let mut missing = 0;
    for &c in contacts {
        let jid = format!("{}@{}", ctx.cfg.user(c), ctx.cfg.domain);
        if have.contains(jid.as_bytes()) {
            continue;
        }
        batch.push_str(&format!(
            "<iq type='set' id='rs{c}'><query xmlns='jabber:iq:roster'>\
             <item jid='{jid}' name='{}'/></query></iq>",
            ctx.cfg.user(c)
        ));
        missing += 1;
    }
    if missing == 0 {
        return Ok(0);
    }
    client.send(batch.as_bytes()).await?;
    let ok = client.collect_replies("rs", missing).await?;
    Ok(ok as u64)
}

#[cfg(test)]
mod tests {
    use super::contacts;

    #[test]
    fn neighbours_by_index() {
        assert_eq!(contacts(5, 100, 4), vec![6, 4, 7, 3]);
        assert_eq!(contacts(0, 100, 3), vec![1, 99, 2]);
        // Fewer users than contacts: everyone else, once.
        let mut c = contacts(1, 4, 20);
        c.sort();
        assert_eq!(c, vec![0, 2, 3]);
        assert!(contacts(0, 1, 20).is_empty());
        assert_eq!(contacts(3, 1000, 20).len(), 20);
    }
}
