//! XEP-0313 §6 preferences: whether a message with a given peer is kept.
//!
//! `never` JIDs win over `always` JIDs, which win over the default
//! (`always`, `never`, or `roster`: kept when the peer is in the owner's
//! roster). Preferences are read once per account and kept in memory
//! (a bounded map, emptied when full); a set replaces the cached copy.

use std::sync::Arc;

use dashmap::DashMap;

use super::{Settings, NS_MAM};
use crate::errors::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::modules::roster::internal;
use crate::modules::IqRequest;
use crate::modules::IqResult;
use crate::server::Ctx;
use crate::storage::ArchivePrefs;
use crate::xml::El;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Always,
    Roster,
    Never,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Always => "always",
            Mode::Roster => "roster",
            Mode::Never => "never",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "always" => Mode::Always,
            "roster" => Mode::Roster,
            "never" => Mode::Never,
            _ => return None,
        })
    }
}

/// One account's preferences, as used.
#[derive(Debug, Clone)]
pub struct Prefs {
    pub default: Mode,
    pub always: Vec<String>,
    pub never: Vec<String>,
}

impl Prefs {
    fn from_stored(p: ArchivePrefs, fallback: Mode) -> Prefs {
        Prefs {
            default: Mode::parse(&p.default_mode).unwrap_or(fallback),
            always: p.always,
            never: p.never,
        }
    }

    fn to_stored(&self) -> ArchivePrefs {
        ArchivePrefs {
            default_mode: self.default.as_str().to_string(),
            always: self.always.clone(),
            never: self.never.clone(),
        }
    }
}

pub struct Cache {
    map: DashMap<String, Arc<Prefs>>,
    cap: usize,
}

impl Cache {
    pub fn new(cap: usize) -> Cache {
        Cache {
            map: DashMap::new(),
            cap,
        }
    }

    fn put(&self, bare: String, prefs: Arc<Prefs>) {
        if self.map.len() >= self.cap {
            self.map.clear();
        }
        self.map.insert(bare, prefs);
    }

    /// The account's preferences (the configured default when it set none).
    pub async fn get(
        &self,
        ctx: &Ctx,
        settings: &Settings,
        host: &str,
        user: &str,
    ) -> Result<Arc<Prefs>, crate::storage::StorageError> {
        let bare = format!("{user}@{host}");
        if let Some(p) = self.map.get(&bare) {
            return Ok(p.clone());
        }
        let prefs = Arc::new(match ctx.stores.mam.mam_prefs_get(host, user).await? {
            Some(p) => Prefs::from_stored(p, settings.default),
            None => Prefs {
                default: settings.default,
                always: Vec::new(),
                never: Vec::new(),
            },
        });
        self.put(bare, prefs.clone());
        Ok(prefs)
    }

    /// Whether `host`/`user` keeps messages with `peer` (a bare JID). When
    /// storage cannot say, the message is kept: losing history is worse.
    pub async fn archives(
        &self,
        ctx: &Ctx,
        settings: &Settings,
        host: &str,
        user: &str,
        peer: &str,
    ) -> bool {
        let prefs = match self.get(ctx, settings, host, user).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "MAM preferences unreadable: archiving");
                return true;
            }
        };
        if prefs.never.iter().any(|j| j == peer) {
            return false;
        }
        if prefs.always.iter().any(|j| j == peer) {
            return true;
        }
        match prefs.default {
            Mode::Always => true,
            Mode::Never => false,
            Mode::Roster => match ctx.stores.roster.roster_item(host, user, peer).await {
                Ok(item) => item.is_some(),
                Err(e) => {
                    tracing::warn!(error = %e, "roster unreadable for MAM: archiving");
                    true
                }
            },
        }
    }

    /// The `<prefs/>` get.
    pub async fn get_iq(&self, req: &IqRequest<'_>, settings: &Settings) -> IqResult {
        let me = req.me.jid();
        let (host, user) = (me.domain(), me.local().unwrap_or_default());
        let prefs = self
            .get(req.ctx, settings, host, user)
            .await
            .map_err(internal)?;
        Ok(Some(element(&prefs)))
    }

    /// The `<prefs/>` set: replaces them all; the answer is what was kept.
    pub async fn set_iq(&self, req: &IqRequest<'_>) -> IqResult {
        let p = req.payload;
        let bad = |text: &str| Err(StanzaError::with_text(StanzaCondition::BadRequest, text));
        let Some(default) = p.attribute("default").and_then(Mode::parse) else {
            return bad("default must be always, roster or never");
        };
        let list = |name: &str| -> Result<Vec<String>, StanzaError> {
            let mut out = Vec::new();
            for j in p
                .children()
                .filter(|c| c.has_tag_name((NS_MAM, name)))
                .flat_map(|l| l.children().filter(|c| c.has_tag_name((NS_MAM, "jid"))))
            {
                let jid = Jid::parse(j.text().unwrap_or_default().trim()).map_err(|_| {
                    StanzaError::with_text(StanzaCondition::JidMalformed, "a bad JID in prefs")
                })?;
                let s = jid.to_string();
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            Ok(out)
        };
        let prefs = Prefs {
            default,
            always: list("always")?,
            never: list("never")?,
        };
        let me = req.me.jid();
        let (host, user) = (me.domain(), me.local().unwrap_or_default());
        let started = std::time::Instant::now();
        req.ctx
            .stores
            .mam
            .mam_prefs_set(host, user, &prefs.to_stored())
            .await
            .map_err(internal)?;
        req.ctx
            .instr
            .module_data("mam", "prefs", 1, started.elapsed());
        let answer = element(&prefs);
        self.put(me.bare(), Arc::new(prefs));
        Ok(Some(answer))
    }
}

fn element(p: &Prefs) -> El {
    let list = |name: &str, jids: &[String]| {
        jids.iter()
            .fold(El::new(name), |el, j| el.child(El::new("jid").text(j)))
    };
    El::new("prefs")
        .xmlns(NS_MAM)
        .attr("default", p.default.as_str())
        .child(list("always", &p.always))
        .child(list("never", &p.never))
}
