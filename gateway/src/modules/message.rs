//! Messages from a bound session: into the router with the sender
//! stamped (RFC 6121 §5, §8); errors bounce back to the sender.

use tracing::Instrument;

use crate::errors::StanzaCondition;
use crate::hooks::Route;
use crate::router::{self, MessageType, Routed, SessionHandle};
use crate::server::Ctx;
use crate::stanza::Stanza;

pub async fn handle(ctx: &Ctx, me: &SessionHandle, st: &Stanza) {
    // An unknown type is treated as normal (RFC 6121 §5.2.2).
    let kind = MessageType::parse(st.typ()).unwrap_or(MessageType::Normal);
    let to = st.destination();
    let xml = st.forwardable();
    let started = std::time::Instant::now();
    let span = crate::child_span!(
        "router.route",
        otel.kind = "producer",
        messaging.system = "osprey",
        messaging.operation.type = "send",
        stanza.kind = "message",
        outcome = tracing::field::Empty
    );
    let route = Route {
        from: &st.from,
        to: &to,
        kind: st.kind,
        typ: st.typ(),
        xml: xml.into(),
        stanza: Some(st),
        notes: Default::default(),
    };
    let routed = if span.is_none() && !crate::live::active() {
        // Untraced: the route future is awaited in place, not moved into
        // wrappers.
        router::route(ctx, route).await
    } else {
        Box::pin(crate::live::call(
            "router",
            || "router.route".into(),
            router::route(ctx, route).instrument(span.clone()),
        ))
        .await
    };
    let outcome = match &routed {
        Ok(Routed::Delivered(_)) => "delivered",
        Ok(Routed::StoredOffline) => "offline_stored",
        Ok(Routed::Dropped) | Ok(Routed::Handled) => "dropped",
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
            let reply = err.reply_to(&st.el, &to.to_string(), me.full());
            let _ = router::deliver_local(ctx, me, reply);
        }
    }
}
