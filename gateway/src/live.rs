//! Live tracing of chosen sessions and tasks (the recorder is
//! `osprey_instrument::live`; this is where XMPP meets it).
//!
//! Filters: a JID (a bare JID matches every resource; the session may log
//! in after the trace starts), a session id, a task kind (`c2s`, `router`,
//! `module`, `storage`), or an event name pattern. A session works out which
//! traces concern it when one starts or stops (a generation counter); while
//! it handles a stanza, its traces sit in a task-local, so handlers, routing
//! and storage record into them without being told. With no trace running,
//! each hook costs one relaxed atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osprey_instrument::live::{Kind, Options, Task, Trace, Tracer};
use serde::Deserialize;

/// Mirrors "any trace running" for hooks that have no context at hand.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Some running trace follows instrumentation events by name.
static EVENTS_ACTIVE: AtomicBool = AtomicBool::new(false);
/// Bumped when traces start or stop: sessions re-match then.
static GENERATION: AtomicU64 = AtomicU64::new(0);

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
    /// Checks that exactly one criterion is given and is well-formed.
    pub fn validate(&self) -> Result<serde_json::Value, String> {
        let given = [
            self.jid.is_some(),
            self.session.is_some(),
            self.task.is_some(),
            self.event.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            return Err("give exactly one of jid, session, task, event".into());
        }
        if let Some(j) = &self.jid {
            let jid = crate::jid::Jid::parse(j).map_err(|e| format!("malformed JID {j:?}: {e}"))?;
            if jid.local().is_none() {
                return Err(format!("{j:?} is not a user's JID"));
            }
            return Ok(serde_json::json!({ "jid": jid.to_string() }));
        }
        if let Some(t) = &self.task {
            if !["c2s", "router", "module", "storage"].contains(&t.as_str()) {
                return Err(format!(
                    "unknown task kind {t:?} (c2s, router, module, storage)"
                ));
            }
        }
        if let Some(e) = &self.event {
            if e.is_empty() {
                return Err("an empty event pattern".into());
            }
        }
        serde_json::to_value(self_json(self)).map_err(|e| e.to_string())
    }
}

fn self_json(f: &Filter) -> serde_json::Value {
    match (&f.session, &f.task, &f.event) {
        (Some(s), _, _) => serde_json::json!({ "session": s }),
        (_, Some(t), _) => serde_json::json!({ "task": t }),
        (_, _, Some(e)) => serde_json::json!({ "event": e }),
        _ => serde_json::json!({}),
    }
}

/// Does this trace follow a session with this JID and id?
fn follows_session(trace: &Trace, full_jid: &str, session: u64) -> bool {
    let f = &trace.filter;
    if let Some(j) = f.get("jid").and_then(|v| v.as_str()) {
        return full_jid == j
            || full_jid
                .strip_prefix(j)
                .is_some_and(|rest| rest.starts_with('/'));
    }
    if let Some(s) = f.get("session").and_then(|v| v.as_u64()) {
        return s == session;
    }
    f.get("task").and_then(|v| v.as_str()) == Some("c2s")
}

/// Traces whose filter is a task kind other than c2s.
fn follows_task(trace: &Trace, kind: &str) -> bool {
    trace.filter.get("task").and_then(|v| v.as_str()) == Some(kind)
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
        EVENTS_ACTIVE.store(
            running.iter().any(|t| t.filter.get("event").is_some()),
            Ordering::Relaxed,
        );
        GENERATION.fetch_add(1, Ordering::Relaxed);
        self.tracer.prune(16);
    }

    /// Traces following a task kind other than c2s (module, storage, router).
    pub fn for_tasks(&self) -> Vec<Arc<Trace>> {
        if !active() {
            return Vec::new();
        }
        self.tracer
            .running()
            .into_iter()
            .filter(|t| {
                t.filter
                    .get("task")
                    .and_then(|v| v.as_str())
                    .is_some_and(|k| k != "c2s")
            })
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
    /// Traces of module/storage/router tasks: they see every session.
    pub by_kind: Vec<Arc<Trace>>,
}

impl SessionTraces {
    /// Re-matches when traces started or stopped since last time.
    pub fn refresh(&mut self, live: &Live, full_jid: &str, session: u64) {
        if !active() {
            self.traces.clear();
            self.by_kind.clear();
            return;
        }
        let g = GENERATION.load(Ordering::Relaxed);
        let stale = self
            .traces
            .iter()
            .chain(&self.by_kind)
            .any(|t| !t.is_running());
        if g != self.generation || stale {
            if stale {
                live.changed();
            }
            self.generation = GENERATION.load(Ordering::Relaxed);
            self.traces = live.for_session(full_jid, session);
            self.by_kind = live.for_tasks();
        }
    }

    /// This session itself is traced.
    pub fn is_traced(&self) -> bool {
        !self.traces.is_empty()
    }

    /// The scope to run a stanza in, when anything is traced.
    pub fn scope(&self, session: u64) -> Option<Scope> {
        if self.traces.is_empty() && self.by_kind.is_empty() {
            return None;
        }
        Some(Scope {
            task: task(session),
            traces: Arc::new(self.traces.clone()),
            by_kind: Arc::new(self.by_kind.clone()),
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
}

/// What a traced session's task carries while it handles a stanza.
#[derive(Clone)]
pub struct Scope {
    pub task: Task,
    pub traces: Arc<Vec<Arc<Trace>>>,
    /// Traces following module/storage tasks (recorded under those kinds).
    pub by_kind: Arc<Vec<Arc<Trace>>>,
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
    let Some(scope) = with_scope(|s| s.clone()) else {
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

    fn handle(&self, m: &[(&'static str, f64)], _: &osprey_instrument::Meta<'_>) {
        if !EVENTS_ACTIVE.load(Ordering::Relaxed) {
            return;
        }
        let traces = self.live.for_event(self.name);
        if traces.is_empty() {
            return;
        }
        let values: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let data = format!("{} {}", self.labels, values.join(" "));
        let task = Task {
            kind: "event".into(),
            id: 0,
        };
        for t in traces {
            t.record(&task, Kind::Event, self.name, data.clone(), None);
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
        assert!(none.validate().is_err());
        let two = Filter {
            session: Some(1),
            ..f("a@b")
        };
        assert!(two.validate().is_err());
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
}
