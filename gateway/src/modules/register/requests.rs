//! What each registration request does: the form, creating an account,
//! changing a password, removing the account.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{lock, Net, Policy, Register, Settings, LIMIT, NS_REGISTER, PRUNE_ABOVE};
use crate::admin::AdminError;
use crate::errors::{StanzaCondition, StanzaError, StreamCondition, StreamError};
use crate::hooks::PreAuthIqCx;
use crate::modules::roster::internal;
use crate::modules::{IqRequest, IqResult, SettingError};
use crate::storage::StorageError;
use crate::xml::El;

impl Register {
    pub fn new(settings: Settings) -> Result<Register, SettingError> {
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

    pub(super) fn interval(&self) -> Duration {
        Duration::from_secs(self.settings.interval_per_address)
    }

    /// Whether a client at `ip` may create accounts.
    pub(super) fn may_create(&self, ip: IpAddr) -> bool {
        match self.settings.policy {
            Policy::Allowed => true,
            Policy::Denied => false,
            Policy::AllowList => self.allow_from.iter().any(|n| n.contains(ip)),
        }
    }

    /// Takes the address's creation slot: `Err` while its interval runs;
    /// `Ok(previous)` to give back with [`Register::release`] on failure.
    pub(super) fn reserve(&self, ip: IpAddr) -> Result<Option<Instant>, ()> {
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

    pub(super) fn release(&self, ip: IpAddr, previous: Option<Instant>) {
        if self.interval().is_zero() {
            return;
        }
        let mut recent = lock(&self.recent);
        match previous {
            Some(t) => recent.insert(ip, t),
            None => recent.remove(&ip),
        };
    }

    pub(super) fn form(&self) -> El {
        El::new("query")
            .xmlns(NS_REGISTER)
            .child(El::new("instructions").text(&self.settings.instructions))
            .child(El::new("username"))
            .child(El::new("password"))
    }

    /// A pre-authentication set: creates the account.
    pub(super) async fn create(&self, cx: &PreAuthIqCx<'_>) -> IqResult {
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
    pub(super) fn check_creation(&self, ip: IpAddr, tls: bool) -> Result<(), StanzaError> {
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
    pub(super) async fn set(&self, req: &IqRequest<'_>) -> IqResult {
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
    pub(super) async fn remove(
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
        for s in &sessions {
            ctx.sessions.close(
                s,
                StreamError::with_text(StreamCondition::NotAuthorized, "the account was removed"),
            );
        }
        Ok(None)
    }
}
