//! IQs from a bound session (RFC 6120 §8.2.3): requests to the server or to
//! an account go to the handler a module registered for the payload
//! namespace; requests to a full JID are routed; exactly one answer per
//! request.

use std::sync::Arc;

use super::{IqRequest, Target};
use crate::errors::{StanzaCondition, StanzaError};
use crate::hooks::Route;
use crate::router::{self, SessionHandle};
use crate::server::Ctx;
use crate::stanza::Stanza;
use crate::xml::El;

pub async fn handle(ctx: &Ctx, me: &Arc<SessionHandle>, st: &Stanza) {
    let el = &st.el;
    let to = st.to.as_ref();
    let server = me.jid().domain().to_string();
    let typ = el.attr("type");
    let reply_from = to
        .map(|t| t.to_string())
        .unwrap_or_else(|| me.bare().to_string());
    let bounce = |err: StanzaError| {
        ctx.instr.stanza_error(&err.condition);
        let _ = router::deliver_local(ctx, me, err.reply_to(el, &reply_from, me.full()));
    };
    let is_request = matches!(typ, Some("get") | Some("set"));
    if !is_request && !matches!(typ, Some("result") | Some("error")) {
        return bounce(StanzaError::with_text(
            StanzaCondition::BadRequest,
            "bad IQ type",
        ));
    }
    if el.attr("id").is_none() {
        if is_request {
            bounce(StanzaError::with_text(
                StanzaCondition::BadRequest,
                "an IQ needs an id",
            ));
        }
        return;
    }
    // A full JID other than the server's: route it to that resource.
    if let Some(t) = to.filter(|t| t.resource().is_some()) {
        let xml = crate::xml::rewrite_from_to(el, Some(me.full()), None);
        let route = Route {
            from: &st.from,
            to: t,
            kind: st.kind,
            typ,
            xml: xml.into(),
            stanza: Some(st),
            notes: Default::default(),
        };
        let routed = router::route(ctx, route).await;
        let outcome = if routed.is_ok() {
            "delivered"
        } else {
            "bounced"
        };
        ctx.instr.routed("iq", outcome, None);
        if let Err(err) = routed {
            if is_request {
                bounce(err);
            }
        }
        return;
    }
    // Answers addressed to us (e.g. to a server ping) need nothing more.
    if !is_request {
        return;
    }
    let mut payloads = el.node().children().filter(|c| c.is_element());
    let (Some(payload), None) = (payloads.next(), payloads.next()) else {
        return bounce(StanzaError::with_text(
            StanzaCondition::BadRequest,
            "a request carries exactly one payload",
        ));
    };
    let target = match to {
        None => Target::OwnAccount,
        Some(t) if t.local().is_none() && t.domain() == server => Target::Server,
        Some(t) if t.local().is_none() && ctx.serves(t.domain()) => Target::Server,
        Some(t) if t.bare() == me.bare() => Target::OwnAccount,
        Some(t) if ctx.serves(t.domain()) => Target::OtherAccount(t),
        Some(_) => {
            return bounce(StanzaError::new(StanzaCondition::RemoteServerNotFound));
        }
    };
    // Answered on another account's behalf: that account's route policy
    // (e.g. its block list, XEP-0191) applies as if it were delivered.
    if let (Target::OtherAccount(t), true) = (&target, ctx.hooks.has_route_hooks(st.kind)) {
        let route = Route {
            from: &st.from,
            to: t,
            kind: st.kind,
            typ,
            xml: st.raw().into(),
            stanza: Some(st),
            notes: Default::default(),
        };
        match ctx.hooks.run_route_before(ctx, &route).await {
            crate::hooks::Flow::Continue => {}
            crate::hooks::Flow::Bounce(err) => return bounce(err),
            crate::hooks::Flow::Handled | crate::hooks::Flow::Drop => return,
        }
    }
    let set = typ == Some("set");
    let ns = payload.tag_name().namespace().unwrap_or("");
    let answer = if ns == super::NS_SESSION && set {
        // RFC 3921's session establishment: a no-op kept for old clients.
        Ok(None)
    } else {
        match ctx.hooks.iq_handler(ns, set) {
            Some((name, handler)) => {
                let req = IqRequest {
                    ctx,
                    me,
                    el,
                    set,
                    target,
                    payload,
                };
                let answer = crate::hooks::call(ctx, name, handler.iq(&req)).await;
                if let Err(e) = &answer {
                    tracing::debug!(
                        module = name.module,
                        condition = e.condition.wire_name(),
                        "IQ refused"
                    );
                }
                answer
            }
            // RFC 6120 §8.4: a payload nobody here understands.
            None => Err(StanzaError::new(StanzaCondition::ServiceUnavailable)),
        }
    };
    match answer {
        Ok(child) => {
            let mut result = El::new("iq")
                .attr("type", "result")
                .attr_opt("id", el.attr("id"))
                .attr("from", &reply_from)
                .attr("to", me.full());
            if let Some(c) = child {
                result = result.child(c);
            }
            let _ = router::deliver_local(ctx, me, result.to_string());
        }
        Err(err) => bounce(err),
    }
}
