//! In-band registration (XEP-0077): creating an account from the XMPP
//! stream itself, changing its password, removing it. Off by default
//! (`[modules.register] enabled = true` turns it on).
//!
//! Before authentication (the pre-auth IQ hook, on `jabber:iq:register`):
//! - get: the form, `<query><instructions/><username/><password/></query>`;
//! - set with `<username/>` and `<password/>`: creates `username@host`
//!   (the stream's host) with SCRAM keys derived exactly as
//!   `osprey account register` derives them. Refusals: `not-allowed` when
//!   `policy` refuses the client's address, `policy-violation` on a stream
//!   without TLS while `require_tls` (XEP-0077 has no condition for the
//!   channel; RFC 6120 §8.3.3.12's is the one for a local policy, with a
//!   text saying what to do), `not-acceptable` for a missing or invalid
//!   username (nodeprep) or an empty or unusable password, `conflict` when
//!   the account exists, `resource-constraint` (wait) when the address
//!   created an account less than `interval_per_address` ago (counted in
//!   `limit_hit` as `registration_rate`);
//! - the stream feature `<register xmlns='http://jabber.org/features/iq-register'/>`
//!   is advertised unless `policy = "denied"` (and, while `require_tls`,
//!   only on a TLS-protected stream).
//!
//! After authentication (an ordinary IQ handler), to the server or to the
//! account's own bare JID:
//! - get: `<query><registered/><username>user</username></query>`;
//! - set with the own `<username/>` and a new `<password/>`: new SCRAM keys
//!   (sessions stay); `not-allowed` unless `allow_password_change`,
//!   `forbidden` for another username, `bad-request` when one is missing;
//! - set with `<remove/>`: the account and every row it owns go (as with
//!   `osprey account remove`, plus the modules' account-removed hooks);
//!   the answer is sent, then every session of the account is closed
//!   (`not-authorized`, "the account was removed"); rows the closing
//!   sessions write (e.g. last activity) are swept as each one closes (the
//!   name cannot be registered again until then). `not-allowed` unless
//!   `allow_remove`.
//!
//! The server advertises `jabber:iq:register` in disco#info. Each account
//! stored, password changed or account removed emits `module_data`
//! (`register`, `stored` | `password` | `removed`).
//!
//! Files: `settings.rs` (the `[modules.register]` table, address
//! networks), `requests.rs` (what each request does), `tests.rs`.

mod requests;
mod settings;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use async_trait::async_trait;

use super::{IqRequest, IqResult, Module, ModuleDef, Target};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{
    FeaturesCx, FeaturesHook, Hooks, IqHandler, IqType, PreAuthIqCx, PreAuthIqHook, SessionEvent,
    SessionHook,
};
use crate::server::Ctx;
use crate::session::Session;
use crate::xml::El;

pub use settings::{Net, Policy, Settings};

pub const NS_REGISTER: &str = "jabber:iq:register";
/// The stream feature (XEP-0077 §4).
pub const NS_FEATURE: &str = "http://jabber.org/features/iq-register";

/// The `limit_hit` label of the per-address interval.
const LIMIT: &str = "registration_rate";

/// Addresses remembered before the stale ones are dropped.
const PRUNE_ABOVE: usize = 4096;

pub const DEF: ModuleDef = ModuleDef {
    name: "register",
    build: |t| Ok(Arc::new(Register::new(super::settings::<Settings>(t)?)?)),
};

/// The module: its settings and what it remembers.
pub struct Register {
    settings: Settings,
    allow_from: Vec<Net>,
    /// When each address last created an account.
    recent: Mutex<HashMap<IpAddr, Instant>>,
    /// Bare JIDs removed in-band, with the ids of their sessions still
    /// closing: each close sweeps what was written meanwhile (e.g. the
    /// last activity), the entry goes with the last of them.
    removing: Mutex<HashMap<String, HashSet<u64>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Module for Register {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.server_feature(NS_REGISTER);
        hooks.pre_auth_iq(NS_REGISTER, IqType::Get, &h::REGISTER_FORM, self.clone());
        hooks.pre_auth_iq(NS_REGISTER, IqType::Set, &h::REGISTER_CREATE, self.clone());
        hooks.iq(NS_REGISTER, IqType::Get, &h::REGISTER_GET, self.clone());
        hooks.iq(NS_REGISTER, IqType::Set, &h::REGISTER_SET, self.clone());
        hooks.stream_features(&h::REGISTER_FEATURES, self.clone());
        // Last: after the modules that write on close (e.g. last activity).
        hooks.session(1000, &h::REGISTER_CLOSED, self);
    }
}

#[async_trait]
impl PreAuthIqHook for Register {
    async fn pre_auth_iq(&self, cx: &PreAuthIqCx<'_>) -> IqResult {
        if !cx.payload.has_tag_name((NS_REGISTER, "query")) {
            return Err(StanzaError::with_text(
                StanzaCondition::BadRequest,
                "expected <query xmlns='jabber:iq:register'/>",
            ));
        }
        if cx.set {
            return self.create(cx).await;
        }
        self.check_creation(cx.peer.ip().to_canonical(), cx.tls)?;
        Ok(Some(self.form()))
    }
}

#[async_trait]
impl IqHandler for Register {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        if !req.payload.has_tag_name((NS_REGISTER, "query")) {
            return Err(StanzaError::with_text(
                StanzaCondition::BadRequest,
                "expected <query xmlns='jabber:iq:register'/>",
            ));
        }
        if let Target::OtherAccount(_) = req.target {
            return Err(StanzaError::with_text(
                StanzaCondition::Forbidden,
                "registration is asked of the server",
            ));
        }
        if req.set {
            return self.set(req).await;
        }
        let user = req.me.jid().local().unwrap_or_default();
        Ok(Some(
            El::new("query")
                .xmlns(NS_REGISTER)
                .child(El::new("registered"))
                .child(El::new("username").text(user)),
        ))
    }
}

impl FeaturesHook for Register {
    fn features(&self, cx: &FeaturesCx<'_>, out: &mut Vec<El>) {
        if !cx.authenticated
            && self.settings.policy != Policy::Denied
            && (cx.tls || !self.settings.require_tls)
        {
            out.push(El::new("register").xmlns(NS_FEATURE));
        }
    }
}

/// A session of an account removed in-band has closed: what it wrote while
/// closing (last activity, ...) goes too. Runs after the other modules'
/// closed hooks, so each session's sweep follows its own writes.
#[async_trait]
impl SessionHook for Register {
    async fn session(&self, ctx: &Arc<Ctx>, session: &mut Session, event: SessionEvent) {
        if event != SessionEvent::Closed {
            return;
        }
        let bare = session.handle.bare();
        {
            let removing = lock(&self.removing);
            if removing.is_empty() || !removing.contains_key(bare) {
                return;
            }
        }
        let jid = session.handle.jid();
        let (host, user) = (jid.domain(), jid.local().unwrap_or_default());
        if let Err(e) = ctx.stores.accounts.remove_account(host, user).await {
            tracing::warn!(error = %e, jid = %bare, "sweeping a removed account failed");
        }
        ctx.hooks.run_account_removed(ctx, host, user).await;
        let mut removing = lock(&self.removing);
        if let Some(ids) = removing.get_mut(bare) {
            ids.remove(&session.handle.id());
            if ids.is_empty() {
                removing.remove(bare);
            }
        }
    }
}
