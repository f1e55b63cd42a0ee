//! Administration: every operation an operator can run on a live gateway,
//! as one typed function each, in mongooseimctl's categories. The REST
//! routes (`http::rest`), the GraphQL schema (`http::graphql`) and the CLI
//! (through either) are thin layers over these functions, so the three
//! always agree.
//!
//! Each operation runs through [`run`], which emits `admin_operation`
//! (count and latency by operation and outcome, and one log line naming
//! the target: the audit trail).

pub mod accounts;
pub mod cluster;
pub mod offline;
pub mod roster;
pub mod server;
pub mod sessions;
pub mod stanza;
pub mod stats;

use std::future::Future;
use std::time::Instant;

use osprey_instrument::Meta;
use serde::Serialize;

use crate::jid::Jid;
use crate::server::Ctx;
use crate::storage::StorageError;

/// Every operation's name (the `operation` label): each series exists at
/// zero from the start.
pub const OPERATIONS: &[&str] = &[
    "account_list",
    "account_count",
    "account_register",
    "account_remove",
    "account_change_password",
    "session_list",
    "session_count",
    "session_kick",
    "stanza_send_message",
    "stanza_send",
    "roster_list",
    "roster_add",
    "roster_remove",
    "offline_count",
    "offline_list",
    "offline_purge",
    "stats_hosts",
    "server_status",
    "server_reload_certificates",
    "server_log_level",
    "server_set_log_level",
    "cluster_status",
    "cluster_sessions",
    "cluster_leave",
];

/// Outcomes besides `ok`: the error wire names.
pub const OUTCOMES: &[&str] = &[
    "ok",
    "bad_request",
    "not_found",
    "conflict",
    "storage_error",
    "internal",
];

/// Why an operation failed. The wire name is the `outcome` label, the
/// `error.code` of a REST reply and the GraphQL error's `extensions.code`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The input is malformed or names something this server does not serve.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    pub fn wire_name(&self) -> &'static str {
        match self {
            AdminError::BadRequest(_) => "bad_request",
            AdminError::NotFound(_) => "not_found",
            AdminError::Conflict(_) => "conflict",
            AdminError::Storage(_) => "storage_error",
            AdminError::Internal(_) => "internal",
        }
    }

    /// The HTTP status of the REST reply.
    pub fn http_status(&self) -> u16 {
        match self {
            AdminError::BadRequest(_) => 400,
            AdminError::NotFound(_) => 404,
            AdminError::Conflict(_) => 409,
            AdminError::Storage(_) => 503,
            AdminError::Internal(_) => 500,
        }
    }

    pub fn bad(message: impl Into<String>) -> AdminError {
        AdminError::BadRequest(message.into())
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// Paging of a list: `offset` items skipped, at most `limit` returned.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

impl Page {
    /// The most one page may hold.
    pub const MAX_LIMIT: usize = 10_000;
    pub const DEFAULT_LIMIT: usize = 100;

    pub fn new(offset: Option<usize>, limit: Option<usize>) -> AdminResult<Page> {
        let limit = limit.unwrap_or(Page::DEFAULT_LIMIT);
        if limit > Page::MAX_LIMIT {
            return Err(AdminError::bad(format!(
                "limit must be at most {}",
                Page::MAX_LIMIT
            )));
        }
        Ok(Page {
            offset: offset.unwrap_or(0),
            limit,
        })
    }

    /// This page of a whole list.
    pub fn of<T>(&self, all: Vec<T>) -> Paged<T> {
        let total = all.len();
        let items = all.into_iter().skip(self.offset).take(self.limit).collect();
        Paged {
            total,
            offset: self.offset,
            items,
        }
    }
}

/// One page of a list and the size of the whole list.
#[derive(Debug, Clone, Serialize)]
pub struct Paged<T> {
    pub total: usize,
    pub offset: usize,
    pub items: Vec<T>,
}

/// Runs one operation: times it, and emits `admin_operation` with its
/// outcome and `target` (a JID, a session id) in the log line.
pub async fn run<T, F>(ctx: &Ctx, operation: &'static str, target: &str, op: F) -> AdminResult<T>
where
    F: Future<Output = AdminResult<T>>,
{
    debug_assert!(
        OPERATIONS.contains(&operation),
        "{operation} not in OPERATIONS"
    );
    let started = Instant::now();
    let result = op.await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.wire_name(),
    };
    let error = match &result {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    };
    let fields: [(&'static str, &dyn std::fmt::Display); 2] =
        [("target", &target), ("error", &error)];
    let meta = if error.is_empty() {
        Meta::new(&fields[..1])
    } else {
        Meta::new(&fields)
    };
    ctx.instr.emit_meta(
        &crate::events::ADMIN_OPERATION,
        &[operation, outcome],
        &[("count", 1.0), ("seconds", started.elapsed().as_secs_f64())],
        &meta,
    );
    result
}

/// A user's bare JID on a host this server serves.
pub fn local_user(ctx: &Ctx, jid: &str) -> AdminResult<Jid> {
    let parsed = Jid::parse(jid).map_err(|_| AdminError::bad(format!("{jid}: malformed JID")))?;
    let Some(_) = parsed.local() else {
        return Err(AdminError::bad(format!(
            "{jid}: a user JID (user@host) is needed"
        )));
    };
    if !ctx.serves(parsed.domain()) {
        return Err(AdminError::bad(format!(
            "{}: not a host of this server",
            parsed.domain()
        )));
    }
    Ok(parsed.to_bare())
}

/// [`local_user`] with an account: the operations that read a user's
/// data answer 404 for a user that does not exist, not an empty list.
pub async fn existing_user(ctx: &Ctx, jid: &str) -> AdminResult<Jid> {
    let user = local_user(ctx, jid)?;
    let (host, name) = (user.domain(), user.local().unwrap_or_default());
    if ctx.storage.account_exists(host, name).await? {
        Ok(user)
    } else {
        Err(AdminError::NotFound(format!("no account {}", user.bare())))
    }
}

/// A host this server serves.
pub fn served_host(ctx: &Ctx, host: &str) -> AdminResult<String> {
    if ctx.serves(host) {
        Ok(host.to_string())
    } else {
        Err(AdminError::bad(format!(
            "{host}: not a host of this server"
        )))
    }
}
