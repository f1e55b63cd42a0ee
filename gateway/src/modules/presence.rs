//! Presence (RFC 6121 §4): initial and broadcast presence to subscribers
//! and the user's own resources, probes answered from the contacts' last
//! presence, directed presence, and unavailable on disconnect.

use std::sync::Arc;

use tracing::Instrument;

use super::roster::internal;
use super::subscription;
use crate::c2s::Local;
use crate::errors::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::router::{self, SessionHandle};
use crate::server::Ctx;
use crate::storage::Subscription;
use crate::xml::{rewrite_from_to, El, Element};

pub async fn handle(
    ctx: &Ctx,
    me: &Arc<SessionHandle>,
    local: &mut Local,
    el: &Element,
    to: Option<Jid>,
) {
    let typ = el.attr("type");
    let started = std::time::Instant::now();
    if let Some(kind) = typ.and_then(subscription::Kind::parse) {
        match to {
            Some(contact) if contact.local().is_some() => {
                let span = crate::child_span!(
                    "module.handler",
                    module = "presence",
                    operation = kind.as_str()
                );
                crate::live::call(
                    "module",
                    || format!("module.presence.{}", kind.as_str()),
                    subscription::handle_outbound(ctx, me, &contact, kind, el).instrument(span),
                )
                .await;
                ctx.instr
                    .handler("presence", kind.as_str(), started.elapsed());
            }
            _ => bounce(ctx, me, el, StanzaCondition::BadRequest),
        }
        return;
    }
    match (typ, to) {
        (None | Some("unavailable"), None) => {
            let span = crate::child_span!(
                "module.handler",
                module = "presence",
                operation = "broadcast"
            );
            crate::live::call(
                "module",
                || "module.presence.broadcast".into(),
                broadcast(ctx, me, local, el, typ.is_none()).instrument(span),
            )
            .await;
            ctx.instr
                .handler("presence", "broadcast", started.elapsed());
        }
        (None | Some("unavailable") | Some("error"), Some(to)) => {
            // Directed presence (RFC 6121 §4.6).
            let xml = rewrite_from_to(el, Some(me.full()), None);
            match typ {
                None => {
                    local.directed.insert(to.to_string());
                }
                Some("unavailable") => {
                    local.directed.remove(&to.to_string());
                }
                _ => {}
            }
            let n = router::route_presence(ctx, &to, &xml);
            let outcome = if n > 0 { "delivered" } else { "dropped" };
            ctx.instr.routed("presence", outcome, None);
            ctx.instr.handler("presence", "directed", started.elapsed());
        }
        // Servers send probes; a client's probe is ignored.
        (Some("probe"), _) => {}
        _ => bounce(ctx, me, el, StanzaCondition::BadRequest),
    }
}

fn bounce(ctx: &Ctx, me: &SessionHandle, el: &Element, condition: StanzaCondition) {
    ctx.instr.stanza_error(&condition);
    let from = me.jid().domain().to_string();
    let _ = me.deliver(StanzaError::new(condition).reply_to(el, &from, me.full()));
}

/// Availability broadcast: from subscribers to own resources; on initial
/// presence also probes, offline messages and pending requests.
async fn broadcast(
    ctx: &Ctx,
    me: &Arc<SessionHandle>,
    local: &mut Local,
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
    let xml = rewrite_from_to(el, Some(me.full()), None);
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
    let owner = me.jid().to_bare();
    let (host, user) = (owner.domain(), owner.local().unwrap_or_default());
    let roster = match ctx.storage.roster_get(host, user).await {
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
                router::route_presence(ctx, &contact, &out);
            }
        }
    }
    // The user's own resources, this one included (RFC 6121 §4.2.2).
    for s in ctx.sessions.resources(me.bare()) {
        if s.is_available() || s.id() == me.id() {
            let _ = s.deliver(rewrite_from_to(&parsed, None, Some(s.full())));
        }
    }
    if !available {
        for target in local.directed.drain() {
            if let Ok(to) = Jid::parse(&target) {
                let out = rewrite_from_to(&parsed, None, Some(&target));
                router::route_presence(ctx, &to, &out);
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
                subscription::send_presence_of(ctx, &contact, me.jid(), true);
            }
        }
    }
    ctx.instr.handler("presence", "probe", probes.elapsed());
    // XEP-0160: offline messages go to the first non-negative priority resource.
    // The session task streams them out after this stanza.
    if priority >= 0 {
        local.deliver_offline = true;
    }
    // Requests that arrived while the user was away (RFC 6121 §3.1.3).
    match ctx.storage.sub_requests(host, user).await {
        Ok(requests) => {
            for (_, stanza) in requests {
                let _ = me.deliver(stanza);
            }
        }
        Err(e) => {
            let _ = internal(e);
        }
    }
}

/// The session is gone: if it was available, everyone who saw it gets
/// unavailable presence.
pub async fn on_disconnect(ctx: &Ctx, me: &Arc<SessionHandle>, local: &mut Local) {
    if !me.is_available() {
        return;
    }
    let unavailable = El::new("presence").attr("type", "unavailable").to_string();
    if let Ok(el) = Element::parse(&unavailable) {
        broadcast(ctx, me, local, &el, false).await;
    }
}
