//! vcard-temp (XEP-0054): each account keeps one `<vCard/>` on the server.
//!
//! - get with no `to`, or to the user's own bare JID: the stored vCard, or
//!   an empty `<vCard xmlns='vcard-temp'/>`;
//! - get to another account's bare JID: that account's vCard (empty when it
//!   stored none); an unknown account is `service-unavailable`;
//! - get to the server: an empty vCard;
//! - set: only to oneself (else `forbidden`); stores the whole element,
//!   replacing the one there; larger than `max_bytes` (as serialised) is
//!   `not-acceptable` (counted in `limit_hit` as `vcard_bytes`);
//! - the SHA-1 hex of the decoded PHOTO/BINVAL ("" without a photo) is
//!   stored with it (XEP-0153's hash).
//!
//! The server advertises `vcard-temp` in disco#info.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use sha1::{Digest, Sha1};

use super::private::serialise;
use super::roster::internal;
use super::{IqRequest, IqResult, Module, ModuleDef, Target};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{Hooks, IqHandler, IqType};
use crate::storage::StoredVcard;
use crate::xml::El;

pub const NS_VCARD: &str = "vcard-temp";

pub const DEF: ModuleDef = ModuleDef {
    name: "vcard",
    build: |t| Ok(Arc::new(super::settings::<Vcard>(t)?)),
};

/// The module and its settings.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Vcard {
    /// The largest vCard stored, in bytes (as serialised).
    pub max_bytes: usize,
}

impl Default for Vcard {
    fn default() -> Self {
        Vcard {
            max_bytes: 64 * 1024,
        }
    }
}

impl Module for Vcard {
    fn register(self: Arc<Self>, hooks: &mut Hooks, config: &Config) {
        // A vCard arrives in one stanza: a limit above the largest stanza a
        // client may send can never be reached.
        if let Some(largest) = config.listen.c2s.iter().map(|l| l.max_stanza_size).max() {
            if self.max_bytes > largest {
                tracing::warn!(
                    max_bytes = self.max_bytes,
                    max_stanza_size = largest,
                    "modules.vcard.max_bytes is above the c2s max_stanza_size: \
                     larger vCards are refused as stanzas first"
                );
            }
        }
        hooks.server_feature(NS_VCARD);
        hooks.iq(NS_VCARD, IqType::Get, &h::VCARD_GET, self.clone());
        hooks.iq(NS_VCARD, IqType::Set, &h::VCARD_SET, self);
    }
}

fn empty() -> El {
    El::new("vCard").xmlns(NS_VCARD)
}

/// XEP-0153: the SHA-1 hex of the decoded PHOTO/BINVAL, "" without one
/// (or with one that is not base64).
pub fn photo_hash(vcard: roxmltree::Node<'_, '_>) -> String {
    let binval = vcard
        .children()
        .find(|c| c.has_tag_name((NS_VCARD, "PHOTO")))
        .and_then(|p| p.children().find(|c| c.has_tag_name((NS_VCARD, "BINVAL"))));
    let Some(binval) = binval else {
        return String::new();
    };
    let text: String = binval
        .text()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    match base64::engine::general_purpose::STANDARD.decode(text) {
        Ok(bytes) if !bytes.is_empty() => hex::encode(Sha1::digest(&bytes)),
        _ => String::new(),
    }
}

async fn stored(req: &IqRequest<'_>, host: &str, user: &str) -> IqResult {
    let v = req
        .ctx
        .stores
        .vcard
        .vcard_get(host, user)
        .await
        .map_err(internal)?;
    Ok(Some(match v {
        Some(v) => answer(&v.xml)?,
        None => empty(),
    }))
}

/// The stored vCard as an element to send: its children re-serialised
/// under a fresh `<vCard xmlns='vcard-temp'/>` (it was stored that way).
fn answer(xml: &str) -> Result<El, StanzaError> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| {
        tracing::warn!(error = %e, "a stored vCard does not parse");
        StanzaError::new(StanzaCondition::InternalServerError)
    })?;
    let mut inner = String::new();
    for c in doc.root_element().children().filter(|c| c.is_element()) {
        serialise(c, Some(NS_VCARD), &mut inner);
    }
    Ok(if inner.is_empty() {
        empty()
    } else {
        empty().raw_child(&inner)
    })
}

#[async_trait]
impl IqHandler for Vcard {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        if !req.payload.has_tag_name((NS_VCARD, "vCard")) {
            return Err(StanzaError::with_text(
                StanzaCondition::BadRequest,
                "expected <vCard xmlns='vcard-temp'/>",
            ));
        }
        let ctx = req.ctx;
        if !req.set {
            return match req.target {
                Target::Server => Ok(Some(empty())),
                Target::OwnAccount => {
                    let me = req.me.jid();
                    stored(req, me.domain(), me.local().unwrap_or_default()).await
                }
                Target::OtherAccount(jid) => {
                    let unavailable = || StanzaError::new(StanzaCondition::ServiceUnavailable);
                    let (host, Some(user)) = (jid.domain(), jid.local()) else {
                        return Err(unavailable());
                    };
                    match ctx.stores.accounts.account_exists(host, user).await {
                        Ok(true) => stored(req, host, user).await,
                        Ok(false) => Err(unavailable()),
                        Err(e) => Err(internal(e)),
                    }
                }
            };
        }
        if !matches!(req.target, Target::OwnAccount) {
            return Err(StanzaError::with_text(
                StanzaCondition::Forbidden,
                "a vCard is set by its own account",
            ));
        }
        let mut xml = String::new();
        serialise(req.payload, None, &mut xml);
        if xml.len() > self.max_bytes {
            ctx.instr.limit("vcard_bytes");
            return Err(StanzaError::with_text(
                StanzaCondition::NotAcceptable,
                format!("a vCard holds at most {} bytes", self.max_bytes),
            ));
        }
        let vcard = StoredVcard {
            photo_hash: Some(photo_hash(req.payload)),
            xml,
        };
        let me = req.me.jid().to_bare();
        ctx.stores
            .vcard
            .vcard_set(me.domain(), me.local().unwrap_or_default(), &vcard)
            .await
            .map_err(internal)?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::{TestServer, TestSession};

    const CARD: &str = "<vCard xmlns='vcard-temp'><FN>Alice A.</FN><NICKNAME>al</NICKNAME></vCard>";
    /// "hello" in base64; its SHA-1 hex below.
    const PHOTO: &str = "<vCard xmlns='vcard-temp'><FN>P</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>aGVs\nbG8=</BINVAL></PHOTO></vCard>";
    const HELLO_SHA1: &str = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";

    async fn get(t: &TestServer, s: &TestSession, id: &str, to: Option<&str>) -> String {
        let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
        t.iq(
            s,
            &format!("<iq type='get' id='{id}'{to}><vCard xmlns='vcard-temp'/></iq>"),
        )
        .await
    }

    async fn set(
        t: &TestServer,
        s: &TestSession,
        id: &str,
        to: Option<&str>,
        card: &str,
    ) -> String {
        let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
        t.iq(s, &format!("<iq type='set' id='{id}'{to}>{card}</iq>"))
            .await
    }

    #[tokio::test]
    async fn set_get_replace_and_other_accounts() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let r = get(&t, &a, "g0", None).await;
        assert!(r.contains("<vCard xmlns='vcard-temp'/>"), "{r}");
        let r = set(&t, &a, "s1", None, CARD).await;
        assert!(r.contains("type='result'") && !r.contains("<vCard"), "{r}");
        let r = get(&t, &a, "g1", None).await;
        assert!(r.contains(CARD), "{r}");
        let r = get(&t, &a, "g2", Some("alice@localhost")).await;
        assert!(r.contains(CARD), "{r}");
        // Bob reads Alice's; his own is empty; he may not set hers.
        let b = t.session("bob", "b").await;
        let r = get(&t, &b, "g3", Some("alice@localhost")).await;
        assert!(r.contains(CARD), "{r}");
        let r = get(&t, &b, "g4", None).await;
        assert!(r.contains("<vCard xmlns='vcard-temp'/>"), "{r}");
        let r = get(&t, &a, "g5", Some("bob@localhost")).await;
        assert!(r.contains("<vCard xmlns='vcard-temp'/>"), "{r}");
        let r = set(
            &t,
            &b,
            "s2",
            Some("alice@localhost"),
            "<vCard xmlns='vcard-temp'/>",
        )
        .await;
        assert!(r.contains("forbidden"), "{r}");
        let r = set(
            &t,
            &b,
            "s3",
            Some("localhost"),
            "<vCard xmlns='vcard-temp'/>",
        )
        .await;
        assert!(r.contains("forbidden"), "{r}");
        // No such account; the server's own is empty.
        let r = get(&t, &a, "g6", Some("nobody@localhost")).await;
        assert!(r.contains("service-unavailable"), "{r}");
        let r = get(&t, &a, "g7", Some("localhost")).await;
        assert!(
            r.contains("type='result'") && r.contains("<vCard xmlns='vcard-temp'/>"),
            "{r}"
        );
        // Replacing, not merging.
        let r = set(
            &t,
            &a,
            "s4",
            None,
            "<vCard xmlns='vcard-temp'><FN>New</FN></vCard>",
        )
        .await;
        assert!(r.contains("type='result'"), "{r}");
        let r = get(&t, &a, "g8", None).await;
        assert!(
            r.contains("<vCard xmlns='vcard-temp'><FN>New</FN></vCard>") && !r.contains("NICKNAME"),
            "{r}"
        );
        assert!(t.ctx.hooks.server_features().contains(&"vcard-temp"));
    }

    #[tokio::test]
    async fn photo_hash_is_stored() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let r = set(&t, &a, "s", None, PHOTO).await;
        assert!(r.contains("type='result'"), "{r}");
        let v = t
            .ctx
            .stores
            .vcard
            .vcard_get("localhost", "alice")
            .await
            .expect("get");
        assert_eq!(v.and_then(|v| v.photo_hash).as_deref(), Some(HELLO_SHA1));
        let r = set(&t, &a, "s2", None, CARD).await;
        assert!(r.contains("type='result'"), "{r}");
        let v = t
            .ctx
            .stores
            .vcard
            .vcard_get("localhost", "alice")
            .await
            .expect("get");
        assert_eq!(v.and_then(|v| v.photo_hash).as_deref(), Some(""));
    }

    #[tokio::test]
    async fn size_limit_and_bad_payload() {
        let t = TestServer::new(&[("vcard", "max_bytes = 64")]).await;
        let a = t.session("alice", "a").await;
        let big = format!(
            "<vCard xmlns='vcard-temp'><FN>{}</FN></vCard>",
            "x".repeat(64)
        );
        let r = set(&t, &a, "b", None, &big).await;
        assert!(
            r.contains("not-acceptable") && r.contains("64 bytes"),
            "{r}"
        );
        let r = get(&t, &a, "g", None).await;
        assert!(r.contains("<vCard xmlns='vcard-temp'/>"), "{r}");
        let r = set(
            &t,
            &a,
            "w",
            None,
            "<vCard xmlns='vcard-temp'><FN>ok</FN></vCard>",
        )
        .await;
        assert!(r.contains("type='result'"), "{r}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        crate::modules::testing::assert_unknown_key_refused("vcard", "max_size = 1");
    }

    #[tokio::test]
    async fn off_means_service_unavailable_and_no_feature() {
        let t = TestServer::new(&[("vcard", "enabled = false")]).await;
        let a = t.session("alice", "a").await;
        let r = set(&t, &a, "s", None, CARD).await;
        assert!(r.contains("service-unavailable"), "{r}");
        let r = get(&t, &a, "g", None).await;
        assert!(r.contains("service-unavailable"), "{r}");
        assert!(!t.ctx.hooks.server_features().contains(&"vcard-temp"));
    }

    #[tokio::test]
    async fn removing_the_account_removes_its_vcard() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let r = set(&t, &a, "s", None, CARD).await;
        assert!(r.contains("type='result'"), "{r}");
        let store = &t.ctx.stores.vcard;
        assert!(store
            .vcard_get("localhost", "alice")
            .await
            .expect("get")
            .is_some());
        t.ctx
            .stores
            .accounts
            .remove_account("localhost", "alice")
            .await
            .expect("remove");
        assert!(store
            .vcard_get("localhost", "alice")
            .await
            .expect("get")
            .is_none());
    }
}
