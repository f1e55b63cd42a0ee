//! Statistics per host: registered accounts, online sessions and users,
//! stanzas in and out since start (mongooseimctl's `stat` category).

use std::collections::HashMap;

use serde::Serialize;

use super::{run, AdminResult};
use crate::server::Ctx;

#[derive(Debug, Clone, Serialize)]
pub struct HostStats {
    pub host: String,
    pub registered_users: u64,
    pub online_sessions: usize,
    pub online_users: usize,
    /// Top-level elements received from and sent to clients since start
    /// (from the metric store; 0 without one).
    pub stanzas_in: u64,
    pub stanzas_out: u64,
}

pub async fn hosts(ctx: &Ctx, host: Option<&str>) -> AdminResult<Vec<HostStats>> {
    run(ctx, "stats_hosts", host.unwrap_or("*"), async {
        let hosts = match host {
            Some(h) => vec![super::served_host(ctx, h)?],
            None => ctx.config.general.hosts.clone(),
        };
        // Elements by (event, host), from the store's counters.
        let mut elements: HashMap<(&'static str, String), u64> = HashMap::new();
        if let Some(store) = ctx.instr.registry.store() {
            for r in store.read() {
                let (osprey_instrument::aggregate::Value::Counter(n), "count") = (&r.value, r.key)
                else {
                    continue;
                };
                if r.event != "xmpp_element_in" && r.event != "xmpp_element_out" {
                    continue;
                }
                // Stanzas only: not the stream's own negotiation elements.
                if r.labels
                    .iter()
                    .any(|(k, v)| *k == "kind" && v == "negotiation")
                {
                    continue;
                }
                if let Some((_, h)) = r.labels.iter().find(|(k, _)| *k == "host") {
                    *elements.entry((r.event, h.clone())).or_default() += n;
                }
            }
        }
        let sessions: Vec<_> = ctx
            .sessions
            .all()
            .into_iter()
            .filter_map(|s| s.local().cloned())
            .collect();
        let mut out = Vec::with_capacity(hosts.len());
        for host in hosts {
            let mine: Vec<_> = sessions
                .iter()
                .filter(|s| s.jid().domain() == host)
                .collect();
            let mut users: Vec<&str> = mine.iter().map(|s| s.bare()).collect();
            users.sort_unstable();
            users.dedup();
            out.push(HostStats {
                registered_users: ctx.storage.count_accounts(&host).await?,
                online_sessions: mine.len(),
                online_users: users.len(),
                stanzas_in: elements
                    .get(&("xmpp_element_in", host.clone()))
                    .copied()
                    .unwrap_or(0),
                stanzas_out: elements
                    .get(&("xmpp_element_out", host.clone()))
                    .copied()
                    .unwrap_or(0),
                host,
            });
        }
        Ok(out)
    })
    .await
}
