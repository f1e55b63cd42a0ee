//! What is archived, and when.
//!
//! A message is archived when its type is chat or normal, it has a body,
//! and it carries no XEP-0334 `<no-store/>` or `<no-permanent-store/>`
//! hint (and is not itself a carbon or an archive result). Both ends
//! that are local accounts may keep it, each by its own preferences:
//!
//! - before routing ([`Stamp`]), both archive ids are given out, the
//!   sender's first, so the archive keeps the order messages were routed
//!   in; the recipient's is stamped on the message as
//!   `<stanza-id by='recipient'/>` (XEP-0359), after removing any the
//!   sender put there with that `by`; the ids go to the after-hook as a
//!   route note;
//! - after routing ([`Archive`]), when the router delivered or stored it
//!   (so the account exists), both rows go to the writer.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Mam, NS_MAM, NS_SID};
use crate::errors::StanzaError;
use crate::hooks::{AmendHook, Flow, Route, RouteHook};
use crate::jid::Jid;
use crate::router::{MessageType, Routed, NS_HINTS};
use crate::server::Ctx;
use crate::storage::ArchivedMessage;
use crate::xml::{Element, NS_CLIENT};

const NS_CARBONS: &str = "urn:xmpp:carbons:2";

/// Stamps the recipient's stanza-id (the amend hook).
pub struct Stamp(pub Arc<Mam>);

/// Hands the rows to the writer (the route-after hook).
pub struct Archive(pub Arc<Mam>);

/// Chat or normal: the only types ever archived.
fn typed(route: &Route<'_>) -> bool {
    matches!(
        MessageType::parse(route.typ),
        Some(MessageType::Chat | MessageType::Normal)
    )
}

fn local_account<'a>(ctx: &Ctx, jid: &'a Jid) -> Option<(&'a str, &'a str)> {
    let user = jid.local()?;
    ctx.serves(jid.domain()).then_some((jid.domain(), user))
}

/// Whether the message's content is archived (see the module doc).
fn archivable(route: &Route<'_>) -> bool {
    let parsed;
    let el = match route.stanza {
        Some(st) => &st.el,
        None => match Element::parse(&route.xml) {
            Ok(el) => {
                parsed = el;
                &parsed
            }
            Err(_) => return false,
        },
    };
    let mut body = false;
    for c in el.node().children().filter(|c| c.is_element()) {
        let tag = c.tag_name();
        match (tag.namespace(), tag.name()) {
            (Some(NS_CLIENT), "body") => body = true,
            (Some(NS_HINTS), "no-store" | "no-permanent-store") => return false,
            (Some(NS_CARBONS), "sent" | "received") => return false,
            (Some(NS_MAM), "result") => return false,
            _ => {}
        }
    }
    body
}

/// The stamp this module puts on a message for `bare`, up to the id.
fn stamp_prefix(bare: &str) -> String {
    format!(
        "<stanza-id xmlns='{NS_SID}' by='{}' id='",
        crate::xml::escape_attr(bare)
    )
}

/// The XML without the `<stanza-id/>` children whose `by` is `bare`
/// (XEP-0359 §4: only the archiving entity's own may be trusted).
fn without_forged(xml: &str, bare: &str) -> Option<String> {
    let el = Element::parse(xml).ok()?;
    let off = el.offset();
    let mut cut: Vec<std::ops::Range<usize>> = el
        .node()
        .children()
        .filter(|c| c.has_tag_name((NS_SID, "stanza-id")) && c.attribute("by") == Some(bare))
        .map(|c| {
            let r = c.range();
            r.start - off..r.end - off
        })
        .collect();
    if cut.is_empty() {
        return None;
    }
    cut.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(xml.len());
    let mut at = 0;
    for r in cut {
        out.push_str(&xml[at..r.start]);
        at = r.end;
    }
    out.push_str(&xml[at..]);
    Some(out)
}

/// The ids given out before routing, for the after-hook.
struct Ids {
    /// The recipient's (also stamped on the message).
    incoming: Option<i64>,
    /// The sender's.
    outgoing: Option<i64>,
}

#[async_trait]
impl AmendHook for Stamp {
    fn active(&self, route: &Route<'_>) -> bool {
        typed(route)
    }

    async fn amend(&self, ctx: &Ctx, route: &mut Route<'_>) {
        let mam = &self.0;
        let sender = route.stanza.and(local_account(ctx, route.from));
        let recipient = local_account(ctx, route.to);
        if (sender.is_none() && recipient.is_none()) || !archivable(route) {
            return;
        }
        // Both ids now, the sender's first: the archive's order is the
        // order messages were routed in, whichever task archives them.
        let mut ids = Ids {
            incoming: None,
            outgoing: None,
        };
        if let Some((host, user)) = sender {
            let peer = route.to.bare();
            if mam
                .prefs
                .archives(ctx, &mam.settings, host, user, &peer)
                .await
            {
                ids.outgoing = Some(mam.next_id());
            }
        }
        if let Some((host, user)) = recipient {
            let peer = route.from.bare();
            if mam
                .prefs
                .archives(ctx, &mam.settings, host, user, &peer)
                .await
            {
                ids.incoming = stamp(mam, route);
            }
        }
        if ids.incoming.is_some() || ids.outgoing.is_some() {
            route.notes.put(ids);
        }
    }
}

/// Stamps the recipient's stanza-id on the message; its id.
fn stamp(mam: &Mam, route: &mut Route<'_>) -> Option<i64> {
    let bare = route.to.bare();
    if route.xml.contains(NS_SID) {
        if let Some(clean) = without_forged(&route.xml, &bare) {
            route.xml = clean.into();
        }
    }
    let close = route.xml.rfind("</message>")?;
    let id = mam.next_id();
    let stamp = format!("{}{id}'/>", stamp_prefix(&bare));
    let mut xml = String::with_capacity(route.xml.len() + stamp.len());
    xml.push_str(&route.xml[..close]);
    xml.push_str(&stamp);
    xml.push_str(&route.xml[close..]);
    route.xml = xml.into();
    Some(id)
}

#[async_trait]
impl RouteHook for Archive {
    fn active(&self, route: &Route<'_>) -> bool {
        route.notes.get::<Ids>().is_some()
    }

    async fn route(
        &self,
        ctx: &Ctx,
        route: &Route<'_>,
        outcome: Option<&Result<Routed, StanzaError>>,
    ) -> Flow {
        // Kept only when the router placed it (so the recipient exists).
        if !matches!(
            outcome,
            Some(Ok(Routed::Delivered(_) | Routed::StoredOffline))
        ) {
            return Flow::Continue;
        }
        let Some(ids) = route.notes.get::<Ids>() else {
            return Flow::Continue;
        };
        let writer = &self.0.writer;
        if let (Some(id), Some((host, user))) = (ids.outgoing, local_account(ctx, route.from)) {
            writer
                .push(ctx, row(host, user, id, route.to, true, &route.xml))
                .await;
        }
        if let (Some(id), Some((host, user))) = (ids.incoming, local_account(ctx, route.to)) {
            writer
                .push(ctx, row(host, user, id, route.from, false, &route.xml))
                .await;
        }
        Flow::Continue
    }
}

fn row(host: &str, user: &str, id: i64, peer: &Jid, outgoing: bool, xml: &str) -> ArchivedMessage {
    ArchivedMessage {
        host: host.to_string(),
        user: user.to_string(),
        id,
        peer_bare: peer.bare(),
        peer_resource: peer.resource().unwrap_or_default().to_string(),
        outgoing,
        xml: xml.to_string(),
    }
}

#[cfg(test)]
mod unit {
    use super::without_forged;

    #[test]
    fn forged_stamps_are_removed() {
        let xml = "<message to='b@x' from='a@x/r'><body>hi</body>\
                   <stanza-id xmlns='urn:xmpp:sid:0' by='b@x' id='forged'/>\
                   <stanza-id xmlns='urn:xmpp:sid:0' by='other@x' id='kept'/></message>";
        let clean = without_forged(xml, "b@x").expect("one removed");
        assert!(
            !clean.contains("forged") && clean.contains("kept"),
            "{clean}"
        );
        assert_eq!(without_forged(&clean, "b@x"), None);
    }
}
