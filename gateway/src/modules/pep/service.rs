//! The pubsub service of one account (IQs to its bare JID): publish,
//! retract, items, create, and the owner's configure and delete.

use std::time::Instant;

use async_trait::async_trait;

use super::nodes::{self, form_fields, precondition_not_met, pubsub_error, Access, Config};
use super::notify::subscribed_from;
use super::{Pep, NS_PUBSUB, NS_PUBSUB_OWNER};
use crate::errors::{StanzaCondition, StanzaError};
use crate::hooks::IqHandler;
use crate::jid::Jid;
use crate::modules::private::serialise;
use crate::modules::roster::internal;
use crate::modules::{IqRequest, IqResult, Target};
use crate::server::Ctx;
use crate::storage::PepItem;
use crate::xml::El;

/// The service a request is for: the owner's bare JID, and whether the
/// requester is the owner.
async fn service(req: &IqRequest<'_>) -> Result<(Jid, bool), StanzaError> {
    let unavailable = || StanzaError::new(StanzaCondition::ServiceUnavailable);
    match req.target {
        Target::OwnAccount => Ok((req.me.jid().to_bare(), true)),
        Target::OtherAccount(jid) => {
            let (host, Some(user)) = (jid.domain(), jid.local()) else {
                return Err(unavailable());
            };
            match req.ctx.stores.accounts.account_exists(host, user).await {
                Ok(true) => Ok((jid.to_bare(), false)),
                Ok(false) => Err(unavailable()),
                Err(e) => Err(internal(e)),
            }
        }
        // No pubsub service on the domain itself.
        Target::Server => Err(unavailable()),
    }
}

pub(super) fn parts(owner: &Jid) -> (&str, &str) {
    (owner.domain(), owner.local().unwrap_or_default())
}

fn bad(text: &str) -> StanzaError {
    StanzaError::with_text(StanzaCondition::BadRequest, text.to_string())
}

fn forbidden() -> StanzaError {
    StanzaError::with_text(StanzaCondition::Forbidden, "only the owner may do this")
}

fn node_attr<'a>(el: roxmltree::Node<'a, 'a>) -> Result<&'a str, StanzaError> {
    el.attribute("node")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| pubsub_error(StanzaCondition::BadRequest, "nodeid-required"))
}

pub(super) fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The one serialised element of an `<item/>`, or "" for none.
fn payload_of(item: roxmltree::Node<'_, '_>) -> Result<String, StanzaError> {
    let mut kids = item.children().filter(|c| c.is_element());
    match (kids.next(), kids.next()) {
        (None, _) => Ok(String::new()),
        (Some(p), None) => {
            let mut xml = String::new();
            serialise(p, None, &mut xml);
            Ok(xml)
        }
        _ => Err(pubsub_error(StanzaCondition::BadRequest, "invalid-payload")),
    }
}

pub(super) fn item_el(item: &PepItem) -> El {
    let el = El::new("item").attr("id", &item.id);
    if item.xml.is_empty() {
        el
    } else {
        el.raw_child(&item.xml)
    }
}

impl Pep {
    /// The node's configuration, if it exists.
    async fn node(
        &self,
        ctx: &Ctx,
        owner: &Jid,
        node: &str,
    ) -> Result<Option<Config>, StanzaError> {
        let (host, user) = parts(owner);
        let nodes = ctx
            .stores
            .pep
            .pep_nodes(host, user)
            .await
            .map_err(internal)?;
        Ok(nodes
            .iter()
            .find(|n| n.node == node)
            .map(Config::from_stored))
    }

    /// Whether `reader` (a bare JID) may read the owner's node.
    async fn may_read(
        &self,
        ctx: &Ctx,
        owner: &Jid,
        reader: &str,
        config: &Config,
    ) -> Result<(), StanzaError> {
        match config.access {
            Access::Open => Ok(()),
            Access::Whitelist => Err(pubsub_error(StanzaCondition::NotAllowed, "closed-node")),
            Access::Presence => {
                if subscribed_from(ctx, owner, reader).await? {
                    Ok(())
                } else {
                    Err(pubsub_error(
                        StanzaCondition::NotAuthorized,
                        "presence-subscription-required",
                    ))
                }
            }
        }
    }

    /// A node created with `config`, unless the account has too many.
    async fn create(
        &self,
        ctx: &Ctx,
        owner: &Jid,
        node: &str,
        config: &Config,
    ) -> Result<(), StanzaError> {
        let (host, user) = parts(owner);
        let store = &ctx.stores.pep;
        let count = store.pep_nodes(host, user).await.map_err(internal)?.len();
        if count >= self.settings.max_nodes {
            ctx.instr.limit("pep_nodes");
            return Err(pubsub_error(
                StanzaCondition::ResourceConstraint,
                "max-nodes-exceeded",
            ));
        }
        store
            .pep_node_put(host, user, &config.to_stored(node))
            .await
            .map_err(internal)
    }

    async fn publish(
        &self,
        req: &IqRequest<'_>,
        owner: &Jid,
        publish: roxmltree::Node<'_, '_>,
        options: Option<roxmltree::Node<'_, '_>>,
    ) -> IqResult {
        let ctx = req.ctx;
        let started = Instant::now();
        let node = node_attr(publish)?;
        let mut items = publish
            .children()
            .filter(|c| c.has_tag_name((NS_PUBSUB, "item")));
        let (Some(item), None) = (items.next(), items.next()) else {
            return Err(pubsub_error(StanzaCondition::BadRequest, "item-required"));
        };
        let xml = payload_of(item)?;
        if xml.is_empty() {
            return Err(pubsub_error(
                StanzaCondition::BadRequest,
                "payload-required",
            ));
        }
        if xml.len() > self.settings.max_item_bytes {
            ctx.instr.limit("pep_item_bytes");
            return Err(pubsub_error(
                StanzaCondition::NotAcceptable,
                "payload-too-big",
            ));
        }
        let fields = match options {
            None => None,
            Some(o) => match o.children().find(|c| c.is_element()) {
                None => None,
                Some(x) => Some(form_fields(x, nodes::FORM_PUBLISH_OPTIONS)?),
            },
        };
        let cap = self.settings.max_items;
        let id = item
            .attribute("id")
            .filter(|i| !i.is_empty())
            .map(str::to_string)
            .unwrap_or_else(new_id);
        let (host, user) = parts(owner);
        let config = {
            let _account = ctx.stores.roster.lock_account(host, user).await;
            let config = match self.node(ctx, owner, node).await? {
                Some(config) => {
                    if let Some(f) = &fields {
                        if !config.satisfies(f, cap) {
                            return Err(precondition_not_met());
                        }
                    }
                    config
                }
                None => {
                    let mut config = Config::default();
                    if let Some(f) = &fields {
                        config.apply(f, cap).map_err(|_| precondition_not_met())?;
                    }
                    self.create(ctx, owner, node, &config).await?;
                    config
                }
            };
            if config.persist {
                let stored = PepItem {
                    id: id.clone(),
                    publisher: req.me.full().to_string(),
                    xml: xml.clone(),
                    published_at_ms: crate::storage::now_ms(),
                };
                ctx.stores
                    .pep
                    .pep_publish(host, user, node, &stored, config.keep(cap))
                    .await
                    .map_err(internal)?;
            }
            config
        };
        ctx.instr.module_data("pep", "stored", 1, started.elapsed());
        let event = El::new("items")
            .attr("node", node)
            .child(El::new("item").attr("id", &id).raw_child(&xml));
        self.notify(ctx, owner, node, &config, &event.to_string())
            .await;
        Ok(Some(
            El::new("pubsub").xmlns(NS_PUBSUB).child(
                El::new("publish")
                    .attr("node", node)
                    .child(El::new("item").attr("id", &id)),
            ),
        ))
    }

    async fn retract(&self, ctx: &Ctx, owner: &Jid, retract: roxmltree::Node<'_, '_>) -> IqResult {
        let started = Instant::now();
        let node = node_attr(retract)?;
        let ids: Vec<&str> = retract
            .children()
            .filter(|c| c.has_tag_name((NS_PUBSUB, "item")))
            .filter_map(|c| c.attribute("id"))
            .collect();
        if ids.is_empty() {
            return Err(pubsub_error(StanzaCondition::BadRequest, "item-required"));
        }
        let notify = matches!(retract.attribute("notify"), Some("1" | "true"));
        let Some(config) = self.node(ctx, owner, node).await? else {
            return Err(StanzaError::new(StanzaCondition::ItemNotFound));
        };
        let (host, user) = parts(owner);
        let mut removed = Vec::new();
        for id in ids {
            if ctx
                .stores
                .pep
                .pep_retract(host, user, node, id)
                .await
                .map_err(internal)?
            {
                removed.push(id);
            }
        }
        if removed.is_empty() {
            return Err(StanzaError::new(StanzaCondition::ItemNotFound));
        }
        ctx.instr
            .module_data("pep", "removed", removed.len() as u64, started.elapsed());
        if notify {
            let mut event = El::new("items").attr("node", node);
            for id in &removed {
                event = event.child(El::new("retract").attr("id", id));
            }
            self.notify(ctx, owner, node, &config, &event.to_string())
                .await;
        }
        Ok(None)
    }

    async fn items(
        &self,
        ctx: &Ctx,
        owner: &Jid,
        reader: Option<&str>,
        items: roxmltree::Node<'_, '_>,
    ) -> IqResult {
        let started = Instant::now();
        let node = node_attr(items)?;
        let Some(config) = self.node(ctx, owner, node).await? else {
            return Err(StanzaError::new(StanzaCondition::ItemNotFound));
        };
        if let Some(reader) = reader {
            self.may_read(ctx, owner, reader, &config).await?;
        }
        let (host, user) = parts(owner);
        let store = &ctx.stores.pep;
        let ids: Vec<&str> = items
            .children()
            .filter(|c| c.has_tag_name((NS_PUBSUB, "item")))
            .filter_map(|c| c.attribute("id"))
            .collect();
        let found = if ids.is_empty() {
            let max = match items.attribute("max_items") {
                None => None,
                Some(m) => Some(m.trim().parse::<u32>().map_err(|_| bad("bad max_items"))?),
            };
            let mut found = store
                .pep_items(host, user, node, max)
                .await
                .map_err(internal)?;
            // Oldest first, as published.
            found.reverse();
            found
        } else {
            let mut found = Vec::new();
            for id in ids {
                if let Some(item) = store
                    .pep_item(host, user, node, id)
                    .await
                    .map_err(internal)?
                {
                    found.push(item);
                }
            }
            found
        };
        ctx.instr
            .module_data("pep", "queried", found.len() as u64, started.elapsed());
        let mut out = El::new("items").attr("node", node);
        for item in &found {
            out = out.child(item_el(item));
        }
        Ok(Some(El::new("pubsub").xmlns(NS_PUBSUB).child(out)))
    }
}

#[async_trait]
impl IqHandler for Pep {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        let (owner, own) = service(req).await?;
        let ctx = req.ctx;
        let ns = req.payload.tag_name().namespace().unwrap_or_default();
        if req.payload.tag_name().name() != "pubsub" {
            return Err(bad("expected <pubsub/>"));
        }
        let kids: Vec<_> = req.payload.children().filter(|c| c.is_element()).collect();
        let Some(first) = kids.first().copied() else {
            return Err(bad("an empty <pubsub/>"));
        };
        let reader = req.me.jid().to_bare().to_string();
        let not_implemented = |what: &str| {
            StanzaError::new(StanzaCondition::FeatureNotImplemented).with_app(format!(
                "<unsupported xmlns='{}' feature='{what}'/>",
                nodes::NS_PUBSUB_ERRORS
            ))
        };
        if ns == NS_PUBSUB_OWNER {
            if !own {
                return Err(forbidden());
            }
            return match (first.tag_name().name(), req.set) {
                ("configure", false) => {
                    let node = node_attr(first)?;
                    let config = self
                        .node(ctx, &owner, node)
                        .await?
                        .ok_or_else(|| StanzaError::new(StanzaCondition::ItemNotFound))?;
                    Ok(Some(
                        El::new("pubsub").xmlns(NS_PUBSUB_OWNER).child(
                            El::new("configure")
                                .attr("node", node)
                                .child(config.form(self.settings.max_items)),
                        ),
                    ))
                }
                ("configure", true) => self.configure(ctx, &owner, first).await,
                ("delete", true) => self.delete(ctx, &owner, first).await,
                ("default", false) => Ok(Some(El::new("pubsub").xmlns(NS_PUBSUB_OWNER).child(
                    El::new("default").child(Config::default().form(self.settings.max_items)),
                ))),
                (other, _) => Err(not_implemented(other)),
            };
        }
        match (first.tag_name().name(), req.set) {
            ("publish", true) => {
                if !own {
                    return Err(forbidden());
                }
                let options = kids
                    .iter()
                    .find(|c| c.has_tag_name((NS_PUBSUB, "publish-options")))
                    .copied();
                self.publish(req, &owner, first, options).await
            }
            ("retract", true) => {
                if !own {
                    return Err(forbidden());
                }
                self.retract(ctx, &owner, first).await
            }
            ("create", true) => {
                if !own {
                    return Err(forbidden());
                }
                let node = node_attr(first)?;
                let mut config = Config::default();
                if let Some(x) = kids
                    .iter()
                    .find(|c| c.has_tag_name((NS_PUBSUB, "configure")))
                    .and_then(|c| c.children().find(|x| x.is_element()))
                {
                    config.apply(
                        &form_fields(x, nodes::FORM_NODE_CONFIG)?,
                        self.settings.max_items,
                    )?;
                }
                let (host, user) = parts(&owner);
                let _account = ctx.stores.roster.lock_account(host, user).await;
                if self.node(ctx, &owner, node).await?.is_some() {
                    return Err(StanzaError::new(StanzaCondition::Conflict));
                }
                self.create(ctx, &owner, node, &config).await?;
                Ok(None)
            }
            ("items", false) => {
                self.items(ctx, &owner, (!own).then_some(reader.as_str()), first)
                    .await
            }
            (other, _) => Err(not_implemented(other)),
        }
    }
}

impl Pep {
    async fn configure(
        &self,
        ctx: &Ctx,
        owner: &Jid,
        configure: roxmltree::Node<'_, '_>,
    ) -> IqResult {
        let node = node_attr(configure)?;
        let Some(x) = configure.children().find(|c| c.is_element()) else {
            return Err(bad("expected a form"));
        };
        let (host, user) = parts(owner);
        let _account = ctx.stores.roster.lock_account(host, user).await;
        let Some(mut config) = self.node(ctx, owner, node).await? else {
            return Err(StanzaError::new(StanzaCondition::ItemNotFound));
        };
        if x.attribute("type") == Some("cancel") {
            return Ok(None);
        }
        let cap = self.settings.max_items;
        config.apply(&form_fields(x, nodes::FORM_NODE_CONFIG)?, cap)?;
        let store = &ctx.stores.pep;
        store
            .pep_node_put(host, user, &config.to_stored(node))
            .await
            .map_err(internal)?;
        // Fewer items kept now: the oldest go.
        let items = store
            .pep_items(host, user, node, None)
            .await
            .map_err(internal)?;
        let keep = if config.persist { config.keep(cap) } else { 0 } as usize;
        for old in items.iter().skip(keep) {
            store
                .pep_retract(host, user, node, &old.id)
                .await
                .map_err(internal)?;
        }
        Ok(None)
    }

    async fn delete(&self, ctx: &Ctx, owner: &Jid, delete: roxmltree::Node<'_, '_>) -> IqResult {
        let started = Instant::now();
        let node = node_attr(delete)?;
        let Some(config) = self.node(ctx, owner, node).await? else {
            return Err(StanzaError::new(StanzaCondition::ItemNotFound));
        };
        let (host, user) = parts(owner);
        ctx.stores
            .pep
            .pep_node_delete(host, user, node)
            .await
            .map_err(internal)?;
        ctx.instr
            .module_data("pep", "removed", 1, started.elapsed());
        let inner = El::new("delete").attr("node", node).to_string();
        self.notify(ctx, owner, node, &config, &inner).await;
        Ok(None)
    }
}
