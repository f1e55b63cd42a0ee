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

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use super::roster::internal;
use super::{IqRequest, IqResult, Module, ModuleDef, Target};
use crate::admin::AdminError;
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::events::handlers as h;
use crate::hooks::{
    FeaturesCx, FeaturesHook, Hooks, IqHandler, IqType, PreAuthIqCx, PreAuthIqHook, SessionEvent,
    SessionHook,
};
use crate::server::Ctx;
use crate::session::Session;
use crate::storage::StorageError;
use crate::xml::El;

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

/// Who may create accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Anyone.
    Allowed,
    /// Nobody (existing accounts may still change their password or go).
    Denied,
    /// Only clients whose address is in `allow_from`.
    AllowList,
}

/// `[modules.register]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub policy: Policy,
    /// IP addresses or CIDR networks (`"10.0.0.0/8"`, `"::1/128"`) that
    /// may create accounts under `policy = "allow_list"`.
    pub allow_from: Vec<String>,
    /// Seconds between two accounts created from one IP address (0: no
    /// limit); an integer, or a string with a unit (`"600s"`, `"10m"`, `"1h"`).
    #[serde(deserialize_with = "seconds")]
    pub interval_per_address: u64,
    /// Account creation only on a TLS-protected stream.
    pub require_tls: bool,
    pub allow_password_change: bool,
    pub allow_remove: bool,
    /// The text of `<instructions/>` in the form.
    pub instructions: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: Policy::Allowed,
            allow_from: Vec::new(),
            interval_per_address: 600,
            require_tls: true,
            allow_password_change: true,
            allow_remove: true,
            instructions: "Choose a username and password to register with this server.".into(),
        }
    }
}

/// An integer number of seconds, or a string with a unit: `s`, `m`, `h`.
fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    let bad = || {
        serde::de::Error::custom(
            "expected seconds: a non-negative integer or a string such as \"600s\", \"10m\", \"1h\"",
        )
    };
    match Raw::deserialize(d)? {
        Raw::Int(n) => u64::try_from(n).map_err(|_| bad()),
        Raw::Text(s) => {
            let s = s.trim();
            let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
                Some(i) => (&s[..i], s[i..].trim()),
                None => (s, "s"),
            };
            let n: u64 = num.parse().map_err(|_| bad())?;
            let mul = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => return Err(bad()),
            };
            n.checked_mul(mul).ok_or_else(bad)
        }
    }
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// `"10.0.0.0/8"`, `"::1/128"`, or an address alone (the whole length).
    pub fn parse(s: &str) -> Result<Net, String> {
        let bad = || format!("{s:?} is not an IP address or CIDR network");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(format!("{s:?}: the prefix length is at most {max}"));
        }
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

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

impl Register {
    pub fn new(settings: Settings) -> Result<Register, super::SettingError> {
        let allow_from = settings
            .allow_from
            .iter()
            .map(|s| Net::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ("allow_from".to_string(), e))?;
        if settings.policy == Policy::AllowList && allow_from.is_empty() {
            return Err((
                "allow_from".into(),
                "policy = \"allow_list\" needs at least one address or network".into(),
            ));
        }
        Ok(Register {
            settings,
            allow_from,
            recent: Mutex::default(),
            removing: Mutex::default(),
        })
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.settings.interval_per_address)
    }

    /// Whether a client at `ip` may create accounts.
    fn may_create(&self, ip: IpAddr) -> bool {
        match self.settings.policy {
            Policy::Allowed => true,
            Policy::Denied => false,
            Policy::AllowList => self.allow_from.iter().any(|n| n.contains(ip)),
        }
    }

    /// Takes the address's creation slot: `Err` while its interval runs;
    /// `Ok(previous)` to give back with [`Register::release`] on failure.
    fn reserve(&self, ip: IpAddr) -> Result<Option<Instant>, ()> {
        let interval = self.interval();
        if interval.is_zero() {
            return Ok(None);
        }
        let now = Instant::now();
        let mut recent = lock(&self.recent);
        if let Some(last) = recent.get(&ip) {
            if now.duration_since(*last) < interval {
                return Err(());
            }
        }
        if recent.len() >= PRUNE_ABOVE {
            recent.retain(|_, t| now.duration_since(*t) < interval);
        }
        Ok(recent.insert(ip, now))
    }

    fn release(&self, ip: IpAddr, previous: Option<Instant>) {
        if self.interval().is_zero() {
            return;
        }
        let mut recent = lock(&self.recent);
        match previous {
            Some(t) => recent.insert(ip, t),
            None => recent.remove(&ip),
        };
    }

    fn form(&self) -> El {
        El::new("query")
            .xmlns(NS_REGISTER)
            .child(El::new("instructions").text(&self.settings.instructions))
            .child(El::new("username"))
            .child(El::new("password"))
    }

    /// A pre-authentication set: creates the account.
    async fn create(&self, cx: &PreAuthIqCx<'_>) -> IqResult {
        let started = Instant::now();
        let ctx = cx.ctx;
        let q = cx.payload;
        if q.children()
            .any(|c| c.has_tag_name((NS_REGISTER, "remove")))
        {
            return Err(StanzaError::with_text(
                StanzaCondition::NotAuthorized,
                "log in to remove an account",
            ));
        }
        let ip = cx.peer.ip().to_canonical();
        self.check_creation(ip, cx.tls)?;
        let field = |name: &str| {
            q.children()
                .find(|c| c.has_tag_name((NS_REGISTER, name)))
                .map(|c| c.text().unwrap_or_default().to_string())
        };
        let not_acceptable =
            |text: &str| StanzaError::with_text(StanzaCondition::NotAcceptable, text);
        let (Some(username), Some(password)) = (field("username"), field("password")) else {
            return Err(not_acceptable("a username and a password are required"));
        };
        let user = crate::jid::normalise_local(username.trim())
            .map_err(|_| not_acceptable("the username is not a valid JID localpart"))?;
        if password.is_empty() {
            return Err(not_acceptable("the password is empty"));
        }
        let host = cx.host;
        let bare = format!("{user}@{host}");
        let conflict = || StanzaError::with_text(StanzaCondition::Conflict, "the account exists");
        // Still closing after an in-band removal: its rows are swept soon.
        if lock(&self.removing).contains_key(&bare) {
            return Err(conflict());
        }
        if ctx
            .stores
            .accounts
            .account_exists(host, &user)
            .await
            .map_err(internal)?
        {
            return Err(conflict());
        }
        let Ok(previous) = self.reserve(ip) else {
            ctx.instr.limit(LIMIT);
            return Err(StanzaError::with_text(
                StanzaCondition::ResourceConstraint,
                format!(
                    "one account per address every {} seconds: try again later",
                    self.settings.interval_per_address
                ),
            ));
        };
        let created = async {
            let creds = crate::admin::accounts::credentials(ctx, &password)
                .await
                .map_err(|e| match e {
                    AdminError::BadRequest(text) => not_acceptable(&text),
                    other => {
                        tracing::warn!(error = %other, "deriving SCRAM keys failed");
                        StanzaError::new(StanzaCondition::InternalServerError)
                    }
                })?;
            match ctx
                .stores
                .accounts
                .create_account(host, &user, &creds)
                .await
            {
                Ok(()) => Ok(()),
                Err(StorageError::Conflict) => Err(conflict()),
                Err(e) => Err(internal(e)),
            }
        }
        .await;
        if let Err(e) = created {
            self.release(ip, previous);
            return Err(e);
        }
        ctx.instr
            .module_data("register", "stored", 1, started.elapsed());
        tracing::info!(jid = %bare, peer = %cx.peer, "account registered in-band");
        Ok(None)
    }

    /// Policy, then the channel.
    fn check_creation(&self, ip: IpAddr, tls: bool) -> Result<(), StanzaError> {
        if !self.may_create(ip) {
            return Err(StanzaError::with_text(
                StanzaCondition::NotAllowed,
                "this server does not create accounts for your address",
            ));
        }
        if self.settings.require_tls && !tls {
            return Err(StanzaError::with_text(
                StanzaCondition::PolicyViolation,
                "register over TLS: use STARTTLS first",
            ));
        }
        Ok(())
    }

    /// An authenticated set: a password change or a removal.
    async fn set(&self, req: &IqRequest<'_>) -> IqResult {
        let started = Instant::now();
        let ctx = req.ctx;
        let me = req.me.jid();
        let (host, user) = (me.domain(), me.local().unwrap_or_default());
        let q = req.payload;
        if q.children()
            .any(|c| c.has_tag_name((NS_REGISTER, "remove")))
        {
            if !self.settings.allow_remove {
                return Err(StanzaError::with_text(
                    StanzaCondition::NotAllowed,
                    "this server does not remove accounts in-band",
                ));
            }
            return self.remove(req, host, user, started).await;
        }
        if !self.settings.allow_password_change {
            return Err(StanzaError::with_text(
                StanzaCondition::NotAllowed,
                "this server does not change passwords in-band",
            ));
        }
        let field = |name: &str| {
            q.children()
                .find(|c| c.has_tag_name((NS_REGISTER, name)))
                .map(|c| c.text().unwrap_or_default().to_string())
        };
        let (Some(username), Some(password)) = (field("username"), field("password")) else {
            return Err(StanzaError::with_text(
                StanzaCondition::BadRequest,
                "a password change needs <username/> and <password/>",
            ));
        };
        if crate::jid::normalise_local(username.trim()).ok().as_deref() != Some(user) {
            return Err(StanzaError::with_text(
                StanzaCondition::Forbidden,
                "only the account's own password can be changed",
            ));
        }
        let creds = crate::admin::accounts::credentials(ctx, &password)
            .await
            .map_err(|e| match e {
                AdminError::BadRequest(text) => {
                    StanzaError::with_text(StanzaCondition::NotAcceptable, text)
                }
                other => {
                    tracing::warn!(error = %other, "deriving SCRAM keys failed");
                    StanzaError::new(StanzaCondition::InternalServerError)
                }
            })?;
        if !ctx
            .stores
            .accounts
            .set_credentials(host, user, &creds)
            .await
            .map_err(internal)?
        {
            return Err(StanzaError::new(StanzaCondition::ItemNotFound));
        }
        ctx.instr
            .module_data("register", "password", 1, started.elapsed());
        tracing::info!(jid = %me.to_bare(), "password changed in-band");
        Ok(None)
    }

    /// Removes the account, answers, then closes its sessions. The answer
    /// is queued here, before the close, so it is written first; the one
    /// the IQ dispatch queues after the close is never written.
    async fn remove(
        &self,
        req: &IqRequest<'_>,
        host: &str,
        user: &str,
        started: Instant,
    ) -> IqResult {
        let ctx = req.ctx;
        let bare = format!("{user}@{host}");
        lock(&self.removing).insert(bare.clone(), HashSet::new());
        match ctx.stores.accounts.remove_account(host, user).await {
            Ok(_) => {}
            Err(e) => {
                lock(&self.removing).remove(&bare);
                return Err(internal(e));
            }
        }
        ctx.hooks.run_account_removed(ctx, host, user).await;
        ctx.instr
            .module_data("register", "removed", 1, started.elapsed());
        tracing::info!(jid = %bare, "account removed in-band");
        let result = El::new("iq")
            .attr("type", "result")
            .attr_opt("id", req.el.attr("id"))
            .attr("from", req.el.attr("to").unwrap_or(req.me.bare()))
            .attr("to", req.me.full());
        let _ = crate::router::deliver_local(ctx, req.me, result.to_string());
        let sessions = ctx.sessions.resources(&bare);
        {
            let mut removing = lock(&self.removing);
            let ids: HashSet<u64> = sessions
                .iter()
                .filter_map(|s| s.local().map(|h| h.id()))
                .collect();
            if ids.is_empty() {
                removing.remove(&bare);
            } else {
                removing.insert(bare.clone(), ids);
            }
        }
        for s in sessions {
            s.close(StreamError::with_text(
                StreamCondition::NotAuthorized,
                "the account was removed",
            ));
        }
        Ok(None)
    }
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

#[cfg(test)]
mod tests {
    use super::Net;
    use crate::hooks::{FeaturesCx, PreAuthIqCx};
    use crate::modules::testing::{TestServer, TestSession};
    use crate::xml::Element;

    const ON: &str = "enabled = true\nrequire_tls = false";

    /// A pre-authentication IQ from `ip` as c2s hands it over: the answer
    /// as `Ok(child)` or the error condition.
    async fn pre(t: &TestServer, xml: &str, ip: &str, tls: bool) -> Result<String, String> {
        let el = Element::parse(xml).expect("iq");
        let cx = PreAuthIqCx {
            ctx: &t.ctx,
            el: &el,
            payload: el.first_child().expect("payload"),
            set: el.attr("type") == Some("set"),
            host: "localhost",
            peer: std::net::SocketAddr::new(ip.parse().expect("ip"), 5000),
            tls,
        };
        match t.ctx.hooks.run_pre_auth_iq(&cx).await {
            None => Err("no handler".into()),
            Some(Ok(child)) => Ok(child.map(|c| c.to_string()).unwrap_or_default()),
            Some(Err(e)) => Err(e.condition.wire_name().to_string()),
        }
    }

    fn create(user: &str, pw: &str) -> String {
        format!(
            "<iq type='set' id='c'><query xmlns='jabber:iq:register'>\
             <username>{user}</username><password>{pw}</password></query></iq>"
        )
    }

    const FORM: &str = "<iq type='get' id='f'><query xmlns='jabber:iq:register'/></iq>";

    /// The register stream feature, if offered.
    fn features(t: &TestServer, tls: bool, authenticated: bool) -> String {
        let cx = FeaturesCx {
            ctx: &t.ctx,
            host: "localhost",
            authenticated,
            tls,
        };
        t.ctx
            .hooks
            .run_features(&cx)
            .iter()
            .map(|e| e.to_string())
            .filter(|e| e.contains("iq-register"))
            .collect()
    }

    async fn creds(t: &TestServer, user: &str) -> Option<String> {
        t.ctx
            .stores
            .accounts
            .get_credentials("localhost", user)
            .await
            .expect("get")
            .map(|c| c.scram_sha256)
    }

    #[tokio::test]
    async fn form_create_conflict_and_interval() {
        let t = TestServer::new(&[("register", &format!("{ON}\ninstructions = 'Hi'"))]).await;
        let r = pre(&t, FORM, "192.0.2.1", false).await.expect("form");
        assert!(
            r.contains("<query xmlns='jabber:iq:register'>")
                && r.contains("<instructions>Hi</instructions>")
                && r.contains("<username/>")
                && r.contains("<password/>"),
            "{r}"
        );
        assert_eq!(
            pre(&t, &create("Alice", "pw"), "192.0.2.1", false).await,
            Ok(String::new())
        );
        // Nodeprep'd; SCRAM keys stored.
        assert!(creds(&t, "alice").await.is_some_and(|c| !c.is_empty()));
        assert!(t
            .ctx
            .stores
            .accounts
            .account_exists("localhost", "alice")
            .await
            .expect("exists"));
        // Exists: conflict, before the interval is looked at.
        let r = pre(&t, &create("alice", "pw2"), "192.0.2.1", false).await;
        assert_eq!(r, Err("conflict".into()));
        // The same address again: wait.
        let r = pre(&t, &create("bob", "pw"), "192.0.2.1", false).await;
        assert_eq!(r, Err("resource-constraint".into()));
        assert!(creds(&t, "bob").await.is_none());
        // Another address may.
        let r = pre(&t, &create("bob", "pw"), "192.0.2.2", false).await;
        assert_eq!(r, Ok(String::new()));
        // A refused creation does not take the address's slot.
        let r = pre(&t, &create("bob", "pw"), "192.0.2.3", false).await;
        assert_eq!(r, Err("conflict".into()));
        let r = pre(&t, &create("carol", "pw"), "192.0.2.3", false).await;
        assert_eq!(r, Ok(String::new()));
        assert!(t
            .ctx
            .hooks
            .server_features()
            .contains(&"jabber:iq:register"));
    }

    #[tokio::test]
    async fn bad_input_is_not_acceptable() {
        let t = TestServer::new(&[("register", &format!("{ON}\ninterval_per_address = 0"))]).await;
        for xml in [
            create("", "pw"),
            create("a@b", "pw"),
            create("a b", "pw"),
            create("alice", ""),
            "<iq type='set' id='c'><query xmlns='jabber:iq:register'><username>x</username></query></iq>".into(),
            "<iq type='set' id='c'><query xmlns='jabber:iq:register'><password>x</password></query></iq>".into(),
        ] {
            assert_eq!(pre(&t, &xml, "192.0.2.1", false).await, Err("not-acceptable".into()), "{xml}");
        }
        let r = pre(
            &t,
            "<iq type='set' id='c'><query xmlns='jabber:iq:register'><remove/></query></iq>",
            "192.0.2.1",
            false,
        )
        .await;
        assert_eq!(r, Err("not-authorized".into()));
        let r = pre(
            &t,
            "<iq type='get' id='c'><query xmlns='jabber:iq:register'><x/></query></iq>",
            "192.0.2.1",
            false,
        )
        .await;
        assert!(r.is_ok());
        // No interval: two from one address.
        assert_eq!(
            pre(&t, &create("a1", "pw"), "192.0.2.1", false).await,
            Ok(String::new())
        );
        assert_eq!(
            pre(&t, &create("a2", "pw"), "192.0.2.1", false).await,
            Ok(String::new())
        );
    }

    #[tokio::test]
    async fn tls_required_by_default() {
        let t = TestServer::new(&[("register", "enabled = true")]).await;
        assert_eq!(
            pre(&t, FORM, "192.0.2.1", false).await,
            Err("policy-violation".into())
        );
        let r = pre(&t, &create("alice", "pw"), "192.0.2.1", false).await;
        assert_eq!(r, Err("policy-violation".into()));
        assert!(pre(&t, FORM, "192.0.2.1", true).await.is_ok());
        assert_eq!(
            pre(&t, &create("alice", "pw"), "192.0.2.1", true).await,
            Ok(String::new())
        );
        // The stream feature: only with TLS, only before authentication.
        assert_eq!(features(&t, false, false), "");
        assert_eq!(
            features(&t, true, false),
            "<register xmlns='http://jabber.org/features/iq-register'/>"
        );
        assert_eq!(features(&t, true, true), "");
    }

    #[tokio::test]
    async fn policies() {
        let t = TestServer::new(&[("register", &format!("{ON}\npolicy = 'denied'"))]).await;
        assert_eq!(
            pre(&t, FORM, "192.0.2.1", true).await,
            Err("not-allowed".into())
        );
        let r = pre(&t, &create("alice", "pw"), "192.0.2.1", true).await;
        assert_eq!(r, Err("not-allowed".into()));
        assert_eq!(features(&t, true, false), "");
        // Existing accounts may still change their password.
        let a = t.session("bob", "b").await;
        let r = t
            .iq(
                &a,
                "<iq type='set' id='p'><query xmlns='jabber:iq:register'>\
                 <username>bob</username><password>new</password></query></iq>",
            )
            .await;
        assert!(r.contains("type='result'"), "{r}");

        let t = TestServer::new(&[(
            "register",
            &format!("{ON}\npolicy = 'allow_list'\nallow_from = ['10.0.0.0/8', '::1']"),
        )])
        .await;
        let r = pre(&t, &create("alice", "pw"), "127.0.0.1", true).await;
        assert_eq!(r, Err("not-allowed".into()));
        assert_eq!(
            pre(&t, &create("alice", "pw"), "10.1.2.3", true).await,
            Ok(String::new())
        );
        assert_eq!(
            pre(&t, &create("bob", "pw"), "::1", true).await,
            Ok(String::new())
        );
        assert!(features(&t, false, false).contains("iq-register"));
    }

    #[tokio::test]
    async fn off_by_default() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let r = t
            .iq(
                &a,
                "<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>",
            )
            .await;
        assert!(r.contains("service-unavailable"), "{r}");
        assert!(!t.ctx.hooks.has_pre_auth_iq("jabber:iq:register"));
        assert!(!t
            .ctx
            .hooks
            .server_features()
            .contains(&"jabber:iq:register"));
        assert_eq!(
            pre(&t, FORM, "192.0.2.1", true).await,
            Err("no handler".into())
        );
        assert_eq!(features(&t, true, false), "");
        // Its settings are checked all the same.
        let text = "[general]\nhosts = ['localhost']\n[modules.register]\npolicy = 'open'\n";
        let err = crate::config::Config::parse(text, std::path::Path::new("t.toml"))
            .expect_err("a bad value is refused");
        assert_eq!(err.key, "modules.register.policy", "{err:?}");
    }

    async fn get(t: &TestServer, s: &TestSession) -> String {
        t.iq(
            s,
            "<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>",
        )
        .await
    }

    fn change(id: &str, user: &str, pw: &str) -> String {
        format!(
            "<iq type='set' id='{id}' to='localhost'><query xmlns='jabber:iq:register'>\
             <username>{user}</username><password>{pw}</password></query></iq>"
        )
    }

    const REMOVE: &str =
        "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>";

    #[tokio::test]
    async fn registered_password_change_and_remove() {
        let t = TestServer::new(&[("register", ON)]).await;
        let a = t.session("alice", "a").await;
        let r = get(&t, &a).await;
        assert!(
            r.contains("<registered/>") && r.contains("<username>alice</username>"),
            "{r}"
        );
        let before = creds(&t, "alice").await;
        let r = t.iq(&a, &change("p1", "alice", "new")).await;
        assert!(r.contains("type='result'"), "{r}");
        let after = creds(&t, "alice").await;
        assert!(after.is_some_and(|c| !c.is_empty()) && creds(&t, "alice").await != before);
        let r = t.iq(&a, &change("p2", "bob", "new")).await;
        assert!(r.contains("forbidden"), "{r}");
        let r = t
            .iq(
                &a,
                "<iq type='set' id='p3'><query xmlns='jabber:iq:register'><password>x</password></query></iq>",
            )
            .await;
        assert!(r.contains("bad-request"), "{r}");
        let r = t.iq(&a, &change("p4", "alice", "")).await;
        assert!(r.contains("not-acceptable"), "{r}");
        let r = t
            .iq(
                &a,
                "<iq type='get' id='o' to='bob@localhost'><query xmlns='jabber:iq:register'/></iq>",
            )
            .await;
        assert!(r.contains("forbidden"), "{r}");

        // Remove: the result, then the session is closed; the rows a
        // closing session writes are swept when it has left.
        let a2 = t.session("alice", "a2").await;
        let r = t.iq(&a, REMOVE).await;
        assert!(r.contains("type='result'"), "{r}");
        assert!(creds(&t, "alice").await.is_none());
        t.close(a).await;
        t.close(a2).await;
        let last = t
            .ctx
            .stores
            .last
            .last_activity_get("localhost", "alice")
            .await
            .expect("last");
        assert!(last.is_none(), "{last:?}");
        assert!(creds(&t, "alice").await.is_none());
    }

    #[tokio::test]
    async fn change_and_remove_can_be_refused() {
        let t = TestServer::new(&[(
            "register",
            &format!("{ON}\nallow_password_change = false\nallow_remove = false"),
        )])
        .await;
        let a = t.session("alice", "a").await;
        let r = t.iq(&a, &change("p", "alice", "new")).await;
        assert!(r.contains("not-allowed"), "{r}");
        let r = t.iq(&a, REMOVE).await;
        assert!(r.contains("not-allowed"), "{r}");
        assert!(creds(&t, "alice").await.is_some());
    }

    #[test]
    fn unknown_keys_are_refused() {
        crate::modules::testing::assert_unknown_key_refused("register", "interval = 1");
    }

    #[test]
    fn bad_values_are_refused() {
        for (setting, key) in [
            ("policy = 'open'", "policy"),
            ("allow_from = ['10.0.0.0/33']", "allow_from"),
            ("allow_from = ['localhost']", "allow_from"),
            ("policy = 'allow_list'", "allow_from"),
            (
                "interval_per_address = '10 parsecs'",
                "interval_per_address",
            ),
            ("interval_per_address = -1", "interval_per_address"),
            ("require_tls = 'yes'", "require_tls"),
        ] {
            let text = format!(
                "[general]\nhosts = ['localhost']\n[modules.register]\nenabled = true\n{setting}\n"
            );
            let err = crate::config::Config::parse(&text, std::path::Path::new("t.toml"))
                .expect_err(setting);
            assert_eq!(err.key, format!("modules.register.{key}"), "{err:?}");
        }
        for ok in ["600", "'600s'", "'10m'", "'1h'", "0"] {
            let text = format!(
                "[general]\nhosts = ['localhost']\n[modules.register]\ninterval_per_address = {ok}\n"
            );
            crate::config::Config::parse(&text, std::path::Path::new("t.toml")).expect(ok);
        }
    }

    #[test]
    fn networks() {
        let n = Net::parse("10.0.0.0/8").expect("net");
        assert!(n.contains("10.255.0.1".parse().expect("ip")));
        assert!(!n.contains("11.0.0.1".parse().expect("ip")));
        // IPv4-mapped IPv6 is the IPv4 address.
        assert!(n.contains("::ffff:10.1.1.1".parse().expect("ip")));
        let one = Net::parse("127.0.0.1").expect("net");
        assert!(one.contains("127.0.0.1".parse().expect("ip")));
        assert!(!one.contains("127.0.0.2".parse().expect("ip")));
        let all = Net::parse("0.0.0.0/0").expect("net");
        assert!(all.contains("203.0.113.9".parse().expect("ip")));
        assert!(!all.contains("::1".parse().expect("ip")));
        let v6 = Net::parse("2001:db8::/32").expect("net");
        assert!(v6.contains("2001:db8:1::5".parse().expect("ip")));
        assert!(!v6.contains("2001:db9::5".parse().expect("ip")));
        assert!(Net::parse("::1/128")
            .expect("net")
            .contains("::1".parse().expect("ip")));
        for bad in ["::1/129", "1.2.3.4/33", "1.2.3/8", "x", "1.2.3.4/a"] {
            assert!(Net::parse(bad).is_err(), "{bad}");
        }
    }
}
