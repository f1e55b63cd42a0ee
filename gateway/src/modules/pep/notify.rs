//! Event notifications (XEP-0163 §4 filtered by XEP-0115 caps) and the
//! last items sent on presence (§6.2); learning a resource's caps.

use std::sync::Arc;
use std::time::Duration;

use super::caps::{self, Features};
use super::nodes::{Access, Config};
use super::service::{item_el, new_id, parts};
use super::{Pep, NS_PUBSUB_EVENT};
use crate::errors::StanzaError;
use crate::hooks::Route;
use crate::jid::Jid;
use crate::modules::roster::internal;
use crate::router;
use crate::server::Ctx;
use crate::stanza::Kind;
use crate::storage::Subscription;
use crate::xml::{El, Element};

impl Pep {
    /// Sends `<event>{inner}</event>` about the owner's node to every
    /// resource that may read it and asked for it.
    pub(super) async fn notify(
        &self,
        ctx: &Ctx,
        owner: &Jid,
        node: &str,
        config: &Config,
        inner: &str,
    ) {
        let owner_bare = owner.to_string();
        let mut targets: Vec<String> = router::resources(ctx, &owner_bare)
            .into_iter()
            .filter(|s| s.is_available() && self.caps.interested(s.full(), node))
            .map(|s| s.full().to_string())
            .collect();
        if config.access != Access::Whitelist {
            let (host, user) = parts(owner);
            let roster = match ctx.stores.roster.roster_get(host, user).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = internal(e);
                    Vec::new()
                }
            };
            for item in roster {
                if matches!(item.subscription, Subscription::From | Subscription::Both)
                    && item.jid != owner_bare
                {
                    targets.extend(
                        router::resources(ctx, &item.jid)
                            .into_iter()
                            .filter(|s| s.is_available() && self.caps.interested(s.full(), node))
                            .map(|s| s.full().to_string()),
                    );
                }
            }
        }
        for to in targets {
            send_event(ctx, owner, &to, inner).await;
        }
    }

    /// The last item of each node `to` asked for, of its own account and
    /// of every contact whose presence it receives (XEP-0163 §6.2).
    pub(super) async fn send_last_items(&self, ctx: &Ctx, to: &Jid, features: &Features) {
        if !features.iter().any(|f| f.ends_with("+notify")) {
            return;
        }
        let bare = to.to_bare();
        let mut services = vec![(bare.clone(), true)];
        let (host, user) = parts(&bare);
        match ctx.stores.roster.roster_get(host, user).await {
            Ok(roster) => {
                for item in roster {
                    if matches!(item.subscription, Subscription::To | Subscription::Both) {
                        if let Ok(j) = Jid::parse(&item.jid) {
                            if j.local().is_some() && ctx.serves(j.domain()) && j != bare {
                                services.push((j.to_bare(), false));
                            }
                        }
                    }
                }
            }
            Err(e) => {
                let _ = internal(e);
            }
        }
        let reader = bare.to_string();
        for (owner, own) in services {
            let (oh, ou) = parts(&owner);
            let Ok(nodes) = ctx.stores.pep.pep_nodes(oh, ou).await else {
                continue;
            };
            let mut allowed = None;
            for n in nodes {
                let config = Config::from_stored(&n);
                if config.send_last == "never" || !features.contains(&format!("{}+notify", n.node))
                {
                    continue;
                }
                if !own {
                    if config.access == Access::Whitelist {
                        continue;
                    }
                    // Both models need the owner to share presence with the reader.
                    if allowed.is_none() {
                        allowed =
                            Some(subscribed_from(ctx, &owner, &reader).await.unwrap_or(false));
                    }
                    if allowed != Some(true) {
                        continue;
                    }
                }
                let Ok(last) = ctx.stores.pep.pep_items(oh, ou, &n.node, Some(1)).await else {
                    continue;
                };
                if let Some(item) = last.first() {
                    let inner = El::new("items")
                        .attr("node", &n.node)
                        .child(item_el(item))
                        .to_string();
                    send_event(ctx, &owner, &to.to_string(), &inner).await;
                }
            }
        }
    }

    /// A resource's caps were learnt or changed: remember them and send it
    /// the last items if it just came online or its interests changed.
    pub(super) async fn caps_known(
        &self,
        ctx: &Ctx,
        full: &Jid,
        ver: &str,
        features: Features,
        initial: bool,
    ) {
        let changed = self.caps.set_jid(&full.to_string(), ver, features.clone());
        if initial || changed {
            self.send_last_items(ctx, full, &features).await;
        }
    }

    /// Asks a resource for its features (disco#info to `node#ver`), waits
    /// for the answer, checks the hash, then as [`Pep::caps_known`].
    pub(super) async fn discover(&self, ctx: Arc<Ctx>, full: Jid, ad: caps::CapsAd) {
        let to = full.to_string();
        let Some(session) = ctx
            .sessions
            .full(&full.bare(), full.resource().unwrap_or_default())
        else {
            return;
        };
        let Some((id, rx)) = self.pending.register(&to) else {
            return;
        };
        let query = El::new("iq")
            .attr("type", "get")
            .attr("id", &id)
            .attr("from", full.domain())
            .attr("to", &to)
            .child(
                El::new("query")
                    .xmlns(crate::modules::disco::NS_DISCO_INFO)
                    .attr("node", &format!("{}#{}", ad.node, ad.ver)),
            );
        if router::deliver(ctx.as_ref(), &session, query.to_string()).is_err() {
            self.pending.forget(&id);
            return;
        }
        let timeout = Duration::from_secs(self.settings.caps_timeout);
        let answer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(xml)) => xml,
            _ => {
                self.pending.forget(&id);
                tracing::debug!(jid = %to, "no disco#info answer for caps");
                return;
            }
        };
        let Ok(el) = Element::parse(&answer) else {
            return;
        };
        if el.attr("type") != Some("result") {
            return;
        }
        let Some(q) = el
            .node()
            .children()
            .find(|c| c.has_tag_name((crate::modules::disco::NS_DISCO_INFO, "query")))
        else {
            return;
        };
        let features: Features = Arc::new(caps::features_of(q));
        let verified = ad.hash.as_deref() == Some("sha-1")
            && caps::sha1_ver(q).as_deref() == Some(ad.ver.as_str());
        if verified {
            self.caps.cache(&ad.ver, features.clone());
        } else {
            tracing::debug!(jid = %to, ver = %ad.ver, "caps not verified: kept for this resource only");
        }
        // Still there and available?
        let available = ctx
            .sessions
            .full(&full.bare(), full.resource().unwrap_or_default())
            .is_some_and(|s| s.is_available());
        if available {
            self.caps_known(&ctx, &full, &ad.ver, features, true).await;
        }
    }
}

/// Whether the owner's roster gives `reader` (a bare JID) its presence.
pub(super) async fn subscribed_from(
    ctx: &Ctx,
    owner: &Jid,
    reader: &str,
) -> Result<bool, StanzaError> {
    let (host, user) = parts(owner);
    let item = ctx
        .stores
        .roster
        .roster_item(host, user, reader)
        .await
        .map_err(internal)?;
    Ok(item.is_some_and(|i| matches!(i.subscription, Subscription::From | Subscription::Both)))
}

/// One event notification: a headline from the owner's bare JID.
async fn send_event(ctx: &Ctx, owner: &Jid, to: &str, inner: &str) {
    let Ok(to_jid) = Jid::parse(to) else {
        return;
    };
    let xml = El::new("message")
        .attr("from", &owner.to_string())
        .attr("to", to)
        .attr("type", "headline")
        .attr("id", &new_id())
        .child(El::new("event").xmlns(NS_PUBSUB_EVENT).raw_child(inner))
        .to_string();
    let _ = router::route(
        ctx,
        Route {
            from: owner,
            to: &to_jid,
            kind: Kind::Message,
            typ: Some("headline"),
            xml: xml.into(),
            stanza: None,
            notes: Default::default(),
        },
    )
    .await;
}
