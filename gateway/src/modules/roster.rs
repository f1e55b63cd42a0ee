//! Roster management (RFC 6121 §2): get, set, remove, and pushes to the
//! owner's interested resources.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{subscription, IqRequest, IqResult, Target};
use crate::errors::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::server::Ctx;
use crate::storage::{RosterItem, StorageError, Subscription};
use crate::xml::El;

pub const NS_ROSTER: &str = "jabber:iq:roster";
pub const FEATURES: &[&str] = &[];

pub async fn iq(req: &IqRequest<'_>) -> IqResult {
    // Only the owner manages a roster (RFC 6121 §2.1.5).
    if !matches!(req.target, Target::OwnAccount) {
        return Err(StanzaError::new(StanzaCondition::Forbidden));
    }
    let me = req.me.jid();
    let (host, user) = (me.domain(), me.local().unwrap_or_default());
    if !req.set {
        let items = req
            .ctx
            .storage
            .roster_get(host, user)
            .await
            .map_err(internal)?;
        req.me.roster_interested.store(true, Ordering::Relaxed);
        let mut query = El::new("query").xmlns(NS_ROSTER);
        for item in &items {
            query = query.child(item_el(item));
        }
        return Ok(Some(query));
    }
    let mut items = req.payload.children().filter(|c| c.is_element());
    let (Some(item), None) = (items.next(), items.next()) else {
        return Err(bad_request("a roster set carries exactly one item"));
    };
    if !item.has_tag_name((NS_ROSTER, "item")) {
        return Err(bad_request("expected <item/>"));
    }
    let contact = item
        .attribute("jid")
        .and_then(|j| Jid::parse(j).ok())
        .filter(|j| j.is_bare())
        .ok_or_else(|| StanzaError::new(StanzaCondition::JidMalformed))?;
    let contact_bare = contact.to_string();
    if item.attribute("subscription") == Some("remove") {
        return remove(req.ctx, me, &contact).await;
    }
    let mut groups = Vec::new();
    for g in item
        .children()
        .filter(|c| c.has_tag_name((NS_ROSTER, "group")))
    {
        let name = g.text().unwrap_or_default().to_string();
        if name.is_empty() {
            return Err(StanzaError::new(StanzaCondition::NotAcceptable));
        }
        if groups.contains(&name) {
            return Err(bad_request("duplicate group"));
        }
        groups.push(name);
    }
    let storage = &req.ctx.storage;
    // Read and written back under the account's lock, so that a concurrent
    // subscription change to this item is not overwritten.
    let _account = storage.lock_account(host, user).await;
    // The client sets name and groups; subscription state is the server's.
    let mut entry = storage
        .roster_item(host, user, &contact_bare)
        .await
        .map_err(internal)?
        .unwrap_or(RosterItem {
            jid: contact_bare.clone(),
            name: None,
            subscription: Subscription::None,
            ask: false,
            groups: Vec::new(),
        });
    entry.name = item
        .attribute("name")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    entry.groups = groups;
    storage
        .roster_put(host, user, &entry)
        .await
        .map_err(internal)?;
    push(req.ctx, me, &entry);
    Ok(None)
}

/// Removes a contact, cancelling subscriptions both ways (RFC 6121 §2.5.2).
async fn remove(ctx: &Ctx, me: &Jid, contact: &Jid) -> IqResult {
    let (host, user) = (me.domain(), me.local().unwrap_or_default());
    let bare = contact.to_string();
    let item = {
        // The item is removed under the account's lock, released before
        // the contact's account is told (one account lock at a time).
        let _account = ctx.storage.lock_account(host, user).await;
        let Some(item) = ctx
            .storage
            .roster_item(host, user, &bare)
            .await
            .map_err(internal)?
        else {
            return Err(StanzaError::new(StanzaCondition::ItemNotFound));
        };
        ctx.storage
            .roster_remove(host, user, &bare)
            .await
            .map_err(internal)?;
        ctx.storage
            .sub_request_remove(host, user, &bare)
            .await
            .map_err(internal)?;
        push_removed(ctx, me, &bare);
        item
    };
    let owner = me.to_bare();
    if matches!(item.subscription, Subscription::To | Subscription::Both) || item.ask {
        subscription::deliver_inbound(ctx, &owner, contact, subscription::Kind::Unsubscribe, None)
            .await;
    }
    if matches!(item.subscription, Subscription::From | Subscription::Both) {
        subscription::deliver_inbound(ctx, &owner, contact, subscription::Kind::Unsubscribed, None)
            .await;
    }
    Ok(None)
}

/// The `<item/>` of a roster item.
pub fn item_el(item: &RosterItem) -> El {
    let mut el = El::new("item")
        .attr("jid", &item.jid)
        .attr_opt("name", item.name.as_deref())
        .attr("subscription", item.subscription.as_str());
    if item.ask {
        el = el.attr("ask", "subscribe");
    }
    for g in &item.groups {
        el = el.child(El::new("group").text(g));
    }
    el
}

/// Pushes a changed item to the owner's interested resources.
pub fn push(ctx: &Ctx, owner: &Jid, item: &RosterItem) {
    push_el(ctx, owner, item_el(item));
}

fn push_removed(ctx: &Ctx, owner: &Jid, contact: &str) {
    push_el(
        ctx,
        owner,
        El::new("item")
            .attr("jid", contact)
            .attr("subscription", "remove"),
    );
}

fn push_el(ctx: &Ctx, owner: &Jid, item: El) {
    static PUSH_ID: AtomicU64 = AtomicU64::new(0);
    let started = std::time::Instant::now();
    for s in ctx.sessions.resources(&owner.bare()) {
        if !s.roster_interested.load(Ordering::Relaxed) {
            continue;
        }
        let id = PUSH_ID.fetch_add(1, Ordering::Relaxed);
        let push = El::new("iq")
            .attr("type", "set")
            .attr("id", &format!("push{id}"))
            .attr("to", s.full())
            .child(El::new("query").xmlns(NS_ROSTER).child(item.clone()));
        let _ = s.deliver(push.to_string());
    }
    ctx.instr.handler("roster", "push", started.elapsed());
}

fn bad_request(text: &str) -> StanzaError {
    StanzaError::with_text(StanzaCondition::BadRequest, text)
}

pub(crate) fn internal(e: StorageError) -> StanzaError {
    tracing::warn!(error = %e, "storage failed");
    StanzaError::new(StanzaCondition::InternalServerError)
}
