//! Routing: the session table and the delivery rules of RFC 6121 §8 for
//! stanzas addressed to local accounts.

mod session;
mod table;

pub use session::{ConnInfo, Mailbox, Outbound, PresenceState, SessionHandle, Tags, Undelivered};
pub use table::SessionTable;

use std::sync::Arc;

use crate::errors::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::server::Ctx;
use crate::storage::OfflineStored;

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

/// What happened to a routed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Queued to this many sessions.
    Delivered(usize),
    StoredOffline,
    /// Silently dropped, as RFC 6121 §8 asks for this type.
    Dropped,
}

/// Routes a message (its XML already stamped with the sender's full JID)
/// to a local account. An error is to be bounced to the sender.
pub async fn route_message(
    ctx: &Ctx,
    to: &Jid,
    kind: MessageType,
    xml: String,
) -> Result<Routed, StanzaError> {
    if !ctx.serves(to.domain()) {
        // No server-to-server yet: every other domain is unreachable.
        return Err(StanzaError::new(StanzaCondition::RemoteServerNotFound));
    }
    let Some(user) = to.local() else {
        return Err(StanzaError::new(StanzaCondition::ServiceUnavailable));
    };
    let bare = to.bare();
    let mut xml = xml;
    if let Some(resource) = to.resource() {
        if let Some(session) = ctx.sessions.full(&bare, resource) {
            match session.deliver(xml) {
                Ok(()) => return Ok(Routed::Delivered(1)),
                Err(Undelivered(back)) => xml = back,
            }
        }
        // RFC 6121 §8.5.3.2.1: no such resource.
        match kind {
            MessageType::Normal | MessageType::Chat => {}
            MessageType::Groupchat => {
                return Err(StanzaError::new(StanzaCondition::ServiceUnavailable))
            }
            MessageType::Headline | MessageType::Error => return Ok(Routed::Dropped),
        }
    }
    // RFC 6121 §8.5.2: the bare JID.
    let candidates: Vec<(Arc<SessionHandle>, i8)> = ctx
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
            return Err(StanzaError::new(StanzaCondition::ServiceUnavailable))
        }
        MessageType::Headline => {
            let n = deliver_all(candidates.iter().map(|(s, _)| s), &xml);
            return Ok(if n > 0 {
                Routed::Delivered(n)
            } else {
                Routed::Dropped
            });
        }
        MessageType::Normal | MessageType::Chat | MessageType::Error => {
            let top = candidates.iter().map(|(_, p)| *p).max();
            if let Some(top) = top {
                let n = deliver_all(
                    candidates.iter().filter(|(_, p)| *p == top).map(|(s, _)| s),
                    &xml,
                );
                if n > 0 {
                    return Ok(Routed::Delivered(n));
                }
            }
        }
    }
    if kind == MessageType::Error {
        return Ok(Routed::Dropped);
    }
    // Boxed: the storage future is kilobytes, and inline it would make
    // every routed message's future that large (copied on each move).
    Box::pin(store_offline(ctx, to.domain(), user, &xml)).await
}

/// Stores a message for later (XEP-0160), or says why it cannot be.
pub async fn store_offline(
    ctx: &Ctx,
    host: &str,
    user: &str,
    xml: &str,
) -> Result<Routed, StanzaError> {
    let internal = |e: crate::storage::StorageError| {
        tracing::warn!(error = %e, "offline storage failed");
        StanzaError::new(StanzaCondition::InternalServerError)
    };
    if !ctx
        .storage
        .account_exists(host, user)
        .await
        .map_err(internal)?
    {
        return Err(StanzaError::new(StanzaCondition::ServiceUnavailable));
    }
    let max = ctx.config.general.max_offline_messages;
    let started = std::time::Instant::now();
    let stored = ctx
        .storage
        .offline_store(host, user, xml, max)
        .await
        .map_err(internal)?;
    ctx.instr.handler("offline", "store", started.elapsed());
    match stored {
        OfflineStored::Stored { .. } => {
            // The user may have come online between the routing decision
            // and this commit, after its session took the offline store:
            // that session takes it again (else the message would wait
            // for the next login).
            let bare = format!("{user}@{host}");
            for s in ctx.sessions.resources(&bare) {
                let p = s.presence();
                if p.available && p.priority >= 0 {
                    s.offline_waiting();
                }
            }
            Ok(Routed::StoredOffline)
        }
        // XEP-0160 §3: a full store answers as if the service were unavailable.
        OfflineStored::Full => Err({
            ctx.instr.limit("offline_full");
            StanzaError::with_text(
                StanzaCondition::ServiceUnavailable,
                "offline storage for this user is full",
            )
        }),
    }
}

fn deliver_all<'a>(sessions: impl Iterator<Item = &'a Arc<SessionHandle>>, xml: &str) -> usize {
    sessions
        .filter(|s| s.deliver(xml.to_string()).is_ok())
        .count()
}

/// Presence to a local JID: a full JID reaches that resource; a bare JID
/// reaches every available resource (RFC 6121 §8.5.2.1.1). Returns how many
/// sessions got it; nothing is stored and nothing bounced.
pub fn route_presence(ctx: &Ctx, to: &Jid, xml: &str) -> usize {
    if !ctx.serves(to.domain()) || to.local().is_none() {
        return 0;
    }
    let bare = to.bare();
    match to.resource() {
        Some(r) => ctx
            .sessions
            .full(&bare, r)
            .map(|s| usize::from(s.deliver(xml.to_string()).is_ok()))
            .unwrap_or(0),
        None => deliver_all(
            ctx.sessions
                .resources(&bare)
                .iter()
                .filter(|s| s.is_available()),
            xml,
        ),
    }
}

/// An IQ to another account's full JID goes to that resource or bounces.
pub fn route_iq_to_full(ctx: &Ctx, to: &Jid, xml: String) -> Result<(), StanzaError> {
    let unavailable = || StanzaError::new(StanzaCondition::ServiceUnavailable);
    if !ctx.serves(to.domain()) {
        return Err(StanzaError::new(StanzaCondition::RemoteServerNotFound));
    }
    let resource = to.resource().ok_or_else(unavailable)?;
    let session = ctx
        .sessions
        .full(&to.bare(), resource)
        .ok_or_else(unavailable)?;
    session.deliver(xml).map_err(|_| unavailable())
}
