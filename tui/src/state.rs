//! What the dashboard knows: the latest snapshot and a short history of it,
//! the session list, the event catalogue, a running trace, and where the
//! operator is (tab, selection, filters). Views only read this; the feeds
//! and the keyboard change it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use osprey_instrument::live::Record;
use osprey_instrument::snapshot::{Kind, Series, Snapshot};
use serde::Deserialize;

/// Samples kept for sparklines (one a second).
pub const HISTORY: usize = 300;
/// Trace records kept on screen; older ones are dropped (the gateway keeps
/// the whole trace).
pub const TRACE_KEEP: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Sessions,
    Events,
    Trace,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Overview, Tab::Sessions, Tab::Events, Tab::Trace];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::Sessions => "Sessions",
            Tab::Events => "Events",
            Tab::Trace => "Trace",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    pub fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::ALL.len()]
    }

    pub fn prev(self) -> Tab {
        Tab::ALL[(self.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
    }
}

/// The state of the connection to the gateway.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Connecting,
    Up,
    /// Unreachable or the stream broke; retrying.
    Down {
        error: String,
        retry_in: Duration,
        attempt: u32,
    },
    /// The token was refused: retrying cannot help.
    Refused,
}

/// A row of `/api/sessions`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SessionRow {
    pub jid: String,
    pub bare: String,
    pub resource: String,
    pub session_id: u64,
    pub address: String,
    pub listener: String,
    pub transport: String,
    pub tls: bool,
    pub connected_seconds: u64,
    pub stanzas_in: u64,
    pub stanzas_out: u64,
    pub queued_bytes: u64,
    pub available: bool,
    pub priority: i64,
    /// `active`, or `detached`: the connection dropped and the session
    /// waits for a XEP-0198 resume.
    pub state: String,
}

impl SessionRow {
    pub fn is_detached(&self) -> bool {
        self.state == "detached"
    }
}

/// An entry of `/api/events`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EventInfo {
    pub name: String,
    pub help: String,
    pub labels: Vec<String>,
    /// The level it is logged at: its `[instrumentation.log] events`
    /// override, or its own.
    pub level: String,
    /// Its own level (before an override).
    pub default_level: String,
    pub overridden: bool,
    /// Logged at the gateway's current level (`None`: a gateway too old to say).
    pub logged: Option<bool>,
    pub probe: bool,
}

/// `GET /api/log`: the level events are logged up to now, and whether the
/// log handler is on at all.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct LogStatus {
    pub level: String,
    /// `None`: a gateway too old to say.
    pub handler: Option<bool>,
}

/// An entry of `GET /api/trace`: a trace on the gateway, whoever started it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TraceInfo {
    pub id: u64,
    /// `{"jid": …}`, `{"session": …}`, `{"task": …}` or `{"event": …}`.
    pub filter: serde_json::Value,
    pub running: bool,
    pub stop_reason: Option<String>,
    pub records: u64,
    pub limit: u64,
    pub duration_seconds: f64,
    /// Unix seconds.
    pub started: u64,
}

impl TraceInfo {
    /// What it follows, as shown: a JID, `session 12`, `task router`,
    /// `event c2s_*`.
    pub fn target(&self) -> String {
        let f = &self.filter;
        if let Some(j) = f.get("jid").and_then(|v| v.as_str()) {
            return j.to_string();
        }
        for key in ["session", "task", "event"] {
            if let Some(v) = f.get(key) {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                return format!("{key} {v}");
            }
        }
        f.to_string()
    }
}

/// `GET /api/cluster`: the cluster as the followed node sees it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClusterStatus {
    /// The followed node's name.
    pub node: String,
    pub cluster: String,
    /// `connected`, `disconnected` or `pending`.
    pub nats: String,
    pub local_sessions: u64,
    pub remote_sessions: u64,
    pub nodes: Vec<ClusterNode>,
}

/// A node of [`ClusterStatus`], as the followed node knows it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClusterNode {
    pub node: String,
    pub address: String,
    /// When it started, ms since the epoch (its clock).
    pub started_at: i64,
    /// ms since its last heartbeat.
    pub heartbeat_age_ms: i64,
    pub alive: bool,
    pub sessions: u64,
}

/// The gateway's traces as the Trace view lists them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TracesView {
    /// The selected trace's id.
    pub selected: Option<u64>,
    /// The list is shown over the followed trace (`l`).
    pub list: bool,
}

/// A latency's p50 and p99, and how old they are: `age_seconds` is 0 for
/// the last sampling window, more when that window saw nothing and these
/// are from the last one that did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub age_seconds: f64,
}

/// The last non-empty percentiles of a histogram series and the snapshot
/// time they were seen at.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    p50: Option<f64>,
    p99: Option<f64>,
    time_ms: u64,
}

fn series_id(x: &Series) -> String {
    let mut id = x.name.clone();
    for (k, v) in &x.labels {
        id.push_str(&format!("|{k}={v}"));
    }
    id
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Jid,
    Connected,
    In,
    Out,
    Queue,
}

impl SortKey {
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Jid => SortKey::Connected,
            SortKey::Connected => SortKey::In,
            SortKey::In => SortKey::Out,
            SortKey::Out => SortKey::Queue,
            SortKey::Queue => SortKey::Jid,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            SortKey::Jid => "jid",
            SortKey::Connected => "connected",
            SortKey::In => "in",
            SortKey::Out => "out",
            SortKey::Queue => "queue",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionsView {
    pub sort: SortKey,
    pub descending: bool,
    pub filter: String,
    /// The selected session's full JID (kept across refreshes and re-sorts).
    pub selected: Option<String>,
    /// Asking "kick this JID?".
    pub confirm_kick: Option<String>,
}

impl Default for SessionsView {
    fn default() -> Self {
        SessionsView {
            sort: SortKey::Jid,
            descending: false,
            filter: String::new(),
            selected: None,
            confirm_kick: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceView {
    pub id: u64,
    /// What is traced, as shown (a JID).
    pub target: String,
    pub records: VecDeque<Record>,
    /// Records dropped off the front of `records`.
    pub dropped: u64,
    pub stopped: Option<String>,
    /// While paused the list stays where it is; records still arrive.
    pub paused: bool,
    /// Rows scrolled up from the newest.
    pub scroll: usize,
    pub filter: String,
    pub show_stats: bool,
}

/// Which text box has the keyboard, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Editing {
    SessionsFilter,
    EventsFilter,
    TraceFilter,
}

/// Ring buffers of what the overview plots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    series: BTreeMap<&'static str, VecDeque<f64>>,
}

impl History {
    pub fn push(&mut self, name: &'static str, v: f64) {
        let ring = self.series.entry(name).or_default();
        if ring.len() == HISTORY {
            ring.pop_front();
        }
        ring.push_back(v);
    }

    /// The last `n` values, oldest first, in hundredths (sparklines take
    /// integers; the same scale for every series, so plots side by side
    /// compare).
    pub fn last(&self, name: &str, n: usize) -> Vec<u64> {
        let Some(ring) = self.series.get(name) else {
            return Vec::new();
        };
        let skip = ring.len().saturating_sub(n);
        ring.iter()
            .skip(skip)
            .map(|v| (v.max(0.0) * 100.0).round() as u64)
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct App {
    pub url: String,
    pub tab: Tab,
    pub link: Link,
    pub snapshot: Option<Arc<Snapshot>>,
    /// The one before, for rates the snapshot does not carry (CPU).
    pub previous: Option<Arc<Snapshot>>,
    pub history: History,
    pub sessions: Vec<SessionRow>,
    pub sessions_view: SessionsView,
    pub catalogue: Vec<EventInfo>,
    /// `None` until the gateway said.
    pub log: Option<LogStatus>,
    pub events_filter: String,
    pub events_scroll: usize,
    /// The trace followed on screen (records streamed).
    pub trace: Option<TraceView>,
    /// Every trace on the gateway (`GET /api/trace`, polled while the
    /// Trace view is shown): started here, by another dashboard or by
    /// `osprey trace start`.
    pub traces: Vec<TraceInfo>,
    pub traces_view: TracesView,
    /// The cluster (`GET /api/cluster`, polled while the Overview is
    /// shown); `None` when the gateway is not in one.
    pub cluster: Option<ClusterStatus>,
    /// The last non-empty p50/p99 of each histogram series, so a latency
    /// stays on screen (with its age) through seconds with no observation.
    seen: HashMap<String, Seen>,
    pub editing: Option<Editing>,
    pub help: bool,
    /// A one-line message (kick done, trace refused…).
    pub notice: Option<String>,
    pub quit: bool,
}

impl App {
    pub fn new(url: &str) -> App {
        App {
            url: url.to_string(),
            tab: Tab::Overview,
            link: Link::Connecting,
            snapshot: None,
            previous: None,
            history: History::default(),
            sessions: Vec::new(),
            sessions_view: SessionsView::default(),
            catalogue: Vec::new(),
            log: None,
            events_filter: String::new(),
            events_scroll: 0,
            trace: None,
            traces: Vec::new(),
            traces_view: TracesView::default(),
            cluster: None,
            seen: HashMap::new(),
            editing: None,
            help: false,
            notice: None,
            quit: false,
        }
    }

    pub fn apply_snapshot(&mut self, snap: Snapshot) {
        let snap = Arc::new(snap);
        let h = &mut self.history;
        h.push(
            "sessions",
            snap.live.get("sessions").copied().unwrap_or(0.0),
        );
        for kind in ["message", "presence", "iq"] {
            h.push(
                in_key(kind),
                snap.rate("xmpp_element_in", "count", &[("kind", kind)]),
            );
            h.push(
                out_key(kind),
                snap.rate("xmpp_element_out", "count", &[("kind", kind)]),
            );
        }
        h.push("routed", snap.rate("router_routed", "count", &[]));
        for x in snap
            .series
            .iter()
            .filter(|x| x.kind == Kind::Histogram && (x.p50.is_some() || x.p99.is_some()))
        {
            self.seen.insert(
                series_id(x),
                Seen {
                    p50: x.p50,
                    p99: x.p99,
                    time_ms: snap.time_ms,
                },
            );
        }
        self.previous = self.snapshot.replace(snap);
        if let Some(cpu) = self.cpu_percent() {
            self.history.push("cpu", cpu);
        }
    }

    /// The p50/p99 of a histogram series: of the last sampling window if
    /// it saw anything, else the last window that did, with its age;
    /// `None` if none did since the dashboard started.
    pub fn series_quantiles(&self, x: &Series) -> Option<Quantiles> {
        if x.p50.is_some() || x.p99.is_some() {
            return Some(Quantiles {
                p50: x.p50,
                p99: x.p99,
                age_seconds: 0.0,
            });
        }
        let now = self.snapshot.as_ref().map_or(0, |s| s.time_ms);
        self.seen.get(&series_id(x)).map(|s| Quantiles {
            p50: s.p50,
            p99: s.p99,
            age_seconds: now.saturating_sub(s.time_ms) as f64 / 1000.0,
        })
    }

    /// The p50/p99 of the histogram `event`/`key` series matching `m`: the
    /// busiest with observations in the last window, else the most recent
    /// seen (see [`App::series_quantiles`]).
    pub fn quantiles(&self, event: &str, key: &str, m: &[(&str, &str)]) -> Option<Quantiles> {
        let s = self.snapshot.as_ref()?;
        let matching: Vec<&Series> = s
            .event(event)
            .filter(|x| {
                x.key == key
                    && x.kind == Kind::Histogram
                    && m.iter()
                        .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        let current = matching
            .iter()
            .filter(|x| x.p50.is_some() || x.p99.is_some())
            .max_by(|a, b| a.rate.unwrap_or(0.0).total_cmp(&b.rate.unwrap_or(0.0)));
        if let Some(x) = current {
            return self.series_quantiles(x);
        }
        matching
            .iter()
            .filter_map(|x| self.series_quantiles(x))
            .min_by(|a, b| a.age_seconds.total_cmp(&b.age_seconds))
    }

    /// CPU use of the gateway process between the last two snapshots, in
    /// percent of one core.
    pub fn cpu_percent(&self) -> Option<f64> {
        let (now, before) = (self.snapshot.as_ref()?, self.previous.as_ref()?);
        let dt = (now.time_ms.checked_sub(before.time_ms)?) as f64 / 1000.0;
        let dc = now.live.get("cpu_seconds")? - before.live.get("cpu_seconds")?;
        (dt > 0.0).then(|| (dc / dt * 100.0).max(0.0))
    }

    pub fn apply_sessions(&mut self, rows: Vec<SessionRow>) {
        self.sessions = rows;
        let visible = self.visible_sessions();
        let still_there = self
            .sessions_view
            .selected
            .as_ref()
            .is_some_and(|s| visible.iter().any(|r| &r.jid == s));
        if !still_there {
            self.sessions_view.selected = visible.first().map(|r| r.jid.clone());
        }
    }

    /// The session table as shown: filtered and sorted.
    pub fn visible_sessions(&self) -> Vec<&SessionRow> {
        let v = &self.sessions_view;
        let needle = v.filter.to_lowercase();
        let mut rows: Vec<&SessionRow> = self
            .sessions
            .iter()
            .filter(|r| {
                needle.is_empty()
                    || r.jid.to_lowercase().contains(&needle)
                    || r.address.contains(&needle)
            })
            .collect();
        rows.sort_by(|a, b| {
            let o = match v.sort {
                SortKey::Jid => a.jid.cmp(&b.jid),
                // Longest-connected first reads naturally; descending flips.
                SortKey::Connected => b.connected_seconds.cmp(&a.connected_seconds),
                SortKey::In => b.stanzas_in.cmp(&a.stanzas_in),
                SortKey::Out => b.stanzas_out.cmp(&a.stanzas_out),
                SortKey::Queue => b.queued_bytes.cmp(&a.queued_bytes),
            };
            let o = o.then_with(|| a.jid.cmp(&b.jid));
            if v.descending {
                o.reverse()
            } else {
                o
            }
        });
        rows
    }

    pub fn selected_session(&self) -> Option<&SessionRow> {
        let jid = self.sessions_view.selected.as_ref()?;
        self.sessions.iter().find(|r| &r.jid == jid)
    }

    /// Moves the selection by `delta` rows within the visible table.
    pub fn move_selection(&mut self, delta: isize) {
        let rows = self.visible_sessions();
        if rows.is_empty() {
            self.sessions_view.selected = None;
            return;
        }
        let at = self
            .sessions_view
            .selected
            .as_ref()
            .and_then(|s| rows.iter().position(|r| &r.jid == s))
            .unwrap_or(0);
        let to = (at as isize + delta).clamp(0, rows.len() as isize - 1) as usize;
        self.sessions_view.selected = Some(rows[to].jid.clone());
    }

    /// The catalogue as shown, with the live rate and total of each event.
    pub fn visible_events(&self) -> Vec<(&EventInfo, Option<f64>, f64)> {
        let needle = self.events_filter.to_lowercase();
        self.catalogue
            .iter()
            .filter(|e| {
                needle.is_empty()
                    || e.name.contains(&needle)
                    || e.help.to_lowercase().contains(&needle)
            })
            .map(|e| {
                let (rate, total) = match &self.snapshot {
                    Some(s) => event_activity(s, &e.name),
                    None => (None, 0.0),
                };
                (e, rate, total)
            })
            .collect()
    }

    pub fn trace_started(&mut self, id: u64, target: String) {
        self.trace = Some(TraceView {
            id,
            target,
            ..TraceView::default()
        });
        self.traces_view.selected = Some(id);
        self.traces_view.list = false;
        self.tab = Tab::Trace;
    }

    /// The gateway's traces, as `GET /api/trace` lists them.
    pub fn apply_traces(&mut self, mut list: Vec<TraceInfo>) {
        // Running first, the newest first.
        list.sort_by(|a, b| b.running.cmp(&a.running).then(b.id.cmp(&a.id)));
        self.traces = list;
        let still_there = self
            .traces_view
            .selected
            .is_some_and(|id| self.traces.iter().any(|t| t.id == id));
        if !still_there {
            self.traces_view.selected = self.traces.first().map(|t| t.id);
        }
    }

    /// The Trace view lists the gateway's traces (nothing followed yet, or
    /// `l` pressed) rather than one trace's records.
    pub fn trace_list_shown(&self) -> bool {
        self.trace.is_none() || self.traces_view.list
    }

    pub fn selected_trace(&self) -> Option<&TraceInfo> {
        let id = self.traces_view.selected?;
        self.traces.iter().find(|t| t.id == id)
    }

    /// Moves the selection in the trace list by `delta` rows.
    pub fn move_trace_selection(&mut self, delta: isize) {
        if self.traces.is_empty() {
            self.traces_view.selected = None;
            return;
        }
        let at = self
            .traces_view
            .selected
            .and_then(|id| self.traces.iter().position(|t| t.id == id))
            .unwrap_or(0);
        let to = (at as isize + delta).clamp(0, self.traces.len() as isize - 1) as usize;
        self.traces_view.selected = Some(self.traces[to].id);
    }

    /// A record of trace `id`, if that is the trace followed.
    pub fn trace_record_of(&mut self, id: u64, r: Record) {
        if self.trace.as_ref().is_some_and(|t| t.id == id) {
            self.trace_record(r);
        }
    }

    pub fn trace_record(&mut self, r: Record) {
        if let Some(t) = &mut self.trace {
            if t.records.len() == TRACE_KEEP {
                t.records.pop_front();
                t.dropped += 1;
            }
            t.records.push_back(r);
            if t.paused {
                // Keep the same rows on screen while paused.
                t.scroll += 1;
            }
        }
    }

    /// Trace records as shown (filtered), oldest first.
    pub fn visible_records(&self) -> Vec<&Record> {
        let Some(t) = &self.trace else {
            return Vec::new();
        };
        let needle = t.filter.as_str();
        t.records
            .iter()
            .filter(|r| {
                needle.is_empty()
                    || r.name.contains(needle)
                    || r.data.contains(needle)
                    || r.task.to_string().contains(needle)
            })
            .collect()
    }
}

pub fn in_key(kind: &str) -> &'static str {
    match kind {
        "message" => "in.message",
        "presence" => "in.presence",
        _ => "in.iq",
    }
}

pub fn out_key(kind: &str) -> &'static str {
    match kind {
        "message" => "out.message",
        "presence" => "out.presence",
        _ => "out.iq",
    }
}

/// An event's rate (of its counter, or its histogram's observations) and
/// its total; probes (gauges only) have no rate.
pub fn event_activity(s: &Snapshot, event: &str) -> (Option<f64>, f64) {
    let mut rate = None;
    let mut total = 0.0;
    let mut key = None;
    for series in s.event(event) {
        // One measurement per event counts its occurrences: prefer `count`.
        match key {
            None => key = Some(series.key.as_str()),
            Some(k) if k != series.key && series.key == "count" => {
                key = Some("count");
                rate = None;
                total = 0.0;
            }
            _ => {}
        }
        if Some(series.key.as_str()) != key {
            continue;
        }
        if let Some(r) = series.rate {
            *rate.get_or_insert(0.0) += r;
        }
        total += series.value;
    }
    (rate, total)
}
