//! Software version (XEP-0092): the server's name and version, and the
//! operating system only when configured (it helps attackers more than
//! users, so it is off by default, as in Prosody).

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::{IqRequest, IqResult, Module, ModuleDef, Target};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{Hooks, IqHandler, IqType};
use crate::xml::El;

pub const NS_VERSION: &str = "jabber:iq:version";

pub const DEF: ModuleDef = ModuleDef {
    name: "version",
    build: |t| Ok(Arc::new(super::settings::<Version>(t)?)),
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Version {
    /// The name answered.
    pub name: String,
    /// Also answer with the operating system (`<os/>`).
    pub show_os: bool,
}

impl Default for Version {
    fn default() -> Self {
        Version {
            name: "Osprey".into(),
            show_os: false,
        }
    }
}

impl Module for Version {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.server_feature(NS_VERSION);
        hooks.iq(NS_VERSION, IqType::Both, &h::VERSION_GET, self);
    }
}

#[async_trait]
impl IqHandler for Version {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        if req.set {
            return Err(StanzaError::new(StanzaCondition::NotAllowed));
        }
        if !matches!(req.target, Target::Server) {
            return Err(StanzaError::new(StanzaCondition::ServiceUnavailable));
        }
        let mut q = El::new("query")
            .xmlns(NS_VERSION)
            .child(El::new("name").text(&self.name))
            .child(El::new("version").text(env!("CARGO_PKG_VERSION")));
        if self.show_os {
            q = q.child(El::new("os").text(std::env::consts::OS));
        }
        Ok(Some(q))
    }
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::TestServer;

    #[tokio::test]
    async fn answers_name_and_version_without_os() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "r").await;
        let r = t
            .iq(
                &a,
                "<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>",
            )
            .await;
        assert!(r.contains("<name>Osprey</name>"), "{r}");
        assert!(
            r.contains(&format!("<version>{}</version>", env!("CARGO_PKG_VERSION"))),
            "{r}"
        );
        assert!(!r.contains("<os>"), "{r}");
    }

    #[tokio::test]
    async fn configured_name_and_os() {
        let t = TestServer::new(&[("version", "name = 'Gw'\nshow_os = true")]).await;
        let a = t.session("alice", "r").await;
        let r = t
            .iq(
                &a,
                "<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>",
            )
            .await;
        assert!(r.contains("<name>Gw</name>") && r.contains("<os>"), "{r}");
    }

    #[tokio::test]
    async fn off_means_service_unavailable_and_no_feature() {
        let t = TestServer::new(&[("version", "enabled = false")]).await;
        let a = t.session("alice", "r").await;
        let r = t
            .iq(
                &a,
                "<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>",
            )
            .await;
        assert!(r.contains("service-unavailable"), "{r}");
        assert!(!t.ctx.hooks.server_features().contains(&"jabber:iq:version"));
    }
}
