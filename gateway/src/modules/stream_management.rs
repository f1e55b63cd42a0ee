//! Stream management (XEP-0198, urn:xmpp:sm:3): acks both ways, and resume.
//!
//! Every stanza written to a managed session is kept (write hook) until the
//! client acknowledges it. When the transport drops without a closed
//! stream, a resumable session is detached (detach hook): it stays in the
//! registry, its mailbox fills, and a task waits up to the resume timeout.
//! `<resume previd h/>` on a new stream (after SASL) takes it over: the
//! stanzas after `h` are written again, in order, then the queue. On
//! timeout (or a close) the session leaves like any other, and what was
//! never acknowledged is kept offline — never silently lost.

mod queue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::{Module, ModuleDef};
use crate::config::Config;
use crate::errors::{SessionEnd, StreamCondition, StreamError};
use crate::events::{self as ev, handlers as h};
use crate::hooks::{
    DetachHook, FeaturesCx, FeaturesHook, Flow, Hooks, Nonza, NonzaCx, NonzaHook, SessionEvent,
    SessionHook, WriteCx, WriteHook,
};
use crate::router::{Outbound, SessionState};
use crate::server::Ctx;
use crate::session::Session;
use crate::xml::El;
use queue::Unacked;

pub const NS_SM: &str = "urn:xmpp:sm:3";
const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

pub const DEF: ModuleDef = ModuleDef {
    name: "stream_management",
    build: |t| {
        let s = super::settings::<Settings>(t)?;
        if s.ack_request_every == 0 || s.max_unacked < s.ack_request_every {
            return Err((
                "max_unacked".into(),
                "must be at least ack_request_every, which must be at least 1".into(),
            ));
        }
        if s.resume_timeout == 0 || s.max_resume_timeout < s.resume_timeout {
            return Err((
                "resume_timeout".into(),
                "must be at least 1 and at most max_resume_timeout".into(),
            ));
        }
        Ok(Arc::new(StreamManagement {
            settings: s,
            ack_series: OnceLock::new(),
            detached: Mutex::default(),
        }))
    },
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Seconds a detached session waits for a resume.
    pub resume_timeout: u64,
    /// The most a client may ask for with `max`.
    pub max_resume_timeout: u64,
    /// The server asks for an ack (`<r/>`) each time this many stanzas
    /// are unacknowledged.
    pub ack_request_every: usize,
    /// Unacknowledged stanzas a session may hold; beyond it the session is
    /// closed (`resource-constraint`) and they are kept offline, rather
    /// than grow without bound for a client that never acks.
    pub max_unacked: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            resume_timeout: 300,
            max_resume_timeout: 600,
            ack_request_every: 50,
            max_unacked: 5000,
        }
    }
}

/// A detached session's waiting task, asked for the session.
type Take = mpsc::Sender<oneshot::Sender<Handover>>;

/// A session on its way from its waiting task to the stream resuming it.
/// Dropped on the way (the new stream went away at that instant), it
/// still leaves cleanly instead of vanishing with its queue.
struct Handover(Option<(Session, Arc<Ctx>)>);

impl Handover {
    fn take(mut self) -> Option<Session> {
        self.0.take().map(|(s, _)| s)
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        if let Some((s, ctx)) = self.0.take() {
            let leaving = ctx.clone();
            ctx.tasks
                .spawn(async move { crate::session::leave(&leaving, s, "sm_abandoned").await });
        }
    }
}

pub struct StreamManagement {
    settings: Settings,
    /// The `sm_ack` series, resolved at the first ack (one per ack round).
    ack_series: OnceLock<osprey_instrument::Labelled>,
    /// Resumable ids → (account, where the session is now).
    detached: Mutex<HashMap<String, (String, Where)>>,
}

/// Where a resumable session is.
enum Where {
    /// Running on a transport (which may be half-open: a resume takes it over).
    Active(std::sync::Weak<crate::router::SessionHandle>),
    /// Waiting for a resume; the waiting task gives it up on request.
    Detached(Take),
}

/// Per-session state (in the session's extensions).
#[derive(Default)]
struct Sm {
    /// Set by `<enable resume='true'/>`.
    id: Option<String>,
    timeout: Duration,
    /// `handled_in` at `<enable/>`: the client's stanzas count from there.
    in_base: u64,
    /// Stanzas written since `<enable/>` (mod 2^32, as `h` is).
    sent: u32,
    /// The client's last acknowledged count.
    acked: u32,
    unacked: Unacked,
    /// When the oldest outstanding `<r/>`-less stanza went out (ack RTT).
    since: Option<Instant>,
}

impl Module for StreamManagement {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.provide(Arc::new(Registry(self.clone())));
        hooks.stream_features(&h::SM_FEATURES, self.clone());
        hooks.nonza(NS_SM, &h::SM_NONZA, self.clone());
        // Last: it counts what is really written (after CSI's filtering).
        hooks.write(100, &h::SM_COUNT, self.clone());
        hooks.detach(&h::SM_DETACH, self.clone());
        hooks.session(100, &h::SM_CLOSED, self);
    }
}

impl FeaturesHook for StreamManagement {
    fn features(&self, cx: &FeaturesCx<'_>, out: &mut Vec<El>) {
        if cx.authenticated {
            out.push(El::new("sm").xmlns(NS_SM));
        }
    }
}

fn failed(condition: &str, h: Option<u32>) -> String {
    El::new("failed")
        .xmlns(NS_SM)
        .attr_opt("h", h.map(|h| h.to_string()).as_deref())
        .child(El::new(condition).xmlns(NS_STANZAS))
        .to_string()
}

fn client_h(cx: &NonzaCx<'_>) -> Result<u32, SessionEnd> {
    cx.el
        .attr("h")
        .and_then(|h| h.parse::<u32>().ok())
        .ok_or_else(|| {
            StreamError::with_text(StreamCondition::BadFormat, "h must be a 32-bit count").into()
        })
}

#[async_trait]
impl NonzaHook for StreamManagement {
    async fn nonza(&self, cx: &mut NonzaCx<'_>) -> Result<Nonza, SessionEnd> {
        match cx.el.name() {
            "enable" => self.enable(cx),
            "r" => {
                if let Some(s) = cx.session.as_deref() {
                    if let Some(sm) = s.ext.get::<Sm>() {
                        let h = (s.handled_in - sm.in_base) as u32;
                        cx.replies.push(
                            El::new("a")
                                .xmlns(NS_SM)
                                .attr("h", &h.to_string())
                                .to_string(),
                        );
                    }
                }
                Ok(Nonza::Handled)
            }
            "a" => self.ack(cx),
            "resume" => self.resume(cx).await,
            _ => Ok(Nonza::Handled),
        }
    }
}

impl StreamManagement {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Where)>> {
        self.detached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The detached session `id` of `account`, taken out of the map. A
    /// session still on a transport (the server has not seen the drop yet)
    /// is told to detach first, and waited for a moment.
    async fn take_entry(&self, id: &str, account: &str) -> Option<Take> {
        let until = Instant::now() + Duration::from_secs(5);
        let mut asked = false;
        loop {
            {
                let mut map = self.map();
                // Only the same account may take it over.
                match map.get(id) {
                    Some((owner, _)) if owner != account => return None,
                    None => return None,
                    Some((_, Where::Detached(_))) => {
                        return match map.remove(id) {
                            Some((_, Where::Detached(take))) => Some(take),
                            _ => None,
                        }
                    }
                    Some((_, Where::Active(handle))) => {
                        if !asked {
                            let handle = handle.upgrade()?;
                            handle.detach_now();
                            asked = true;
                        }
                    }
                }
            }
            if Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn enable(&self, cx: &mut NonzaCx<'_>) -> Result<Nonza, SessionEnd> {
        let Some(s) = cx.session.as_deref_mut() else {
            // XEP-0198 §3: only after a resource is bound.
            cx.replies.push(failed("unexpected-request", None));
            return Ok(Nonza::Handled);
        };
        if s.ext.get::<Sm>().is_some() {
            cx.replies.push(failed("unexpected-request", None));
            return Ok(Nonza::Handled);
        }
        let resume = matches!(cx.el.attr("resume"), Some("true") | Some("1"));
        let asked = cx.el.attr("max").and_then(|m| m.parse::<u64>().ok());
        let secs = asked
            .unwrap_or(self.settings.resume_timeout)
            .clamp(1, self.settings.max_resume_timeout);
        let id = resume.then(|| hex::encode(rand::random::<[u8; 16]>()));
        let mut enabled = El::new("enabled").xmlns(NS_SM);
        if let Some(id) = &id {
            enabled = enabled
                .attr("id", id)
                .attr("resume", "true")
                .attr("max", &secs.to_string());
        }
        if let Some(id) = &id {
            self.map().insert(
                id.clone(),
                (
                    cx.account.to_string(),
                    Where::Active(Arc::downgrade(&s.handle)),
                ),
            );
        }
        s.ext.insert(Sm {
            id,
            timeout: Duration::from_secs(secs),
            in_base: s.handled_in,
            ..Sm::default()
        });
        s.keeps_unacked = true;
        cx.ctx
            .instr
            .count(&ev::SM_ENABLED, &[if resume { "resume" } else { "ack" }]);
        cx.replies.push(enabled.to_string());
        Ok(Nonza::Handled)
    }

    fn ack(&self, cx: &mut NonzaCx<'_>) -> Result<Nonza, SessionEnd> {
        let h = client_h(cx)?;
        let Some(sm) = cx
            .session
            .as_deref_mut()
            .and_then(|s| s.ext.get_mut::<Sm>())
        else {
            return Ok(Nonza::Handled);
        };
        let newly = h.wrapping_sub(sm.acked) as usize;
        if newly > sm.unacked.len() {
            // XEP-0198 §4: acknowledging more than was sent.
            let app = El::new("handled-count-too-high")
                .xmlns(NS_SM)
                .attr("h", &h.to_string())
                .attr("send-count", &sm.sent.to_string())
                .to_string();
            return Err(StreamError::with_text(
                StreamCondition::UndefinedCondition,
                "acknowledged more stanzas than were sent",
            )
            .with_app(app)
            .into());
        }
        sm.unacked.ack(newly);
        sm.acked = h;
        if let Some(since) = sm.since.take() {
            let registry = &cx.ctx.instr.registry;
            self.ack_series
                .get_or_init(|| registry.resolve(&ev::SM_ACK, &[]))
                .emit(
                    &[("count", 1.0), ("seconds", since.elapsed().as_secs_f64())],
                    &osprey_instrument::Meta::NONE,
                );
        }
        if !sm.unacked.is_empty() {
            sm.since = Some(Instant::now());
        }
        Ok(Nonza::Handled)
    }

    async fn resume(&self, cx: &mut NonzaCx<'_>) -> Result<Nonza, SessionEnd> {
        if cx.session.is_some() {
            cx.replies.push(failed("unexpected-request", None));
            return Ok(Nonza::Handled);
        }
        let h = client_h(cx)?;
        let previd = cx.el.attr("previd").unwrap_or_default();
        let entry = self.take_entry(previd, &cx.account.to_string()).await;
        let session = match entry {
            Some(take) => {
                let (tx, rx) = oneshot::channel();
                match take.send(tx).await {
                    Ok(()) => rx.await.ok().and_then(Handover::take),
                    Err(_) => None,
                }
            }
            None => None,
        };
        let Some(mut session) = session else {
            cx.ctx.instr.count(&ev::SM_FAILED, &["item_not_found"]);
            cx.replies.push(failed("item-not-found", None));
            return Ok(Nonza::Handled);
        };
        let queued = std::mem::take(&mut session.replay);
        let handled = session.handled_in;
        let Some(sm) = session.ext.get_mut::<Sm>() else {
            cx.replies.push(failed("item-not-found", None));
            return Ok(Nonza::Handled);
        };
        // What the client says it got is dropped; the rest is written again
        // (and counted again as it goes out), then what queued meanwhile.
        let newly = (h.wrapping_sub(sm.acked) as usize).min(sm.unacked.len());
        sm.unacked.ack(newly);
        let replay: Vec<String> = sm.unacked.take_all().into_iter().chain(queued).collect();
        sm.acked = h;
        sm.sent = h;
        sm.since = None;
        let ours = (handled - sm.in_base) as u32;
        cx.ctx.instr.emit(
            &ev::SM_RESUMED,
            &[],
            &[("count", 1.0), ("replayed", replay.len() as f64)],
        );
        session.replay = replay;
        session.handle.set_state(SessionState::Active);
        // The id stays valid: the client resumes with it after its next drop
        // (and a resume racing this one finds the session active, to take over).
        self.map().insert(
            previd.to_string(),
            (
                cx.account.to_string(),
                Where::Active(Arc::downgrade(&session.handle)),
            ),
        );
        cx.replies.push(
            El::new("resumed")
                .xmlns(NS_SM)
                .attr("previd", previd)
                .attr("h", &ours.to_string())
                .to_string(),
        );
        let ctx = cx.ctx.clone();
        ctx.hooks
            .run_session(&ctx, &mut session, SessionEvent::Resumed)
            .await;
        Ok(Nonza::Resume(Box::new(session)))
    }
}

impl WriteHook for StreamManagement {
    fn active(&self, ext: &crate::session::Extensions) -> bool {
        ext.get::<Sm>().is_some()
    }

    fn write(&self, cx: &mut WriteCx<'_>) -> Flow {
        if cx.kind.is_none() {
            return Flow::Continue;
        }
        if let Some(sm) = cx.ext.get_mut::<Sm>() {
            let n = sm.unacked.len();
            if n >= self.settings.max_unacked {
                cx.close = Some(StreamError::with_text(
                    StreamCondition::ResourceConstraint,
                    format!("{n} stanzas unacknowledged"),
                ));
            } else if n > 0 && n % self.settings.ack_request_every == 0 {
                cx.prepend.push(El::new("r").xmlns(NS_SM).to_string());
            }
            sm.unacked.push(cx.xml);
            sm.sent = sm.sent.wrapping_add(1);
            sm.since.get_or_insert_with(Instant::now);
        }
        Flow::Continue
    }
}

impl DetachHook for StreamManagement {
    fn detach(&self, ctx: &Arc<Ctx>, session: Box<Session>) -> Result<(), Box<Session>> {
        let Some((id, timeout, unacked)) = session
            .ext
            .get::<Sm>()
            .and_then(|sm| Some((sm.id.clone()?, sm.timeout, sm.unacked.len())))
        else {
            return Err(session);
        };
        session.handle.set_state(SessionState::Detached);
        ctx.instr.emit(
            &ev::SM_DETACHED,
            &[],
            &[("count", 1.0), ("unacked", unacked as f64)],
        );
        let (take, rx) = mpsc::channel(1);
        let account = session.handle.bare().to_string();
        self.map()
            .insert(id.clone(), (account, Where::Detached(take)));
        let ctx = ctx.clone();
        let this = ctx.hooks.state::<Registry>();
        ctx.tasks
            .spawn(wait(ctx.clone(), this, id, *session, timeout, rx));
        Ok(())
    }
}

#[async_trait]
impl SessionHook for StreamManagement {
    async fn session(&self, _: &Arc<Ctx>, session: &mut Session, event: SessionEvent) {
        // A managed session that ends: what the client never acknowledged
        // is kept offline (with the queue) rather than lost.
        if event == SessionEvent::Closed {
            if let Some(sm) = session.ext.get_mut::<Sm>() {
                if let Some(id) = &sm.id {
                    let mut map = self.map();
                    if matches!(map.get(id), Some((_, Where::Active(_)))) {
                        map.remove(id);
                    }
                }
                let mut kept: Vec<String> = sm.unacked.take_all();
                kept.append(&mut session.replay);
                session.replay = kept;
            }
        }
    }
}

/// Lets the waiting task forget its id when it ends on its own.
struct Registry(Arc<StreamManagement>);

/// A detached session waits here: for a resume, its timeout, a close
/// (replaced, kicked), or shutdown. Stanzas for it queue meanwhile.
async fn wait(
    ctx: Arc<Ctx>,
    registry: Option<Arc<Registry>>,
    id: String,
    mut s: Session,
    timeout: Duration,
    mut take: mpsc::Receiver<oneshot::Sender<Handover>>,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let max_bytes = ctx
        .config
        .listen
        .c2s
        .iter()
        .map(|l| l.max_queue_bytes)
        .max()
        .unwrap_or(1 << 20);
    let mut bytes = 0usize;
    let mut offline = false;
    let reason = loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                ctx.instr.count(&ev::SM_FAILED, &["timeout"]);
                break "sm_timeout";
            }
            _ = ctx.shutdown.cancelled() => break "shutdown",
            req = take.recv() => match req {
                Some(reply) => {
                    if offline {
                        s.handle.offline_waiting();
                    }
                    match reply.send(Handover(Some((s, ctx.clone())))) {
                        Ok(()) => return,
                        // The new stream went away before it got it.
                        Err(back) => match back.take() {
                            Some(back) => { s = back; break "sm_abandoned"; }
                            None => return,
                        },
                    }
                }
                None => break "sm_abandoned",
            },
            item = s.mailbox.recv() => match item {
                Some(Outbound::Stanza(xml, _)) => {
                    s.handle.written(xml.len());
                    bytes += xml.len();
                    s.replay.push(xml);
                    if bytes > max_bytes {
                        ctx.instr.limit("slow_consumer");
                        break "slow_consumer";
                    }
                }
                Some(Outbound::OfflineWaiting) => offline = true,
                Some(Outbound::Detach) => {}
                Some(Outbound::Close(e)) => {
                    break if e.condition == StreamCondition::Conflict { "replaced" } else { "kicked" };
                }
                None => break "peer_closed",
            },
        }
    };
    if let Some(r) = registry {
        let mut map = r.0.map();
        if matches!(map.get(&id), Some((_, Where::Detached(_)))) {
            map.remove(&id);
        }
    }
    tracing::info!(jid = %s.handle.full(), session = s.id(), reason, "detached session ends");
    crate::session::leave(&ctx, s, reason).await;
}

#[cfg(test)]
mod tests {
    use crate::errors::SessionEnd;
    use crate::modules::testing::TestServer;

    const ENABLE: &str = "<enable xmlns='urn:xmpp:sm:3' resume='true' max='100000'/>";

    #[tokio::test]
    async fn enable_gives_an_id_and_caps_max() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let r = t.nonza(&a, ENABLE).await.expect("enabled");
        assert!(
            r[0].starts_with("<enabled xmlns='urn:xmpp:sm:3' id='"),
            "{r:?}"
        );
        assert!(
            r[0].contains("resume='true'") && r[0].contains("max='600'"),
            "{r:?}"
        );
        // Twice is refused.
        let r = t.nonza(&a, ENABLE).await.expect("answered");
        assert!(r[0].contains("unexpected-request"), "{r:?}");
    }

    #[tokio::test]
    async fn counts_handled_stanzas_and_acks_what_was_written() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        t.send(&a, "<presence/>").await; // before enable: not counted
        let _ = t.take_all(&a);
        t.nonza(&a, ENABLE).await.expect("enabled");
        for i in 0..3 {
            t.send(
                &a,
                &format!("<iq type='get' id='p{i}'><ping xmlns='urn:xmpp:ping'/></iq>"),
            )
            .await;
        }
        let r = t.nonza(&a, "<r xmlns='urn:xmpp:sm:3'/>").await.expect("a");
        assert_eq!(r, ["<a xmlns='urn:xmpp:sm:3' h='3'/>"]);
        // Three results written: acking 2, then 3, is fine; 4 is too many.
        assert_eq!(t.take_all(&a).len(), 3);
        t.nonza(&a, "<a xmlns='urn:xmpp:sm:3' h='2'/>")
            .await
            .expect("ok");
        t.nonza(&a, "<a xmlns='urn:xmpp:sm:3' h='3'/>")
            .await
            .expect("ok");
        match t.nonza(&a, "<a xmlns='urn:xmpp:sm:3' h='4'/>").await {
            Err(SessionEnd::Stream(e)) => {
                assert_eq!(e.condition.wire_name(), "undefined-condition");
                let app = e.app.expect("application condition");
                assert!(
                    app.contains("handled-count-too-high") && app.contains("send-count='3'"),
                    "{app}"
                );
            }
            other => panic!("expected a stream error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn asks_for_acks_and_closes_a_session_that_never_acks() {
        let t = TestServer::new(&[(
            "stream_management",
            "ack_request_every = 2\nmax_unacked = 4",
        )])
        .await;
        let a = t.session("alice", "a").await;
        let b = t.session("bob", "b").await;
        t.nonza(&a, ENABLE).await.expect("enabled");
        for i in 0..5 {
            t.send(&b, &format!("<message to='alice@localhost/a' type='chat' id='m{i}'><body>{i}</body></message>"))
                .await;
        }
        let out = t.take_all(&a);
        let requests = out
            .iter()
            .filter(|x| x.as_str() == "<r xmlns='urn:xmpp:sm:3'/>")
            .count();
        assert_eq!(requests, 1, "{out:?}");
        assert_eq!(out.iter().filter(|x| x.starts_with("<message")).count(), 5);
        let closing = a.session.try_lock().expect("free").closing.take();
        assert!(closing.is_some_and(|e| e.condition.wire_name() == "resource-constraint"));
    }

    #[tokio::test]
    async fn a_malformed_count_is_a_bad_format_stream_error() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        t.nonza(&a, ENABLE).await.expect("enabled");
        for bad in [
            "<a xmlns='urn:xmpp:sm:3' h='x'/>",
            "<a xmlns='urn:xmpp:sm:3'/>",
            "<a xmlns='urn:xmpp:sm:3' h='4294967296'/>",
        ] {
            match t.nonza(&a, bad).await {
                Err(SessionEnd::Stream(e)) => {
                    assert_eq!(e.condition.wire_name(), "bad-format", "{bad}")
                }
                other => panic!("{bad}: expected a stream error, got {other:?}"),
            }
        }
        // An unknown element of the namespace is ignored.
        assert!(t
            .nonza(&a, "<nonsense xmlns='urn:xmpp:sm:3'/>")
            .await
            .expect("ok")
            .is_empty());
    }

    #[tokio::test]
    async fn resume_of_an_unknown_id_fails() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let r = t
            .nonza(&a, "<resume xmlns='urn:xmpp:sm:3' previd='nope' h='0'/>")
            .await
            .expect("answered");
        // A bound session cannot resume another.
        assert!(r[0].contains("unexpected-request"), "{r:?}");
    }

    #[tokio::test]
    async fn settings_are_checked() {
        let bad = crate::config::Config::parse(
            "[modules.stream_management]\nresume_timeout = 900\nmax_resume_timeout = 600\n",
            std::path::Path::new("t.toml"),
        );
        let e = bad.expect_err("refused").to_string();
        assert!(
            e.contains("modules.stream_management.resume_timeout"),
            "{e}"
        );
    }
}
