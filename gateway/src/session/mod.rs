//! A bound session as a value: its identity and mailbox (the
//! [`SessionHandle`] others route to), per-module state, counters. It does
//! not own a socket: a transport runs it ([`crate::c2s`]), and when the
//! transport breaks a module may keep it detached until another transport
//! takes it over (XEP-0198 resume).
//!
//! Every stanza leaving a session passes [`Session::encode`]: the write
//! hooks (CSI buffering, XEP-0198 counting) run there, whatever the
//! transport.

mod ext;

pub use ext::Extensions;

use std::sync::Arc;

use crate::events as ev;
use crate::hooks::{Flow, SessionEvent, WriteCx, WriteTally};
use crate::router::{Mailbox, Outbound, SessionHandle};
use crate::server::Ctx;
use crate::stanza::Kind;

pub struct Session {
    pub handle: Arc<SessionHandle>,
    pub(crate) mailbox: Mailbox,
    /// Per-module state, keyed by type.
    pub ext: Extensions,
    /// Stanzas handled from the client over the session's life (XEP-0198
    /// counts from its `<enable/>`).
    pub handled_in: u64,
    /// Stanzas handed to a transport over the session's life.
    pub written: u64,
    /// The host's pre-resolved event handles.
    pub host_ev: Option<Arc<crate::instr::HostEvents>>,
    /// Stanzas to write first when a transport next runs the session (a
    /// resume replays the unacknowledged ones).
    pub replay: Vec<String>,
    /// A module keeps every written stanza until the client acknowledges
    /// it (XEP-0198), so a failed write loses nothing and the core need not
    /// keep the unwritten part itself.
    pub keeps_unacked: bool,
    /// A write hook asked to end the session with this error.
    pub closing: Option<crate::errors::StreamError>,
    /// Bound, and the `Bound` hooks have not run yet (the session loop
    /// runs them before anything else).
    pub just_bound: bool,
}

/// Stanzas ready for the transport: the bytes, and where each stanza ends
/// (what a failed write did not deliver is kept, not lost).
#[derive(Default)]
pub struct Batch {
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
    /// How much of `buf` reached the transport (after a failed write).
    pub written: usize,
    /// The write hooks' calls for these stanzas, reported by the transport
    /// once per batch ([`crate::hooks::Hooks::report_writes`]).
    pub tally: WriteTally,
    /// Receipts of these stanzas: dropped (the stanzas done) once written,
    /// or once what was not written is kept.
    pub receipts: Vec<crate::router::Receipt>,
}

impl Batch {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.written = 0;
        self.receipts.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn push(&mut self, xml: &str) {
        self.buf.extend_from_slice(xml.as_bytes());
        self.ends.push(self.buf.len());
    }

    /// The stanzas at or after byte `written` (not wholly delivered).
    pub fn unwritten(&self, written: usize) -> impl Iterator<Item = &str> {
        let mut start = 0;
        self.ends.iter().filter_map(move |&end| {
            let s = start;
            start = end;
            (end > written)
                .then(|| std::str::from_utf8(&self.buf[s..end]).ok())
                .flatten()
        })
    }
}

impl Session {
    pub fn new(handle: Arc<SessionHandle>, mailbox: Mailbox) -> Session {
        Session {
            handle,
            mailbox,
            ext: Extensions::default(),
            handled_in: 0,
            written: 0,
            host_ev: None,
            replay: Vec::new(),
            keeps_unacked: false,
            closing: None,
            just_bound: false,
        }
    }

    pub fn id(&self) -> u64 {
        self.handle.id()
    }

    /// The one way out of a session: `xml` passes the write hooks and what
    /// is to be written is appended to `batch`.
    pub fn encode(&mut self, ctx: &Ctx, xml: &str, batch: &mut Batch) {
        if !ctx.hooks.write_active(&self.ext) {
            self.emit(xml, Kind::of_xml(xml).is_some(), batch);
            return;
        }
        self.encode_from(ctx, 0, xml, batch);
    }

    fn encode_from(&mut self, ctx: &Ctx, from: usize, xml: &str, batch: &mut Batch) {
        let kind = Kind::of_xml(xml);
        let mut cx = WriteCx {
            ext: &mut self.ext,
            xml,
            kind,
            prepend: Vec::new(),
            close: None,
        };
        let (flow, next) = ctx.hooks.run_write(ctx, from, &mut cx, &mut batch.tally);
        let prepend = std::mem::take(&mut cx.prepend);
        if let Some(e) = cx.close.take() {
            self.closing.get_or_insert(e);
        }
        for p in &prepend {
            self.encode_from(ctx, next, p, batch);
        }
        if let Flow::Continue = flow {
            if prepend.is_empty() {
                self.emit(xml, kind.is_some(), batch);
            } else {
                self.encode_from(ctx, next, xml, batch);
            }
        }
    }

    fn emit(&mut self, xml: &str, stanza: bool, batch: &mut Batch) {
        if stanza {
            self.written += 1;
        }
        batch.push(xml);
    }
}

/// The session ends for good: out of the registry first (nothing new
/// arrives), then the closed hooks (unavailable presence…), then what is
/// still queued goes to offline storage rather than being lost.
pub async fn leave(ctx: &Arc<Ctx>, mut s: Session, reason: &'static str) {
    debug_assert!(
        crate::instr::bounded::SESSION_CLOSE.contains(&reason),
        "close reason {reason} missing from instr::bounded::SESSION_CLOSE"
    );
    let handle = s.handle.clone();
    let lasted = handle
        .info()
        .connected_at
        .elapsed()
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    {
        let (jid, id, info) = (handle.full(), handle.id(), handle.info());
        let who: [(&'static str, &dyn std::fmt::Display); 4] = [
            ("jid", &jid),
            ("session", &id),
            ("address", &info.peer),
            ("listener", &info.listener),
        ];
        ctx.instr.emit_meta(
            &ev::SESSION_CLOSE,
            &[handle.jid().domain(), reason],
            &[("count", 1.0), ("duration_seconds", lasted)],
            &osprey_instrument::Meta::new(&who),
        );
    }
    ctx.sessions.remove(&handle);
    ctx.hooks
        .run_session(ctx, &mut s, SessionEvent::Closed)
        .await;
    s.mailbox.close();
    let mut kept = 0usize;
    let replay = std::mem::take(&mut s.replay);
    // Receipts are dropped only once their stanzas are kept.
    let mut receipts = Vec::new();
    let queued = std::iter::from_fn(|| s.mailbox.try_recv()).filter_map(|item| match item {
        Outbound::Stanza(xml, tags) => {
            receipts.extend(tags.receipt);
            Some(xml)
        }
        _ => None,
    });
    let all: Vec<String> = replay.into_iter().chain(queued).collect();
    for xml in &all {
        // Out of the registry already: another resource may take it.
        if crate::router::redeliver_or_keep(ctx, handle.jid(), xml).await {
            kept += 1;
        }
    }
    drop(receipts);
    if kept > 0 {
        tracing::info!(jid = %handle.full(), kept, "queued messages kept offline");
    }
    // The c2s_session_close event says it all (JID, reason, duration).
    tracing::debug!(jid = %handle.full(), session = handle.id(), "session closed");
}
