//! The blocking command (XEP-0191): a user's block list (bare or full JIDs,
//! domains, domain/resource), kept in storage, cached in memory while the
//! user has a session, pushed to the user's resources that asked for it,
//! and enforced in the router both ways.
//!
//! An item matches the other party when it equals its full JID, its bare
//! JID, its domain or its domain/resource (XEP-0191 §3.1, XEP-0016 order).
//! Stanzas between resources of one account are never blocked.
//!
//! Enforcement (route-before hooks, every stanza kind):
//! - from a user to a JID on the user's own list (§3.6): a message or IQ
//!   get/set is refused with `<not-acceptable/>` and
//!   `<blocked xmlns='urn:xmpp:blocking:errors'/>`; anything else is dropped;
//! - to a user who blocked the sender (§3.5): a message or IQ get/set
//!   bounces with `<service-unavailable/>`; presence and the rest is dropped.
//!
//! Blocking a contact subscribed to the user's presence sends it
//! unavailable presence from the user's available resources (§3.3);
//! unblocking sends it their current presence (§3.4).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use dashmap::DashMap;

use super::roster::internal;
use super::subscription::send_presence_of;
use super::{IqRequest, IqResult, Module, ModuleDef, Target};
use crate::config::Config;
use crate::errors::{ErrorType, StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{
    AccountHook, Flow, Hooks, IqHandler, IqType, Route, RouteHook, SessionEvent, SessionHook,
};
use crate::jid::Jid;
use crate::router::{self, Routed};
use crate::server::Ctx;
use crate::session::Session;
use crate::stanza::Kind;
use crate::storage::Subscription;
use crate::xml::El;

pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
pub const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";

pub const DEF: ModuleDef = ModuleDef {
    name: "blocking",
    build: |t| {
        let s = super::settings::<Settings>(t)?;
        Ok(Arc::new(Blocking {
            max_items: s.max_items,
            ..Blocking::default()
        }))
    },
};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    /// Entries one account's block list may hold.
    max_items: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_items: 1000 }
    }
}

/// The module and its state (provided to the registry).
#[derive(Default)]
pub struct Blocking {
    /// Block lists of users with a session, by bare JID.
    lists: DashMap<String, Arc<Vec<String>>>,
    /// Sessions that asked for the list, and so get pushes.
    interested: DashMap<u64, ()>,
    /// Entries one list may hold (a bound on storage and on each check).
    max_items: usize,
    /// The accounts whose list is not empty (bare JIDs): read from storage
    /// at the first check, then kept current by every list this module
    /// loads. Only their stanzas are checked, so while nobody blocks anyone
    /// the check is skipped, and an offline user's list is read from
    /// storage only if there is one.
    holders: tokio::sync::OnceCell<RwLock<HashSet<String>>>,
    /// How many holders there are (read per stanza without the lock).
    holding: AtomicUsize,
}

/// The route check, both directions in one hook (one instrumented call
/// per stanza): the sender's list first (§3.6), then the recipient's (§3.5).
struct Check(Arc<Blocking>);

impl Module for Blocking {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.server_feature(NS_BLOCKING);
        hooks.account_feature(NS_BLOCKING);
        hooks.provide(self.clone());
        hooks.iq(NS_BLOCKING, IqType::Get, &h::BLOCKING_GET, self.clone());
        hooks.iq(NS_BLOCKING, IqType::Set, &h::BLOCKING_SET, self.clone());
        hooks.session(0, &h::BLOCKING_SESSION, self.clone());
        hooks.account_removed(&h::BLOCKING_REMOVED, self.clone());
        // One hook for both directions: one instrumented call per stanza.
        let check = Arc::new(Check(self));
        // Early: a blocked stanza reaches no other module.
        for kind in [Kind::Message, Kind::Presence, Kind::Iq] {
            hooks.route_before(kind, -50, &h::BLOCKING_CHECK, check.clone());
        }
    }
}

impl Blocking {
    /// Whether a list is cached for this bare JID.
    pub fn is_cached(&self, bare: &str) -> bool {
        self.lists.contains_key(bare)
    }

    /// The holders, read from storage the first time. `None` while storage
    /// cannot say (every account is then checked, as if a holder).
    async fn holders(&self, ctx: &Ctx) -> Option<&RwLock<HashSet<String>>> {
        let read = self
            .holders
            .get_or_try_init(|| async {
                let owners = ctx.stores.blocking.blocklist_owners().await?;
                let set: HashSet<String> = owners
                    .into_iter()
                    .map(|(host, user)| format!("{user}@{host}"))
                    .collect();
                self.holding.store(set.len(), Ordering::Relaxed);
                Ok::<_, crate::storage::StorageError>(RwLock::new(set))
            })
            .await;
        match read {
            Ok(h) => Some(h),
            Err(e) => {
                let _ = internal(e);
                None
            }
        }
    }

    /// Whether any stanza may need checking: the holders are not read yet,
    /// or some account has a non-empty list.
    fn any(&self) -> bool {
        self.holders.get().is_none() || self.holding.load(Ordering::Relaxed) > 0
    }

    /// Records whether `bare`'s list is empty, once the holders are known.
    fn note_holder(&self, bare: &str, holds: bool) {
        let Some(set) = self.holders.get() else {
            return;
        };
        let mut set = set.write().unwrap_or_else(|e| e.into_inner());
        let changed = if holds {
            set.insert(bare.to_string())
        } else {
            set.remove(bare)
        };
        if changed {
            self.holding.store(set.len(), Ordering::Relaxed);
        }
    }

    /// The list of a local account that has one: cached, else from storage
    /// (an offline user's is not cached). `None` for a JID that is not a
    /// local account or is known to block nobody.
    async fn list(
        &self,
        ctx: &Ctx,
        holders: Option<&RwLock<HashSet<String>>>,
        jid: &Jid,
    ) -> Option<Arc<Vec<String>>> {
        let user = jid.local()?;
        if !ctx.serves(jid.domain()) {
            return None;
        }
        // The bare JID is built in a reused buffer: this runs for both sides
        // of every checked stanza.
        thread_local!(static BARE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) });
        let (holds, cached) = BARE.with(|b| {
            let mut b = b.borrow_mut();
            b.clear();
            b.push_str(user);
            b.push('@');
            b.push_str(jid.domain());
            let holds = holders.is_none_or(|h| {
                h.read()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(b.as_str())
            });
            let cached = holds
                .then(|| self.lists.get(b.as_str()).map(|l| l.clone()))
                .flatten();
            (holds, cached)
        });
        if !holds {
            return None;
        }
        if let Some(l) = cached {
            return Some(l);
        }
        match ctx.stores.blocking.blocklist_get(jid.domain(), user).await {
            Ok(l) => Some(Arc::new(l)),
            Err(e) => {
                // Open rather than closed: a storage failure blocks nothing.
                let _ = internal(e);
                None
            }
        }
    }

    /// Reads the list from storage into the cache.
    async fn load(&self, ctx: &Ctx, bare: &Jid) -> Result<Arc<Vec<String>>, StanzaError> {
        let (host, user) = (bare.domain(), bare.local().unwrap_or_default());
        let l = Arc::new(
            ctx.stores
                .blocking
                .blocklist_get(host, user)
                .await
                .map_err(internal)?,
        );
        let key = bare.bare();
        self.note_holder(&key, !l.is_empty());
        self.lists.insert(key, l.clone());
        Ok(l)
    }

    async fn get(&self, req: &IqRequest<'_>) -> IqResult {
        let me = req.me.jid().to_bare();
        let list = match self.lists.get(&me.bare()) {
            Some(l) => l.clone(),
            None => self.load(req.ctx, &me).await?,
        };
        self.interested.insert(req.me.id(), ());
        let mut el = El::new("blocklist").xmlns(NS_BLOCKING);
        for jid in list.iter() {
            el = el.child(El::new("item").attr("jid", jid));
        }
        Ok(Some(el))
    }

    async fn set(&self, req: &IqRequest<'_>) -> IqResult {
        let bad = |text: &str| StanzaError::with_text(StanzaCondition::BadRequest, text);
        let block = match req.payload.tag_name().name() {
            "block" => true,
            "unblock" => false,
            _ => return Err(bad("expected <block/> or <unblock/>")),
        };
        let mut jids: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for item in req.payload.children().filter(|c| c.is_element()) {
            if !item.has_tag_name((NS_BLOCKING, "item")) {
                return Err(bad("expected <item/>"));
            }
            let jid = item
                .attribute("jid")
                .and_then(|j| Jid::parse(j).ok())
                .ok_or_else(|| bad("an item needs a valid 'jid'"))?
                .to_string();
            if seen.insert(jid.clone()) {
                jids.push(jid);
            }
        }
        // §3.3: a block names at least one JID; an empty unblock is all.
        if block && jids.is_empty() {
            return Err(bad("a block needs at least one item"));
        }
        let ctx = req.ctx;
        let me = req.me.jid().to_bare();
        let (host, user) = (me.domain(), me.local().unwrap_or_default());
        let _account = ctx.stores.roster.lock_account(host, user).await;
        // Read before the change, so the change is never missed by a first
        // read racing it.
        self.holders(ctx).await;
        let old = self.load(ctx, &me).await?;
        let store = &ctx.stores.blocking;
        let have: std::collections::HashSet<&String> = old.iter().collect();
        if block {
            let added = jids.iter().filter(|j| !have.contains(j)).count();
            if old.len() + added > self.max_items {
                ctx.instr.limit("blocklist_items");
                return Err(StanzaError::with_text(
                    StanzaCondition::ResourceConstraint,
                    format!("a block list holds at most {} entries", self.max_items),
                ));
            }
            store
                .blocklist_add(host, user, &jids)
                .await
                .map_err(internal)?;
            // §3.3: a subscribed contact sees the user go offline; sent
            // while the cache still holds the old list, so it passes.
            for jid in jids.iter().filter(|j| !have.contains(j)) {
                if subscribed(ctx, &me, jid).await {
                    if let Ok(contact) = Jid::parse(jid) {
                        send_presence_of(ctx, &me, &contact, false).await;
                    }
                }
            }
        } else {
            store
                .blocklist_remove(host, user, &jids)
                .await
                .map_err(internal)?;
        }
        self.load(ctx, &me).await?;
        if !block {
            // §3.4: an unblocked subscribed contact gets current presence.
            let unblocked = old.iter().filter(|j| jids.is_empty() || jids.contains(j));
            for jid in unblocked {
                if subscribed(ctx, &me, jid).await {
                    if let Ok(contact) = Jid::parse(jid) {
                        send_presence_of(ctx, &me, &contact, true).await;
                    }
                }
            }
        }
        self.push(ctx, &me, if block { "block" } else { "unblock" }, &jids);
        Ok(None)
    }

    /// The change to every resource that asked for the list (§3.3, §3.4).
    fn push(&self, ctx: &Ctx, me: &Jid, what: &str, jids: &[String]) {
        static PUSH_ID: AtomicU64 = AtomicU64::new(0);
        let mut payload = El::new(what).xmlns(NS_BLOCKING);
        for jid in jids {
            payload = payload.child(El::new("item").attr("jid", jid));
        }
        for s in router::resources(ctx, &me.bare()) {
            if !self.interested.contains_key(&s.id()) {
                continue;
            }
            let id = PUSH_ID.fetch_add(1, Ordering::Relaxed);
            let push = El::new("iq")
                .attr("type", "set")
                .attr("id", &format!("block{id}"))
                .attr("to", s.full())
                .child(payload.clone());
            let _ = router::deliver(ctx, &s, push.to_string());
        }
    }
}

/// Whether `contact` (a bare JID on `me`'s list) is subscribed to `me`.
async fn subscribed(ctx: &Ctx, me: &Jid, contact: &str) -> bool {
    let (host, user) = (me.domain(), me.local().unwrap_or_default());
    match ctx.stores.roster.roster_item(host, user, contact).await {
        Ok(Some(item)) => matches!(item.subscription, Subscription::From | Subscription::Both),
        _ => false,
    }
}

/// XEP-0191 §3.1: the item is the other party's full JID, bare JID,
/// domain or domain/resource.
fn matches(list: &[String], other: &Jid) -> bool {
    if list.is_empty() {
        return false;
    }
    let full = other.to_string();
    let bare = other.bare();
    let domain = other.domain();
    let domain_resource = other.resource().map(|r| format!("{domain}/{r}"));
    list.iter()
        .any(|i| *i == full || *i == bare || i == domain || Some(i) == domain_resource.as_ref())
}

/// A message or an IQ request (what is refused rather than dropped).
fn refusable(route: &Route<'_>) -> bool {
    match route.kind {
        Kind::Message => route.typ != Some("error"),
        Kind::Iq => matches!(route.typ, Some("get") | Some("set")),
        Kind::Presence => false,
    }
}

#[async_trait]
impl IqHandler for Blocking {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        // Only the owner reads or changes a block list.
        if !matches!(req.target, Target::OwnAccount) {
            return Err(StanzaError::new(StanzaCondition::NotAllowed));
        }
        if req.set {
            self.set(req).await
        } else if req.payload.tag_name().name() == "blocklist" {
            self.get(req).await
        } else {
            Err(StanzaError::new(StanzaCondition::BadRequest))
        }
    }
}

#[async_trait]
impl SessionHook for Blocking {
    async fn session(&self, ctx: &Arc<Ctx>, session: &mut Session, event: SessionEvent) {
        let bare = session.handle.jid().to_bare();
        match event {
            SessionEvent::Bound if !self.lists.contains_key(&bare.bare()) => {
                // An account known to block nobody has nothing to cache.
                let key = bare.bare();
                let blocks_nobody = self
                    .holders(ctx)
                    .await
                    .is_some_and(|h| !h.read().unwrap_or_else(|e| e.into_inner()).contains(&key));
                if !blocks_nobody {
                    let _ = self.load(ctx, &bare).await;
                }
            }
            SessionEvent::Closed => {
                self.interested.remove(&session.id());
                if router::resources(ctx, &bare.bare()).is_empty() {
                    self.lists.remove(&bare.bare());
                }
            }
            _ => {}
        }
    }
}

#[async_trait]
impl AccountHook for Blocking {
    async fn removed(&self, _: &Ctx, host: &str, user: &str) {
        let bare = format!("{user}@{host}");
        self.note_holder(&bare, false);
        self.lists.remove(&bare);
    }
}

#[async_trait]
impl RouteHook for Check {
    fn active(&self, _: &Route<'_>) -> bool {
        self.0.any()
    }

    async fn route(
        &self,
        ctx: &Ctx,
        route: &Route<'_>,
        _: Option<&Result<Routed, StanzaError>>,
    ) -> Flow {
        // Resources of one account never block each other.
        if route.from.same_bare(route.to) {
            return Flow::Continue;
        }
        let holders = self.0.holders(ctx).await;
        if let Some(list) = self.0.list(ctx, holders, route.from).await {
            if matches(&list, route.to) {
                if !refusable(route) {
                    return Flow::Drop;
                }
                // §3.6 (example 18): not-acceptable, type cancel, <blocked/>.
                let blocked = El::new("blocked").xmlns(NS_BLOCKING_ERRORS).to_string();
                return Flow::Bounce(
                    StanzaError::new(StanzaCondition::NotAcceptable)
                        .typed(ErrorType::Cancel)
                        .with_app(blocked),
                );
            }
        }
        match self.0.list(ctx, holders, route.to).await {
            Some(list) if matches(&list, route.from) => {
                // §3.5: as if the user did not exist.
                if refusable(route) {
                    Flow::Bounce(StanzaError::new(StanzaCondition::ServiceUnavailable))
                } else {
                    Flow::Drop
                }
            }
            _ => Flow::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Blocking, NS_BLOCKING};
    use crate::jid::Jid;
    use crate::modules::testing::{TestServer, TestSession};
    use crate::storage::{RosterItem, Subscription};

    async fn command(
        t: &TestServer,
        s: &TestSession,
        id: &str,
        kind: &str,
        jids: &[&str],
    ) -> String {
        let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
        t.iq(
            s,
            &format!(
                "<iq type='set' id='{id}'><{kind} xmlns='{NS_BLOCKING}'>{items}</{kind}></iq>"
            ),
        )
        .await
    }

    async fn blocklist(t: &TestServer, s: &TestSession) -> String {
        t.iq(
            s,
            &format!("<iq type='get' id='bl'><blocklist xmlns='{NS_BLOCKING}'/></iq>"),
        )
        .await
    }

    #[test]
    fn matching_rules() {
        let other = Jid::parse("bob@example.org/phone").expect("jid");
        let m = |item: &str| super::matches(&[item.to_string()], &other);
        assert!(m("bob@example.org/phone"));
        assert!(m("bob@example.org"));
        assert!(m("example.org"));
        assert!(m("example.org/phone"));
        assert!(!m("bob@example.org/laptop"));
        assert!(!m("carol@example.org"));
        assert!(!m("other.org"));
    }

    #[tokio::test]
    async fn the_check_runs_only_while_someone_blocks_someone() {
        let t = TestServer::new(&[]).await;
        let state = t.ctx.hooks.state::<Blocking>().expect("state");
        // Unknown until the holders are read (at the first bind here).
        assert!(state.any());
        let a = t.session("alice", "a").await;
        let b = t.session("bob", "b").await;
        assert!(!state.any(), "nobody blocks anybody");
        let msg = "<message to='alice@localhost/a' type='chat' id='m'><body>x</body></message>";
        t.send(&b, msg).await;
        assert_eq!(t.take_all(&a).len(), 1);
        let r = command(&t, &a, "1", "block", &["bob@localhost"]).await;
        assert!(r.contains("type='result'"), "{r}");
        assert!(state.any());
        t.send(&b, msg).await;
        assert!(t.take_all(&a).is_empty());
        let bounced = t.take_all(&b);
        assert!(
            bounced.iter().any(|x| x.contains("service-unavailable")),
            "{bounced:?}"
        );
        // Unblock-all: nobody blocks anybody again, and the message passes.
        let r = command(&t, &a, "2", "unblock", &[]).await;
        assert!(r.contains("type='result'"), "{r}");
        assert!(!state.any());
        t.send(&b, msg).await;
        assert_eq!(t.take_all(&a).len(), 1);
    }

    #[tokio::test]
    async fn a_list_is_capped_and_duplicates_count_once() {
        let t = TestServer::new(&[("blocking", "max_items = 3")]).await;
        let a = t.session("alice", "a").await;
        let r = command(
            &t,
            &a,
            "1",
            "block",
            &["x@localhost", "x@localhost", "y@localhost"],
        )
        .await;
        assert!(r.contains("type='result'"), "{r}");
        let r = command(&t, &a, "2", "block", &["z@localhost", "y@localhost"]).await;
        assert!(r.contains("type='result'"), "{r}");
        let r = command(&t, &a, "3", "block", &["w@localhost"]).await;
        assert!(r.contains("resource-constraint"), "{r}");
        let list = t
            .ctx
            .stores
            .blocking
            .blocklist_get("localhost", "alice")
            .await
            .expect("list");
        assert_eq!(list.len(), 3, "{list:?}");
    }

    #[tokio::test]
    async fn list_block_unblock_and_pushes_to_those_who_asked() {
        let t = TestServer::new(&[]).await;
        assert!(t.ctx.hooks.server_features().contains(&NS_BLOCKING));
        assert!(t.ctx.hooks.account_features().contains(&NS_BLOCKING));
        let a1 = t.session("alice", "a1").await;
        let a2 = t.session("alice", "a2").await;
        let r = blocklist(&t, &a1).await;
        assert!(r.contains("<blocklist xmlns='urn:xmpp:blocking'/>"), "{r}");
        let r = command(&t, &a1, "b0", "block", &[]).await;
        assert!(r.contains("bad-request"), "{r}");
        let r = command(&t, &a1, "b1", "block", &["not a@@jid"]).await;
        assert!(r.contains("bad-request"), "{r}");
        t.send(
            &a1,
            &format!("<iq type='set' id='b2'><block xmlns='{NS_BLOCKING}'><item jid='bob@localhost'/><item jid='evil.example'/></block></iq>"),
        )
        .await;
        let out = t.take_all(&a1);
        assert!(
            out.iter()
                .any(|x| x.contains("id='b2'") && x.contains("type='result'")),
            "{out:?}"
        );
        assert!(
            out.iter().any(|x| x.contains("type='set'")
                && x.contains("to='alice@localhost/a1'")
                && x.contains("<block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/><item jid='evil.example'/></block>")),
            "{out:?}"
        );
        assert!(t.take_all(&a2).is_empty(), "a2 never asked for the list");
        let r = blocklist(&t, &a2).await;
        assert!(
            r.contains("jid='bob@localhost'") && r.contains("jid='evil.example'"),
            "{r}"
        );
        let r = command(&t, &a1, "u1", "unblock", &["evil.example"]).await;
        assert!(r.contains("type='result'"), "{r}");
        let out = t.take_all(&a2);
        assert!(
            out.iter().any(|x| x.contains(
                "<unblock xmlns='urn:xmpp:blocking'><item jid='evil.example'/></unblock>"
            )),
            "{out:?}"
        );
        let r = command(&t, &a1, "u2", "unblock", &[]).await;
        assert!(r.contains("type='result'"), "{r}");
        let out = t.take_all(&a2);
        assert!(
            out.iter()
                .any(|x| x.contains("<unblock xmlns='urn:xmpp:blocking'/>")),
            "{out:?}"
        );
        let r = blocklist(&t, &a1).await;
        assert!(!r.contains("<item"), "{r}");
        let bob = t.session("bob", "b").await;
        let r = t
            .iq(
                &bob,
                &format!("<iq type='get' id='x' to='alice@localhost'><blocklist xmlns='{NS_BLOCKING}'/></iq>"),
            )
            .await;
        assert!(r.contains("not-allowed"), "{r}");
    }

    #[tokio::test]
    async fn requests_to_the_blockers_bare_jid_are_refused_too() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let b = t.session("bob", "b").await;
        let disco = "<iq to='alice@localhost' type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
        assert!(t.iq(&b, disco).await.contains("category='account'"));
        command(&t, &a, "b", "block", &["bob@localhost"]).await;
        let _ = t.take_all(&a);
        let r = t.iq(&b, disco).await;
        assert!(
            r.contains("service-unavailable") && r.contains("from='alice@localhost'"),
            "{r}"
        );
    }

    #[tokio::test]
    async fn blocked_sender_is_refused_both_ways() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let b = t.session("bob", "b").await;
        let r = command(&t, &a, "b", "block", &["bob@localhost"]).await;
        assert!(r.contains("type='result'"), "{r}");
        // Inbound: message and IQ bounce, presence is dropped.
        t.send(
            &b,
            "<message to='alice@localhost' type='chat' id='m1'><body>x</body></message>",
        )
        .await;
        t.send(
            &b,
            "<message to='alice@localhost/a' type='chat' id='m2'><body>x</body></message>",
        )
        .await;
        t.send(
            &b,
            "<iq to='alice@localhost/a' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
        t.send(&b, "<presence to='alice@localhost/a'/>").await;
        let out = t.take_all(&b);
        assert_eq!(out.len(), 3, "{out:?}");
        for id in ["m1", "m2", "q"] {
            assert!(
                out.iter().any(|x| x.contains(&format!("id='{id}'")) && x.contains("service-unavailable")),
                "{id}: {out:?}"
            );
        }
        assert!(out[0].contains("from='alice@localhost'"), "{out:?}");
        assert!(t.take_all(&a).is_empty());
        assert_eq!(t.offline_flush(&a).await.len(), 0, "nothing stored offline");
        // Outbound: not-acceptable with <blocked/>, presence dropped.
        t.send(
            &a,
            "<message to='bob@localhost/b' type='chat' id='o1'><body>x</body></message>",
        )
        .await;
        t.send(&a, "<presence to='bob@localhost/b'/>").await;
        let out = t.take_all(&a);
        assert_eq!(out.len(), 1, "{out:?}");
        let e = &out[0];
        assert!(
            e.contains("id='o1'") && e.contains("type='cancel'") && e.contains("not-acceptable"),
            "{e}"
        );
        assert!(
            e.contains("<blocked xmlns='urn:xmpp:blocking:errors'/></error>"),
            "{e}"
        );
        assert!(
            e.contains("from='bob@localhost/b'") && e.contains("to='alice@localhost/a'"),
            "{e}"
        );
        assert!(t.take_all(&b).is_empty());
        // The user's own resources are never blocked.
        let a2 = t.session("alice", "a2").await;
        command(&t, &a, "d", "block", &["localhost"]).await;
        t.send(
            &a2,
            "<message to='alice@localhost/a' type='chat' id='self'><body>x</body></message>",
        )
        .await;
        assert!(t.take_all(&a).iter().any(|x| x.contains("id='self'")));
    }

    #[tokio::test]
    async fn offline_user_list_is_read_from_storage_and_cache_follows_sessions() {
        let t = TestServer::new(&[]).await;
        t.add_account("alice");
        t.ctx
            .stores
            .blocking
            .blocklist_add("localhost", "alice", &["bob@localhost".into()])
            .await
            .expect("store");
        let state = t.ctx.hooks.state::<Blocking>().expect("state");
        let b = t.session("bob", "b").await;
        t.send(
            &b,
            "<message to='alice@localhost' type='chat' id='m'><body>x</body></message>",
        )
        .await;
        let out = t.take_all(&b);
        assert!(
            out.iter().any(|x| x.contains("service-unavailable")),
            "{out:?}"
        );
        assert!(!state.is_cached("alice@localhost"));
        let a = t.session("alice", "a").await;
        assert!(state.is_cached("alice@localhost"));
        assert_eq!(t.offline_flush(&a).await.len(), 0);
        t.ctx.sessions.remove(&a.handle);
        let mut s = a.session.lock().await;
        t.ctx
            .hooks
            .run_session(&t.ctx, &mut s, crate::hooks::SessionEvent::Closed)
            .await;
        assert!(!state.is_cached("alice@localhost"));
        drop(s);
        let _a = t.session("alice", "a").await;
        assert!(state.is_cached("alice@localhost"));
        t.ctx
            .hooks
            .run_account_removed(&t.ctx, "localhost", "alice")
            .await;
        assert!(!state.is_cached("alice@localhost"));
    }

    #[tokio::test]
    async fn subscribed_contact_sees_unavailable_then_presence_again() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let b = t.session("bob", "b").await;
        let item = |jid: &str| RosterItem {
            jid: jid.into(),
            name: None,
            subscription: Subscription::Both,
            ask: false,
            groups: Vec::new(),
        };
        let roster = &t.ctx.stores.roster;
        roster
            .roster_put("localhost", "alice", &item("bob@localhost"))
            .await
            .expect("roster");
        roster
            .roster_put("localhost", "bob", &item("alice@localhost"))
            .await
            .expect("roster");
        t.send(&b, "<presence/>").await;
        t.send(&a, "<presence/>").await;
        let _ = t.take_all(&a);
        let _ = t.take_all(&b);
        command(&t, &a, "b", "block", &["bob@localhost"]).await;
        let out = t.take_all(&b);
        assert!(
            out.len() == 1
                && out[0].contains("type='unavailable'")
                && out[0].contains("from='alice@localhost/a'"),
            "{out:?}"
        );
        // Her presence no longer reaches him.
        t.send(&a, "<presence><show>dnd</show></presence>").await;
        assert!(t.take_all(&b).is_empty());
        command(&t, &a, "u", "unblock", &["bob@localhost"]).await;
        let out = t.take_all(&b);
        assert!(
            out.len() == 1
                && out[0].contains("<show>dnd</show>")
                && out[0].contains("from='alice@localhost/a'"),
            "{out:?}"
        );
    }
}
