//! Routing: one entry point ([`route`]) for every stanza, over a session
//! registry ([`SessionRegistry`]); the delivery rules of RFC 6121 §8 for
//! local accounts. A destination domain is local, a component or remote;
//! only local domains are served until components and federation exist.

mod registry;
mod session;
mod table;

pub use registry::{RemoteSession, SessionRef, SessionRegistry};
pub use session::{
    ConnInfo, Mailbox, Outbound, PresenceState, Receipt, ReceiptSink, SessionHandle, SessionState,
    Tags, Undelivered,
};
pub use table::SessionTable;

use crate::errors::{StanzaCondition, StanzaError};
use crate::hooks::{Flow, Route};
use crate::jid::Jid;
use crate::server::Ctx;
use crate::stanza::Kind;

/// The `type` of a message (RFC 6121 §5.2.2); absent means `normal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Normal,
    Chat,
    Groupchat,
    Headline,
    Error,
}

impl MessageType {
    pub fn parse(t: Option<&str>) -> Option<MessageType> {
        Some(match t {
            None | Some("normal") => MessageType::Normal,
            Some("chat") => MessageType::Chat,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            Some("error") => MessageType::Error,
            Some(_) => return None,
        })
    }

    /// Kept for later delivery when nobody is online (XEP-0160).
    pub fn is_storable(&self) -> bool {
        matches!(self, MessageType::Normal | MessageType::Chat)
    }
}

/// What happened to a routed stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Queued to this many sessions.
    Delivered(usize),
    StoredOffline,
    /// Silently dropped, as RFC 6121 §8 asks for this type.
    Dropped,
    /// A route hook took it.
    Handled,
}

/// Where a destination domain's stanzas go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A domain this deployment serves.
    Local,
    /// A service on a subdomain (MUC, pubsub…): none yet.
    Component,
    /// Anyone else's: server-to-server, not yet.
    Remote,
}

pub fn classify(ctx: &Ctx, domain: &str) -> Destination {
    if ctx.serves(domain) {
        Destination::Local
    } else {
        Destination::Remote
    }
}

/// The router's one entry point. `route.xml` is what recipients get (the
/// sender stamped); an error is for the caller to bounce.
pub async fn route(ctx: &Ctx, mut route: Route<'_>) -> Result<Routed, StanzaError> {
    let hooked = ctx.hooks.has_route_hooks(route.kind);
    if hooked {
        match ctx.hooks.run_route_before(ctx, &route).await {
            Flow::Continue => {}
            Flow::Handled => return Ok(Routed::Handled),
            Flow::Drop => return Ok(Routed::Dropped),
            Flow::Bounce(e) => return Err(e),
        }
        ctx.hooks.run_amend(ctx, &mut route).await;
    }
    // The XML moves on without a copy unless an after-hook still needs it.
    let after = hooked && ctx.hooks.wants_route_after(&route);
    let xml = if after {
        route.xml.to_string()
    } else {
        std::mem::take(&mut route.xml).into_owned()
    };
    let outcome = match classify(ctx, route.to.domain()) {
        Destination::Local => match route.kind {
            Kind::Message => {
                let kind = MessageType::parse(route.typ).unwrap_or(MessageType::Normal);
                match place_message(ctx, route.to, kind, xml) {
                    Placed::Done(r) => r,
                    // Boxed: the storage future is kilobytes, and inline it
                    // would make every routed stanza's future as large.
                    Placed::Offline(xml) => {
                        Box::pin(ctx.hooks.run_offline(ctx, route.to, &xml)).await
                    }
                }
            }
            Kind::Presence => Ok(Routed::Delivered(route_presence(ctx, route.to, &xml))),
            Kind::Iq => route_iq_to_full(ctx, route.to, xml).map(|()| Routed::Delivered(1)),
        },
        Destination::Component => Err(StanzaError::new(StanzaCondition::ServiceUnavailable)),
        Destination::Remote => Err(StanzaError::new(StanzaCondition::RemoteServerNotFound)),
    };
    if after {
        ctx.hooks.run_route_after(ctx, &route, &outcome).await;
    }
    outcome
}

/// A server-generated stanza from `from` (a local JID) to `to`: routed
/// like a client's, with no parsed original.
pub async fn route_xml(
    ctx: &Ctx,
    kind: Kind,
    from: &Jid,
    to: &Jid,
    xml: &str,
) -> Result<Routed, StanzaError> {
    route(
        ctx,
        Route {
            from,
            to,
            kind,
            typ: None,
            xml: xml.into(),
            stanza: None,
            notes: Default::default(),
        },
    )
    .await
}

/// The sessions of a bare JID.
pub fn resources(ctx: &Ctx, bare: &str) -> Vec<SessionRef> {
    ctx.sessions.resources(bare)
}

/// Queues XML to one session: the deliver hooks run first. The stanza
/// comes back if it cannot be queued (stored or bounced by the caller).
pub fn deliver(ctx: &Ctx, to: &SessionRef, xml: String) -> Result<(), Undelivered> {
    match to {
        SessionRef::Local(h) => deliver_local(ctx, h, xml),
        SessionRef::Remote(r) => ctx.sessions.deliver_remote(r, xml),
    }
}

/// [`deliver`] to a local handle (a session answering itself).
pub fn deliver_local(ctx: &Ctx, to: &SessionHandle, xml: String) -> Result<(), Undelivered> {
    deliver_local_with(ctx, to, xml, &mut None)
}

/// [`deliver_local`] with a receipt that travels with the stanza when it
/// is queued (and stays with the caller otherwise).
pub fn deliver_local_with(
    ctx: &Ctx,
    to: &SessionHandle,
    xml: String,
    receipt: &mut Option<Receipt>,
) -> Result<(), Undelivered> {
    if !ctx.hooks.has_deliver_hooks() {
        return to.deliver_with(xml, receipt);
    }
    match ctx.hooks.run_deliver(ctx, to, &xml, Kind::of_xml(&xml)) {
        Flow::Continue => to.deliver_with(xml, receipt),
        Flow::Handled | Flow::Drop | Flow::Bounce(_) => Ok(()),
    }
}

/// Routes a message (its XML already stamped with the sender's full JID)
/// to a local account. An error is to be bounced to the sender.
pub async fn route_message(
    ctx: &Ctx,
    to: &Jid,
    kind: MessageType,
    xml: String,
) -> Result<Routed, StanzaError> {
    match place_message(ctx, to, kind, xml) {
        Placed::Done(r) => r,
        Placed::Offline(xml) => Box::pin(ctx.hooks.run_offline(ctx, to, &xml)).await,
    }
}

/// Where a message to a local account goes, decided without waiting.
enum Placed {
    /// Delivered, dropped or refused.
    Done(Result<Routed, StanzaError>),
    /// No session takes it: offline storage decides (XEP-0160).
    Offline(String),
}

/// The delivery rules of RFC 6121 §8.5 for a message: synchronous, so the
/// common case (a session takes it) costs no future of its own.
fn place_message(ctx: &Ctx, to: &Jid, kind: MessageType, xml: String) -> Placed {
    use Placed::Done;
    if to.local().is_none() {
        return Done(Err(StanzaError::new(StanzaCondition::ServiceUnavailable)));
    };
    let bare = to.bare();
    let mut xml = xml;
    if let Some(resource) = to.resource() {
        if let Some(session) = ctx.sessions.full(&bare, resource) {
            match deliver(ctx, &session, xml) {
                Ok(()) => return Done(Ok(Routed::Delivered(1))),
                Err(Undelivered(back)) => xml = back,
            }
        }
        // RFC 6121 §8.5.3.2.1: no such resource.
        match kind {
            MessageType::Normal | MessageType::Chat => {}
            MessageType::Groupchat => {
                return Done(Err(StanzaError::new(StanzaCondition::ServiceUnavailable)))
            }
            MessageType::Headline | MessageType::Error => return Done(Ok(Routed::Dropped)),
        }
    }
    // RFC 6121 §8.5.2: the bare JID.
    let candidates: Vec<(SessionRef, i8)> = ctx
        .sessions
        .resources(&bare)
        .into_iter()
        .filter_map(|s| {
            let p = s.presence();
            (p.available && p.priority >= 0).then_some((s, p.priority))
        })
        .collect();
    match kind {
        MessageType::Groupchat => {
            return Done(Err(StanzaError::new(StanzaCondition::ServiceUnavailable)))
        }
        MessageType::Headline => {
            let n = deliver_all(ctx, candidates.iter().map(|(s, _)| s), &xml);
            return Done(Ok(if n > 0 {
                Routed::Delivered(n)
            } else {
                Routed::Dropped
            }));
        }
        MessageType::Normal | MessageType::Chat | MessageType::Error => {
            let top = candidates.iter().map(|(_, p)| *p).max();
            if let Some(top) = top {
                let n = deliver_all(
                    ctx,
                    candidates.iter().filter(|(_, p)| *p == top).map(|(s, _)| s),
                    &xml,
                );
                if n > 0 {
                    return Done(Ok(Routed::Delivered(n)));
                }
            }
        }
    }
    if kind == MessageType::Error {
        return Done(Ok(Routed::Dropped));
    }
    // No session takes it: the offline module keeps it, or it bounces.
    Placed::Offline(xml)
}

fn deliver_all<'a>(ctx: &Ctx, sessions: impl Iterator<Item = &'a SessionRef>, xml: &str) -> usize {
    sessions
        .filter(|s| deliver(ctx, s, xml.to_string()).is_ok())
        .count()
}

/// Presence to a local JID: a full JID reaches that resource; a bare JID
/// reaches every available resource (RFC 6121 §8.5.2.1.1). Returns how many
/// sessions got it; nothing is stored and nothing bounced.
fn route_presence(ctx: &Ctx, to: &Jid, xml: &str) -> usize {
    if to.local().is_none() {
        return 0;
    }
    let bare = to.bare();
    match to.resource() {
        Some(r) => ctx
            .sessions
            .full(&bare, r)
            .map(|s| usize::from(deliver(ctx, &s, xml.to_string()).is_ok()))
            .unwrap_or(0),
        None => deliver_all(
            ctx,
            ctx.sessions
                .resources(&bare)
                .iter()
                .filter(|s| s.is_available()),
            xml,
        ),
    }
}

/// An IQ to another account's full JID goes to that resource or bounces.
fn route_iq_to_full(ctx: &Ctx, to: &Jid, xml: String) -> Result<(), StanzaError> {
    let unavailable = || StanzaError::new(StanzaCondition::ServiceUnavailable);
    let resource = to.resource().ok_or_else(unavailable)?;
    let session = ctx
        .sessions
        .full(&to.bare(), resource)
        .ok_or_else(unavailable)?;
    deliver(ctx, &session, xml).map_err(|_| unavailable())
}

/// XEP-0334 message processing hints.
pub const NS_HINTS: &str = "urn:xmpp:hints";

/// The type of a chat or normal message for an account that may be kept
/// (no XEP-0334 `<no-store/>`); `None` for anything else.
fn storable(owner: &Jid, xml: &str) -> Option<MessageType> {
    let el = crate::xml::Element::parse(xml).ok()?;
    if el.name() != "message"
        || owner.local().is_none()
        || el
            .node()
            .children()
            .any(|c| c.has_tag_name((NS_HINTS, "no-store")))
    {
        return None;
    }
    let kind = MessageType::parse(el.attr("type")).unwrap_or(MessageType::Normal);
    kind.is_storable().then_some(kind)
}

/// A message queued to a session that is gone (closed, or gone on another
/// node): placed again by RFC 6121 §8.5 for the owner's bare JID, so an
/// available resource (here or on another node) gets it, else offline
/// storage keeps it (ejabberd's resend on timeout). Only for a session no
/// longer in the registry. Whether it was delivered or kept.
pub async fn redeliver_or_keep(ctx: &Ctx, owner: &Jid, xml: &str) -> bool {
    let Some(kind) = storable(owner, xml) else {
        return false;
    };
    match route_message(ctx, &owner.to_bare(), kind, xml.to_string()).await {
        Ok(Routed::Delivered(_) | Routed::StoredOffline) => true,
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(jid = %owner, condition = e.condition.wire_name(), "undelivered message could not be kept");
            false
        }
    }
}

/// A stanza queued to a session that never reached its client: a chat or
/// normal message is kept for the owner (offline storage), unless it says
/// `<no-store/>` (XEP-0334); anything else is dropped. Whether it was kept.
pub async fn keep_undelivered(ctx: &Ctx, owner: &Jid, xml: &str) -> bool {
    if storable(owner, xml).is_none() {
        return false;
    }
    match ctx.hooks.run_offline(ctx, &owner.to_bare(), xml).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(jid = %owner, condition = e.condition.wire_name(), "undelivered message could not be kept");
            false
        }
    }
}
