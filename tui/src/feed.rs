//! The background work: following the snapshot stream (reconnecting with
//! backoff), polling the session list, the event catalogue and the trace
//! list while each is on screen, and the requests keys ask for. Everything
//! comes back as an [`Update`].
//!
//! What the dashboard costs the gateway: one snapshot stream (one event a
//! second, from a sampler every viewer shares), the event catalogue once
//! per connection, `/api/sessions` (at most 2000 rows, filtered by the
//! gateway) every 2 s while the Sessions view is shown, `/api/events` and
//! `/api/log` every 5 s while the Events view is shown, `/api/trace` (the
//! list) every 2 s while the Trace view is shown, `/api/cluster` every 2 s
//! while the Overview is shown (every 30 s on a gateway not in a cluster,
//! to notice one restarted into a cluster), and a trace stream while a
//! trace is followed. One view is shown at a time: about 0.5 requests/s
//! at most, plus one long-lived connection.

use std::sync::Arc;
use std::time::Duration;

use osprey_instrument::live::Record;
use osprey_instrument::snapshot::Snapshot;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use crate::client::{encode_segment, Api, ApiError};
use crate::input::Action;
use crate::state::{
    ClusterStatus, EventInfo, Link, LogStatus, SessionRow, Tab, TraceInfo, TRACE_KEEP,
};

/// How often the session list is fetched while shown.
pub const SESSIONS_EVERY: Duration = Duration::from_secs(2);
/// At most this many sessions are fetched (the first by JID that match the
/// view's filter): a node with many thousands costs one page a poll.
pub const SESSIONS_PAGE: usize = 2000;
/// How often the catalogue (levels, logged or not) is fetched while shown.
pub const EVENTS_EVERY: Duration = Duration::from_secs(5);
/// How often the gateway's trace list is fetched while the Trace view is shown.
pub const TRACES_EVERY: Duration = Duration::from_secs(2);
/// How often the cluster's nodes are fetched while the Overview is shown.
pub const CLUSTER_EVERY: Duration = Duration::from_secs(2);
/// How often a gateway that said it is not in a cluster is asked again.
pub const NOT_CLUSTERED_EVERY: Duration = Duration::from_secs(30);
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
    Log(LogStatus),
    /// The cluster's nodes; `None`: the gateway is not in a cluster.
    Cluster(Option<Box<ClusterStatus>>),
    /// The gateway's traces, whoever started them.
    Traces(Vec<TraceInfo>),
    /// Trace `id` is followed from now on.
    TraceStarted {
        id: u64,
        target: String,
    },
    TraceRecord(u64, Box<Record>),
    TraceStopped(u64, String),
    Notice(String),
}

pub struct Feed {
    api: Api,
    tx: mpsc::Sender<Update>,
    refresh: Arc<Notify>,
    refresh_traces: Arc<Notify>,
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
        let refresh_traces = Arc::new(Notify::new());
        let tasks = vec![
            tokio::spawn(snapshots(api.clone(), tx.clone())),
            tokio::spawn(sessions(
                api.clone(),
                tx.clone(),
                tab.clone(),
                filter,
                refresh.clone(),
            )),
            tokio::spawn(events(api.clone(), tx.clone(), tab.clone())),
            tokio::spawn(cluster(api.clone(), tx.clone(), tab.clone())),
            tokio::spawn(traces(api.clone(), tx.clone(), tab, refresh_traces.clone())),
        ];
        Feed {
            api,
            tx,
            refresh,
            refresh_traces,
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
                let refresh = self.refresh_traces.clone();
                self.trace = Some(tokio::spawn(trace(api, tx, session, jid, refresh)));
            }
            Action::Follow { id, target } => {
                if let Some(old) = self.trace.take() {
                    old.abort();
                }
                self.trace = Some(tokio::spawn(async move {
                    let _ = tx
                        .send(Update::Notice(format!("following trace {id} ({target})")))
                        .await;
                    follow(api, tx, id, target).await
                }));
            }
            Action::StopTrace(id) => {
                let refresh = self.refresh_traces.clone();
                tokio::spawn(async move {
                    let r = api
                        .call::<serde_json::Value>("DELETE", &format!("/api/trace/{id}"), None)
                        .await;
                    if let Err(e) = r {
                        let _ = tx
                            .send(Update::Notice(format!("stopping trace {id} failed: {e}")))
                            .await;
                    }
                    refresh.notify_one();
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
        if let Ok(page) = api.call::<SessionPage>("GET", &path, None).await {
            if tx.send(Update::Sessions(page.items)).await.is_err() {
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

/// One page of `/api/sessions` (the total is not shown yet).
#[derive(serde::Deserialize)]
struct SessionPage {
    items: Vec<SessionRow>,
}

/// The catalogue with each event's level as configured and whether it is
/// logged now, and the log level, while the Events view is shown (the level
/// can change at run time).
async fn events(api: Api, tx: mpsc::Sender<Update>, mut tab: watch::Receiver<Tab>) {
    loop {
        if tab.wait_for(|t| *t == Tab::Events).await.is_err() {
            return;
        }
        // On failure the snapshot stream reports the link; nothing to add.
        if let Ok(c) = api.call::<Vec<EventInfo>>("GET", "/api/events", None).await {
            if tx.send(Update::Catalogue(c)).await.is_err() {
                return;
            }
        }
        if let Ok(l) = api.call::<LogStatus>("GET", "/api/log", None).await {
            if tx.send(Update::Log(l)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(EVENTS_EVERY) => {}
            _ = tab.changed() => {}
        }
    }
}

/// The cluster's nodes while the Overview is shown. A 404 means the
/// gateway is not in a cluster (or too old to say): nothing to show, and
/// asked again only now and then.
async fn cluster(api: Api, tx: mpsc::Sender<Update>, mut tab: watch::Receiver<Tab>) {
    loop {
        if tab.wait_for(|t| *t == Tab::Overview).await.is_err() {
            return;
        }
        let (update, wait) = match api.call::<ClusterStatus>("GET", "/api/cluster", None).await {
            Ok(s) => (Some(Update::Cluster(Some(Box::new(s)))), CLUSTER_EVERY),
            Err(ApiError::Status { status: 404, .. }) => {
                (Some(Update::Cluster(None)), NOT_CLUSTERED_EVERY)
            }
            // The snapshot stream reports the link; the last table stays.
            Err(_) => (None, CLUSTER_EVERY),
        };
        if let Some(u) = update {
            if tx.send(u).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tab.changed() => {}
        }
    }
}

/// The gateway's trace list while the Trace view is shown: traces started
/// here, by another dashboard or by `osprey trace start`.
async fn traces(
    api: Api,
    tx: mpsc::Sender<Update>,
    mut tab: watch::Receiver<Tab>,
    refresh: Arc<Notify>,
) {
    loop {
        if tab.wait_for(|t| *t == Tab::Trace).await.is_err() {
            return;
        }
        if let Ok(list) = api.call::<Vec<TraceInfo>>("GET", "/api/trace", None).await {
            if tx.send(Update::Traces(list)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TRACES_EVERY) => {}
            _ = refresh.notified() => {}
            _ = tab.changed() => {}
        }
    }
}

/// Starts a trace of a session, then follows it.
async fn trace(
    api: Api,
    tx: mpsc::Sender<Update>,
    session: u64,
    jid: String,
    refresh: Arc<Notify>,
) {
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
    refresh.notify_one();
    let _ = tx
        .send(Update::Notice(format!("tracing {jid} (trace {id})")))
        .await;
    follow(api, tx, id, jid).await
}

#[derive(serde::Deserialize)]
struct RecordsPage {
    total: u64,
    #[serde(default)]
    records: Vec<Record>,
}

/// Follows trace `id`: the records it already has (the last
/// [`TRACE_KEEP`]), then each new one as it is taken, until it stops.
async fn follow(api: Api, tx: mpsc::Sender<Update>, id: u64, target: String) {
    let _ = tx.send(Update::TraceStarted { id, target }).await;
    // Subscribed first, so nothing falls between the page and the stream.
    let mut stream = match api.events(&format!("/api/trace/{id}/stream")).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx
                .send(Update::TraceStopped(id, format!("stream: {e}")))
                .await;
            return;
        }
    };
    let mut last: Option<u64> = None;
    let path = format!("/api/trace/{id}/records?limit=0");
    if let Ok(p) = api.call::<RecordsPage>("GET", &path, None).await {
        if p.total > 0 {
            let offset = p.total.saturating_sub(TRACE_KEEP as u64);
            let path = format!("/api/trace/{id}/records?offset={offset}&limit={TRACE_KEEP}");
            if let Ok(p) = api.call::<RecordsPage>("GET", &path, None).await {
                for r in p.records {
                    last = Some(r.index);
                    if tx.send(Update::TraceRecord(id, Box::new(r))).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
    while let Some(ev) = stream.next().await {
        let update = match ev {
            Ok(ev) if ev.name == "record" => match serde_json::from_str::<Record>(&ev.data) {
                // Already in the page.
                Ok(r) if last.is_some_and(|l| r.index <= l) => continue,
                Ok(r) => Update::TraceRecord(id, Box::new(r)),
                Err(_) => continue,
            },
            Ok(ev) if ev.name == "stopped" => {
                let reason = serde_json::from_str::<serde_json::Value>(&ev.data)
                    .ok()
                    .and_then(|v| v["reason"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "stopped".into());
                let _ = tx.send(Update::TraceStopped(id, reason)).await;
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                let _ = tx
                    .send(Update::TraceStopped(id, format!("lost: {e}")))
                    .await;
                return;
            }
        };
        if tx.send(update).await.is_err() {
            return;
        }
    }
    let _ = tx
        .send(Update::TraceStopped(id, "the stream ended".into()))
        .await;
}
