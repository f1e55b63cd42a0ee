//! Personal Eventing Protocol (XEP-0163): every account's bare JID is a
//! pubsub service (the XEP-0060 subset PEP needs) of its own nodes.
//!
//! - publish (the owner only) auto-creates the node, with XEP-0163's
//!   defaults (presence access, one persistent item, the last one sent on
//!   presence) or `publish-options`; an existing node whose configuration
//!   does not match the options answers `conflict` + `precondition-not-met`
//!   (XEP-0060 §7.1.5; `max` matches the cap, as Prosody does). An item id
//!   is made up when missing;
//! - retract (with `notify`), items get (all, by id, `max_items`),
//!   create, delete, and the owner's configure get/set;
//! - read access: the owner always; others by the node's access model
//!   (`presence`: a `from`/`both` subscription in the owner's roster,
//!   `open`: anyone, `whitelist`: nobody);
//! - notifications (`headline` messages from the owner's bare JID) go to
//!   the owner's available resources and, unless whitelisted, to the
//!   available resources of the contacts with a `from`/`both`
//!   subscription, when they asked for them: their entity capabilities
//!   (XEP-0115) list `NODE+notify` (XEP-0163 §4, filtered notifications);
//! - capabilities: a presence with an unknown `ver` makes the server ask
//!   that resource (disco#info to `node#ver`, see [`caps`]); a verified
//!   SHA-1 `ver` is cached (bounded), an unverified answer serves that
//!   resource only;
//! - on a resource's available presence (the first one, or a new `ver`)
//!   it gets the last item of each node it is interested in, of its own
//!   account and of the contacts it is subscribed to (XEP-0163 §6.2).
//!
//! Limits: `max_item_bytes` (`not-acceptable` + `payload-too-big`,
//! `limit_hit` `pep_item_bytes`), `max_items` per node (the value of
//! "max"), `max_nodes` per account (`resource-constraint` +
//! `max-nodes-exceeded`, `limit_hit` `pep_nodes`).
//!
//! Files: `service` (the IQs), `notify` (events, last items, caps
//! discovery), `caps` (XEP-0115 hashing, the caps cache, the table of
//! IQs the server awaits answers to), `nodes` (configuration and forms).

pub mod caps;
pub mod nodes;
mod notify;
mod service;

use std::sync::Arc;

use async_trait::async_trait;

use self::caps::{Caps, PendingIqs};
use super::{Module, ModuleDef};
use crate::config::Config as ServerConfig;
use crate::events::handlers as h;
use crate::hooks::{Flow, Hooks, Identity, IqType, SendCx, SendHook, SessionEvent, SessionHook};
use crate::server::Ctx;
use crate::session::Session;
use crate::stanza::{Kind, Stanza};

pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const NS_PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// The account features advertised (only what is implemented).
pub const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#multi-items",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-items",
];

pub const DEF: ModuleDef = ModuleDef {
    name: "pep",
    build: |t| {
        let settings = super::settings::<Settings>(t)?;
        if settings.max_items == 0 {
            return Err(("max_items".into(), "must be at least 1".into()));
        }
        Ok(Arc::new(Pep::new(settings)))
    },
};

/// `[modules.pep]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The largest item payload, in bytes (as serialised).
    pub max_item_bytes: usize,
    /// The most items a node keeps (what "max" means).
    pub max_items: u32,
    /// The most nodes one account may have.
    pub max_nodes: usize,
    /// The most verified capability hashes kept in memory.
    pub caps_cache: usize,
    /// Seconds the server waits for a client's disco#info answer.
    pub caps_timeout: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_item_bytes: 128 * 1024,
            max_items: 256,
            max_nodes: 100,
            caps_cache: 10_000,
            caps_timeout: 10,
        }
    }
}

/// The module: settings and what it knows of resources' capabilities.
pub struct Pep {
    pub settings: Settings,
    pub caps: Caps,
    pending: PendingIqs,
}

impl Pep {
    pub fn new(settings: Settings) -> Pep {
        Pep {
            caps: Caps::new(settings.caps_cache),
            pending: PendingIqs::new(1000),
            settings,
        }
    }
}

/// The hooks, each holding the module.
struct PresenceHook(Arc<Pep>);
struct IqResponseHook(Arc<Pep>);

impl Module for Pep {
    fn register(self: Arc<Self>, hooks: &mut Hooks, config: &ServerConfig) {
        if let Some(largest) = config.listen.c2s.iter().map(|l| l.max_stanza_size).max() {
            if self.settings.max_item_bytes > largest {
                tracing::warn!(
                    max_item_bytes = self.settings.max_item_bytes,
                    max_stanza_size = largest,
                    "modules.pep.max_item_bytes is above the c2s max_stanza_size: \
                     larger items are refused as stanzas first"
                );
            }
        }
        for f in FEATURES {
            hooks.account_feature(f);
        }
        hooks.account_identity(Identity {
            category: "pubsub",
            typ: "pep",
            name: None,
        });
        hooks.provide(self.clone());
        hooks.iq(NS_PUBSUB, IqType::Get, &h::PEP_GET, self.clone());
        hooks.iq(NS_PUBSUB, IqType::Set, &h::PEP_SET, self.clone());
        hooks.iq(NS_PUBSUB_OWNER, IqType::Both, &h::PEP_OWNER, self.clone());
        // Before the presence module (0): the session's previous availability is still there.
        hooks.user_send(
            Kind::Presence,
            -5,
            &h::PEP_PRESENCE,
            Arc::new(PresenceHook(self.clone())),
        );
        hooks.user_send(
            Kind::Iq,
            -100,
            &h::PEP_IQ_RESPONSE,
            Arc::new(IqResponseHook(self.clone())),
        );
        hooks.session(0, &h::PEP_CLOSED, self);
    }
}

#[async_trait]
impl SendHook for PresenceHook {
    /// Only broadcast availability (no `to`, no `type`) says what a
    /// resource supports.
    fn active(&self, stanza: &Stanza) -> bool {
        stanza.to.is_none() && stanza.el.attr("type").is_none()
    }

    async fn send(&self, cx: &mut SendCx<'_>, stanza: &Stanza) -> Flow {
        let pep = &self.0;
        let handle = cx.session.handle.clone();
        let initial = !handle.is_available();
        let full = handle.jid().clone();
        let full_s = handle.full().to_string();
        let Some(ad) = caps::parse_caps(stanza.el.node()) else {
            pep.caps.forget_jid(&full_s);
            return Flow::Continue;
        };
        if let Some(features) = (ad.hash.as_deref() == Some("sha-1"))
            .then(|| pep.caps.cached(&ad.ver))
            .flatten()
        {
            pep.caps_known(cx.ctx, &full, &ad.ver, features, initial)
                .await;
            return Flow::Continue;
        }
        if pep.caps.ver_of(&full_s).as_deref() == Some(ad.ver.as_str()) {
            // Same (unverified) caps as before, answered by this resource.
            if initial {
                if let Some(features) = pep.caps.features_of(&full_s) {
                    pep.send_last_items(cx.ctx, &full, &features).await;
                }
            }
            return Flow::Continue;
        }
        // Unknown: ask the resource, off this session's path.
        let ctx = cx.ctx.clone();
        let pep = pep.clone();
        tokio::spawn(async move {
            let c = ctx.clone();
            crate::hooks::call(&c, &h::PEP_CAPS, pep.discover(ctx, full, ad)).await;
        });
        Flow::Continue
    }
}

#[async_trait]
impl SendHook for IqResponseHook {
    /// Only answers, and only while the server awaits one: other IQs cost
    /// no instrumented call.
    fn active(&self, stanza: &Stanza) -> bool {
        matches!(stanza.el.attr("type"), Some("result" | "error")) && !self.0.pending.is_empty()
    }

    async fn send(&self, cx: &mut SendCx<'_>, stanza: &Stanza) -> Flow {
        let pending = &self.0.pending;
        // Answers to the server (its domain), or with no `to`.
        let to_server = stanza
            .to
            .as_ref()
            .is_none_or(|t| t.local().is_none() && cx.ctx.serves(t.domain()));
        let Some(id) = stanza.el.attr("id").filter(|_| to_server) else {
            return Flow::Continue;
        };
        if pending.resolve(id, cx.session.handle.full(), stanza.el.raw()) {
            Flow::Handled
        } else {
            Flow::Continue
        }
    }
}

#[async_trait]
impl SessionHook for Pep {
    async fn session(&self, _: &Arc<Ctx>, session: &mut Session, event: SessionEvent) {
        if event == SessionEvent::Closed {
            self.caps.forget_jid(session.handle.full());
        }
    }
}

#[cfg(test)]
mod tests;
