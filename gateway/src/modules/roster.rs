//! Roster management (RFC 6121 §2): get, set, remove, pushes to the
//! owner's interested resources, and roster versioning (XEP-0237).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::{subscription, IqRequest, IqResult, Module, ModuleDef, Target};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{FeaturesCx, FeaturesHook, Hooks, IqHandler, IqType};
use crate::jid::Jid;
use crate::server::Ctx;
use crate::storage::{RosterItem, StorageError, Subscription};
use crate::xml::El;

pub const NS_ROSTER: &str = "jabber:iq:roster";
pub const NS_ROSTERVER: &str = "urn:xmpp:features:rosterver";

pub const DEF: ModuleDef = ModuleDef {
    name: "roster",
    build: |t| Ok(Arc::new(super::settings::<Roster>(t)?)),
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Roster {
    /// XEP-0237: `ver` in results and pushes; an empty result when the
    /// client's copy is current.
    pub versioning: bool,
}

impl Default for Roster {
    fn default() -> Self {
        Roster { versioning: true }
    }
}

/// Whether pushes carry `ver` (read by [`push`], which subscriptions call).
struct Versioning;

impl Module for Roster {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        if self.versioning {
            hooks.provide(Arc::new(Versioning));
            hooks.stream_features(&h::ROSTER_FEATURES, self.clone());
        }
        hooks.iq(NS_ROSTER, IqType::Get, &h::ROSTER_GET, self.clone());
        hooks.iq(NS_ROSTER, IqType::Set, &h::ROSTER_SET, self);
    }
}

impl FeaturesHook for Roster {
    fn features(&self, cx: &FeaturesCx<'_>, out: &mut Vec<El>) {
        if cx.authenticated {
            out.push(El::new("ver").xmlns(NS_ROSTERVER));
        }
    }
}

#[async_trait]
impl IqHandler for Roster {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        if req.set {
            iq(req).await
        } else {
            self.get(req).await
        }
    }
}

impl Roster {
    async fn get(&self, req: &IqRequest<'_>) -> IqResult {
        if !matches!(req.target, Target::OwnAccount) {
            return Err(StanzaError::new(StanzaCondition::Forbidden));
        }
        let me = req.me.jid();
        let (host, user) = (me.domain(), me.local().unwrap_or_default());
        let store = &req.ctx.stores.roster;
        req.me.roster_interested.store(true, Ordering::Relaxed);
        let client_ver = req.payload.attribute("ver").filter(|_| self.versioning);
        let mut query = El::new("query").xmlns(NS_ROSTER);
        if let Some(theirs) = client_ver {
            let ours = store.roster_version(host, user).await.map_err(internal)?;
            // XEP-0237 §2.3: the client's copy is current: an empty result.
            if theirs == ours.to_string() {
                return Ok(None);
            }
            query = query.attr("ver", &ours.to_string());
        }
        let items = store.roster_get(host, user).await.map_err(internal)?;
        for item in &items {
            query = query.child(item_el(item));
        }
        Ok(Some(query))
    }
}

/// A roster set or remove.
async fn iq(req: &IqRequest<'_>) -> IqResult {
    // Only the owner manages a roster (RFC 6121 §2.1.5).
    if !matches!(req.target, Target::OwnAccount) {
        return Err(StanzaError::new(StanzaCondition::Forbidden));
    }
    let me = req.me.jid();
    let (host, user) = (me.domain(), me.local().unwrap_or_default());
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
    let storage = &req.ctx.stores.roster;
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
    push(req.ctx, me, &entry).await;
    Ok(None)
}

/// Removes a contact, cancelling subscriptions both ways (RFC 6121 §2.5.2).
async fn remove(ctx: &Ctx, me: &Jid, contact: &Jid) -> IqResult {
    let (host, user) = (me.domain(), me.local().unwrap_or_default());
    let bare = contact.to_string();
    let item = {
        // The item is removed under the account's lock, released before
        // the contact's account is told (one account lock at a time).
        let _account = ctx.stores.roster.lock_account(host, user).await;
        let Some(item) = ctx
            .stores
            .roster
            .roster_item(host, user, &bare)
            .await
            .map_err(internal)?
        else {
            return Err(StanzaError::new(StanzaCondition::ItemNotFound));
        };
        ctx.stores
            .roster
            .roster_remove(host, user, &bare)
            .await
            .map_err(internal)?;
        ctx.stores
            .roster
            .sub_request_remove(host, user, &bare)
            .await
            .map_err(internal)?;
        push_removed(ctx, me, &bare).await;
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
pub async fn push(ctx: &Ctx, owner: &Jid, item: &RosterItem) {
    push_el(ctx, owner, item_el(item)).await;
}

pub async fn push_removed(ctx: &Ctx, owner: &Jid, contact: &str) {
    push_el(
        ctx,
        owner,
        El::new("item")
            .attr("jid", contact)
            .attr("subscription", "remove"),
    )
    .await;
}

async fn push_el(ctx: &Ctx, owner: &Jid, item: El) {
    static PUSH_ID: AtomicU64 = AtomicU64::new(0);
    let started = std::time::Instant::now();
    let targets: Vec<_> = crate::router::resources(ctx, &owner.bare())
        .into_iter()
        .filter(|s| s.roster_interested())
        .collect();
    // XEP-0237 §2.4: every push carries the version it brings the roster to.
    let ver = match ctx.hooks.state::<Versioning>() {
        Some(_) if !targets.is_empty() => {
            let (host, user) = (owner.domain(), owner.local().unwrap_or_default());
            match ctx.stores.roster.roster_version(host, user).await {
                Ok(v) => Some(v.to_string()),
                Err(e) => {
                    let _ = internal(e);
                    None
                }
            }
        }
        _ => None,
    };
    for s in targets {
        let id = PUSH_ID.fetch_add(1, Ordering::Relaxed);
        let push = El::new("iq")
            .attr("type", "set")
            .attr("id", &format!("push{id}"))
            .attr("to", s.full())
            .child(
                El::new("query")
                    .xmlns(NS_ROSTER)
                    .attr_opt("ver", ver.as_deref())
                    .child(item.clone()),
            );
        let _ = crate::router::deliver(ctx, &s, push.to_string());
    }
    ctx.instr.handler(
        h::ROSTER_PUSH.module,
        h::ROSTER_PUSH.operation,
        started.elapsed(),
    );
}

fn bad_request(text: &str) -> StanzaError {
    StanzaError::with_text(StanzaCondition::BadRequest, text)
}

pub(crate) fn internal(e: StorageError) -> StanzaError {
    tracing::warn!(error = %e, "storage failed");
    StanzaError::new(StanzaCondition::InternalServerError)
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::TestServer;

    const GET: &str = "<iq type='get' id='g'><query xmlns='jabber:iq:roster' ver=''/></iq>";

    #[tokio::test]
    async fn set_pushes_to_interested_resources_with_a_new_version() {
        let t = TestServer::new(&[]).await;
        let a1 = t.session("alice", "a1").await;
        let a2 = t.session("alice", "a2").await;
        let r = t.iq(&a1, GET).await;
        assert!(
            r.contains("<query xmlns='jabber:iq:roster' ver='0'/>"),
            "{r}"
        );
        t.send(&a1, "<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>").await;
        let out = t.take_all(&a1);
        assert!(
            out.iter()
                .any(|x| x.contains("id='s'") && x.contains("type='result'")),
            "{out:?}"
        );
        let push = out
            .iter()
            .find(|x| x.contains("type='set'"))
            .expect("a push to a1");
        assert!(
            push.contains("ver='1'")
                && push.contains("name='Bob'")
                && push.contains("<group>Friends</group>"),
            "{push}"
        );
        // a2 never asked for the roster: no push (RFC 6121 §2.1.6).
        assert!(t.take_all(&a2).is_empty());
    }

    #[tokio::test]
    async fn current_version_gets_an_empty_result_older_the_full_roster() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        t.iq(&a, "<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>").await;
        let r = t
            .iq(
                &a,
                "<iq type='get' id='g1'><query xmlns='jabber:iq:roster' ver='1'/></iq>",
            )
            .await;
        assert!(
            r.ends_with("type='result' from='alice@localhost' to='alice@localhost/a'/>")
                || !r.contains("<query"),
            "{r}"
        );
        let r = t
            .iq(
                &a,
                "<iq type='get' id='g2'><query xmlns='jabber:iq:roster' ver='0'/></iq>",
            )
            .await;
        assert!(
            r.contains("ver='1'") && r.contains("jid='bob@localhost'"),
            "{r}"
        );
    }

    #[tokio::test]
    async fn versioning_off_means_no_ver_and_no_feature() {
        let t = TestServer::new(&[("roster", "versioning = false")]).await;
        let a = t.session("alice", "a").await;
        let r = t.iq(&a, GET).await;
        assert!(r.contains("<query xmlns='jabber:iq:roster'/>"), "{r}");
    }

    #[tokio::test]
    async fn remove_unknown_is_item_not_found_and_others_rosters_are_forbidden() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        t.add_account("bob");
        let r = t.iq(&a, "<iq type='set' id='r'><query xmlns='jabber:iq:roster'><item jid='x@localhost' subscription='remove'/></query></iq>").await;
        assert!(r.contains("item-not-found"), "{r}");
        let r = t
            .iq(
                &a,
                "<iq type='get' id='o' to='bob@localhost'><query xmlns='jabber:iq:roster'/></iq>",
            )
            .await;
        assert!(r.contains("forbidden"), "{r}");
    }
}
