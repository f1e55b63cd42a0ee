//! Operations that change something, in the same categories as the queries:
//! `mutation { account { registerUser } … }`. Each category resolves its
//! fields one after another (`serial`), as GraphQL does for the root
//! mutation fields, so `{ registerUser … changePassword … }` on the same
//! account runs in the order written.

use async_graphql::{Context, Object, Result};

use super::types::{Certificate, Contact, Kicked, LogLevel, Sent};
use super::{out, server_ctx};
use crate::admin;

pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Register, remove accounts; change passwords.
    async fn account(&self) -> AccountAdminMutation {
        AccountAdminMutation
    }
    /// Close sessions.
    async fn session(&self) -> SessionAdminMutation {
        SessionAdminMutation
    }
    /// Send messages and stanzas through the router.
    async fn stanza(&self) -> StanzaAdminMutation {
        StanzaAdminMutation
    }
    /// Add, change or delete roster items.
    async fn roster(&self) -> RosterAdminMutation {
        RosterAdminMutation
    }
    /// Delete stored offline messages.
    async fn offline(&self) -> OfflineAdminMutation {
        OfflineAdminMutation
    }
    /// The log level; certificate reload.
    async fn server(&self) -> ServerAdminMutation {
        ServerAdminMutation
    }
}

pub struct AccountAdminMutation;

#[Object(serial)]
impl AccountAdminMutation {
    /// Creates an account; returns its bare JID.
    async fn register_user(
        &self,
        ctx: &Context<'_>,
        jid: String,
        password: String,
    ) -> Result<Option<String>> {
        out(
            ctx,
            admin::accounts::register(server_ctx(ctx)?, &jid, &password).await,
        )
    }

    /// Deletes an account with its roster and offline messages and closes
    /// its sessions; returns its bare JID.
    async fn remove_user(&self, ctx: &Context<'_>, jid: String) -> Result<Option<String>> {
        out(ctx, admin::accounts::remove(server_ctx(ctx)?, &jid).await)
    }

    /// Sets a new password (sessions stay); returns the bare JID.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        jid: String,
        password: String,
    ) -> Result<Option<String>> {
        out(
            ctx,
            admin::accounts::change_password(server_ctx(ctx)?, &jid, &password).await,
        )
    }
}

pub struct SessionAdminMutation;

#[Object(serial)]
impl SessionAdminMutation {
    /// Closes sessions with a stream error: `target` is a bare JID (all its
    /// sessions), a full JID, or a session id (a number). `condition` is an
    /// RFC 6120 stream error condition (undefined-condition with Osprey's
    /// `<kicked/>` by default); `reason` its text.
    async fn kick_user(
        &self,
        ctx: &Context<'_>,
        target: String,
        reason: Option<String>,
        condition: Option<String>,
    ) -> Result<Option<Kicked>> {
        let target = admin::sessions::Target::parse(&target);
        out(
            ctx,
            admin::sessions::kick(
                server_ctx(ctx)?,
                &target,
                reason.as_deref(),
                condition.as_deref(),
            )
            .await,
        )
    }
}

pub struct StanzaAdminMutation;

#[Object(serial)]
impl StanzaAdminMutation {
    /// A chat message from a local user (or a served domain: the server)
    /// to any JID, routed as a client's would be.
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        from: String,
        to: String,
        body: String,
    ) -> Result<Option<Sent>> {
        out(
            ctx,
            admin::stanza::send_message(server_ctx(ctx)?, &from, &to, &body).await,
        )
    }

    /// Any `<message/>`, `<presence/>` or `<iq/>` (XML, in jabber:client)
    /// with `from` and `to`, checked by the client limits and routed.
    async fn send_stanza(&self, ctx: &Context<'_>, stanza: String) -> Result<Option<Sent>> {
        out(ctx, admin::stanza::send(server_ctx(ctx)?, &stanza).await)
    }
}

pub struct RosterAdminMutation;

#[Object(serial)]
impl RosterAdminMutation {
    /// Adds or changes `contact` in `user`'s roster (subscription none by
    /// default; to, from or both to set it), pushed to the user's resources.
    async fn add_contact(
        &self,
        ctx: &Context<'_>,
        user: String,
        contact: String,
        name: Option<String>,
        groups: Option<Vec<String>>,
        subscription: Option<String>,
    ) -> Result<Option<Contact>> {
        let new = admin::roster::NewItem {
            contact,
            name,
            groups: groups.unwrap_or_default(),
            subscription,
        };
        out(ctx, admin::roster::add(server_ctx(ctx)?, &user, &new).await)
    }

    /// Removes `contact` from `user`'s roster; returns the contact's JID.
    async fn delete_contact(
        &self,
        ctx: &Context<'_>,
        user: String,
        contact: String,
    ) -> Result<Option<String>> {
        out(
            ctx,
            admin::roster::remove(server_ctx(ctx)?, &user, &contact).await,
        )
    }
}

pub struct OfflineAdminMutation;

#[Object(serial)]
impl OfflineAdminMutation {
    /// Deletes every message stored for `user`; returns how many.
    async fn purge_messages(&self, ctx: &Context<'_>, user: String) -> Result<Option<usize>> {
        out(ctx, admin::offline::purge(server_ctx(ctx)?, &user).await)
    }
}

pub struct ServerAdminMutation;

#[Object(serial)]
impl ServerAdminMutation {
    /// Changes the level of events and logs (error, warn, info, debug,
    /// trace) until the next change or restart.
    async fn set_log_level(&self, ctx: &Context<'_>, level: String) -> Result<Option<LogLevel>> {
        out(
            ctx,
            admin::server::set_log_level(server_ctx(ctx)?, &level).await,
        )
    }

    /// Reads every TLS listener's certificate and key again (as SIGHUP
    /// does): new handshakes use the new ones, open connections keep
    /// theirs; a listener whose files fail keeps its old certificate.
    async fn reload_certificates(&self, ctx: &Context<'_>) -> Result<Option<Vec<Certificate>>> {
        let reloaded = admin::server::reload_certificates(server_ctx(ctx)?).await;
        out(
            ctx,
            reloaded.map(|c| c.into_iter().map(Certificate::from).collect::<Vec<_>>()),
        )
    }
}
