//! Client state indication (XEP-0352): a client says it is `<inactive/>`
//! (screen off, app in the background) or `<active/>` again. While it is
//! inactive, availability presence addressed to it is held back: only the
//! latest presence per sender is kept (a newer one supersedes it), up to
//! `max_buffered` senders. The held presences go out, in arrival order,
//! before the next message or IQ, before any other presence (subscription
//! requests, errors), when the buffer overflows, or when the client becomes
//! active again. Nothing else is delayed.
//!
//! The state lives in the session (`Session::ext`), so it survives a
//! XEP-0198 resume with the session.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Module, ModuleDef};
use crate::config::Config;
use crate::errors::SessionEnd;
use crate::events::handlers as h;
use crate::hooks::{
    FeaturesCx, FeaturesHook, Flow, Hooks, Nonza, NonzaCx, NonzaHook, WriteCx, WriteHook,
};
use crate::stanza::Kind;
use crate::xml::{El, Element};

pub const NS_CSI: &str = "urn:xmpp:csi:0";

pub const DEF: ModuleDef = ModuleDef {
    name: "csi",
    build: |t| Ok(Arc::new(super::settings::<Csi>(t)?)),
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Csi {
    /// Presences (distinct senders) held for an inactive client; one more
    /// flushes them all.
    pub max_buffered: usize,
}

impl Default for Csi {
    fn default() -> Self {
        Csi { max_buffered: 100 }
    }
}

/// Per session: the client's state and the presences held back.
#[derive(Default)]
struct State {
    inactive: bool,
    /// (sender, presence), in arrival order of the latest per sender.
    held: Vec<(String, String)>,
}

impl Module for Csi {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.stream_features(&h::CSI_FEATURES, self.clone());
        hooks.nonza(NS_CSI, &h::CSI_STATE, self.clone());
        // Early: what is held back is neither counted nor acknowledged
        // (XEP-0198) until it is really written.
        hooks.write(-100, &h::CSI_FILTER, self);
    }
}

impl FeaturesHook for Csi {
    fn features(&self, cx: &FeaturesCx<'_>, out: &mut Vec<El>) {
        if cx.authenticated {
            out.push(El::new("csi").xmlns(NS_CSI));
        }
    }
}

#[async_trait]
impl NonzaHook for Csi {
    async fn nonza(&self, cx: &mut NonzaCx<'_>) -> Result<Nonza, SessionEnd> {
        // Before a resource is bound there is nothing to filter.
        let Some(session) = cx.session.as_deref_mut() else {
            return Ok(Nonza::Handled);
        };
        match cx.el.name() {
            "inactive" => session.ext.entry::<State>().inactive = true,
            "active" => {
                if let Some(state) = session.ext.get_mut::<State>() {
                    state.inactive = false;
                    // Written through the write hooks after this returns;
                    // the state is active by then, so they pass.
                    cx.replies
                        .extend(std::mem::take(&mut state.held).into_iter().map(|(_, x)| x));
                }
            }
            _ => {}
        }
        Ok(Nonza::Handled)
    }
}

impl WriteHook for Csi {
    fn active(&self, ext: &crate::session::Extensions) -> bool {
        ext.get::<State>().is_some_and(|s| s.inactive)
    }

    fn write(&self, cx: &mut WriteCx<'_>) -> Flow {
        let Some(kind) = cx.kind else {
            return Flow::Continue;
        };
        let Some(state) = cx.ext.get_mut::<State>().filter(|s| s.inactive) else {
            return Flow::Continue;
        };
        if kind == Kind::Presence {
            if let Some(from) = holdable(cx.xml) {
                if let Some(i) = state.held.iter().position(|(f, _)| *f == from) {
                    // Superseded: only the latest presence of a sender counts.
                    state.held.remove(i);
                } else if state.held.len() >= self.max_buffered {
                    cx.prepend = std::mem::take(&mut state.held)
                        .into_iter()
                        .map(|(_, x)| x)
                        .collect();
                    return Flow::Continue;
                }
                state.held.push((from, cx.xml.to_string()));
                return Flow::Handled;
            }
        }
        // A message, an IQ or a presence that must not wait: what is held
        // goes first, so the client sees stanzas in order.
        cx.prepend = std::mem::take(&mut state.held)
            .into_iter()
            .map(|(_, x)| x)
            .collect();
        Flow::Continue
    }
}

/// The sender of an availability presence (no type, or `unavailable`),
/// which may wait; `None` for any other presence.
fn holdable(xml: &str) -> Option<String> {
    let el = Element::parse(xml).ok()?;
    match el.attr("type") {
        None | Some("unavailable") => Some(el.attr("from").unwrap_or_default().to_string()),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::NS_CSI;
    use crate::hooks::{FeaturesCx, NonzaCx};
    use crate::modules::testing::{TestServer, TestSession};
    use crate::xml::Element;

    /// Sends a CSI nonza as the c2s loop would; returns what was written
    /// back (through the session's write hooks).
    async fn nonza(t: &TestServer, s: &TestSession, name: &str) -> Vec<String> {
        let el = Element::parse(&format!("<{name} xmlns='{NS_CSI}'/>")).expect("nonza");
        let mut session = s.session.lock().await;
        let account = session.handle.jid().to_bare();
        let replies = {
            let mut cx = NonzaCx {
                ctx: &t.ctx,
                el: &el,
                session: Some(&mut *session),
                account: &account,
                replies: Vec::new(),
            };
            let r = t.ctx.hooks.run_nonza(NS_CSI, &mut cx).await;
            assert!(matches!(r, Some(Ok(_))));
            cx.replies
        };
        let mut batch = crate::session::Batch::default();
        for x in &replies {
            session.encode(&t.ctx, x, &mut batch);
        }
        batch.unwritten(0).map(str::to_string).collect()
    }

    fn features(t: &TestServer, authenticated: bool) -> Vec<String> {
        let cx = FeaturesCx {
            ctx: &t.ctx,
            host: "localhost",
            authenticated,
            tls: true,
        };
        t.ctx
            .hooks
            .run_features(&cx)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[tokio::test]
    async fn feature_only_after_authentication() {
        let t = TestServer::new(&[]).await;
        assert!(features(&t, true).iter().any(|f| f.contains(NS_CSI)));
        assert!(!features(&t, false).iter().any(|f| f.contains(NS_CSI)));
        let t = TestServer::new(&[("csi", "enabled = false")]).await;
        assert!(!features(&t, true).iter().any(|f| f.contains(NS_CSI)));
    }

    #[tokio::test]
    async fn active_client_gets_presence_at_once() {
        let t = TestServer::new(&[]).await;
        let alice = t.session("alice", "a").await;
        let bob = t.session("bob", "b").await;
        nonza(&t, &alice, "active").await;
        t.send(&bob, "<presence to='alice@localhost/a'/>").await;
        assert_eq!(t.take_all(&alice).len(), 1);
    }

    #[tokio::test]
    async fn inactive_holds_latest_presence_per_sender_until_a_message() {
        let t = TestServer::new(&[]).await;
        let alice = t.session("alice", "a").await;
        let bob = t.session("bob", "b").await;
        let carol = t.session("carol", "c").await;
        assert!(nonza(&t, &alice, "inactive").await.is_empty());
        t.send(&bob, "<presence to='alice@localhost/a' id='b1'/>")
            .await;
        t.send(&carol, "<presence to='alice@localhost/a' id='c1'/>")
            .await;
        t.send(
            &bob,
            "<presence to='alice@localhost/a' id='b2'><show>away</show></presence>",
        )
        .await;
        assert!(t.take_all(&alice).is_empty());
        t.send(
            &bob,
            "<message to='alice@localhost/a' type='chat' id='m'><body>hi</body></message>",
        )
        .await;
        let out = t.take_all(&alice);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].contains("id='c1'"), "{out:?}");
        assert!(out[1].contains("id='b2'"), "{out:?}");
        assert!(out[2].contains("id='m'"), "{out:?}");
        // Flushed: the next message comes alone.
        t.send(
            &bob,
            "<message to='alice@localhost/a' type='chat' id='m2'><body>2</body></message>",
        )
        .await;
        assert_eq!(t.take_all(&alice).len(), 1);
    }

    #[tokio::test]
    async fn active_flushes_and_stops_holding() {
        let t = TestServer::new(&[]).await;
        let alice = t.session("alice", "a").await;
        let bob = t.session("bob", "b").await;
        nonza(&t, &alice, "inactive").await;
        t.send(&bob, "<presence to='alice@localhost/a' id='p1'/>")
            .await;
        assert!(t.take_all(&alice).is_empty());
        let flushed = nonza(&t, &alice, "active").await;
        assert_eq!(flushed.len(), 1, "{flushed:?}");
        assert!(flushed[0].contains("id='p1'"));
        t.send(&bob, "<presence to='alice@localhost/a' id='p2'/>")
            .await;
        assert_eq!(t.take_all(&alice).len(), 1);
    }

    #[tokio::test]
    async fn overflow_flushes_everything() {
        let t = TestServer::new(&[("csi", "max_buffered = 2")]).await;
        let alice = t.session("alice", "a").await;
        let bob = t.session("bob", "b1").await;
        let bob2 = t.session("bob", "b2").await;
        let carol = t.session("carol", "c").await;
        nonza(&t, &alice, "inactive").await;
        t.send(&bob, "<presence to='alice@localhost/a' id='1'/>")
            .await;
        t.send(&bob2, "<presence to='alice@localhost/a' id='2'/>")
            .await;
        assert!(t.take_all(&alice).is_empty());
        t.send(&carol, "<presence to='alice@localhost/a' id='3'/>")
            .await;
        let out = t.take_all(&alice);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].contains("id='1'") && out[2].contains("id='3'"));
    }

    #[tokio::test]
    async fn an_iq_flushes_held_presence_first() {
        let t = TestServer::new(&[]).await;
        let alice = t.session("alice", "a").await;
        let bob = t.session("bob", "b").await;
        nonza(&t, &alice, "inactive").await;
        t.send(&bob, "<presence to='alice@localhost/a' id='p'/>")
            .await;
        t.send(
            &bob,
            "<iq to='alice@localhost/a' type='get' id='q'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await;
        let out = t.take_all(&alice);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].contains("id='p'") && out[1].contains("id='q'"));
    }

    #[tokio::test]
    async fn nonza_before_bind_is_ignored() {
        let t = TestServer::new(&[]).await;
        let el = Element::parse(&format!("<inactive xmlns='{NS_CSI}'/>")).expect("el");
        let account = crate::jid::Jid::parse("alice@localhost").expect("jid");
        let mut cx = NonzaCx {
            ctx: &t.ctx,
            el: &el,
            session: None,
            account: &account,
            replies: Vec::new(),
        };
        assert!(matches!(
            t.ctx.hooks.run_nonza(NS_CSI, &mut cx).await,
            Some(Ok(_))
        ));
        assert!(cx.replies.is_empty());
    }
}
