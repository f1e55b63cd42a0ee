//! The archive writer: one task takes rows from a bounded queue and
//! writes them in batches: after the first row it gathers for up to
//! `flush_interval` ms (or until `batch` rows), then writes them all at
//! once, so a steady rate costs one write per interval, not one per
//! message (MongooseIM's asynchronous writer, with a far shorter wait). A
//! flush request travels the same queue and ends the gathering at once:
//! it is answered when every row queued before it is written, so a query
//! never waits for the interval and never misses a row.
//!
//! A failed write is retried (with a pause) until it succeeds or the
//! server stops: rows are not dropped while the database is away; the
//! queue fills instead, and a row that cannot be queued for a second is
//! dropped and counted (`limit_hit{limit="mam_queue"}`), so a database
//! outage never holds messages up for longer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::server::Ctx;
use crate::storage::{ArchivedMessage, MamStore};

enum Job {
    Row(ArchivedMessage),
    Flush(oneshot::Sender<()>),
}

pub struct Writer {
    tx: mpsc::Sender<Job>,
    /// Taken by the task when the server starts.
    rx: Mutex<Option<mpsc::Receiver<Job>>>,
    batch: usize,
    gather: Duration,
}

/// How long a full queue may hold a sender back.
const QUEUE_WAIT: Duration = Duration::from_secs(1);
/// The pause between attempts while storage fails.
const RETRY: Duration = Duration::from_millis(500);

impl Writer {
    pub fn new(queue: usize, batch: usize, gather: Duration) -> Writer {
        let (tx, rx) = mpsc::channel(queue);
        Writer {
            tx,
            rx: Mutex::new(Some(rx)),
            batch,
            gather,
        }
    }

    /// Starts the task (once; later calls do nothing).
    pub fn start(&self, ctx: &Arc<Ctx>) {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rx) = rx {
            let store = ctx.stores.mam.clone();
            tokio::spawn(run(ctx.clone(), store, rx, self.batch, self.gather));
        }
    }

    /// Queues a row; see the module doc for a full queue.
    pub async fn push(&self, ctx: &Ctx, row: ArchivedMessage) {
        match self.tx.try_send(Job::Row(row)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                if tokio::time::timeout(QUEUE_WAIT, self.tx.send(job))
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    ctx.instr.limit("mam_queue");
                    tracing::warn!("MAM writer queue full: a message was not archived");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("MAM writer stopped: a message was not archived");
            }
        }
    }

    /// Returns once every row queued before the call is written (or the
    /// writer is gone).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    ctx: Arc<Ctx>,
    store: Arc<dyn MamStore>,
    mut rx: mpsc::Receiver<Job>,
    batch: usize,
    gather: Duration,
) {
    let mut rows = Vec::with_capacity(batch);
    let mut waiting = Vec::new();
    while let Some(job) = rx.recv().await {
        let until = tokio::time::Instant::now() + gather;
        let mut next = Some(job);
        // Gather up to a batch until the deadline; a flush ends it (rows
        // after the flush are not its concern).
        while let Some(job) = next.take() {
            match job {
                Job::Row(r) => rows.push(r),
                Job::Flush(done) => {
                    waiting.push(done);
                    break;
                }
            }
            if rows.len() >= batch {
                break;
            }
            next = match rx.try_recv() {
                Ok(job) => Some(job),
                Err(_) => tokio::time::timeout_at(until, rx.recv())
                    .await
                    .ok()
                    .flatten(),
            };
        }
        if !rows.is_empty() {
            write(&ctx, &*store, &rows).await;
            rows.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Writes one batch, retrying while storage fails (until shutdown has
/// begun and sessions are gone: then the rows are logged as lost).
async fn write(ctx: &Ctx, store: &dyn MamStore, rows: &[ArchivedMessage]) {
    let mut attempts = 0u32;
    loop {
        let started = Instant::now();
        match store.mam_insert(rows).await {
            Ok(()) => {
                ctx.instr
                    .module_data("mam", "stored", rows.len() as u64, started.elapsed());
                return;
            }
            Err(e) => {
                attempts += 1;
                if ctx.shutdown.is_cancelled() && attempts >= 3 {
                    tracing::error!(error = %e, rows = rows.len(), "MAM rows not archived at shutdown");
                    return;
                }
                if attempts == 1 || attempts.is_multiple_of(20) {
                    tracing::warn!(error = %e, rows = rows.len(), attempts, "MAM archive write failed; retrying");
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
