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
//! - XEP-0153: an available presence the user broadcasts carries
//!   `<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>` with the
//!   stored hash (an empty `<photo/>` for a vCard without one; nothing
//!   added before a vCard is stored), replacing any the client put there
//!   (`presence_hash = false` turns this off). Hashes are cached per
//!   account (bounded) and updated on set.
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
use crate::hooks::{Hooks, IqHandler, IqType, PresenceHook};
use crate::jid::Jid;
use crate::server::Ctx;
use crate::storage::StoredVcard;
use crate::xml::{El, Element};

/// XEP-0153.
pub const NS_VCARD_UPDATE: &str = "vcard-temp:x:update";
/// Accounts whose photo hash is cached.
const HASH_CACHE: usize = 100_000;

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
    /// XEP-0153: the photo hash in the user's broadcast presence.
    pub presence_hash: bool,
    /// bare JID → the stored hash ("" without a photo), `None` without a vCard.
    #[serde(skip)]
    hashes: dashmap::DashMap<String, Option<String>>,
}

impl Default for Vcard {
    fn default() -> Self {
        Vcard {
            max_bytes: 64 * 1024,
            presence_hash: true,
            hashes: dashmap::DashMap::new(),
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
        if self.presence_hash {
            hooks.presence_out(&h::VCARD_PRESENCE, self.clone());
        }
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
    let started = std::time::Instant::now();
    let v = req
        .ctx
        .stores
        .vcard
        .vcard_get(host, user)
        .await
        .map_err(internal)?;
    req.ctx.instr.module_data(
        "vcard",
        "queried",
        u64::from(v.is_some()),
        started.elapsed(),
    );
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
        let started = std::time::Instant::now();
        ctx.stores
            .vcard
            .vcard_set(me.domain(), me.local().unwrap_or_default(), &vcard)
            .await
            .map_err(internal)?;
        ctx.instr
            .module_data("vcard", "stored", 1, started.elapsed());
        self.remember(me.bare(), vcard.photo_hash);
        Ok(None)
    }
}

impl Vcard {
    fn remember(&self, bare: String, hash: Option<String>) {
        if self.hashes.len() >= HASH_CACHE {
            self.hashes.clear();
        }
        self.hashes.insert(bare, hash);
    }
}

#[async_trait]
impl PresenceHook for Vcard {
    async fn broadcast(&self, ctx: &Ctx, owner: &Jid, xml: &mut String) {
        let bare = owner.bare();
        let cached = self.hashes.get(&bare).map(|h| h.clone());
        let hash = match cached {
            Some(h) => h,
            None => {
                let (host, user) = (owner.domain(), owner.local().unwrap_or_default());
                match ctx.stores.vcard.vcard_get(host, user).await {
                    Ok(v) => {
                        let h = v.map(|v| v.photo_hash.unwrap_or_default());
                        self.remember(bare, h.clone());
                        h
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "vCard unreadable: presence sent without its photo hash");
                        return;
                    }
                }
            }
        };
        if let Some(hash) = hash {
            if let Some(out) = with_photo(xml, &hash) {
                *xml = out;
            }
        }
    }
}

/// The presence with `<x xmlns='vcard-temp:x:update'><photo>hash</photo></x>`
/// in place of any such `<x/>` it had.
fn with_photo(xml: &str, hash: &str) -> Option<String> {
    let el = Element::parse(xml).ok()?;
    let off = el.offset();
    let mut cut: Vec<std::ops::Range<usize>> = el
        .node()
        .children()
        .filter(|c| c.has_tag_name((NS_VCARD_UPDATE, "x")))
        .map(|c| c.range().start - off..c.range().end - off)
        .collect();
    cut.sort_by_key(|r| r.start);
    let mut kept = String::with_capacity(xml.len() + 80);
    let mut at = 0;
    for r in cut {
        kept.push_str(&xml[at..r.start]);
        at = r.end;
    }
    kept.push_str(&xml[at..]);
    let photo = El::new("x")
        .xmlns(NS_VCARD_UPDATE)
        .child(if hash.is_empty() {
            El::new("photo")
        } else {
            El::new("photo").text(hash)
        })
        .to_string();
    if let Some(close) = kept.rfind("</presence>") {
        kept.insert_str(close, &photo);
    } else {
        // `<presence .../>`: opened up.
        let end = kept.trim_end().strip_suffix("/>")?.len();
        kept.truncate(end);
        kept.push('>');
        kept.push_str(&photo);
        kept.push_str("</presence>");
    }
    Some(kept)
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

    #[tokio::test]
    async fn presence_carries_the_photo_hash() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        // No vCard yet: presence unchanged.
        t.send(&a, "<presence/>").await;
        let out = t.take_all(&a).join("");
        assert!(!out.contains("vcard-temp:x:update"), "{out}");
        let r = set(&t, &a, "s", None, PHOTO).await;
        assert!(r.contains("type='result'"), "{r}");
        // A client's own (stale) hash is replaced by the stored one.
        t.send(
            &a,
            "<presence><show>away</show><x xmlns='vcard-temp:x:update'><photo>stale</photo></x></presence>",
        )
        .await;
        let out = t.take_all(&a).join("");
        assert!(
            out.contains(&format!(
                "<x xmlns='vcard-temp:x:update'><photo>{HELLO_SHA1}</photo></x>"
            )),
            "{out}"
        );
        assert!(
            !out.contains("stale") && out.contains("<show>away</show>"),
            "{out}"
        );
        // A vCard without a photo: an empty <photo/>.
        let r = set(&t, &a, "s2", None, CARD).await;
        assert!(r.contains("type='result'"), "{r}");
        t.send(&a, "<presence/>").await;
        let out = t.take_all(&a).join("");
        assert!(
            out.contains("<x xmlns='vcard-temp:x:update'><photo/></x>"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn presence_hash_can_be_turned_off() {
        let t = TestServer::new(&[("vcard", "presence_hash = false")]).await;
        let a = t.session("alice", "a").await;
        let r = set(&t, &a, "s", None, PHOTO).await;
        assert!(r.contains("type='result'"), "{r}");
        t.send(&a, "<presence/>").await;
        let out = t.take_all(&a).join("");
        assert!(!out.contains("vcard-temp:x:update"), "{out}");
    }
}
