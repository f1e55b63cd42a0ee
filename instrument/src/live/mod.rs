//! Live tracing: erlang_doctor's `tr`, for tasks instead of processes.
//!
//! A [`Tracer`] holds the running traces. Off (no trace), the cost where a
//! record could be taken is one relaxed atomic load ([`Tracer::active`]).
//! A [`Trace`] keeps its records in a bounded table and stops itself at its
//! record limit or its time limit, saying why. Analysis ([`query`]) works
//! on the records alone, so it runs the same on a live trace and on a file
//! loaded back ([`dump`]); [`predicate`] is its `--where` language, [`api`]
//! its queries by name, [`show`] its output for people. A dump can be
//! adopted back as a stopped trace ([`Tracer::adopt`]): after a restart, or
//! uploaded to be queried like any other.

pub mod api;
pub mod dump;
pub mod predicate;
pub mod query;
pub mod show;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An element read from the peer.
    In,
    /// An element written to the peer.
    Out,
    /// A function (handler, negotiation step, query) was entered.
    Call,
    /// …and returned; `duration_us` is set.
    Return,
    /// A message handed to another task.
    Send,
    /// A message taken from the mailbox.
    Recv,
    /// An instrumentation event (traces with an event-name filter).
    Event,
    Error,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "in" => Kind::In,
            "out" => Kind::Out,
            "call" => Kind::Call,
            "return" => Kind::Return,
            "send" => Kind::Send,
            "recv" => Kind::Recv,
            "event" => Kind::Event,
            "error" => Kind::Error,
            _ => return None,
        })
    }
}

/// A task: a kind (`c2s`, `router`, `storage`…) and an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Task {
    pub kind: String,
    pub id: u64,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub index: u64,
    /// Microseconds since the Unix epoch.
    pub ts_us: u64,
    pub task: Task,
    pub kind: Kind,
    /// The function, or the element name.
    pub name: String,
    /// Details: element type/id/from/to/size, the peer task, an error…
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
}

/// How a trace is bounded and what it keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Options {
    /// Stop after this many records.
    pub limit: usize,
    /// Stop after this long.
    pub duration: Duration,
    /// Record messages passed between tasks.
    pub messages: bool,
    /// Keep stanza payloads (bodies are redacted otherwise).
    pub payload: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limit: 10_000,
            duration: Duration::from_secs(60),
            messages: false,
            payload: false,
        }
    }
}

/// Hard bounds, whatever is asked.
pub const MAX_LIMIT: usize = 1_000_000;
pub const MAX_TRACES: usize = 4;

pub struct Trace {
    pub id: u64,
    /// The filter as given (for display; matching is the caller's).
    pub filter: serde_json::Value,
    pub options: Options,
    pub started: SystemTime,
    /// Where a stopped trace came from when it was not recorded by this
    /// process ("restored after a restart", "loaded from FILE").
    pub origin: Option<String>,
    started_at: Instant,
    running: AtomicBool,
    stop_reason: Mutex<Option<String>>,
    records: Mutex<Vec<Record>>,
    next: AtomicU64,
    live: tokio::sync::broadcast::Sender<Record>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("id", &self.id)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

impl Trace {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Adds a record; false once the trace has stopped.
    pub fn record(
        &self,
        task: &Task,
        kind: Kind,
        name: &str,
        data: String,
        duration: Option<Duration>,
    ) -> bool {
        if !self.is_running() {
            return false;
        }
        if self.started_at.elapsed() >= self.options.duration {
            self.stop(format!("time limit of {:?} reached", self.options.duration));
            return false;
        }
        let Ok(mut records) = self.records.lock() else {
            return false;
        };
        if records.len() >= self.options.limit {
            drop(records);
            self.stop(format!("record limit of {} reached", self.options.limit));
            return false;
        }
        let r = Record {
            index: self.next.fetch_add(1, Ordering::Relaxed),
            ts_us: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
            task: task.clone(),
            kind,
            name: name.to_string(),
            data,
            duration_us: duration.map(|d| d.as_micros() as u64),
        };
        let _ = self.live.send(r.clone());
        records.push(r);
        let full = records.len() >= self.options.limit;
        drop(records);
        if full {
            self.stop(format!("record limit of {} reached", self.options.limit));
        }
        true
    }

    /// Stops (the first reason wins).
    pub fn stop(&self, reason: String) {
        if self.running.swap(false, Ordering::Relaxed) {
            if let Ok(mut r) = self.stop_reason.lock() {
                *r = Some(reason);
            }
        }
    }

    pub fn stop_reason(&self) -> Option<String> {
        self.stop_reason.lock().ok().and_then(|r| r.clone())
    }

    pub fn records(&self) -> Vec<Record> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.records.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records as they are taken (server-sent events).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Record> {
        self.live.subscribe()
    }

    /// When it started, µs since the Unix epoch.
    pub fn started_us(&self) -> u64 {
        self.started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }

    /// The header of its dump, for `records` records.
    pub fn header(&self, records: usize) -> dump::Header {
        dump::Header {
            format: dump::FORMAT.into(),
            id: self.id,
            filter: self.filter.clone(),
            stop_reason: self.stop_reason(),
            records,
            started_us: Some(self.started_us()),
            options: Some(self.options.clone()),
        }
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "filter": self.filter,
            "running": self.is_running(),
            "stop_reason": self.stop_reason(),
            "records": self.len(),
            "limit": self.options.limit,
            "duration_seconds": self.options.duration.as_secs_f64(),
            "messages": self.options.messages,
            "payload": self.options.payload,
            "started": self.started.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "started_us": self.started_us(),
            "origin": self.origin,
        })
    }
}

/// All traces of a process.
#[derive(Default)]
pub struct Tracer {
    active: AtomicBool,
    traces: Mutex<Vec<Arc<Trace>>>,
    next_id: AtomicU64,
}

impl Tracer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The hot-path check: is any trace running?
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Starts a trace, or says why not.
    pub fn start(&self, filter: serde_json::Value, options: Options) -> Result<Arc<Trace>, String> {
        if options.limit == 0 || options.limit > MAX_LIMIT {
            return Err(format!("limit must be between 1 and {MAX_LIMIT}"));
        }
        if options.duration.is_zero() {
            return Err("duration must be positive".into());
        }
        let mut traces = self
            .traces
            .lock()
            .map_err(|_| "tracer unavailable".to_string())?;
        let running: Vec<_> = traces.iter().filter(|t| t.is_running()).collect();
        if running.len() >= MAX_TRACES {
            return Err(format!(
                "{MAX_TRACES} traces are running already: stop one first"
            ));
        }
        if running.iter().any(|t| t.filter == filter) {
            return Err("a trace with this filter is already running".into());
        }
        let (live, _) = tokio::sync::broadcast::channel(1024);
        let trace = Arc::new(Trace {
            id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            filter,
            options,
            started: SystemTime::now(),
            origin: None,
            started_at: Instant::now(),
            running: AtomicBool::new(true),
            stop_reason: Mutex::new(None),
            records: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
            live,
        });
        traces.push(trace.clone());
        self.active.store(true, Ordering::Relaxed);
        Ok(trace)
    }

    /// Takes in a dumped trace as a stopped one, queryable like the others:
    /// under its own id when `keep_id` and that id is free (a restart),
    /// else under a new one (an upload).
    pub fn adopt(
        &self,
        header: dump::Header,
        records: Vec<Record>,
        keep_id: bool,
        origin: String,
    ) -> Result<Arc<Trace>, String> {
        if records.len() > MAX_LIMIT {
            return Err(format!("more than {MAX_LIMIT} records"));
        }
        let mut traces = self
            .traces
            .lock()
            .map_err(|_| "tracer unavailable".to_string())?;
        let free = !traces.iter().any(|t| t.id == header.id);
        let id = if keep_id && free && header.id > 0 {
            self.next_id.fetch_max(header.id, Ordering::Relaxed);
            header.id
        } else {
            self.next_id.fetch_add(1, Ordering::Relaxed) + 1
        };
        let started_us = header.start_us(&records);
        let next = records.iter().map(|r| r.index + 1).max().unwrap_or(0);
        let (live, _) = tokio::sync::broadcast::channel(1);
        let options = header.options.clone().unwrap_or_default();
        let trace = Arc::new(Trace {
            id,
            filter: header.filter,
            options,
            started: SystemTime::UNIX_EPOCH + Duration::from_micros(started_us),
            origin: Some(origin),
            started_at: Instant::now(),
            running: AtomicBool::new(false),
            stop_reason: Mutex::new(Some(header.stop_reason.unwrap_or_else(|| "stopped".into()))),
            records: Mutex::new(records),
            next: AtomicU64::new(next),
            live,
        });
        traces.push(trace.clone());
        // Keep the list in id order (restored traces arrive in any order).
        traces.sort_by_key(|t| t.id);
        Ok(trace)
    }

    pub fn get(&self, id: u64) -> Option<Arc<Trace>> {
        self.traces
            .lock()
            .ok()?
            .iter()
            .find(|t| t.id == id)
            .cloned()
    }

    pub fn list(&self) -> Vec<Arc<Trace>> {
        self.traces.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// The running traces (refreshes the active flag and time limits).
    pub fn running(&self) -> Vec<Arc<Trace>> {
        let Ok(traces) = self.traces.lock() else {
            return Vec::new();
        };
        for t in traces.iter() {
            if t.is_running() && t.started_at.elapsed() >= t.options.duration {
                t.stop(format!("time limit of {:?} reached", t.options.duration));
            }
        }
        let running: Vec<_> = traces.iter().filter(|t| t.is_running()).cloned().collect();
        self.active.store(!running.is_empty(), Ordering::Relaxed);
        running
    }

    pub fn stop(&self, id: u64) -> Result<(), String> {
        let t = self.get(id).ok_or_else(|| format!("no trace {id}"))?;
        t.stop("stopped by an administrator".into());
        self.running();
        Ok(())
    }

    /// Forgets stopped traces beyond the newest `keep` (memory bound).
    pub fn prune(&self, keep: usize) {
        if let Ok(mut traces) = self.traces.lock() {
            let stopped = traces.iter().filter(|t| !t.is_running()).count();
            let mut excess = stopped.saturating_sub(keep);
            traces.retain(|t| {
                if excess > 0 && !t.is_running() {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }
}

#[cfg(test)]
mod tests;
