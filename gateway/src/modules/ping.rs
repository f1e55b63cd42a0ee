//! XMPP ping (XEP-0199): the server and an account's own bare JID answer.

use std::sync::Arc;

use async_trait::async_trait;

use super::{IqRequest, IqResult, Module, ModuleDef, NoSettings, Target};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{Hooks, IqHandler, IqType};

pub const NS_PING: &str = "urn:xmpp:ping";

pub const DEF: ModuleDef = ModuleDef {
    name: "ping",
    build: |t| {
        super::settings::<NoSettings>(t)?;
        Ok(Arc::new(Ping))
    },
};

pub struct Ping;

impl Module for Ping {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.server_feature(NS_PING);
        hooks.iq(NS_PING, IqType::Both, &h::PING_GET, self);
    }
}

#[async_trait]
impl IqHandler for Ping {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        if req.set {
            return Err(StanzaError::new(StanzaCondition::FeatureNotImplemented));
        }
        match req.target {
            Target::Server | Target::OwnAccount => Ok(None),
            Target::OtherAccount(_) => Err(StanzaError::new(StanzaCondition::ServiceUnavailable)),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::TestServer;

    #[tokio::test]
    async fn server_and_own_account_answer_others_do_not() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "r").await;
        let r = t
            .iq(
                &a,
                "<iq type='get' id='1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            )
            .await;
        assert!(r.contains("type='result'"), "{r}");
        let r = t
            .iq(
                &a,
                "<iq type='get' id='2'><ping xmlns='urn:xmpp:ping'/></iq>",
            )
            .await;
        assert!(r.contains("type='result'"), "{r}");
        t.add_account("bob");
        let r = t
            .iq(
                &a,
                "<iq type='get' id='3' to='bob@localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            )
            .await;
        assert!(r.contains("service-unavailable"), "{r}");
        let r = t
            .iq(
                &a,
                "<iq type='set' id='4' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            )
            .await;
        assert!(r.contains("feature-not-implemented"), "{r}");
    }
}
