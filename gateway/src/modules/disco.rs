//! Service discovery (XEP-0030) on the server and on accounts: the
//! features and identities every module registered.

use std::sync::Arc;

use async_trait::async_trait;

use super::{IqRequest, IqResult, Module, ModuleDef, NoSettings, Target};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{Hooks, Identity, IqHandler, IqType};
use crate::xml::El;

pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

pub const DEF: ModuleDef = ModuleDef {
    name: "disco",
    build: |t| {
        super::settings::<NoSettings>(t)?;
        Ok(Arc::new(Disco))
    },
};

pub struct Disco;

impl Module for Disco {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        for ns in [NS_DISCO_INFO, NS_DISCO_ITEMS] {
            hooks.server_feature(ns);
            hooks.account_feature(ns);
        }
        hooks.identity(Identity {
            category: "server",
            typ: "im",
            name: Some("Osprey"),
        });
        hooks.iq(NS_DISCO_INFO, IqType::Both, &h::DISCO_INFO, self.clone());
        hooks.iq(NS_DISCO_ITEMS, IqType::Both, &h::DISCO_ITEMS, self);
    }
}

#[async_trait]
impl IqHandler for Disco {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        if req.set {
            return Err(StanzaError::new(StanzaCondition::FeatureNotImplemented));
        }
        // We publish no nodes.
        if req.payload.attribute("node").is_some() {
            return Err(StanzaError::new(StanzaCondition::ItemNotFound));
        }
        if let Target::OtherAccount(jid) = req.target {
            let (Some(user), host) = (jid.local(), jid.domain()) else {
                return Err(StanzaError::new(StanzaCondition::ServiceUnavailable));
            };
            let exists = req
                .ctx
                .stores
                .accounts
                .account_exists(host, user)
                .await
                .map_err(super::roster::internal)?;
            if !exists {
                return Err(StanzaError::new(StanzaCondition::ServiceUnavailable));
            }
        }
        let ns = req.payload.tag_name().namespace().unwrap_or_default();
        let mut query = El::new("query").xmlns(ns);
        if ns == NS_DISCO_ITEMS {
            return Ok(Some(query));
        }
        let hooks = &req.ctx.hooks;
        let features = match req.target {
            Target::Server => {
                for i in hooks.identities() {
                    query = query.child(
                        El::new("identity")
                            .attr("category", i.category)
                            .attr("type", i.typ)
                            .attr_opt("name", i.name),
                    );
                }
                hooks.server_features()
            }
            Target::OwnAccount | Target::OtherAccount(_) => {
                query = query.child(
                    El::new("identity")
                        .attr("category", "account")
                        .attr("type", "registered"),
                );
                for i in hooks.account_identities() {
                    query = query.child(
                        El::new("identity")
                            .attr("category", i.category)
                            .attr("type", i.typ)
                            .attr_opt("name", i.name),
                    );
                }
                hooks.account_features()
            }
        };
        for f in features {
            query = query.child(El::new("feature").attr("var", f));
        }
        Ok(Some(query))
    }
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::TestServer;

    #[tokio::test]
    async fn server_info_lists_every_registered_feature() {
        let t = TestServer::new(&[]).await;
        let alice = t.session("alice", "r").await;
        let reply = t
            .iq(&alice, "<iq type='get' id='1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
            .await;
        for f in [
            "http://jabber.org/protocol/disco#info",
            "urn:xmpp:ping",
            "jabber:iq:version",
            "msgoffline",
        ] {
            assert!(reply.contains(&format!("var='{f}'")), "{f}: {reply}");
        }
        assert!(reply.contains("category='server'"), "{reply}");
    }

    #[tokio::test]
    async fn another_account_is_answered_only_if_it_exists() {
        let t = TestServer::new(&[]).await;
        let alice = t.session("alice", "r").await;
        t.add_account("bob");
        let reply = t
            .iq(&alice, "<iq type='get' id='1' to='bob@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
            .await;
        assert!(reply.contains("category='account'"), "{reply}");
        let reply = t
            .iq(&alice, "<iq type='get' id='2' to='nobody@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
            .await;
        assert!(reply.contains("service-unavailable"), "{reply}");
    }
}
