//! Message carbons (XEP-0280): a resource that enabled carbons gets a copy
//! of the chat messages its account sends and receives on its other
//! resources, so every client sees the whole conversation.
//!
//! Which messages: type `chat`, and type `normal` (or none) with a
//! `<body/>` (XEP-0280 §6); never `error`, `groupchat` or `headline`, nor a
//! message marked `<private xmlns='urn:xmpp:carbons:2'/>` (§7) or
//! `<no-copy xmlns='urn:xmpp:hints'/>` (XEP-0334). Only messages the router
//! delivered or stored offline are copied.
//!
//! Who gets a copy, after the router's decision:
//! - `<received/>`: every resource of the recipient with carbons enabled
//!   that did not get the message itself. Who got it is the router's rule
//!   (RFC 6121 §8.5) seen again: the addressed full JID when that session
//!   exists, else the available resources of the highest non-negative
//!   priority; nobody when it was stored offline. The sending session is
//!   never copied (a message to one's own account).
//! - `<sent/>`: every other resource of the sender with carbons enabled
//!   (not when sender and recipient are the same account: the received
//!   copies already cover it).
//!
//! Copies are queued straight to the sessions ([`router::deliver`]), never
//! routed, so a copy is never stored offline as a message of its own.
//! Which sessions enabled carbons is kept here, by session id, and
//! forgotten when the session closes.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;

use super::{IqRequest, IqResult, Module, ModuleDef, NoSettings, Target};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{Flow, Hooks, IqHandler, IqType, Route, RouteHook, SessionEvent, SessionHook};
use crate::jid::Jid;
use crate::router::{self, MessageType, Routed, SessionRef};
use crate::server::Ctx;
use crate::session::Session;
use crate::stanza::Kind;
use crate::xml::{El, Element, NS_CLIENT};

pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
pub const NS_HINTS: &str = "urn:xmpp:hints";

pub const DEF: ModuleDef = ModuleDef {
    name: "carbons",
    build: |t| {
        super::settings::<NoSettings>(t)?;
        Ok(Arc::new(Carbons::default()))
    },
};

/// The module and its state: the sessions with carbons enabled. Provided
/// to the registry ([`Hooks::state`]) so others can ask.
#[derive(Default)]
pub struct Carbons {
    enabled: DashMap<u64, ()>,
    /// How many sessions have carbons on: with none, routing skips the
    /// copy hooks at the cost of one atomic read.
    count: std::sync::atomic::AtomicUsize,
}

impl Carbons {
    pub fn is_enabled(&self, session: u64) -> bool {
        self.enabled.contains_key(&session)
    }

    fn any(&self) -> bool {
        self.count.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    fn enable(&self, session: u64) {
        if self.enabled.insert(session, ()).is_none() {
            self.count
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn disable(&self, session: u64) {
        if self.enabled.remove(&session).is_some() {
            self.count
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The `<sent/>` side, as a hook of its own (its own handler name).
struct Sent(Arc<Carbons>);

impl Module for Carbons {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.server_feature(NS_CARBONS);
        hooks.provide(self.clone());
        hooks.iq(NS_CARBONS, IqType::Set, &h::CARBONS_SET, self.clone());
        hooks.session(0, &h::CARBONS_CLOSED, self.clone());
        hooks.route_after(
            Kind::Message,
            0,
            &h::CARBONS_SENT,
            Arc::new(Sent(self.clone())),
        );
        hooks.route_after(Kind::Message, 0, &h::CARBONS_RECEIVED, self);
    }
}

#[async_trait]
impl IqHandler for Carbons {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        // Only for oneself (XEP-0280 §4: the request has no 'to').
        if !matches!(req.target, Target::OwnAccount) {
            return Err(StanzaError::new(StanzaCondition::NotAllowed));
        }
        if req.payload.tag_name().namespace() != Some(NS_CARBONS) {
            return Err(StanzaError::new(StanzaCondition::BadRequest));
        }
        match req.payload.tag_name().name() {
            "enable" => {
                self.enable(req.me.id());
            }
            "disable" => {
                self.disable(req.me.id());
            }
            _ => return Err(StanzaError::new(StanzaCondition::BadRequest)),
        }
        Ok(None)
    }
}

#[async_trait]
impl SessionHook for Carbons {
    async fn session(&self, _: &Arc<Ctx>, session: &mut Session, event: SessionEvent) {
        if event == SessionEvent::Closed {
            self.disable(session.id());
        }
    }
}

/// `<received/>` copies to the recipient's other resources.
#[async_trait]
impl RouteHook for Carbons {
    fn active(&self, _: &Route<'_>) -> bool {
        self.any()
    }

    async fn route(
        &self,
        ctx: &Ctx,
        route: &Route<'_>,
        outcome: Option<&Result<Routed, StanzaError>>,
    ) -> Flow {
        if !self.any() {
            return Flow::Continue;
        }
        let Some(stored) = copied(route, outcome) else {
            return Flow::Continue;
        };
        if route.to.local().is_none() || !ctx.serves(route.to.domain()) {
            return Flow::Continue;
        }
        let bare = route.to.bare();
        let sessions = router::resources(ctx, &bare);
        if !sessions.iter().any(|s| self.is_enabled(s.id())) {
            return Flow::Continue;
        }
        let got = if stored {
            HashSet::new()
        } else {
            recipients(ctx, route.to, &sessions)
        };
        let sender = route.from.to_string();
        let mut original = None;
        for s in &sessions {
            if !self.is_enabled(s.id()) || got.contains(&s.id()) || s.full() == sender {
                continue;
            }
            let fwd = original.get_or_insert_with(|| forwardable(&route.xml));
            let _ = router::deliver(ctx, s, carbon("received", &bare, s, route.typ, fwd));
        }
        Flow::Continue
    }
}

/// `<sent/>` copies to the sender's other resources.
#[async_trait]
impl RouteHook for Sent {
    fn active(&self, _: &Route<'_>) -> bool {
        self.0.any()
    }

    async fn route(
        &self,
        ctx: &Ctx,
        route: &Route<'_>,
        outcome: Option<&Result<Routed, StanzaError>>,
    ) -> Flow {
        if !self.0.any() || copied(route, outcome).is_none() {
            return Flow::Continue;
        }
        let from = route.from;
        if from.local().is_none() || from.bare() == route.to.bare() {
            return Flow::Continue;
        }
        let bare = from.bare();
        let sender = from.to_string();
        let mut original = None;
        for s in router::resources(ctx, &bare) {
            if !self.0.is_enabled(s.id()) || s.full() == sender {
                continue;
            }
            let fwd = original.get_or_insert_with(|| forwardable(&route.xml));
            let _ = router::deliver(ctx, &s, carbon("sent", &bare, &s, route.typ, fwd));
        }
        Flow::Continue
    }
}

/// Whether this routed message is to be copied: `Some(stored_offline)`.
fn copied(route: &Route<'_>, outcome: Option<&Result<Routed, StanzaError>>) -> Option<bool> {
    let stored = match outcome? {
        Ok(Routed::Delivered(_)) => false,
        Ok(Routed::StoredOffline) => true,
        _ => return None,
    };
    let parsed;
    let el = match route.stanza {
        Some(st) => &st.el,
        None => {
            parsed = Element::parse(&route.xml).ok()?;
            &parsed
        }
    };
    let has = |ns: &str, name: &str| {
        el.node()
            .children()
            .any(|c| c.is_element() && c.has_tag_name((ns, name)))
    };
    let eligible = match MessageType::parse(route.typ).unwrap_or(MessageType::Normal) {
        MessageType::Chat => true,
        MessageType::Normal => has(NS_CLIENT, "body"),
        MessageType::Groupchat | MessageType::Headline | MessageType::Error => false,
    };
    if !eligible || has(NS_CARBONS, "private") || has(NS_HINTS, "no-copy") {
        return None;
    }
    // A carbon is never copied again (one forged by a client included).
    if has(NS_CARBONS, "received") || has(NS_CARBONS, "sent") {
        return None;
    }
    Some(stored)
}

/// The sessions the router gave the message to (RFC 6121 §8.5 again).
fn recipients(ctx: &Ctx, to: &Jid, sessions: &[SessionRef]) -> HashSet<u64> {
    if let Some(r) = to.resource() {
        if let Some(s) = ctx.sessions.full(&to.bare(), r) {
            return HashSet::from([s.id()]);
        }
    }
    let candidates: Vec<(u64, i8)> = sessions
        .iter()
        .filter_map(|s| {
            let p = s.presence();
            (p.available && p.priority >= 0).then_some((s.id(), p.priority))
        })
        .collect();
    let top = candidates.iter().map(|(_, p)| *p).max();
    candidates
        .into_iter()
        .filter(|(_, p)| Some(*p) == top)
        .map(|(id, _)| id)
        .collect()
}

/// The original as a child of `<forwarded/>` (XEP-0297): in the
/// `jabber:client` namespace, which it otherwise inherited from the stream.
pub(crate) fn forwardable(xml: &str) -> String {
    let Some(rest) = xml.strip_prefix('<') else {
        return xml.to_string();
    };
    let name_len = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    let start_tag = &xml[..xml.find('>').unwrap_or(xml.len())];
    if rest[..name_len].contains(':')
        || start_tag.contains(" xmlns='")
        || start_tag.contains(" xmlns=\"")
    {
        return xml.to_string();
    }
    format!(
        "<{} xmlns='{NS_CLIENT}'{}",
        &rest[..name_len],
        &rest[name_len..]
    )
}

/// `<message from=bare to=full><sent|received><forwarded>…` (XEP-0280 §6, §7),
/// with XEP-0334's `<no-store/>`: a copy that never reached its session is
/// not kept offline (the original already was delivered or stored).
fn carbon(dir: &str, bare: &str, to: &SessionRef, typ: Option<&str>, original: &str) -> String {
    El::new("message")
        .attr("from", bare)
        .attr("to", to.full())
        .attr_opt("type", typ)
        .child(
            El::new(dir)
                .xmlns(NS_CARBONS)
                .child(El::new("forwarded").xmlns(NS_FORWARD).raw_child(original)),
        )
        .child(El::new("no-store").xmlns(crate::router::NS_HINTS))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::{Carbons, NS_CARBONS};
    use crate::modules::testing::{TestServer, TestSession};

    async fn enable(t: &TestServer, s: &TestSession) {
        let r = t
            .iq(
                s,
                "<iq type='set' id='cc'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
            )
            .await;
        assert!(r.contains("type='result'"), "{r}");
    }

    fn chat(to: &str, id: &str, extra: &str) -> String {
        format!("<message to='{to}' type='chat' id='{id}'><body>hi</body>{extra}</message>")
    }

    #[tokio::test]
    async fn enable_disable_and_errors() {
        let t = TestServer::new(&[]).await;
        assert!(t.ctx.hooks.server_features().contains(&NS_CARBONS));
        let a = t.session("alice", "a").await;
        enable(&t, &a).await;
        let state = t.ctx.hooks.state::<Carbons>().expect("state");
        assert!(state.is_enabled(a.handle.id()));
        let r = t
            .iq(
                &a,
                "<iq type='set' id='d'><disable xmlns='urn:xmpp:carbons:2'/></iq>",
            )
            .await;
        assert!(r.contains("type='result'"), "{r}");
        assert!(!state.is_enabled(a.handle.id()));
        t.add_account("bob");
        let r = t
            .iq(
                &a,
                "<iq type='set' id='o' to='bob@localhost'><enable xmlns='urn:xmpp:carbons:2'/></iq>",
            )
            .await;
        assert!(r.contains("not-allowed"), "{r}");
        let r = t
            .iq(
                &a,
                "<iq type='set' id='x'><toggle xmlns='urn:xmpp:carbons:2'/></iq>",
            )
            .await;
        assert!(r.contains("bad-request"), "{r}");
    }

    #[tokio::test]
    async fn forgotten_when_the_session_closes() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        enable(&t, &a).await;
        let state = t.ctx.hooks.state::<Carbons>().expect("state");
        let mut s = a.session.lock().await;
        t.ctx
            .hooks
            .run_session(&t.ctx, &mut s, crate::hooks::SessionEvent::Closed)
            .await;
        assert!(!state.is_enabled(a.handle.id()));
    }

    #[tokio::test]
    async fn received_and_sent_copies_go_to_other_enabled_resources() {
        let t = TestServer::new(&[]).await;
        let a1 = t.session("alice", "a1").await;
        let a2 = t.session("alice", "a2").await;
        let a3 = t.session("alice", "a3").await;
        let b1 = t.session("bob", "b1").await;
        let b2 = t.session("bob", "b2").await;
        for s in [&a1, &a2, &b1, &b2] {
            enable(&t, s).await;
        }
        t.send(&b1, &chat("alice@localhost/a1", "m1", "")).await;
        let got = t.take_all(&a1);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("id='m1'") && !got[0].contains("carbons"));
        let got = t.take_all(&a2);
        assert_eq!(got.len(), 1, "{got:?}");
        let c = &got[0];
        assert!(
            c.starts_with("<message from='alice@localhost' to='alice@localhost/a2' type='chat'>"),
            "{c}"
        );
        assert!(c.contains("<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'"), "{c}");
        assert!(
            c.contains("from='bob@localhost/b1'") && c.contains("id='m1'"),
            "{c}"
        );
        assert!(t.take_all(&a3).is_empty(), "carbons not enabled");
        assert!(t.take_all(&b1).is_empty(), "the sender gets no copy");
        let got = t.take_all(&b2);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("<message from='bob@localhost' to='bob@localhost/b2' type='chat'><sent xmlns='urn:xmpp:carbons:2'><forwarded"),
            "{}", got[0]
        );
    }

    #[tokio::test]
    async fn bare_jid_copies_to_those_the_router_passed_over() {
        let t = TestServer::new(&[]).await;
        let a1 = t.session("alice", "a1").await;
        let a2 = t.session("alice", "a2").await;
        let b = t.session("bob", "b").await;
        enable(&t, &a1).await;
        enable(&t, &a2).await;
        // a1 is available (priority 0), a2 never sent presence.
        t.send(&a1, "<presence/>").await;
        let _ = t.take_all(&a1);
        let _ = t.take_all(&a2);
        t.send(&b, &chat("alice@localhost", "m", "")).await;
        let got = t.take_all(&a1);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(!got[0].contains("carbons"), "{got:?}");
        let got = t.take_all(&a2);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("<received xmlns='urn:xmpp:carbons:2'>"));
    }

    #[tokio::test]
    async fn stored_offline_still_copied_to_enabled_resources() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let b = t.session("bob", "b").await;
        enable(&t, &a).await;
        // a is not available: the message is stored, a gets a copy.
        t.send(&b, &chat("alice@localhost", "m", "")).await;
        let got = t.take_all(&a);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("<received"), "{got:?}");
    }

    #[tokio::test]
    async fn private_no_copy_and_other_types_are_not_copied() {
        let t = TestServer::new(&[]).await;
        let a1 = t.session("alice", "a1").await;
        let a2 = t.session("alice", "a2").await;
        let b1 = t.session("bob", "b1").await;
        let b2 = t.session("bob", "b2").await;
        for s in [&a2, &b2] {
            enable(&t, s).await;
        }
        let to = "alice@localhost/a1";
        t.send(&b1, &chat(to, "p", "<private xmlns='urn:xmpp:carbons:2'/>"))
            .await;
        t.send(&b1, &chat(to, "n", "<no-copy xmlns='urn:xmpp:hints'/>"))
            .await;
        t.send(
            &b1,
            &format!("<message to='{to}' type='headline' id='h'><body>x</body></message>"),
        )
        .await;
        t.send(
            &b1,
            &format!("<message to='{to}' id='nb'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"),
        )
        .await;
        assert_eq!(t.take_all(&a1).len(), 4);
        assert!(t.take_all(&a2).is_empty());
        assert!(t.take_all(&b2).is_empty());
        // Normal with a body is copied.
        t.send(
            &b1,
            &format!("<message to='{to}' id='nm'><body>x</body></message>"),
        )
        .await;
        let got = t.take_all(&a2);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("id='nm'") && !got[0].contains("type="));
        assert_eq!(t.take_all(&b2).len(), 1);
    }

    #[test]
    fn forwarded_original_is_in_jabber_client() {
        assert_eq!(
            super::forwardable("<message from='a' to='b'/>"),
            "<message xmlns='jabber:client' from='a' to='b'/>"
        );
        assert_eq!(
            super::forwardable("<message><body/></message>"),
            "<message xmlns='jabber:client'><body/></message>"
        );
        let kept = "<message xmlns='jabber:client' to='b'/>";
        assert_eq!(super::forwardable(kept), kept);
    }
}
