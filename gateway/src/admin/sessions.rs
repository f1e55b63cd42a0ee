//! Sessions: list (paged, filtered), count, kick (mongooseimctl's
//! `session` category).

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use serde::Serialize;

use super::{run, AdminError, AdminResult, Page, Paged};
use crate::errors::{StreamCondition, StreamError};
use crate::jid::Jid;
use crate::router::SessionRef;
use crate::server::Ctx;

/// The application condition sent with a kick (RFC 6120 §4.9.4), so that
/// a client, a log or a packet capture can tell a kick from other errors.
pub const KICKED_NS: &str = "urn:osprey:admin:0";

#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub jid: String,
    pub bare: String,
    pub resource: String,
    pub session_id: u64,
    pub address: String,
    pub listener: String,
    pub transport: &'static str,
    pub tls: bool,
    pub connected_seconds: u64,
    pub stanzas_in: u64,
    pub stanzas_out: u64,
    pub queued_bytes: usize,
    pub available: bool,
    pub priority: i8,
    /// active, detached (XEP-0198, waiting for a resume), …
    pub state: &'static str,
}

/// What to select: a substring of the full JID or the peer address (case
/// insensitive), and a host.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub text: Option<String>,
    pub host: Option<String>,
}

/// This node's sessions, sorted by full JID.
pub async fn list(ctx: &Ctx, filter: &Filter, page: Page) -> AdminResult<Paged<SessionInfo>> {
    let target = filter.text.as_deref().unwrap_or("*");
    run(ctx, "session_list", target, async {
        let now = SystemTime::now();
        let mut all: Vec<SessionInfo> = selected(ctx, filter)?
            .iter()
            .map(|s| info(s, now))
            .collect();
        all.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok(page.of(all))
    })
    .await
}

/// How many sessions match.
pub async fn count(ctx: &Ctx, filter: &Filter) -> AdminResult<usize> {
    let target = filter.host.as_deref().unwrap_or("*");
    run(ctx, "session_count", target, async {
        Ok(selected(ctx, filter)?.len())
    })
    .await
}

/// Whom to kick: every session of a bare JID, one full JID, or one session
/// by id.
#[derive(Debug, Clone)]
pub enum Target {
    Jid(String),
    Id(u64),
}

impl Target {
    /// A number is a session id; anything else a JID.
    pub fn parse(s: &str) -> Target {
        match s.parse::<u64>() {
            Ok(id) => Target::Id(id),
            Err(_) => Target::Jid(s.to_string()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Jid(j) => j.clone(),
            Target::Id(id) => format!("session {id}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Kicked {
    pub kicked: usize,
    pub sessions: Vec<u64>,
    /// The stream error condition sent.
    pub condition: &'static str,
}

/// Closes the target's sessions with a stream error: by default
/// `<undefined-condition/>` with the application condition
/// `<kicked xmlns='urn:osprey:admin:0'/>` (RFC 6120 §4.9.3.21 asks for one
/// with it), so that a kick is not counted as a policy violation; another
/// RFC 6120 condition (`policy-violation` for abuse, say) when asked for.
/// The reason is the error's text, and the session closes as `kicked`.
pub async fn kick(
    ctx: &Ctx,
    target: &Target,
    reason: Option<&str>,
    condition: Option<&str>,
) -> AdminResult<Kicked> {
    run(ctx, "session_kick", &target.describe(), async {
        let condition = match condition {
            None => StreamCondition::UndefinedCondition,
            Some(c) => StreamCondition::ALL
                .iter()
                .copied()
                .find(|k| k.wire_name() == c)
                .ok_or_else(|| {
                    AdminError::bad(format!("{c}: not an RFC 6120 stream error condition"))
                })?,
        };
        if reason.is_some_and(|r| r.len() > 1024) {
            return Err(AdminError::bad("the reason is longer than 1024 bytes"));
        }
        let targets = match target {
            Target::Id(id) => ctx
                .sessions
                .all()
                .into_iter()
                .filter(|s| s.id() == *id)
                .collect(),
            Target::Jid(j) => {
                let jid =
                    Jid::parse(j).map_err(|_| AdminError::bad(format!("{j}: malformed JID")))?;
                match jid.resource() {
                    Some(r) => ctx.sessions.full(&jid.bare(), r).into_iter().collect(),
                    None => ctx.sessions.resources(&jid.bare()),
                }
            }
        };
        let targets: Vec<SessionRef> = targets;
        if targets.is_empty() {
            return Err(AdminError::NotFound(format!(
                "no session for {}",
                target.describe()
            )));
        }
        let text = match reason {
            Some(r) if !r.is_empty() => format!("kicked by an administrator: {r}"),
            _ => "kicked by an administrator".to_string(),
        };
        let mut error = StreamError::with_text(condition, text);
        if condition == StreamCondition::UndefinedCondition {
            error = error.with_app(format!("<kicked xmlns='{KICKED_NS}'/>"));
        }
        for s in &targets {
            ctx.sessions.close(s, error.clone());
        }
        Ok(Kicked {
            kicked: targets.len(),
            sessions: targets.iter().map(|s| s.id()).collect(),
            condition: condition.wire_name(),
        })
    })
    .await
}

fn selected(
    ctx: &Ctx,
    filter: &Filter,
) -> AdminResult<Vec<std::sync::Arc<crate::router::SessionHandle>>> {
    if let Some(h) = &filter.host {
        super::served_host(ctx, h)?;
    }
    let needle = filter.text.as_deref().unwrap_or("").to_lowercase();
    Ok(ctx
        .sessions
        .all()
        .into_iter()
        // This node's sessions (remote ones are the cluster's to list).
        .filter_map(|s| s.local().cloned())
        .filter(|s| filter.host.as_deref().is_none_or(|h| s.jid().domain() == h))
        .filter(|s| {
            needle.is_empty()
                || s.full().to_lowercase().contains(&needle)
                || s.info().peer.to_string().contains(&needle)
        })
        .collect())
}

fn info(s: &crate::router::SessionHandle, now: SystemTime) -> SessionInfo {
    let i = s.info();
    let p = s.presence();
    SessionInfo {
        jid: s.full().to_string(),
        bare: s.bare().to_string(),
        resource: s.resource().to_string(),
        session_id: s.id(),
        address: i.peer.to_string(),
        listener: i.listener.to_string(),
        // The only transport so far (no WebSocket or BOSH).
        transport: "tcp",
        tls: i.tls,
        connected_seconds: now
            .duration_since(i.connected_at)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        stanzas_in: s.stanzas_in.load(Relaxed),
        stanzas_out: s.stanzas_out.load(Relaxed),
        queued_bytes: s.queued_bytes(),
        available: p.available,
        priority: p.priority,
        state: s.state().as_str(),
    }
}
