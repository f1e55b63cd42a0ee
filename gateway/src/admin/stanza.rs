//! Stanzas: send a chat message, or any stanza, as a user or the server
//! (mongooseimctl's `stanza` category; MongooseIM's load tests drive
//! GraphQL `stanza { sendMessage }`). Both go through `router::route`, so
//! they are delivered, stored offline or bounced like a client's.

use serde::Serialize;

use super::{run, AdminError, AdminResult};
use crate::jid::Jid;
use crate::router::Routed;
use crate::server::Ctx;
use crate::stanza::Kind;
use crate::xml::El;
use crate::xml::{Frame, Framer};

#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    /// The stanza's id (generated for a message when none was given).
    pub id: String,
    /// delivered, offline, dropped or handled.
    pub outcome: &'static str,
    /// Sessions it was queued to.
    pub sessions: usize,
}

/// A `<message type='chat'>` with `body` from `from` (a local user, bare or
/// full, or a served host: the server) to `to`.
pub async fn send_message(ctx: &Ctx, from: &str, to: &str, body: &str) -> AdminResult<Sent> {
    run(ctx, "stanza_send_message", from, async {
        let from = sender(ctx, from).await?;
        let to = Jid::parse(to).map_err(|_| AdminError::bad(format!("{to}: malformed JID")))?;
        if body.len() > max_bytes(ctx) {
            return Err(AdminError::bad(
                "the body is larger than the stanza size limit",
            ));
        }
        let id = format!("admin-{}", ctx.sessions.next_id());
        let xml = El::new("message")
            .attr("from", &from.to_string())
            .attr("to", &to.to_string())
            .attr("type", "chat")
            .attr("id", &id)
            .child(El::new("body").text(body))
            .into_string();
        route(ctx, Kind::Message, Some("chat"), &from, &to, &xml, id).await
    })
    .await
}

/// Any stanza (`<message/>`, `<presence/>` or `<iq/>` in `jabber:client`)
/// with `from` and `to`: checked by the same framer and limits as a
/// client's stanza before it is parsed, then routed as given.
pub async fn send(ctx: &Ctx, xml: &str) -> AdminResult<Sent> {
    run(ctx, "stanza_send", "stanza", async {
        let el = frame(ctx, xml)?;
        let name = el.name();
        if el.ns() != Some("jabber:client") {
            return Err(AdminError::bad(format!(
                "<{name}/> must be in the jabber:client namespace"
            )));
        }
        let kind = Kind::of(name).ok_or_else(|| {
            AdminError::bad(format!("<{name}/> is not a stanza (message, presence, iq)"))
        })?;
        let from = el
            .attr("from")
            .ok_or_else(|| AdminError::bad("the stanza needs a from attribute"))?;
        let to = el
            .attr("to")
            .ok_or_else(|| AdminError::bad("the stanza needs a to attribute"))?;
        let from = sender(ctx, from).await?;
        let to = Jid::parse(to).map_err(|_| AdminError::bad(format!("{to}: malformed JID")))?;
        let id = el.attr("id").unwrap_or_default().to_string();
        route(ctx, kind, el.attr("type"), &from, &to, el.raw(), id).await
    })
    .await
}

/// Routed like a client's stanza: its type decides RFC 6121 §8's rules
/// (a headline is never stored, a groupchat to a bare JID is refused).
async fn route(
    ctx: &Ctx,
    kind: Kind,
    typ: Option<&str>,
    from: &Jid,
    to: &Jid,
    xml: &str,
    id: String,
) -> AdminResult<Sent> {
    let route = crate::hooks::Route {
        from,
        to,
        kind,
        typ,
        xml: xml.into(),
        stanza: None,
        notes: Default::default(),
    };
    let (outcome, sessions) = match crate::router::route(ctx, route).await {
        Ok(Routed::Delivered(n)) => ("delivered", n),
        Ok(Routed::StoredOffline) => ("offline", 0),
        Ok(Routed::Dropped) => ("dropped", 0),
        Ok(Routed::Handled) => ("handled", 0),
        Err(e) => {
            return Err(AdminError::NotFound(format!(
                "not routed: {}",
                e.condition.wire_name()
            )))
        }
    };
    Ok(Sent {
        id,
        outcome,
        sessions,
    })
}

/// A local user (bare or full JID) with an account, or a served host.
async fn sender(ctx: &Ctx, from: &str) -> AdminResult<Jid> {
    let jid = Jid::parse(from).map_err(|_| AdminError::bad(format!("{from}: malformed JID")))?;
    if !ctx.serves(jid.domain()) {
        return Err(AdminError::bad(format!(
            "{from}: the sender must be a user or a host of this server"
        )));
    }
    if let Some(user) = jid.local() {
        if !ctx.storage.account_exists(jid.domain(), user).await? {
            return Err(AdminError::NotFound(format!("no account {}", jid.bare())));
        }
    }
    Ok(jid)
}

/// The stanza size limit of the first c2s listener (the default without one).
fn max_bytes(ctx: &Ctx) -> usize {
    ctx.config
        .listen
        .c2s
        .first()
        .map(|l| l.max_stanza_size)
        .unwrap_or(262_144)
}

/// One complete element, framed as a client's would be (size, depth,
/// attribute and namespace caps) inside a `jabber:client` stream.
fn frame(ctx: &Ctx, xml: &str) -> AdminResult<crate::xml::Element> {
    let limits = ctx
        .config
        .listen
        .c2s
        .first()
        .map(|l| l.xml)
        .unwrap_or_default();
    let mut framer = Framer::with_limits(max_bytes(ctx), limits);
    framer.push(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    framer.push(xml.trim().as_bytes());
    let bad = |m: String| AdminError::BadRequest(m);
    match framer.next_frame() {
        Ok(Some(Frame::StreamOpen(_))) => {}
        other => return Err(bad(format!("internal framing error: {:?}", other.err()))),
    }
    let el = match framer.next_frame() {
        Ok(Some(Frame::Element(el))) => el,
        Ok(Some(_)) | Ok(None) => return Err(bad("expected one complete element".into())),
        Err(e) => return Err(bad(format!("malformed stanza: {e}"))),
    };
    match framer.next_frame() {
        Ok(None) if framer.buffered() == 0 => Ok(el),
        _ => Err(bad("expected exactly one element".into())),
    }
}
