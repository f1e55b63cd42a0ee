//! Message Archive Management (XEP-0313, `urn:xmpp:mam:2`) for user
//! archives, with stanza ids (XEP-0359) and RSM paging (XEP-0059).
//!
//! - [`archive`]: which messages are kept (chat and normal ones with a
//!   body, both ways, per the owner's preferences), the stanza-id stamped
//!   on the recipient's copy (an *amend* hook) and the rows handed to the
//!   writer once the router placed the message (a *route after* hook);
//! - [`writer`]: one task writes archived rows in batches, so a busy
//!   server does one transaction per batch, not per message; a query waits
//!   for what is queued before it (no message is missing from a page);
//! - [`query`]: the query IQ (form fields `with`, `start`, `end`,
//!   `before-id`, `after-id`; RSM `max`, `before`, `after`; not `index`),
//!   results as `<message><result><forwarded/>` then `<fin/>`;
//! - [`prefs`]: the preferences IQ (`always` / `roster` / `never`, JID
//!   lists), cached in memory;
//! - retention: a task removes messages older than `retention_days` and
//!   trims archives above `max_messages_per_user`.
//!
//! Archive ids are microseconds since the epoch shifted left 8 bits, plus
//! a sequence: increasing on this node, so `start`/`end` become id bounds
//! and every page is one index range scan.

mod archive;
mod prefs;
mod query;
mod writer;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Module, ModuleDef};
use crate::config::Config;
use crate::events::handlers as h;
use crate::hooks::{Hooks, IqType, ServerHook};
use crate::server::Ctx;
use crate::stanza::Kind;

pub const NS_MAM: &str = "urn:xmpp:mam:2";
pub const NS_MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
pub const NS_SID: &str = "urn:xmpp:sid:0";
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";

pub const DEF: ModuleDef = ModuleDef {
    name: "mam",
    build: |t| {
        let s: Settings = super::settings(t)?;
        s.check()?;
        Ok(Arc::new(Mam::new(s)))
    },
};

/// `[modules.mam]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// What is archived for a user who set no preferences.
    pub default: prefs::Mode,
    /// Results per page when the client gives no RSM `<max/>`.
    pub default_page_size: u32,
    /// The most results one page returns, whatever `<max/>` asks.
    pub max_page_size: u32,
    /// Messages older than this many days are removed (0: kept forever).
    pub retention_days: u64,
    /// Each archive keeps at most this many messages, the newest (0: no cap).
    pub max_messages_per_user: u64,
    /// How often retention runs, in seconds.
    pub purge_interval: u64,
    /// Archived rows waiting for the writer; a full queue holds the sender
    /// back for up to a second, then the row is dropped (`limit_hit`).
    pub queue: usize,
    /// Rows per write, at most.
    pub batch: usize,
    /// How long the writer gathers rows after the first before writing
    /// them, in milliseconds (0: write what is queued at once).
    pub flush_interval: u64,
    /// Accounts whose preferences are kept in memory.
    pub prefs_cache: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default: prefs::Mode::Always,
            default_page_size: 50,
            max_page_size: 250,
            retention_days: 0,
            max_messages_per_user: 0,
            purge_interval: 3600,
            queue: 100_000,
            batch: 500,
            flush_interval: 100,
            prefs_cache: 100_000,
        }
    }
}

impl Settings {
    fn check(&self) -> Result<(), super::SettingError> {
        let bad = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if self.max_page_size == 0 {
            return bad("max_page_size", "must be at least 1");
        }
        if self.default_page_size == 0 || self.default_page_size > self.max_page_size {
            return bad(
                "default_page_size",
                "must be at least 1 and at most max_page_size",
            );
        }
        if self.purge_interval == 0 {
            return bad("purge_interval", "must be at least 1 (seconds)");
        }
        if self.queue == 0 {
            return bad("queue", "must be at least 1");
        }
        if self.batch == 0 {
            return bad("batch", "must be at least 1");
        }
        Ok(())
    }
}

/// The module: its settings, the id sequence, the writer and the cache.
pub struct Mam {
    settings: Settings,
    last_id: AtomicI64,
    writer: writer::Writer,
    prefs: prefs::Cache,
}

impl Mam {
    fn new(settings: Settings) -> Mam {
        Mam {
            writer: writer::Writer::new(
                settings.queue,
                settings.batch,
                Duration::from_millis(settings.flush_interval),
            ),
            prefs: prefs::Cache::new(settings.prefs_cache),
            last_id: AtomicI64::new(0),
            settings,
        }
    }

    /// The next archive id: now in microseconds, shifted, and above the last.
    fn next_id(&self) -> i64 {
        let now = id_at(now_us());
        let prev = self
            .last_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        now.max(prev + 1)
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX >> 8))
        .unwrap_or(0)
}

/// The smallest id of a microsecond.
fn id_at(us: i64) -> i64 {
    us.saturating_mul(256)
}

/// When an id was given out, in microseconds since the epoch.
fn id_time_us(id: i64) -> i64 {
    id >> 8
}

impl Module for Mam {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _config: &Config) {
        hooks.account_feature(NS_MAM);
        hooks.account_feature(NS_MAM_EXTENDED);
        hooks.account_feature(NS_SID);
        hooks.server_feature(NS_SID);
        // Queries and preferences share the namespace: one handler per IQ
        // type, dispatching on the payload's name.
        hooks.iq(
            NS_MAM,
            IqType::Get,
            &h::MAM_GET,
            Arc::new(query::Get(self.clone())),
        );
        hooks.iq(
            NS_MAM,
            IqType::Set,
            &h::MAM_SET,
            Arc::new(query::Set(self.clone())),
        );
        hooks.amend(
            Kind::Message,
            0,
            &h::MAM_STAMP,
            Arc::new(archive::Stamp(self.clone())),
        );
        hooks.route_after(
            Kind::Message,
            0,
            &h::MAM_ARCHIVE,
            Arc::new(archive::Archive(self.clone())),
        );
        hooks.server(&h::MAM_SERVER, self);
    }
}

#[async_trait]
impl ServerHook for Mam {
    fn started(&self, ctx: &Arc<Ctx>) {
        self.writer.start(ctx);
        let (days, keep) = (
            self.settings.retention_days,
            self.settings.max_messages_per_user,
        );
        if days > 0 || keep > 0 {
            let every = Duration::from_secs(self.settings.purge_interval);
            tokio::spawn(retention(ctx.clone(), every, days, keep));
        }
    }

    async fn stopping(&self, _ctx: &Ctx) {
        self.writer.flush().await;
    }
}

/// Removes what retention asks for, every `every`, until shutdown.
async fn retention(ctx: Arc<Ctx>, every: Duration, days: u64, keep: u64) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let started = std::time::Instant::now();
        let mut removed = 0;
        if days > 0 {
            let cutoff = now_us().saturating_sub((days * 86_400_000_000) as i64);
            match ctx.stores.mam.mam_purge_before(id_at(cutoff)).await {
                Ok(n) => removed += n,
                Err(e) => tracing::warn!(error = %e, "MAM retention purge failed"),
            }
        }
        if keep > 0 {
            match ctx.stores.mam.mam_trim(keep).await {
                Ok((archives, n)) => {
                    removed += n;
                    for _ in 0..archives {
                        ctx.instr.limit("mam_archive_full");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "MAM archive trim failed"),
            }
        }
        if removed > 0 {
            tracing::info!(removed, "MAM retention removed old messages");
        }
        ctx.instr
            .module_data("mam", "removed", removed, started.elapsed());
    }
}

#[cfg(test)]
mod tests;
