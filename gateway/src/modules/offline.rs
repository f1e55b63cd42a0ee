//! Offline messages (XEP-0160): stored when no resource can take a message,
//! delivered in order with a XEP-0203 delay stamp on the next available
//! presence, and kept when a session dies with messages still queued.

use super::roster::internal;
use crate::jid::Jid;
use crate::router::{self, MessageType, SessionHandle};
use crate::server::Ctx;
use crate::xml::{append_child, El, Element};

pub const NS_DELAY: &str = "urn:xmpp:delay";
pub const FEATURES: &[&str] = &["msgoffline"];

/// Messages taken from storage at once. Small: if the connection breaks
/// mid-batch, the batch is stored again (duplicates rather than losses).
pub const BATCH: u32 = 20;

/// The next batch of stored messages for this session's owner, oldest
/// first, each with its XEP-0203 delay stamp. They are removed from storage;
/// the caller writes them to the socket itself (TCP backpressure, not the
/// bounded mailbox, paces a large backlog) and stores them again on failure.
pub async fn take_batch(ctx: &Ctx, me: &SessionHandle) -> Vec<String> {
    let owner = me.jid();
    let (host, user) = (owner.domain(), owner.local().unwrap_or_default());
    let batch = match ctx.storage.offline_take(host, user, BATCH).await {
        Ok(b) => b,
        Err(e) => {
            let _ = internal(e);
            return Vec::new();
        }
    };
    batch
        .into_iter()
        .map(|msg| {
            let delay = El::new("delay")
                .xmlns(NS_DELAY)
                .attr("from", host)
                .attr("stamp", &stamp(msg.stored_at_ms));
            append_child(&msg.stanza, &delay.to_string())
        })
        .collect()
}

/// A stanza that was queued to a session but never written: a chat or
/// normal message is stored for the owner; anything else is dropped.
pub async fn keep_undelivered(ctx: &Ctx, owner: &Jid, xml: &str) -> bool {
    let Ok(el) = Element::parse(xml) else {
        return false;
    };
    if el.name() != "message" {
        return false;
    }
    let kind = MessageType::parse(el.attr("type")).unwrap_or(MessageType::Normal);
    if !kind.is_storable() {
        return false;
    }
    let (host, Some(user)) = (owner.domain(), owner.local()) else {
        return false;
    };
    match router::store_offline(ctx, host, user, xml).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(jid = %owner, condition = e.condition.wire_name(), "undelivered message could not be kept");
            false
        }
    }
}

/// XEP-0082 date-time in UTC.
fn stamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamp_is_utc_rfc3339() {
        assert_eq!(super::stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::stamp(1_500_000_000_123), "2017-07-14T02:40:00.123Z");
    }
}
