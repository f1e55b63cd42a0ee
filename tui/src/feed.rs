//! The background work: following the snapshot stream (reconnecting with
//! backoff), polling the session list while it is on screen, and the
//! requests keys ask for. Everything comes back as an [`Update`].
//!
//! What the dashboard costs the gateway: one snapshot stream (one event a
//! second, from a sampler every viewer shares), the event catalogue once
//! per connection, `/api/sessions` (at most 2000 rows, filtered by the
//! gateway) every 2 s while the Sessions view is shown, and a trace stream
//! while a trace runs. About 0.5 requests/s in all, plus one long-lived
//! connection.

use std::sync::Arc;
use std::time::Duration;

use osprey_instrument::live::Record;
use osprey_instrument::snapshot::Snapshot;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::client::{encode_segment, Api, ApiError};
use crate::input::Action;
use crate::state::{EventInfo, Link, SessionRow, Tab};

/// How often the session list is fetched while shown.
pub const SESSIONS_EVERY: Duration = Duration::from_secs(2);
/// At most this many sessions are fetched (the first by JID that match the
/// view's filter): a node with many thousands costs one page a poll.
pub const SESSIONS_PAGE: usize = 2000;
/// Snapshots come every second; this long without one means the link is gone.
const STALL: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum Update {
    Link(Link),
    Snapshot(Box<Snapshot>),
    Sessions(Vec<SessionRow>),
    Catalogue(Vec<EventInfo>),
    TraceStarted { id: u64, target: String },
    TraceRecord(Box<Record>),
    TraceStopped(String),
    Notice(String),
}

pub struct Feed {
    api: Api,
    tx: mpsc::Sender<Update>,
    refresh: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
    trace: Option<JoinHandle<()>>,
}

impl Feed {
    pub fn start(
        api: Api,
        tx: mpsc::Sender<Update>,
        tab: watch::Receiver<Tab>,
        filter: watch::Receiver<String>,
    ) -> Feed {
        let refresh = Arc::new(Notify::new());
        let tasks = vec![
            tokio::spawn(snapshots(api.clone(), tx.clone())),
            tokio::spawn(sessions(
                api.clone(),
                tx.clone(),
                tab,
                filter,
                refresh.clone(),
            )),
        ];
        Feed {
            api,
            tx,
            refresh,
            tasks,
            trace: None,
        }
    }

    pub fn act(&mut self, action: Action) {
        let (api, tx) = (self.api.clone(), self.tx.clone());
        match action {
            Action::Kick(jid) => {
                let refresh = self.refresh.clone();
                tokio::spawn(async move {
                    let path = format!("/api/sessions/{}", encode_segment(&jid));
                    let notice = match api.call::<serde_json::Value>("DELETE", &path, None).await {
                        Ok(v) => format!("kicked {jid} ({} session(s) closed)", v["kicked"]),
                        Err(e) => format!("kick of {jid} failed: {e}"),
                    };
                    let _ = tx.send(Update::Notice(notice)).await;
                    refresh.notify_one();
                });
            }
            Action::Trace { session, jid } => {
                if let Some(old) = self.trace.take() {
                    old.abort();
                }
                self.trace = Some(tokio::spawn(trace(api, tx, session, jid)));
            }
            Action::StopTrace(id) => {
                tokio::spawn(async move {
                    let r = api
                        .call::<serde_json::Value>("DELETE", &format!("/api/trace/{id}"), None)
                        .await;
                    if let Err(e) = r {
                        let _ = tx
                            .send(Update::Notice(format!("stopping trace {id} failed: {e}")))
                            .await;
                    }
                });
            }
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        for t in self.tasks.iter().chain(self.trace.iter()) {
            t.abort();
        }
    }
}

async fn snapshots(api: Api, tx: mpsc::Sender<Update>) {
    let mut backoff = BACKOFF_FIRST;
    let mut attempt = 0u32;
    loop {
        let error = match api.events("/api/snapshot/stream").await {
            Ok(mut stream) => {
                if let Ok(c) = api.call::<Vec<EventInfo>>("GET", "/api/events", None).await {
                    let _ = tx.send(Update::Catalogue(c)).await;
                }
                let mut up = false;
                loop {
                    match tokio::time::timeout(STALL, stream.next()).await {
                        Ok(Some(Ok(ev))) if ev.name == "snapshot" => {
                            match serde_json::from_str::<Snapshot>(&ev.data) {
                                Ok(s) => {
                                    if !up {
                                        up = true;
                                        backoff = BACKOFF_FIRST;
                                        attempt = 0;
                                        let _ = tx.send(Update::Link(Link::Up)).await;
                                    }
                                    if tx.send(Update::Snapshot(Box::new(s))).await.is_err() {
                                        return;
                                    }
                                }
                                Err(e) => break format!("unexpected snapshot: {e}"),
                            }
                        }
                        Ok(Some(Ok(_))) => {}
                        Ok(Some(Err(e))) => break e.to_string(),
                        Ok(None) => break "the gateway closed the stream".to_string(),
                        Err(_) => break format!("no snapshot for {}s", STALL.as_secs()),
                    }
                }
            }
            Err(ApiError::Unauthorized) => {
                let _ = tx.send(Update::Link(Link::Refused)).await;
                // A restarted gateway may take the token again: keep asking, slowly.
                tokio::time::sleep(BACKOFF_MAX).await;
                continue;
            }
            Err(e) => e.to_string(),
        };
        attempt += 1;
        let down = Link::Down {
            error,
            retry_in: backoff,
            attempt,
        };
        if tx.send(Update::Link(down)).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn sessions(
    api: Api,
    tx: mpsc::Sender<Update>,
    mut tab: watch::Receiver<Tab>,
    mut filter: watch::Receiver<String>,
    refresh: Arc<Notify>,
) {
    loop {
        if tab.wait_for(|t| *t == Tab::Sessions).await.is_err() {
            return;
        }
        let path = format!(
            "/api/sessions?limit={SESSIONS_PAGE}&filter={}",
            encode_segment(&filter.borrow_and_update())
        );
        // On failure the snapshot stream reports the link; nothing to add.
        if let Ok(rows) = api.call::<Vec<SessionRow>>("GET", &path, None).await {
            if tx.send(Update::Sessions(rows)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SESSIONS_EVERY) => {}
            _ = refresh.notified() => {}
            _ = tab.changed() => {}
            _ = filter.changed() => {}
        }
    }
}

async fn trace(api: Api, tx: mpsc::Sender<Update>, session: u64, jid: String) {
    let body = serde_json::json!({ "session": session }).to_string();
    let id = match api
        .call::<serde_json::Value>("POST", "/api/trace", Some(body))
        .await
    {
        Ok(v) => match v["id"].as_u64() {
            Some(id) => id,
            None => {
                let _ = tx
                    .send(Update::Notice("the gateway did not start a trace".into()))
                    .await;
                return;
            }
        },
        Err(e) => {
            let _ = tx
                .send(Update::Notice(format!("trace of {jid} refused: {e}")))
                .await;
            return;
        }
    };
    let _ = tx
        .send(Update::TraceStarted {
            id,
            target: jid.clone(),
        })
        .await;
    let _ = tx
        .send(Update::Notice(format!("tracing {jid} (trace {id})")))
        .await;
    let mut stream = match api.events(&format!("/api/trace/{id}/stream")).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Update::TraceStopped(format!("stream: {e}"))).await;
            return;
        }
    };
    while let Some(ev) = stream.next().await {
        let update = match ev {
            Ok(ev) if ev.name == "record" => match serde_json::from_str::<Record>(&ev.data) {
                Ok(r) => Update::TraceRecord(Box::new(r)),
                Err(_) => continue,
            },
            Ok(ev) if ev.name == "stopped" => {
                let reason = serde_json::from_str::<serde_json::Value>(&ev.data)
                    .ok()
                    .and_then(|v| v["reason"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "stopped".into());
                let _ = tx.send(Update::TraceStopped(reason)).await;
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Update::TraceStopped(format!("lost: {e}"))).await;
                return;
            }
        };
        if tx.send(update).await.is_err() {
            return;
        }
    }
    let _ = tx
        .send(Update::TraceStopped("the stream ended".into()))
        .await;
}
