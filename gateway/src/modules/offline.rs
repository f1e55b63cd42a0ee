//! Offline messages (XEP-0160): stored when no resource can take a message,
//! delivered in order with a XEP-0203 delay stamp on the next available
//! presence of non-negative priority, and kept when a session dies with
//! messages still queued. A full store bounces (XEP-0160 §3).

use std::sync::Arc;

use async_trait::async_trait;

use super::roster::internal;
use super::{Module, ModuleDef, NoSettings};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{Flow, Hooks, OfflineHook, SendCx, SendHook};
use crate::jid::Jid;
use crate::router::{self, Routed};
use crate::server::Ctx;
use crate::stanza::{Kind, Stanza};
use crate::storage::OfflineStored;
use crate::xml::{append_child, El};

pub const NS_DELAY: &str = "urn:xmpp:delay";

/// Messages taken from storage at once. Small: if the connection breaks
/// mid-batch, the batch is stored again (duplicates rather than losses).
pub const BATCH: u32 = 20;

pub const DEF: ModuleDef = ModuleDef {
    name: "offline",
    build: |t| {
        super::settings::<NoSettings>(t)?;
        Ok(Arc::new(Offline))
    },
};

pub struct Offline;

impl Module for Offline {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.server_feature("msgoffline");
        hooks.offline(&h::OFFLINE_STORE, &h::OFFLINE_DELIVER, self.clone());
        // Before the presence module records the new presence: it must see
        // whether this is the session's initial presence.
        hooks.user_send(Kind::Presence, -10, &h::OFFLINE_INITIAL, self);
    }
}

#[async_trait]
impl SendHook for Offline {
    async fn send(&self, cx: &mut SendCx<'_>, st: &Stanza) -> Flow {
        let me = &cx.session.handle;
        let initial = st.to.is_none() && st.typ().is_none() && !me.is_available();
        if initial && priority(st) >= 0 {
            // The session task streams the store out after this stanza,
            // paced by the socket (not the bounded mailbox).
            me.offline_waiting();
        }
        Flow::Continue
    }
}

fn priority(st: &Stanza) -> i8 {
    st.el
        .node()
        .children()
        .find(|c| c.tag_name().name() == "priority")
        .and_then(|p| p.text())
        .and_then(|t| t.trim().parse::<i8>().ok())
        .unwrap_or(0)
}

#[async_trait]
impl OfflineHook for Offline {
    async fn store(&self, ctx: &Ctx, to: &Jid, xml: &str) -> Result<Routed, StanzaError> {
        let (host, Some(user)) = (to.domain(), to.local()) else {
            return Err(StanzaError::new(StanzaCondition::ServiceUnavailable));
        };
        let internal = |e: crate::storage::StorageError| {
            tracing::warn!(error = %e, "offline storage failed");
            StanzaError::new(StanzaCondition::InternalServerError)
        };
        let stores = &ctx.stores;
        if !stores
            .accounts
            .account_exists(host, user)
            .await
            .map_err(internal)?
        {
            return Err(StanzaError::new(StanzaCondition::ServiceUnavailable));
        }
        let max = ctx.config.general.max_offline_messages;
        let stored = stores
            .offline
            .offline_store(host, user, xml, max)
            .await
            .map_err(internal)?;
        match stored {
            OfflineStored::Stored { .. } => {
                // The user may have come online between the routing decision
                // and this commit, after its session took the store: that
                // session takes it again (else the message would wait for
                // the next login).
                for s in router::resources(ctx, &to.bare()) {
                    let p = s.presence();
                    if p.available && p.priority >= 0 {
                        if let Some(h) = s.local() {
                            h.offline_waiting();
                        }
                    }
                }
                Ok(Routed::StoredOffline)
            }
            OfflineStored::Full => Err({
                ctx.instr.limit("offline_full");
                // XEP-0160 with XEP-0013's quota, as ejabberd answers it.
                StanzaError::with_text(
                    StanzaCondition::ResourceConstraint,
                    "offline storage for this user is full",
                )
            }),
        }
    }

    /// The next batch, each with its XEP-0203 delay stamp. Removed from
    /// storage: the session writes them itself and stores them again if
    /// the write fails.
    async fn take(&self, ctx: &Ctx, owner: &Jid) -> Vec<String> {
        let (host, user) = (owner.domain(), owner.local().unwrap_or_default());
        let batch = match ctx.stores.offline.offline_take(host, user, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                let _ = internal(e);
                return Vec::new();
            }
        };
        batch
            .into_iter()
            .map(|msg| {
                let delay = El::new("delay")
                    .xmlns(NS_DELAY)
                    .attr("from", host)
                    .attr("stamp", &stamp(msg.stored_at_ms));
                append_child(&msg.stanza, &delay.to_string())
            })
            .collect()
    }
}

/// XEP-0082 date-time in UTC.
fn stamp(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::TestServer;

    #[test]
    fn stamp_is_utc_rfc3339() {
        assert_eq!(super::stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::stamp(1_500_000_000_123), "2017-07-14T02:40:00.123Z");
    }

    #[tokio::test]
    async fn kept_while_away_delivered_in_order_with_delay_on_initial_presence() {
        let t = TestServer::new(&[]).await;
        let bob = t.session("bob", "b").await;
        t.add_account("alice");
        for i in 0..3 {
            t.send(&bob, &format!("<message to='alice@localhost' type='chat' id='m{i}'><body>{i}</body></message>")).await;
        }
        let alice = t.session("alice", "a").await;
        t.send(&alice, "<presence/>").await;
        let got = t.offline_flush(&alice).await;
        assert_eq!(got.len(), 3, "{got:?}");
        for (i, m) in got.iter().enumerate() {
            assert!(
                m.contains(&format!("id='m{i}'")) && m.contains("urn:xmpp:delay"),
                "{m}"
            );
        }
        assert!(t.offline_flush(&alice).await.is_empty());
    }

    #[tokio::test]
    async fn full_store_bounces_and_unknown_user_is_unavailable() {
        let t = TestServer::with_general(&[], "max_offline_messages = 1").await;
        let bob = t.session("bob", "b").await;
        t.add_account("alice");
        t.send(
            &bob,
            "<message to='alice@localhost' type='chat' id='1'><body>a</body></message>",
        )
        .await;
        t.send(
            &bob,
            "<message to='alice@localhost' type='chat' id='2'><body>b</body></message>",
        )
        .await;
        let out = t.take_all(&bob);
        assert!(
            out.iter()
                .any(|x| x.contains("id='2'") && x.contains("resource-constraint")),
            "{out:?}"
        );
        t.send(
            &bob,
            "<message to='nobody@localhost' type='chat' id='3'><body>c</body></message>",
        )
        .await;
        let out = t.take_all(&bob);
        assert!(
            out.iter()
                .any(|x| x.contains("id='3'") && x.contains("service-unavailable")),
            "{out:?}"
        );
    }
}
