//! Presence (RFC 6121 §4): initial and broadcast presence to subscribers
//! and the user's own resources, probes answered from the contacts' last
//! presence, directed presence, and unavailable when the session closes.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::roster::internal;
use super::subscription;
use super::{Module, ModuleDef, NoSettings};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{Flow, Hooks, SendCx, SendHook, SessionEvent, SessionHook};
use crate::jid::Jid;
use crate::router::{self, SessionHandle};
use crate::server::Ctx;
use crate::session::{Extensions, Session};
use crate::stanza::{Kind, Stanza};
use crate::storage::Subscription;
use crate::xml::{rewrite_from_to, El, Element};

pub const DEF: ModuleDef = ModuleDef {
    name: "presence",
    build: |t| {
        super::settings::<NoSettings>(t)?;
        Ok(Arc::new(Presence))
    },
};

pub struct Presence;

/// Per session: JIDs that got directed presence from it; they get
/// unavailable presence when it leaves (RFC 6121 §4.6.3).
#[derive(Default)]
struct Directed(HashSet<String>);

impl Module for Presence {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.user_send(Kind::Presence, 0, &h::PRESENCE_SEND, self.clone());
        hooks.session(0, &h::PRESENCE_UNAVAILABLE, self);
    }
}

#[async_trait]
impl SendHook for Presence {
    async fn send(&self, cx: &mut SendCx<'_>, stanza: &Stanza) -> Flow {
        handle(
            cx.ctx,
            &cx.session.handle.clone(),
            &mut cx.session.ext,
            stanza,
        )
        .await;
        Flow::Handled
    }
}

#[async_trait]
impl SessionHook for Presence {
    async fn session(&self, ctx: &Arc<Ctx>, session: &mut Session, event: SessionEvent) {
        if event == SessionEvent::Closed {
            on_disconnect(ctx, &session.handle.clone(), &mut session.ext).await;
        }
    }
}

async fn handle(ctx: &Ctx, me: &Arc<SessionHandle>, ext: &mut Extensions, st: &Stanza) {
    let el = &st.el;
    let to = st.to.clone();
    let typ = el.attr("type");
    let started = std::time::Instant::now();
    if let Some(kind) = typ.and_then(subscription::Kind::parse) {
        match to {
            Some(contact) if contact.local().is_some() => {
                let name = match kind {
                    subscription::Kind::Subscribe => &h::PRESENCE_SUBSCRIBE,
                    subscription::Kind::Subscribed => &h::PRESENCE_SUBSCRIBED,
                    subscription::Kind::Unsubscribe => &h::PRESENCE_UNSUBSCRIBE,
                    subscription::Kind::Unsubscribed => &h::PRESENCE_UNSUBSCRIBED,
                };
                crate::hooks::call(
                    ctx,
                    name,
                    subscription::handle_outbound(ctx, me, &contact, kind, el),
                )
                .await;
            }
            _ => bounce(ctx, me, el, StanzaCondition::BadRequest),
        }
        return;
    }
    match (typ, to) {
        (None | Some("unavailable"), None) => {
            broadcast(ctx, me, ext, el, typ.is_none()).await;
        }
        (None | Some("unavailable") | Some("error"), Some(to)) => {
            // Directed presence (RFC 6121 §4.6).
            let xml = rewrite_from_to(el, Some(me.full()), None);
            let directed = &mut ext.entry::<Directed>().0;
            match typ {
                None => {
                    directed.insert(to.to_string());
                }
                Some("unavailable") => {
                    directed.remove(&to.to_string());
                }
                _ => {}
            }
            let routed = router::route(
                ctx,
                crate::hooks::Route {
                    from: me.jid(),
                    to: &to,
                    kind: Kind::Presence,
                    typ,
                    xml: xml.into(),
                    stanza: Some(st),
                    notes: Default::default(),
                },
            )
            .await;
            let outcome = match routed {
                Ok(router::Routed::Delivered(n)) if n > 0 => "delivered",
                _ => "dropped",
            };
            ctx.instr.routed("presence", outcome, None);
            ctx.instr.handler(
                h::PRESENCE_DIRECTED.module,
                h::PRESENCE_DIRECTED.operation,
                started.elapsed(),
            );
        }
        // Servers send probes; a client's probe is ignored.
        (Some("probe"), _) => {}
        _ => bounce(ctx, me, el, StanzaCondition::BadRequest),
    }
}

fn bounce(ctx: &Ctx, me: &SessionHandle, el: &Element, condition: StanzaCondition) {
    ctx.instr.stanza_error(&condition);
    let from = me.jid().domain().to_string();
    let _ = router::deliver_local(
        ctx,
        me,
        StanzaError::new(condition).reply_to(el, &from, me.full()),
    );
}

/// Availability broadcast: from subscribers to own resources; on initial
/// presence also probes, offline messages and pending requests.
async fn broadcast(
    ctx: &Ctx,
    me: &Arc<SessionHandle>,
    ext: &mut Extensions,
    el: &Element,
    available: bool,
) {
    let started = std::time::Instant::now();
    broadcast_inner(ctx, me, ext, el, available).await;
    ctx.instr.handler(
        h::PRESENCE_BROADCAST.module,
        h::PRESENCE_BROADCAST.operation,
        started.elapsed(),
    );
}

async fn broadcast_inner(
    ctx: &Ctx,
    me: &Arc<SessionHandle>,
    ext: &mut Extensions,
    el: &Element,
    available: bool,
) {
    let priority = el
        .node()
        .children()
        .find(|c| c.tag_name().name() == "priority")
        .and_then(|p| p.text())
        .and_then(|t| t.trim().parse::<i8>().ok())
        .unwrap_or(0);
    let mut xml = rewrite_from_to(el, Some(me.full()), None);
    if available {
        ctx.hooks
            .run_presence_out(ctx, &me.jid().to_bare(), &mut xml)
            .await;
    }
    let was_available = {
        let Ok(mut p) = me.presence.lock() else {
            return;
        };
        let was = p.available;
        p.available = available;
        p.priority = priority;
        p.last = available.then(|| xml.clone());
        was
    };
    ctx.sessions.presence_changed(me);
    let owner = me.jid().to_bare();
    let (host, user) = (owner.domain(), owner.local().unwrap_or_default());
    let roster = match ctx.stores.roster.roster_get(host, user).await {
        Ok(r) => r,
        Err(e) => {
            let _ = internal(e);
            Vec::new()
        }
    };
    let Ok(parsed) = Element::parse(&xml) else {
        return;
    };
    for item in &roster {
        if matches!(item.subscription, Subscription::From | Subscription::Both) {
            if let Ok(contact) = Jid::parse(&item.jid) {
                let out = rewrite_from_to(&parsed, None, Some(&item.jid));
                let _ = router::route_xml(ctx, Kind::Presence, me.jid(), &contact, &out).await;
            }
        }
    }
    // The user's own resources, this one included (RFC 6121 §4.2.2).
    for s in router::resources(ctx, me.bare()) {
        if s.is_available() || s.id() == me.id() {
            let _ = router::deliver(ctx, &s, rewrite_from_to(&parsed, None, Some(s.full())));
        }
    }
    if !available {
        let directed = std::mem::take(&mut ext.entry::<Directed>().0);
        for target in directed {
            if let Ok(to) = Jid::parse(&target) {
                let out = rewrite_from_to(&parsed, None, Some(&target));
                let _ = router::route_xml(ctx, Kind::Presence, me.jid(), &to, &out).await;
            }
        }
        return;
    }
    if was_available {
        return;
    }
    // Initial presence: the contacts' current presence (probes answered
    // locally from their last broadcast).
    let probes = std::time::Instant::now();
    for item in &roster {
        if matches!(item.subscription, Subscription::To | Subscription::Both) {
            if let Ok(contact) = Jid::parse(&item.jid) {
                subscription::send_presence_of(ctx, &contact, me.jid(), true).await;
            }
        }
    }
    ctx.instr.handler(
        h::PRESENCE_PROBE.module,
        h::PRESENCE_PROBE.operation,
        probes.elapsed(),
    );
    // Requests that arrived while the user was away (RFC 6121 §3.1.3).
    match ctx.stores.roster.sub_requests(host, user).await {
        Ok(requests) => {
            for (_, stanza) in requests {
                let _ = router::deliver_local(ctx, me, stanza);
            }
        }
        Err(e) => {
            let _ = internal(e);
        }
    }
}

/// The session is gone: if it was available, everyone who saw it gets
/// unavailable presence.
async fn on_disconnect(ctx: &Ctx, me: &Arc<SessionHandle>, ext: &mut Extensions) {
    if !me.is_available() {
        return;
    }
    let unavailable = El::new("presence").attr("type", "unavailable").to_string();
    if let Ok(el) = Element::parse(&unavailable) {
        broadcast_inner(ctx, me, ext, &el, false).await;
    }
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::TestServer;

    /// alice and bob subscribed both ways, through the real handshake.
    async fn friends(
        t: &TestServer,
    ) -> (
        super::super::testing::TestSession,
        super::super::testing::TestSession,
    ) {
        let a = t.session("alice", "a").await;
        let b = t.session("bob", "b").await;
        for (x, y, yname) in [(&a, &b, "bob"), (&b, &a, "alice")] {
            t.send(
                x,
                &format!("<presence to='{yname}@localhost' type='subscribe'/>"),
            )
            .await;
            let xname = if yname == "bob" { "alice" } else { "bob" };
            t.send(
                y,
                &format!("<presence to='{xname}@localhost' type='subscribed'/>"),
            )
            .await;
        }
        let _ = t.take_all(&a);
        let _ = t.take_all(&b);
        (a, b)
    }

    #[tokio::test]
    async fn initial_presence_reaches_subscribers_and_probes_theirs() {
        let t = TestServer::new(&[]).await;
        let (a, b) = friends(&t).await;
        t.send(&b, "<presence><show>away</show></presence>").await;
        let _ = t.take_all(&a);
        let _ = t.take_all(&b);
        t.send(&a, "<presence><priority>5</priority></presence>")
            .await;
        let to_bob = t.take_all(&b);
        assert!(
            to_bob
                .iter()
                .any(|x| x.contains("from='alice@localhost/a'")
                    && x.contains("<priority>5</priority>")),
            "{to_bob:?}"
        );
        // Alice gets her own echo and bob's current presence (answered probe).
        let to_alice = t.take_all(&a);
        assert!(
            to_alice
                .iter()
                .any(|x| x.contains("from='bob@localhost/b'") && x.contains("away")),
            "{to_alice:?}"
        );
        assert!(
            to_alice
                .iter()
                .any(|x| x.contains("from='alice@localhost/a'")),
            "{to_alice:?}"
        );
    }

    #[tokio::test]
    async fn closing_sends_unavailable_to_subscribers_and_directed_targets() {
        let t = TestServer::new(&[]).await;
        let (a, b) = friends(&t).await;
        let c = t.session("carol", "c").await;
        t.send(&c, "<presence/>").await;
        t.send(&b, "<presence/>").await;
        t.send(&a, "<presence/>").await;
        t.send(&a, "<presence to='carol@localhost/c'/>").await;
        let _ = (t.take_all(&b), t.take_all(&c));
        t.close(a).await;
        let to_bob = t.take_all(&b);
        assert!(to_bob.iter().any(|x| x.contains("from='alice@localhost/a'") && x.contains("type='unavailable'")), "{to_bob:?}");
        let to_carol = t.take_all(&c);
        assert!(
            to_carol.iter().any(|x| x.contains("type='unavailable'")),
            "{to_carol:?}"
        );
    }

    #[tokio::test]
    async fn bad_presence_types_bounce() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        t.send(&a, "<presence type='nonsense' id='x'/>").await;
        let out = t.take_all(&a);
        assert!(out.iter().any(|x| x.contains("bad-request")), "{out:?}");
    }
}
