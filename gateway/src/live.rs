//! Live tracing of chosen sessions and tasks (the recorder is
//! `osprey_instrument::live`; this is where XMPP meets it).
//!
//! Filters: a JID (a bare JID matches every resource; the session may log
//! in after the trace starts), a session id, a task kind (`c2s`, `router`,
//! `module`, `storage`), an event name pattern, or several of these at
//! once, all of which must hold (`--jid alice@localhost --event router_*`:
//! the router events of alice's sessions). A session works out which
//! traces concern it when one starts or stops (a generation counter); while
//! it handles a stanza, its traces sit in a task-local, so handlers, routing
//! and storage record into them without being told. With no trace running,
//! each hook costs one relaxed atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use osprey_instrument::live::{dump, Kind, Options, Task, Trace, Tracer};
use serde::Deserialize;

/// Mirrors "any trace running" for hooks that have no context at hand.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Some running trace follows instrumentation events by name.
static EVENTS_ACTIVE: AtomicBool = AtomicBool::new(false);
/// Bumped when traces start or stop: sessions re-match then.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// Some running trace takes task calls made outside a session.
static UNSCOPED_ACTIVE: AtomicBool = AtomicBool::new(false);
/// Those traces (see [`takes_unscoped`]).
static UNSCOPED: RwLock<Vec<Arc<Trace>>> = RwLock::new(Vec::new());

#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// What a trace selects.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub jid: Option<String>,
    pub session: Option<u64>,
    pub task: Option<String>,
    pub event: Option<String>,
}

impl Filter {
    /// Checks the criteria (at least one, each well-formed, and a task
    /// kind never with an event pattern); the canonical filter, all given
    /// criteria in one object.
    pub fn validate(&self) -> Result<serde_json::Value, String> {
        let mut out = serde_json::Map::new();
        if let Some(j) = &self.jid {
            let jid = crate::jid::Jid::parse(j).map_err(|e| format!("malformed JID {j:?}: {e}"))?;
            if jid.local().is_none() {
                return Err(format!("{j:?} is not a user's JID"));
            }
            out.insert("jid".into(), jid.to_string().into());
        }
        if let Some(s) = self.session {
            out.insert("session".into(), s.into());
        }
        if let Some(t) = &self.task {
            if !["c2s", "router", "module", "storage"].contains(&t.as_str()) {
                return Err(format!(
                    "unknown task kind {t:?} (c2s, router, module, storage)"
                ));
            }
            out.insert("task".into(), t.clone().into());
        }
        if let Some(e) = &self.event {
            if e.is_empty() {
                return Err("an empty event pattern".into());
            }
            if self.task.is_some() {
                return Err("an event trace takes jid or session, not task".into());
            }
            out.insert("event".into(), e.clone().into());
        }
        if out.is_empty() {
            return Err("give at least one of jid, session, task, event".into());
        }
        Ok(serde_json::Value::Object(out))
    }
}

/// The trace's JID and session criteria hold for this session (either
/// absent holds).
fn narrows_to(trace: &Trace, full_jid: &str, session: u64) -> bool {
    let f = &trace.filter;
    let jid_ok = f
        .get("jid")
        .and_then(|v| v.as_str())
        .is_none_or(|j| jid_matches(j, full_jid));
    let session_ok = f
        .get("session")
        .and_then(|v| v.as_u64())
        .is_none_or(|s| s == session);
    jid_ok && session_ok
}

/// A bare JID matches each of its resources.
fn jid_matches(want: &str, full_jid: &str) -> bool {
    full_jid == want
        || full_jid
            .strip_prefix(want)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn task_of(trace: &Trace) -> Option<&str> {
    trace.filter.get("task").and_then(|v| v.as_str())
}

fn is_event_trace(trace: &Trace) -> bool {
    trace.filter.get("event").is_some()
}

/// Does this trace record this session's own records (stanzas, calls)?
fn follows_session(trace: &Trace, full_jid: &str, session: u64) -> bool {
    !is_event_trace(trace)
        && task_of(trace).is_none_or(|k| k == "c2s")
        && narrows_to(trace, full_jid, session)
}

/// Does this trace record the module/storage/router calls of this session?
fn follows_tasks_of(trace: &Trace, full_jid: &str, session: u64) -> bool {
    !is_event_trace(trace)
        && task_of(trace).is_some_and(|k| k != "c2s")
        && narrows_to(trace, full_jid, session)
}

/// Traces whose filter is a task kind other than c2s.
fn follows_task(trace: &Trace, kind: &str) -> bool {
    task_of(trace) == Some(kind)
}

/// Traces of a task kind with no JID or session criterion: they also take
/// calls made outside any session (the admin API, background work).
fn takes_unscoped(trace: &Trace) -> bool {
    let f = &trace.filter;
    task_of(trace).is_some_and(|k| k != "c2s")
        && f.get("jid").is_none()
        && f.get("session").is_none()
}

/// The process's traces.
pub struct Live {
    pub tracer: Tracer,
}

impl Default for Live {
    fn default() -> Self {
        Self::new()
    }
}

impl Live {
    pub fn new() -> Live {
        Live {
            tracer: Tracer::new(),
        }
    }

    pub fn start(&self, filter: &Filter, options: Options) -> Result<Arc<Trace>, String> {
        let key = filter.validate()?;
        let t = self.tracer.start(key, options)?;
        self.changed();
        Ok(t)
    }

    pub fn stop(&self, id: u64) -> Result<(), String> {
        self.tracer.stop(id)?;
        self.changed();
        Ok(())
    }

    /// After a start or stop (or a trace stopping itself).
    pub fn changed(&self) {
        let running = self.tracer.running();
        ACTIVE.store(!running.is_empty(), Ordering::Relaxed);
        EVENTS_ACTIVE.store(running.iter().any(|t| is_event_trace(t)), Ordering::Relaxed);
        let unscoped: Vec<Arc<Trace>> = running
            .iter()
            .filter(|t| takes_unscoped(t))
            .cloned()
            .collect();
        UNSCOPED_ACTIVE.store(!unscoped.is_empty(), Ordering::Relaxed);
        if let Ok(mut u) = UNSCOPED.write() {
            *u = unscoped;
        }
        GENERATION.fetch_add(1, Ordering::Relaxed);
        self.tracer.prune(16);
    }

    /// Traces following a task kind other than c2s (module, storage,
    /// router) that take this session's calls.
    pub fn for_tasks(&self, full_jid: &str, session: u64) -> Vec<Arc<Trace>> {
        if !active() {
            return Vec::new();
        }
        self.tracer
            .running()
            .into_iter()
            .filter(|t| follows_tasks_of(t, full_jid, session))
            .collect()
    }

    /// Event traces narrowed to this session (by JID or session id).
    pub fn for_session_events(&self, full_jid: &str, session: u64) -> Vec<Arc<Trace>> {
        if !EVENTS_ACTIVE.load(Ordering::Relaxed) {
            return Vec::new();
        }
        self.tracer
            .running()
            .into_iter()
            .filter(|t| is_event_trace(t) && narrows_to(t, full_jid, session))
            .collect()
    }

    /// The traces following this session (empty when none runs).
    pub fn for_session(&self, full_jid: &str, session: u64) -> Vec<Arc<Trace>> {
        if !active() {
            return Vec::new();
        }
        let running = self.tracer.running();
        if running.is_empty() {
            ACTIVE.store(false, Ordering::Relaxed);
        }
        running
            .into_iter()
            .filter(|t| follows_session(t, full_jid, session))
            .collect()
    }

    /// Traces with an event-name filter matching `event`.
    pub fn for_event(&self, event: &str) -> Vec<Arc<Trace>> {
        if !EVENTS_ACTIVE.load(Ordering::Relaxed) {
            return Vec::new();
        }
        self.tracer
            .running()
            .into_iter()
            .filter(|t| {
                t.filter
                    .get("event")
                    .and_then(|v| v.as_str())
                    .is_some_and(|p| matches_pattern(p, event))
            })
            .collect()
    }
}

/// Saved traces: `data_dir/traces/trace-ID.jsonl` (the dump format).
pub fn saved_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("traces")
}

fn saved_name(name: &str) -> bool {
    name.starts_with("trace-") && name.ends_with(".jsonl")
}

impl Live {
    /// At shutdown: stops the running traces and writes each trace that
    /// has records to [`saved_dir`], so a restart keeps them; files of
    /// traces no longer held are removed.
    pub fn save(&self, data_dir: &Path) {
        let traces = self.tracer.list();
        for t in traces.iter().filter(|t| t.is_running()) {
            t.stop("the server shut down".into());
        }
        self.changed();
        let dir = saved_dir(data_dir);
        let held: Vec<_> = traces.iter().filter(|t| !t.is_empty()).collect();
        if held.is_empty() && !dir.exists() {
            return;
        }
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "live traces not saved");
            return;
        }
        let mut kept = std::collections::HashSet::new();
        for t in held {
            let records = t.records();
            let name = format!("trace-{}.jsonl", t.id);
            match dump::write(&dir.join(&name), &t.header(records.len()), &records) {
                Ok(()) => {
                    kept.insert(name);
                }
                Err(e) => tracing::warn!(trace = t.id, error = %e, "live trace not saved"),
            }
        }
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if saved_name(&name) && !kept.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        tracing::info!(traces = kept.len(), dir = %dir.display(), "live traces saved");
    }

    /// At start: the saved traces back, stopped and queryable under their
    /// ids. A file that cannot be read is renamed `….bad` and left.
    pub fn restore(&self, data_dir: &Path) {
        let dir = saved_dir(data_dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| saved_name(&n.to_string_lossy()))
            })
            .collect();
        files.sort();
        let mut restored = 0;
        for f in files {
            let adopted = dump::read(&f)
                .map_err(|e| e.to_string())
                .and_then(|(h, r)| {
                    self.tracer
                        .adopt(h, r, true, "restored after a restart".into())
                });
            match adopted {
                Ok(_) => restored += 1,
                Err(e) => {
                    tracing::warn!(file = %f.display(), error = %e, "saved live trace unreadable: renamed .bad");
                    let mut bad = f.clone().into_os_string();
                    bad.push(".bad");
                    let _ = std::fs::rename(&f, bad);
                }
            }
        }
        if restored > 0 {
            tracing::info!(traces = restored, dir = %dir.display(), "live traces restored");
        }
    }
}

/// `*` matches any run of characters.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (tail.is_empty()
                    || (0..=name.len() - head.len())
                        .any(|i| matches_pattern(tail, &name[head.len() + i..])))
        }
    }
}

/// One session's view: which traces follow it, refreshed on change.
#[derive(Default)]
pub struct SessionTraces {
    generation: u64,
    pub traces: Vec<Arc<Trace>>,
    /// Traces of module/storage/router tasks taking this session's calls.
    pub by_kind: Vec<Arc<Trace>>,
    /// Event traces narrowed to this session.
    pub events: Vec<Arc<Trace>>,
}

impl SessionTraces {
    /// Re-matches when traces started or stopped since last time.
    pub fn refresh(&mut self, live: &Live, full_jid: &str, session: u64) {
        if !active() {
            self.traces.clear();
            self.by_kind.clear();
            self.events.clear();
            return;
        }
        let g = GENERATION.load(Ordering::Relaxed);
        let stale = self
            .traces
            .iter()
            .chain(&self.by_kind)
            .chain(&self.events)
            .any(|t| !t.is_running());
        if g != self.generation || stale {
            if stale {
                live.changed();
            }
            self.generation = GENERATION.load(Ordering::Relaxed);
            self.traces = live.for_session(full_jid, session);
            self.by_kind = live.for_tasks(full_jid, session);
            self.events = live.for_session_events(full_jid, session);
        }
    }

    /// This session itself is traced.
    pub fn is_traced(&self) -> bool {
        !self.traces.is_empty()
    }

    /// The scope to run a stanza in, when anything is traced.
    pub fn scope(&self, session: u64) -> Option<Scope> {
        if self.traces.is_empty() && self.by_kind.is_empty() && self.events.is_empty() {
            return None;
        }
        Some(Scope {
            task: task(session),
            traces: Arc::new(self.traces.clone()),
            by_kind: Arc::new(self.by_kind.clone()),
            events: Arc::new(self.events.clone()),
        })
    }

    pub fn record(
        &self,
        session: u64,
        kind: Kind,
        name: &str,
        data: &str,
        duration: Option<Duration>,
    ) {
        let t = task(session);
        for trace in &self.traces {
            trace.record(&t, kind, name, data.to_string(), duration);
        }
    }

    /// A stanza written to the client: `out`, with its type, id, from, to
    /// and size (and its text in traces that keep payloads).
    pub fn record_out(&self, session: u64, name: &str, xml: &str) {
        if self.traces.is_empty() {
            return;
        }
        let t = task(session);
        let plain = describe_xml(xml, false);
        for trace in &self.traces {
            let data = if trace.options.payload {
                describe_xml(xml, true)
            } else {
                plain.clone()
            };
            trace.record(&t, Kind::Out, name, data, None);
        }
    }
}

/// What a traced session's task carries while it handles a stanza.
#[derive(Clone)]
pub struct Scope {
    pub task: Task,
    pub traces: Arc<Vec<Arc<Trace>>>,
    /// Traces following module/storage tasks (recorded under those kinds).
    pub by_kind: Arc<Vec<Arc<Trace>>>,
    /// Event traces narrowed to this session: its events go to them.
    pub events: Arc<Vec<Arc<Trace>>>,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs `fut` with the session's traces in scope (only when traced).
pub async fn scoped<F: std::future::Future>(scope: Option<Scope>, fut: F) -> F::Output {
    match scope {
        Some(s) => SCOPE.scope(s, fut).await,
        None => fut.await,
    }
}

/// The scope of a login's storage queries (the credential lookup): task
/// traces taking this session's calls. The session's own traces get the
/// login as negotiation steps, recorded once the user is known.
pub fn login_scope(live: &Live, jid: &str, session: u64) -> Option<Scope> {
    if !active() {
        return None;
    }
    let by_kind = live.for_tasks(jid, session);
    (!by_kind.is_empty()).then(|| Scope {
        task: task(session),
        traces: Arc::default(),
        by_kind: Arc::new(by_kind),
        events: Arc::default(),
    })
}

fn with_scope<R>(f: impl FnOnce(&Scope) -> R) -> Option<R> {
    if !active() {
        return None;
    }
    SCOPE.try_with(|s| f(s)).ok()
}

/// Records into every trace in scope.
pub fn record(kind: Kind, name: &str, data: String, duration: Option<Duration>) {
    with_scope(|s| {
        for t in s.traces.iter() {
            t.record(&s.task, kind, name, data.clone(), duration);
        }
    });
}

/// Records `name` as a call and its return (with its duration) around `fut`,
/// in the session's traces, and in traces following `task_kind` tasks.
pub async fn call<F: std::future::Future>(
    task_kind: &'static str,
    name: impl FnOnce() -> String,
    fut: F,
) -> F::Output {
    let Some(scope) = with_scope(|s| s.clone()).or_else(|| unscoped(task_kind)) else {
        return fut.await;
    };
    let name = name();
    let name = name.as_str();
    let kind_traces: Vec<Arc<Trace>> = scope
        .by_kind
        .iter()
        .filter(|t| follows_task(t, task_kind))
        .cloned()
        .collect();
    let kind_task = Task {
        kind: task_kind.to_string(),
        id: scope.task.id,
    };
    let all = |k: Kind, d: Option<Duration>| {
        for t in scope.traces.iter() {
            t.record(&scope.task, k, name, String::new(), d);
        }
        for t in &kind_traces {
            t.record(&kind_task, k, name, String::new(), d);
        }
    };
    all(Kind::Call, None);
    let started = Instant::now();
    let out = fut.await;
    all(Kind::Return, Some(started.elapsed()));
    out
}

/// Outside any session: the traces of `task_kind` with no JID or session
/// criterion, as task 0 of that kind.
fn unscoped(task_kind: &str) -> Option<Scope> {
    if !UNSCOPED_ACTIVE.load(Ordering::Relaxed) {
        return None;
    }
    let v: Vec<Arc<Trace>> = UNSCOPED
        .read()
        .ok()?
        .iter()
        .filter(|t| follows_task(t, task_kind) && t.is_running())
        .cloned()
        .collect();
    (!v.is_empty()).then(|| Scope {
        task: Task {
            kind: "none".into(),
            id: 0,
        },
        traces: Arc::default(),
        by_kind: Arc::new(v),
        events: Arc::default(),
    })
}

/// A stanza handed to another session: recorded as a send in the traces in
/// scope that want messages; they come back as tags so the receiver records
/// its side (`recv`).
pub fn sent(to_session: u64, to_jid: &str) -> Option<Arc<Vec<Arc<Trace>>>> {
    with_scope(|s| {
        // A reply to the session itself is not a hand-off between tasks.
        if to_session == s.task.id {
            return None;
        }
        let v: Vec<Arc<Trace>> = s
            .traces
            .iter()
            .filter(|t| t.options.messages)
            .cloned()
            .collect();
        for t in &v {
            t.record(
                &s.task,
                Kind::Send,
                "stanza",
                format!("to=c2s:{to_session} {to_jid}"),
                None,
            );
        }
        (!v.is_empty()).then(|| Arc::new(v))
    })
    .flatten()
}

/// The instrumentation handler feeding event-name traces.
pub struct EventHandler(pub Arc<Live>);

impl osprey_instrument::Handler for EventHandler {
    fn name(&self) -> &'static str {
        "live"
    }
    fn wants(&self, _: &osprey_instrument::EventSpec) -> bool {
        true
    }
    fn resolve(
        &self,
        spec: &'static osprey_instrument::EventSpec,
        labels: &[&str],
    ) -> Option<Box<dyn osprey_instrument::ResolvedHandler>> {
        let labels = spec
            .labels
            .iter()
            .zip(labels)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        Some(Box::new(EventRecorder {
            live: self.0.clone(),
            name: spec.name,
            labels,
        }))
    }
}

struct EventRecorder {
    live: Arc<Live>,
    name: &'static str,
    labels: String,
}

impl osprey_instrument::ResolvedHandler for EventRecorder {
    /// Called only while some trace follows events.
    fn gate(&self) -> osprey_instrument::Gate {
        osprey_instrument::Gate::Flag(&EVENTS_ACTIVE)
    }

    fn handle(&self, m: &[(&'static str, f64)], meta: &osprey_instrument::Meta<'_>) {
        if !EVENTS_ACTIVE.load(Ordering::Relaxed) {
            return;
        }
        let traces = self.live.for_event(self.name);
        if traces.is_empty() {
            return;
        }
        let mut data = self.labels.clone();
        for (k, v) in m {
            data.push_str(&format!(" {k}={v}"));
        }
        // Who (the log's fields): a JID, user, session, address.
        let mut who_jid = None;
        let mut who_session = None;
        for (k, v) in meta.fields() {
            let v = v.to_string();
            match *k {
                "jid" | "user" => who_jid = Some(v.clone()),
                "session" => who_session = v.parse::<u64>().ok(),
                _ => {}
            }
            data.push_str(&format!(" {k}={v}"));
        }
        let data = data.trim_start().to_string();
        // Inside a session's stanza: its task, and its narrowed traces.
        let scope = SCOPE.try_with(|s| (s.task.clone(), s.events.clone())).ok();
        let task = match (&scope, who_session) {
            (Some((t, _)), _) => t.clone(),
            (None, Some(id)) => self::task(id),
            (None, None) => Task {
                kind: "event".into(),
                id: 0,
            },
        };
        // A trace narrowed by JID or session takes the event when it comes
        // from that session's stanza, or names that JID or session.
        let named = |t: &Trace| {
            let f = &t.filter;
            let jid_ok = f
                .get("jid")
                .and_then(|v| v.as_str())
                .is_none_or(|j| who_jid.as_deref().is_some_and(|w| jid_matches(j, w)));
            let session_ok = f
                .get("session")
                .and_then(|v| v.as_u64())
                .is_none_or(|s| who_session == Some(s));
            jid_ok && session_ok
        };
        for t in traces {
            let in_scope = scope
                .as_ref()
                .is_some_and(|(_, ev)| ev.iter().any(|e| Arc::ptr_eq(e, &t)));
            let wanted = in_scope || named(&t);
            if wanted {
                t.record(&task, Kind::Event, self.name, data.clone(), None);
            }
        }
    }
}

/// The session's task handle as seen in records.
pub fn task(session: u64) -> Task {
    Task {
        kind: "c2s".into(),
        id: session,
    }
}

/// `type=… id=… to=… size=…` of an element, and its text when asked for.
pub fn describe(el: &crate::xml::Element, payload: bool) -> String {
    let mut d = String::new();
    for a in ["type", "id", "from", "to"] {
        if let Some(v) = el.attr(a) {
            d.push_str(&format!("{a}={v} "));
        }
    }
    d.push_str(&format!("size={}", el.raw().len()));
    if payload {
        d.push(' ');
        d.push_str(el.raw());
    } else if el
        .node()
        .children()
        .any(|c| c.has_tag_name((crate::xml::NS_CLIENT, "body")))
    {
        d.push_str(" body=[redacted]");
    }
    d
}

/// `describe` for a stanza as written (text): the attributes of its
/// opening tag, read without parsing the rest.
pub fn describe_xml(xml: &str, payload: bool) -> String {
    let mut d = String::new();
    let open = opening_tag(xml);
    for a in ["type", "id", "from", "to"] {
        if let Some(v) = attr(open, a) {
            d.push_str(&format!("{a}={v} "));
        }
    }
    d.push_str(&format!("size={}", xml.len()));
    if payload {
        d.push(' ');
        d.push_str(xml);
    } else if xml.contains("<body") {
        d.push_str(" body=[redacted]");
    }
    d
}

/// The text of the first tag, `<message to='…' …>`, quotes respected.
fn opening_tag(xml: &str) -> &str {
    let start = xml.find('<').unwrap_or(0);
    let mut quote = None;
    for (i, c) in xml[start..].char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return &xml[start..start + i],
            _ => {}
        }
    }
    &xml[start..]
}

/// An attribute's value in an opening tag (`name='v'` or `name="v"`).
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = tag;
    while let Some(p) = rest.find(name) {
        let before = rest[..p].chars().last();
        let after = rest[p + name.len()..].trim_start();
        rest = &rest[p + name.len()..];
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let Some(after) = after.strip_prefix('=') else {
            continue;
        };
        let after = after.trim_start();
        let q = after.chars().next()?;
        if q != '\'' && q != '"' {
            continue;
        }
        return after[1..].find(q).map(|end| &after[1..1 + end]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(matches_pattern("router_*", "router_routed"));
        assert!(matches_pattern("*session*", "c2s_session_open"));
        assert!(!matches_pattern("router_*", "c2s_auth"));
        assert!(matches_pattern("c2s_auth", "c2s_auth"));
    }

    #[test]
    fn filters_validate() {
        let f = |j: &str| Filter {
            jid: Some(j.into()),
            session: None,
            task: None,
            event: None,
        };
        assert_eq!(
            f("Alice@LocalHost").validate().unwrap(),
            serde_json::json!({"jid": "alice@localhost"})
        );
        assert!(f("not a jid@x").validate().is_err());
        assert!(f("localhost").validate().is_err());
        let none = Filter {
            jid: None,
            session: None,
            task: None,
            event: None,
        };
        assert!(none.validate().unwrap_err().contains("at least one"));
        // Several criteria: one filter holding them all.
        let two = Filter {
            session: Some(1),
            event: Some("router_*".into()),
            ..f("a@b")
        };
        assert_eq!(
            two.validate().unwrap(),
            serde_json::json!({"jid": "a@b", "session": 1, "event": "router_*"})
        );
        let clash = Filter {
            task: Some("storage".into()),
            event: Some("router_*".into()),
            ..f("a@b")
        };
        assert!(clash.validate().unwrap_err().contains("not task"));
        let task = Filter {
            jid: None,
            session: None,
            task: Some("kernel".into()),
            event: None,
        };
        assert!(task.validate().unwrap_err().contains("unknown task"));
    }

    #[test]
    fn bare_jid_follows_every_resource() {
        let live = Live::new();
        live.start(
            &Filter {
                jid: Some("alice@localhost".into()),
                session: None,
                task: None,
                event: None,
            },
            Options::default(),
        )
        .unwrap();
        assert_eq!(live.for_session("alice@localhost/phone", 1).len(), 1);
        assert_eq!(live.for_session("alice@localhost", 1).len(), 1);
        assert!(live.for_session("alice@localhostx/phone", 1).is_empty());
        assert!(live.for_session("bob@localhost/phone", 2).is_empty());
    }

    #[test]
    fn criteria_combine() {
        let live = Live::new();
        let storage_of_bob = Filter {
            jid: Some("bob@localhost".into()),
            session: None,
            task: Some("storage".into()),
            event: None,
        };
        live.start(&storage_of_bob, Options::default()).unwrap();
        let alice_session_7 = Filter {
            jid: Some("alice@localhost".into()),
            session: Some(7),
            task: None,
            event: None,
        };
        live.start(&alice_session_7, Options::default()).unwrap();
        assert_eq!(live.for_tasks("bob@localhost/b", 3).len(), 1);
        assert!(live.for_tasks("alice@localhost/a", 7).is_empty());
        assert!(live.for_session("bob@localhost/b", 3).is_empty());
        assert_eq!(live.for_session("alice@localhost/a", 7).len(), 1);
        assert!(live.for_session("alice@localhost/a", 8).is_empty());
    }

    #[test]
    fn out_stanzas_are_described_from_their_text() {
        let xml = "<message from='a@b/r' to=\"c@d\" id='m>1' type='chat'><body>hi</body></message>";
        assert_eq!(
            describe_xml(xml, false),
            format!(
                "type=chat id=m>1 from=a@b/r to=c@d size={} body=[redacted]",
                xml.len()
            )
        );
        assert!(describe_xml(xml, true).ends_with(xml));
        assert_eq!(describe_xml("<presence/>", false), "size=11");
        // `xto=` is not `to=`.
        assert_eq!(describe_xml("<iq xto='x'/>", false), "size=13");
    }

    #[test]
    fn traces_are_saved_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let live = Live::new();
        let f = Filter {
            jid: None,
            session: Some(5),
            task: None,
            event: None,
        };
        let t = live.start(&f, Options::default()).unwrap();
        t.record(&task(5), Kind::In, "iq", "type=get".into(), None);
        let empty = Filter {
            session: Some(6),
            ..f.clone()
        };
        live.start(&empty, Options::default()).unwrap();
        std::fs::create_dir_all(saved_dir(dir.path())).unwrap();
        std::fs::write(saved_dir(dir.path()).join("trace-99.jsonl"), "stale").unwrap();
        live.save(dir.path());
        assert!(!t.is_running());
        let mut names: Vec<String> = std::fs::read_dir(saved_dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [format!("trace-{}.jsonl", t.id)],
            "only traces with records"
        );

        let again = Live::new();
        again.restore(dir.path());
        let back = again.tracer.get(t.id).expect("restored under its id");
        assert!(!back.is_running());
        assert_eq!(back.records(), t.records());
        assert_eq!(back.stop_reason().as_deref(), Some("the server shut down"));
        assert_eq!(back.status()["origin"], "restored after a restart");
        // New traces take ids after it.
        let next = again.start(&f, Options::default()).unwrap();
        assert!(next.id > t.id);
    }
}
