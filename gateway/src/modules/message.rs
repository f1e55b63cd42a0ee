//! Messages from a bound session: stamped with the sender's full JID and
//! routed (RFC 6121 §5, §8); errors bounce back to the sender.

use std::sync::Arc;

use tracing::Instrument;

use crate::errors::StanzaCondition;
use crate::jid::Jid;
use crate::router::{self, MessageType, Routed, SessionHandle};
use crate::server::Ctx;
use crate::xml::{rewrite_from_to, Element};

pub async fn handle(ctx: &Ctx, me: &Arc<SessionHandle>, el: &Element, to: Option<Jid>) {
    // An unknown type is treated as normal (RFC 6121 §5.2.2).
    let kind = MessageType::parse(el.attr("type")).unwrap_or(MessageType::Normal);
    // No `to`: addressed to the sender's own bare JID (RFC 6120 §10.3.1).
    let to = to.unwrap_or_else(|| me.jid().to_bare());
    let stamped_to = el.attr("to").is_none().then(|| to.to_string());
    let xml = rewrite_from_to(el, Some(me.full()), stamped_to.as_deref());
    let started = std::time::Instant::now();
    let span = crate::child_span!(
        "router.route",
        stanza.kind = "message",
        outcome = tracing::field::Empty
    );
    let routed = crate::live::call(
        "router",
        || "router.route".into(),
        router::route_message(ctx, &to, kind, xml).instrument(span.clone()),
    )
    .await;
    let outcome = match &routed {
        Ok(Routed::Delivered(_)) => "delivered",
        Ok(Routed::StoredOffline) => "offline_stored",
        Ok(Routed::Dropped) => "dropped",
        Err(e) if e.condition == StanzaCondition::RemoteServerNotFound => "no_route",
        Err(_) => "bounced",
    };
    span.record("outcome", outcome);
    if let Err(e) = &routed {
        crate::otel::fail(&span, e.condition.wire_name());
    }
    ctx.instr
        .routed("message", outcome, Some(started.elapsed()));
    if let Err(err) = routed {
        // Never answer an error with an error (RFC 6120 §8.3.1).
        if kind != MessageType::Error {
            ctx.instr.stanza_error(&err.condition);
            let _ = me.deliver(err.reply_to(el, &to.to_string(), me.full()));
        }
    }
}
