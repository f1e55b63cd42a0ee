//! IQs from a bound session (RFC 6120 §8.2.3): requests to the server or to
//! an account are answered by the module that owns the payload namespace;
//! requests to a full JID are routed; exactly one answer per request.

use std::sync::Arc;

use tracing::Instrument;

use super::{handle_request, IqRequest, Target};
use crate::errors::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::router::{self, SessionHandle};
use crate::server::Ctx;
use crate::xml::{rewrite_from_to, El, Element};

pub async fn handle(ctx: &Ctx, me: &Arc<SessionHandle>, el: &Element, to: Option<Jid>) {
    let server = me.jid().domain().to_string();
    let typ = el.attr("type");
    let reply_from = to
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|| me.bare().to_string());
    let bounce = |err: StanzaError| {
        ctx.instr.stanza_error(&err.condition);
        let _ = me.deliver(err.reply_to(el, &reply_from, me.full()));
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
    if let Some(t) = to.as_ref().filter(|t| t.resource().is_some()) {
        let xml = rewrite_from_to(el, Some(me.full()), None);
        let routed = router::route_iq_to_full(ctx, t, xml);
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
    let target = match to.as_ref() {
        None => Target::OwnAccount,
        Some(t) if t.local().is_none() && t.domain() == server => Target::Server,
        Some(t) if t.local().is_none() && ctx.serves(t.domain()) => Target::Server,
        Some(t) if t.bare() == me.bare() => Target::OwnAccount,
        Some(t) if ctx.serves(t.domain()) => Target::OtherAccount(t),
        Some(_) => {
            return bounce(StanzaError::new(StanzaCondition::RemoteServerNotFound));
        }
    };
    let req = IqRequest {
        ctx,
        me,
        el,
        set: typ == Some("set"),
        target,
        payload,
    };
    let started = std::time::Instant::now();
    let (module, operation) = super::operation_of(&req);
    let span = crate::child_span!("module.handler", module = module, operation = operation);
    let answer = crate::live::call(
        "module",
        || format!("module.{module}.{operation}"),
        handle_request(&req).instrument(span.clone()),
    )
    .await;
    if let Err(e) = &answer {
        crate::otel::fail(&span, e.condition.wire_name());
    }
    ctx.instr.handler(module, operation, started.elapsed());
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
            let _ = me.deliver(result.to_string());
        }
        Err(err) => bounce(err),
    }
}
