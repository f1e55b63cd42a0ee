//! One stanza from a bound session: checked (namespace, kind, `from`,
//! `to`), parsed once into a [`Stanza`], shown to the user-send hooks, and
//! by default routed (messages), or dispatched (IQs).

use std::sync::Arc;

use crate::errors::{SessionEnd, StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::hooks::{Flow, SendCx};
use crate::jid::Jid;
use crate::modules;
use crate::router;
use crate::server::Ctx;
use crate::session::Session;
use crate::stanza::{Kind, Stanza};
use crate::xml::{Element, NS_CLIENT};

/// A nonza (an element outside `jabber:client`) from a bound session, or
/// `None` if it is a stanza.
pub(crate) fn nonza_ns(el: &Element) -> Option<&str> {
    el.ns().filter(|ns| *ns != NS_CLIENT)
}

pub(crate) async fn stanza(
    ctx: &Arc<Ctx>,
    session: &mut Session,
    el: Element,
) -> Result<(), SessionEnd> {
    let Some(kind) = el
        .ns()
        .filter(|ns| *ns == NS_CLIENT)
        .and_then(|_| Kind::of(el.name()))
    else {
        return Err(StreamError::with_text(
            StreamCondition::UnsupportedStanzaType,
            format!("<{}/> is not supported here", el.name()),
        )
        .into());
    };
    session.handled_in += 1;
    let me = session.handle.clone();
    // A client may only speak for itself (RFC 6120 §8.1.2.1).
    if let Some(from) = el.attr("from") {
        let ok = Jid::parse(from).is_ok_and(|f| {
            f.bare() == me.bare() && f.resource().is_none_or(|r| r == me.resource())
        });
        if !ok {
            return Err(StreamError::new(StreamCondition::InvalidFrom).into());
        }
    }
    let to = match el.attr("to").map(Jid::parse) {
        None => None,
        Some(Ok(j)) => Some(j),
        Some(Err(_)) => {
            if el.attr("type") != Some("error") {
                let err = StanzaError::new(StanzaCondition::JidMalformed);
                ctx.instr.stanza_error(&err.condition);
                let from = ctx
                    .config
                    .general
                    .hosts
                    .first()
                    .cloned()
                    .unwrap_or_default();
                let _ = router::deliver_local(ctx, &me, err.reply_to(&el, &from, me.full()));
            }
            return Ok(());
        }
    };
    let st = Stanza {
        kind,
        from: me.jid_arc(),
        from_full: me.full_arc(),
        to,
        el,
    };
    let flow = if ctx.hooks.has_send_hooks(kind) {
        let mut cx = SendCx {
            ctx,
            session: &mut *session,
        };
        // Boxed: hooks that await storage make this future kilobytes, and
        // inline it would make every message's future as large.
        Box::pin(ctx.hooks.run_send(&mut cx, &st)).await
    } else {
        Flow::Continue
    };
    match flow {
        Flow::Continue => {}
        Flow::Handled | Flow::Drop => return Ok(()),
        Flow::Bounce(err) => {
            if st.typ() != Some("error") {
                ctx.instr.stanza_error(&err.condition);
                let from = st.destination().to_string();
                let _ = router::deliver_local(ctx, &me, err.reply_to(&st.el, &from, me.full()));
            }
            return Ok(());
        }
    }
    match kind {
        Kind::Message => modules::message::handle(ctx, &me, &st).await,
        Kind::Iq => Box::pin(modules::iq::handle(ctx, &me, &st)).await,
        // No presence module: directed presence is routed as is.
        Kind::Presence => {
            if let Some(to) = st.to.as_ref() {
                let xml = st.forwardable();
                let _ = router::route_xml(ctx, Kind::Presence, &st.from, to, &xml).await;
            }
        }
    }
    Ok(())
}
