//! One stanza from a bound session: checked (namespace, kind, `from`, `to`)
//! and handed to the module for its kind.

use std::collections::HashSet;
use std::sync::Arc;

use crate::errors::{SessionEnd, StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::jid::Jid;
use crate::modules;
use crate::router::SessionHandle;
use crate::server::Ctx;
use crate::xml::{Element, NS_CLIENT};

/// Session state only its own task touches.
#[derive(Default)]
pub struct Local {
    /// JIDs that got directed presence from this session; they get
    /// unavailable presence when it leaves (RFC 6121 §4.6.3).
    pub directed: HashSet<String>,
    /// Initial presence asked for the offline messages (XEP-0160).
    pub deliver_offline: bool,
}

pub(super) async fn stanza(
    ctx: &Ctx,
    me: &Arc<SessionHandle>,
    local: &mut Local,
    el: Element,
) -> Result<(), SessionEnd> {
    let kind = el.name();
    if el.ns() != Some(NS_CLIENT) || !matches!(kind, "message" | "presence" | "iq") {
        return Err(StreamError::with_text(
            StreamCondition::UnsupportedStanzaType,
            format!("<{kind}/> is not supported here"),
        )
        .into());
    }
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
                let _ = me.deliver(err.reply_to(&el, &from, me.full()));
            }
            return Ok(());
        }
    };
    match kind {
        "message" => modules::message::handle(ctx, me, &el, to).await,
        // Boxed: their storage calls make these futures kilobytes, and
        // inline they would make every message's future as large.
        "presence" => Box::pin(modules::presence::handle(ctx, me, local, &el, to)).await,
        _ => Box::pin(modules::iq::handle(ctx, me, &el, to)).await,
    }
    Ok(())
}
