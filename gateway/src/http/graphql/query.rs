//! Read-only operations, one field per mongooseimctl category:
//! `query { account { listUsers } session { … } … }`.

use async_graphql::{Context, Object, Result};

use super::types::{
    Contact, HostAccounts, HostStats, LogLevel, OfflinePage, ServerStatus, SessionPage, UserPage,
};
use super::{out, server_ctx};
use crate::admin::{self, Page};

pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Registered accounts.
    async fn account(&self) -> AccountAdminQuery {
        AccountAdminQuery
    }
    /// This node's client sessions.
    async fn session(&self) -> SessionAdminQuery {
        SessionAdminQuery
    }
    /// Users' rosters.
    async fn roster(&self) -> RosterAdminQuery {
        RosterAdminQuery
    }
    /// Messages stored for offline users.
    async fn offline(&self) -> OfflineAdminQuery {
        OfflineAdminQuery
    }
    /// Statistics per host.
    async fn stat(&self) -> StatAdminQuery {
        StatAdminQuery
    }
    /// The server itself.
    async fn server(&self) -> ServerAdminQuery {
        ServerAdminQuery
    }
}

pub struct AccountAdminQuery;

#[Object]
impl AccountAdminQuery {
    /// Bare JIDs of one domain (all served domains without one), sorted;
    /// `limit` is 100 by default and at most 10000.
    async fn list_users(
        &self,
        ctx: &Context<'_>,
        domain: Option<String>,
        offset: Option<usize>,
        limit: Option<usize>,
    ) -> Result<Option<UserPage>> {
        let c = server_ctx(ctx)?;
        let page =
            async { admin::accounts::list(c, domain.as_deref(), Page::new(offset, limit)?).await };
        out(ctx, page.await)
    }

    /// Registered accounts per domain (one, or every served domain).
    async fn count_users(
        &self,
        ctx: &Context<'_>,
        domain: Option<String>,
    ) -> Result<Option<Vec<HostAccounts>>> {
        let counts = admin::accounts::count(server_ctx(ctx)?, domain.as_deref()).await;
        out(
            ctx,
            counts.map(|c| c.into_iter().map(HostAccounts::from).collect::<Vec<_>>()),
        )
    }
}

pub struct SessionAdminQuery;

#[Object]
impl SessionAdminQuery {
    /// Sessions whose full JID or peer address contains `filter` (case
    /// insensitive), of one domain or all; sorted by full JID.
    async fn list_sessions(
        &self,
        ctx: &Context<'_>,
        filter: Option<String>,
        domain: Option<String>,
        offset: Option<usize>,
        limit: Option<usize>,
    ) -> Result<Option<SessionPage>> {
        let c = server_ctx(ctx)?;
        let filter = admin::sessions::Filter {
            text: filter,
            host: domain,
        };
        let page = async { admin::sessions::list(c, &filter, Page::new(offset, limit)?).await };
        out(ctx, page.await)
    }

    /// How many sessions match (the same selection as `listSessions`).
    async fn count_sessions(
        &self,
        ctx: &Context<'_>,
        filter: Option<String>,
        domain: Option<String>,
    ) -> Result<Option<usize>> {
        let filter = admin::sessions::Filter {
            text: filter,
            host: domain,
        };
        out(ctx, admin::sessions::count(server_ctx(ctx)?, &filter).await)
    }
}

pub struct RosterAdminQuery;

#[Object]
impl RosterAdminQuery {
    /// The roster of `user` (a bare JID on a served domain).
    async fn list_contacts(&self, ctx: &Context<'_>, user: String) -> Result<Option<Vec<Contact>>> {
        let items = admin::roster::list(server_ctx(ctx)?, &user).await;
        out(
            ctx,
            items.map(|i| i.into_iter().map(Contact::from).collect::<Vec<_>>()),
        )
    }
}

pub struct OfflineAdminQuery;

#[Object]
impl OfflineAdminQuery {
    /// How many messages are stored for `user`.
    async fn count_messages(&self, ctx: &Context<'_>, user: String) -> Result<Option<u64>> {
        out(ctx, admin::offline::count(server_ctx(ctx)?, &user).await)
    }

    /// The stored messages, oldest first; they stay stored.
    async fn list_messages(
        &self,
        ctx: &Context<'_>,
        user: String,
        offset: Option<usize>,
        limit: Option<usize>,
    ) -> Result<Option<OfflinePage>> {
        let c = server_ctx(ctx)?;
        let page = async { admin::offline::list(c, &user, Page::new(offset, limit)?).await };
        out(ctx, page.await)
    }
}

pub struct StatAdminQuery;

#[Object]
impl StatAdminQuery {
    /// Accounts, sessions and stanza counts of one domain or every served one.
    async fn hosts(
        &self,
        ctx: &Context<'_>,
        domain: Option<String>,
    ) -> Result<Option<Vec<HostStats>>> {
        let stats = admin::stats::hosts(server_ctx(ctx)?, domain.as_deref()).await;
        out(
            ctx,
            stats.map(|s| s.into_iter().map(HostStats::from).collect::<Vec<_>>()),
        )
    }
}

pub struct ServerAdminQuery;

#[Object]
impl ServerAdminQuery {
    /// Version, uptime, hosts, sessions, listeners, storage, handlers.
    async fn status(&self, ctx: &Context<'_>) -> Result<Option<ServerStatus>> {
        out(ctx, admin::server::status(server_ctx(ctx)?).await)
    }

    /// The current log level, and whether events are logged at all.
    async fn log_level(&self, ctx: &Context<'_>) -> Result<Option<LogLevel>> {
        out(ctx, admin::server::log_level(server_ctx(ctx)?).await)
    }
}
