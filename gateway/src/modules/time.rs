//! Entity time (XEP-0202): the server answers with its time zone offset
//! and the current time in UTC (XEP-0082). A request to a user's full JID
//! is routed to that client like any other IQ; only the server's domain is
//! answered here.

use std::sync::Arc;

use async_trait::async_trait;

use super::{IqRequest, IqResult, Module, ModuleDef, NoSettings, Target};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{Hooks, IqHandler, IqType};
use crate::xml::El;

pub const NS_TIME: &str = "urn:xmpp:time";

pub const DEF: ModuleDef = ModuleDef {
    name: "time",
    build: |t| {
        super::settings::<NoSettings>(t)?;
        Ok(Arc::new(Time))
    },
};

pub struct Time;

impl Module for Time {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.server_feature(NS_TIME);
        hooks.iq(NS_TIME, IqType::Both, &h::TIME_GET, self);
    }
}

/// XEP-0082 DateTime in UTC, to the second: `2026-12-02T20:09:03Z`.
pub fn utc_now() -> String {
    xep0082(time::OffsetDateTime::now_utc())
}

fn xep0082(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[async_trait]
impl IqHandler for Time {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        if req.set {
            return Err(StanzaError::new(StanzaCondition::NotAllowed));
        }
        if !matches!(req.target, Target::Server) {
            return Err(StanzaError::new(StanzaCondition::ServiceUnavailable));
        }
        // The server keeps UTC: its offset is always +00:00.
        Ok(Some(
            El::new("time")
                .xmlns(NS_TIME)
                .child(El::new("tzo").text("+00:00"))
                .child(El::new("utc").text(&utc_now())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::TestServer;

    #[test]
    fn formats_xep_0082() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_165_550_315).expect("time");
        assert_eq!(super::xep0082(t), "2006-12-08T03:58:35Z");
    }

    #[tokio::test]
    async fn server_answers_tzo_and_utc() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "r").await;
        let r = t
            .iq(
                &a,
                "<iq type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>",
            )
            .await;
        assert!(r.contains("type='result'"), "{r}");
        assert!(r.contains("<tzo>+00:00</tzo>"), "{r}");
        let utc = r
            .split("<utc>")
            .nth(1)
            .and_then(|s| s.split("</utc>").next())
            .expect("utc");
        assert_eq!(utc.len(), 20, "{utc}");
        assert!(utc.ends_with('Z') && utc.as_bytes()[10] == b'T', "{utc}");
        assert!(t.ctx.hooks.server_features().contains(&"urn:xmpp:time"));
        // Not for an account's bare JID, and never a set.
        t.add_account("bob");
        let r = t
            .iq(
                &a,
                "<iq type='get' id='b' to='bob@localhost'><time xmlns='urn:xmpp:time'/></iq>",
            )
            .await;
        assert!(r.contains("service-unavailable"), "{r}");
        let r = t
            .iq(
                &a,
                "<iq type='set' id='s' to='localhost'><time xmlns='urn:xmpp:time'/></iq>",
            )
            .await;
        assert!(r.contains("not-allowed"), "{r}");
    }

    #[tokio::test]
    async fn off_means_service_unavailable_and_no_feature() {
        let t = TestServer::new(&[("time", "enabled = false")]).await;
        let a = t.session("alice", "r").await;
        let r = t
            .iq(
                &a,
                "<iq type='get' id='t' to='localhost'><time xmlns='urn:xmpp:time'/></iq>",
            )
            .await;
        assert!(r.contains("service-unavailable"), "{r}");
        assert!(!t.ctx.hooks.server_features().contains(&"urn:xmpp:time"));
    }

    #[test]
    fn unknown_key_is_refused() {
        let parsed = crate::config::Config::parse(
            "[general]\nhosts = ['localhost']\n[modules.time]\nzone = 'x'\n",
            std::path::Path::new("t.toml"),
        );
        let Err(err) = parsed else {
            panic!("an unknown key was accepted");
        };
        assert!(err.to_string().contains("modules.time.zone"), "{err}");
    }
}
