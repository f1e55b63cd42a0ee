//! Last activity (XEP-0012). To the server: its uptime in seconds. To an
//! account's bare JID, asked by the account itself or by a contact with a
//! subscription to its presence (`from` or `both` on the account's side):
//! 0 while it has a session, else the seconds since its last session
//! closed, with the status of its last unavailable presence. A contact
//! without that subscription gets `forbidden`; an account that does not
//! exist (or never logged out) `service-unavailable`, as ejabberd answers,
//! so a stranger cannot tell them apart.
//!
//! The logout is recorded when a session closes (`last_activity` table);
//! removing the account removes it.

use std::sync::Arc;

use async_trait::async_trait;

use super::roster::internal;
use super::{IqRequest, IqResult, Module, ModuleDef, NoSettings, Target};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{Flow, Hooks, IqHandler, IqType, SendCx, SendHook, SessionEvent, SessionHook};
use crate::router;
use crate::server::Ctx;
use crate::session::Session;
use crate::stanza::{Kind, Stanza};
use crate::storage::{LastActivity, Subscription};
use crate::xml::El;

pub const NS_LAST: &str = "jabber:iq:last";

pub const DEF: ModuleDef = ModuleDef {
    name: "last",
    build: |t| {
        super::settings::<NoSettings>(t)?;
        Ok(Arc::new(Last))
    },
};

pub struct Last;

/// Per session: the status text of its latest unavailable broadcast
/// presence (cleared by an available one).
#[derive(Default)]
struct LastStatus(Option<String>);

impl Module for Last {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.server_feature(NS_LAST);
        hooks.account_feature(NS_LAST);
        hooks.iq(NS_LAST, IqType::Both, &h::LAST_GET, self.clone());
        // Before the presence module, which consumes the stanza.
        hooks.user_send(Kind::Presence, -10, &h::LAST_PRESENCE, self.clone());
        hooks.session(0, &h::LAST_CLOSED, self);
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn answer(seconds: u64, status: &str) -> El {
    let q = El::new("query")
        .xmlns(NS_LAST)
        .attr("seconds", &seconds.to_string());
    if status.is_empty() {
        q
    } else {
        q.text(status)
    }
}

#[async_trait]
impl SendHook for Last {
    async fn send(&self, cx: &mut SendCx<'_>, stanza: &Stanza) -> Flow {
        if stanza.to.is_some() {
            return Flow::Continue;
        }
        match stanza.el.attr("type") {
            None => cx.session.ext.entry::<LastStatus>().0 = None,
            Some("unavailable") => {
                let status = stanza
                    .el
                    .node()
                    .children()
                    .find(|c| c.is_element() && c.tag_name().name() == "status")
                    .and_then(|c| c.text())
                    .unwrap_or_default();
                cx.session.ext.entry::<LastStatus>().0 = Some(status.to_string());
            }
            _ => {}
        }
        Flow::Continue
    }
}

#[async_trait]
impl SessionHook for Last {
    async fn session(&self, ctx: &Arc<Ctx>, session: &mut Session, event: SessionEvent) {
        if event != SessionEvent::Closed {
            return;
        }
        let jid = session.handle.jid();
        let Some(user) = jid.local() else {
            return;
        };
        let status = session
            .ext
            .get::<LastStatus>()
            .and_then(|s| s.0.clone())
            .unwrap_or_default();
        let last = LastActivity {
            seconds: now_secs(),
            status,
        };
        if let Err(e) = ctx
            .stores
            .last
            .last_activity_set(jid.domain(), user, &last)
            .await
        {
            tracing::warn!(error = %e, "storing last activity failed");
        }
    }
}

/// An account's answer: 0 while it has a session, else its last logout.
async fn account_last(ctx: &Ctx, host: &str, user: &str) -> IqResult {
    let bare = format!("{user}@{host}");
    if !router::resources(ctx, &bare).is_empty() {
        return Ok(Some(answer(0, "")));
    }
    match ctx.stores.last.last_activity_get(host, user).await {
        Ok(Some(last)) => {
            let ago = u64::try_from(now_secs().saturating_sub(last.seconds)).unwrap_or(0);
            Ok(Some(answer(ago, &last.status)))
        }
        Ok(None) => Err(StanzaError::new(StanzaCondition::ServiceUnavailable)),
        Err(e) => Err(internal(e)),
    }
}

#[async_trait]
impl IqHandler for Last {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        if req.set {
            return Err(StanzaError::new(StanzaCondition::NotAllowed));
        }
        let ctx = req.ctx;
        match req.target {
            Target::Server => {
                let up = ctx.started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
                Ok(Some(answer(up, "")))
            }
            Target::OwnAccount => {
                let me = req.me.jid();
                let user = me.local().unwrap_or_default();
                account_last(ctx, me.domain(), user).await
            }
            Target::OtherAccount(jid) => {
                let unavailable = || StanzaError::new(StanzaCondition::ServiceUnavailable);
                let (host, Some(user)) = (jid.domain(), jid.local()) else {
                    return Err(unavailable());
                };
                match ctx.stores.accounts.account_exists(host, user).await {
                    Ok(true) => {}
                    Ok(false) => return Err(unavailable()),
                    Err(e) => return Err(internal(e)),
                }
                let item = ctx
                    .stores
                    .roster
                    .roster_item(host, user, req.me.bare())
                    .await
                    .map_err(internal)?;
                let subscribed = item.is_some_and(|i| {
                    matches!(i.subscription, Subscription::From | Subscription::Both)
                });
                if !subscribed {
                    return Err(StanzaError::new(StanzaCondition::Forbidden));
                }
                account_last(ctx, host, user).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::TestServer;
    use crate::storage::{
        AccountStore, LastActivity, LastActivityStore, RosterItem, RosterStore, Subscription,
    };

    fn query(to: &str, id: &str) -> String {
        format!("<iq type='get' id='{id}' to='{to}'><query xmlns='jabber:iq:last'/></iq>")
    }

    async fn subscribe(t: &TestServer, owner: &str, contact: &str, subscription: Subscription) {
        t.add_account(owner);
        t.store
            .roster_put(
                "localhost",
                owner,
                &RosterItem {
                    jid: format!("{contact}@localhost"),
                    name: None,
                    subscription,
                    ask: false,
                    groups: Vec::new(),
                },
            )
            .await
            .expect("roster");
    }

    #[tokio::test]
    async fn server_answers_its_uptime() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "r").await;
        let r = t.iq(&a, &query("localhost", "u")).await;
        assert!(
            r.contains("type='result'") && r.contains("seconds='"),
            "{r}"
        );
        assert!(r.contains("jabber:iq:last"), "{r}");
        assert!(t.ctx.hooks.server_features().contains(&"jabber:iq:last"));
        let r = t
            .iq(
                &a,
                "<iq type='set' id='s' to='localhost'><query xmlns='jabber:iq:last'/></iq>",
            )
            .await;
        assert!(r.contains("not-allowed"), "{r}");
    }

    #[tokio::test]
    async fn subscribed_contact_sees_online_then_last_logout_with_status() {
        let t = TestServer::new(&[]).await;
        subscribe(&t, "bob", "alice", Subscription::From).await;
        let a = t.session("alice", "r").await;
        let b = t.session("bob", "r").await;
        let r = t.iq(&a, &query("bob@localhost", "1")).await;
        assert!(r.contains("seconds='0'"), "{r}");
        t.send(&b, "<presence/>").await;
        t.send(
            &b,
            "<presence type='unavailable'><status>Gone fishing</status></presence>",
        )
        .await;
        t.close(b).await;
        let stored = t
            .store
            .last_activity_get("localhost", "bob")
            .await
            .expect("get")
            .expect("recorded");
        assert_eq!(stored.status, "Gone fishing");
        // An old logout: the seconds since it.
        t.store
            .last_activity_set(
                "localhost",
                "bob",
                &LastActivity {
                    seconds: stored.seconds - 900,
                    status: stored.status.clone(),
                },
            )
            .await
            .expect("set");
        let r = t.iq(&a, &query("bob@localhost", "2")).await;
        assert!(r.contains("type='result'"), "{r}");
        assert!(r.contains(">Gone fishing</query>"), "{r}");
        let secs: u64 = r
            .split("seconds='")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .and_then(|s| s.parse().ok())
            .expect("seconds");
        assert!((900..960).contains(&secs), "{r}");
    }

    #[tokio::test]
    async fn a_session_without_unavailable_status_stores_empty_text() {
        let t = TestServer::new(&[]).await;
        subscribe(&t, "bob", "alice", Subscription::Both).await;
        let a = t.session("alice", "r").await;
        let b = t.session("bob", "r").await;
        t.send(
            &b,
            "<presence type='unavailable'><status>x</status></presence>",
        )
        .await;
        // Available again: the earlier status no longer counts.
        t.send(&b, "<presence/>").await;
        t.close(b).await;
        let r = t.iq(&a, &query("bob@localhost", "1")).await;
        assert!(r.contains("type='result'"), "{r}");
        assert!(r.contains("/>") && !r.contains("</query>"), "{r}");
    }

    #[tokio::test]
    async fn strangers_are_refused_and_unknown_accounts_unavailable() {
        let t = TestServer::new(&[]).await;
        // Bob's side `to` (he sees alice, she does not see him): not enough.
        subscribe(&t, "bob", "alice", Subscription::To).await;
        let a = t.session("alice", "r").await;
        let b = t.session("bob", "r").await;
        t.close(b).await;
        let r = t.iq(&a, &query("bob@localhost", "1")).await;
        assert!(r.contains("forbidden"), "{r}");
        let r = t.iq(&a, &query("nobody@localhost", "2")).await;
        assert!(r.contains("service-unavailable"), "{r}");
        // An account that never logged out: the same answer.
        subscribe(&t, "carol", "alice", Subscription::Both).await;
        let r = t.iq(&a, &query("carol@localhost", "3")).await;
        assert!(r.contains("service-unavailable"), "{r}");
        // Asking about oneself while online.
        let r = t.iq(&a, &query("alice@localhost", "4")).await;
        assert!(r.contains("seconds='0'"), "{r}");
    }

    #[tokio::test]
    async fn removing_the_account_removes_its_last_activity() {
        let t = TestServer::new(&[]).await;
        let b = t.session("bob", "r").await;
        t.close(b).await;
        assert!(t
            .store
            .last_activity_get("localhost", "bob")
            .await
            .expect("get")
            .is_some());
        assert!(t
            .store
            .remove_account("localhost", "bob")
            .await
            .expect("remove"));
        assert!(t
            .store
            .last_activity_get("localhost", "bob")
            .await
            .expect("get")
            .is_none());
    }

    #[tokio::test]
    async fn off_means_service_unavailable_and_no_feature() {
        let t = TestServer::new(&[("last", "enabled = false")]).await;
        let a = t.session("alice", "r").await;
        let r = t.iq(&a, &query("localhost", "1")).await;
        assert!(r.contains("service-unavailable"), "{r}");
        assert!(!t.ctx.hooks.server_features().contains(&"jabber:iq:last"));
        let b = t.session("bob", "r").await;
        t.close(b).await;
        assert!(t
            .store
            .last_activity_get("localhost", "bob")
            .await
            .expect("get")
            .is_none());
    }
}
