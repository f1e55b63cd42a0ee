//! The schema's output types: GraphQL twins of the admin functions' results
//! (those are plain serde structs of `crate::admin`, which stays free of
//! GraphQL derives), converted field for field.

use async_graphql::SimpleObject;

use crate::admin;

/// One page of registered users (bare JIDs, sorted) and how many there are.
#[derive(SimpleObject)]
pub struct UserPage {
    pub total: usize,
    pub offset: usize,
    pub items: Vec<String>,
}

impl From<admin::Paged<String>> for UserPage {
    fn from(p: admin::Paged<String>) -> Self {
        UserPage {
            total: p.total,
            offset: p.offset,
            items: p.items,
        }
    }
}

/// Registered accounts of one host.
#[derive(SimpleObject)]
pub struct HostAccounts {
    pub host: String,
    pub accounts: u64,
}

impl From<admin::accounts::HostCount> for HostAccounts {
    fn from(c: admin::accounts::HostCount) -> Self {
        HostAccounts {
            host: c.host,
            accounts: c.accounts,
        }
    }
}

/// One client session of this node.
#[derive(SimpleObject)]
pub struct Session {
    pub jid: String,
    pub bare: String,
    pub resource: String,
    /// What `kickUser(target:)` takes to close this session alone.
    pub session_id: u64,
    pub address: String,
    pub listener: String,
    pub transport: String,
    pub tls: bool,
    pub connected_seconds: u64,
    pub stanzas_in: u64,
    pub stanzas_out: u64,
    pub queued_bytes: usize,
    pub available: bool,
    pub priority: i32,
    /// active, detached (XEP-0198, waiting for a resume), …
    pub state: String,
}

impl From<admin::sessions::SessionInfo> for Session {
    fn from(s: admin::sessions::SessionInfo) -> Self {
        Session {
            jid: s.jid,
            bare: s.bare,
            resource: s.resource,
            session_id: s.session_id,
            address: s.address,
            listener: s.listener,
            transport: s.transport.to_string(),
            tls: s.tls,
            connected_seconds: s.connected_seconds,
            stanzas_in: s.stanzas_in,
            stanzas_out: s.stanzas_out,
            queued_bytes: s.queued_bytes,
            available: s.available,
            priority: i32::from(s.priority),
            state: s.state.to_string(),
        }
    }
}

/// One page of sessions (sorted by full JID) and how many matched.
#[derive(SimpleObject)]
pub struct SessionPage {
    pub total: usize,
    pub offset: usize,
    pub items: Vec<Session>,
}

impl From<admin::Paged<admin::sessions::SessionInfo>> for SessionPage {
    fn from(p: admin::Paged<admin::sessions::SessionInfo>) -> Self {
        SessionPage {
            total: p.total,
            offset: p.offset,
            items: p.items.into_iter().map(Session::from).collect(),
        }
    }
}

/// What a kick closed.
#[derive(SimpleObject)]
pub struct Kicked {
    pub kicked: usize,
    pub sessions: Vec<u64>,
    /// The stream error condition sent.
    pub condition: String,
}

impl From<admin::sessions::Kicked> for Kicked {
    fn from(k: admin::sessions::Kicked) -> Self {
        Kicked {
            kicked: k.kicked,
            sessions: k.sessions,
            condition: k.condition.to_string(),
        }
    }
}

/// A stanza sent through the router.
#[derive(SimpleObject)]
pub struct Sent {
    pub id: String,
    /// delivered, offline, dropped or handled.
    pub outcome: String,
    /// Sessions it was queued to.
    pub sessions: usize,
}

impl From<admin::stanza::Sent> for Sent {
    fn from(s: admin::stanza::Sent) -> Self {
        Sent {
            id: s.id,
            outcome: s.outcome.to_string(),
            sessions: s.sessions,
        }
    }
}

/// One roster item.
#[derive(SimpleObject)]
pub struct Contact {
    pub jid: String,
    pub name: Option<String>,
    /// none, to, from or both.
    pub subscription: String,
    /// A subscription request is pending out.
    pub ask: bool,
    pub groups: Vec<String>,
}

impl From<admin::roster::Item> for Contact {
    fn from(i: admin::roster::Item) -> Self {
        Contact {
            jid: i.jid,
            name: i.name,
            subscription: i.subscription.to_string(),
            ask: i.ask,
            groups: i.groups,
        }
    }
}

/// A message stored for an offline user.
#[derive(SimpleObject)]
pub struct OfflineMessage {
    pub id: i64,
    /// When it was stored, Unix milliseconds.
    pub stored_at_ms: i64,
    /// The stanza as it will be delivered (XML).
    pub stanza: String,
}

/// One page of stored messages (oldest first) and how many there are.
#[derive(SimpleObject)]
pub struct OfflinePage {
    pub total: usize,
    pub offset: usize,
    pub items: Vec<OfflineMessage>,
}

impl From<admin::Paged<admin::offline::Stored>> for OfflinePage {
    fn from(p: admin::Paged<admin::offline::Stored>) -> Self {
        OfflinePage {
            total: p.total,
            offset: p.offset,
            items: p
                .items
                .into_iter()
                .map(|m| OfflineMessage {
                    id: m.id,
                    stored_at_ms: m.stored_at_ms,
                    stanza: m.stanza,
                })
                .collect(),
        }
    }
}

/// Statistics of one host.
#[derive(SimpleObject)]
pub struct HostStats {
    pub host: String,
    pub registered_users: u64,
    pub online_sessions: usize,
    pub online_users: usize,
    /// Stanzas received from and sent to clients since start.
    pub stanzas_in: u64,
    pub stanzas_out: u64,
}

impl From<admin::stats::HostStats> for HostStats {
    fn from(s: admin::stats::HostStats) -> Self {
        HostStats {
            host: s.host,
            registered_users: s.registered_users,
            online_sessions: s.online_sessions,
            online_users: s.online_users,
            stanzas_in: s.stanzas_in,
            stanzas_out: s.stanzas_out,
        }
    }
}

/// Bound addresses.
#[derive(SimpleObject)]
pub struct Listeners {
    // Not camel-cased into `c2S`.
    #[graphql(name = "c2s")]
    pub c2s: Vec<String>,
    pub http: Vec<String>,
}

#[derive(SimpleObject)]
pub struct ServerStatus {
    pub version: String,
    pub uptime_seconds: u64,
    pub hosts: Vec<String>,
    pub sessions: usize,
    pub users: usize,
    pub listeners: Option<Listeners>,
    /// sqlite or postgres.
    pub storage: String,
    /// Instrumentation handlers on.
    pub handlers: Vec<String>,
}

impl From<admin::server::Status> for ServerStatus {
    fn from(s: admin::server::Status) -> Self {
        ServerStatus {
            version: s.version.to_string(),
            uptime_seconds: s.uptime_seconds,
            hosts: s.hosts,
            sessions: s.sessions,
            users: s.users,
            listeners: s.listeners.map(|l| Listeners {
                c2s: l.c2s,
                http: l.http,
            }),
            storage: s.storage.to_string(),
            handlers: s.handlers.iter().map(|h| h.to_string()).collect(),
        }
    }
}

#[derive(SimpleObject)]
pub struct LogLevel {
    pub level: String,
    /// The level before, when it was just changed.
    pub previous: Option<String>,
    /// Whether events are logged at all (an `[instrumentation.log]` section).
    pub handler: bool,
}

impl From<admin::server::LogLevel> for LogLevel {
    fn from(l: admin::server::LogLevel) -> Self {
        LogLevel {
            level: l.level.to_string(),
            previous: l.previous.map(str::to_string),
            handler: l.handler,
        }
    }
}

/// One TLS listener's certificate after a reload.
#[derive(SimpleObject)]
pub struct Certificate {
    /// The listener's name, as in metric labels (`c2s_5222`).
    pub listener: String,
    pub certfile: String,
    /// The leaf's notAfter in Unix seconds, if it could be read.
    pub not_after: Option<i64>,
    /// The same, as RFC 3339.
    #[graphql(name = "notAfterRfc3339")]
    pub not_after_rfc3339: Option<String>,
    /// Whether the served chain differs from the one before the reload.
    pub changed: bool,
}

impl From<admin::server::Certificate> for Certificate {
    fn from(c: admin::server::Certificate) -> Self {
        Certificate {
            listener: c.listener,
            certfile: c.certfile,
            not_after: c.not_after,
            not_after_rfc3339: c.not_after_rfc3339,
            changed: c.changed,
        }
    }
}
