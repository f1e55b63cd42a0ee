//! Private XML storage (XEP-0049): a user keeps arbitrary XML on the
//! server, one element per namespace of the element (`jabber:iq:private`).
//!
//! - set: each child of `<query/>` is stored under its namespace, replacing
//!   what was there; several children are stored all or none; the result
//!   is empty;
//! - get: each (empty) child names a namespace; the answer holds the stored
//!   element, or the empty element when nothing is stored;
//! - only for the user's own account (no `to`, or the user's bare JID):
//!   anything else is `forbidden` (§3);
//! - a child with no namespace, or in `jabber:client`, `jabber:server` or
//!   `jabber:iq:private`, is `not-acceptable` (§3);
//! - an element larger than `max_bytes` (serialised) is `not-acceptable`,
//!   a set that would take the account past `max_items` namespaces is
//!   `resource-constraint` (both counted in `limit_hit`).
//!
//! XEP-0049 has no disco feature: nothing is advertised.
//!
//! The element is stored re-serialised from the parsed tree: every
//! namespace it uses is declared in it, so it reads the same wherever it
//! is put back (whatever prefixes the request declared on its ancestors).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;

use super::roster::internal;
use super::{IqRequest, IqResult, Module, ModuleDef, Target};
use crate::config::Config;
use crate::errors::{StanzaCondition, StanzaError};
use crate::events::handlers as h;
use crate::hooks::{Hooks, IqHandler, IqType};
use crate::xml::{escape_attr, escape_text, El};

pub const NS_PRIVATE: &str = "jabber:iq:private";
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";
/// Namespaces a stored element may not be in (XEP-0049 §3).
const RESERVED: &[&str] = &["jabber:client", "jabber:server", NS_PRIVATE];

pub const DEF: ModuleDef = ModuleDef {
    name: "private",
    build: |t| Ok(Arc::new(super::settings::<Private>(t)?)),
};

/// The module and its settings.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Private {
    /// The largest element stored, in bytes (as serialised).
    pub max_bytes: usize,
    /// Namespaces one account may store under.
    pub max_items: usize,
}

impl Default for Private {
    fn default() -> Self {
        Private {
            max_bytes: 64 * 1024,
            max_items: 100,
        }
    }
}

impl Module for Private {
    fn register(self: Arc<Self>, hooks: &mut Hooks, _: &Config) {
        hooks.iq(NS_PRIVATE, IqType::Get, &h::PRIVATE_GET, self.clone());
        hooks.iq(NS_PRIVATE, IqType::Set, &h::PRIVATE_SET, self);
    }
}

fn bad(text: &str) -> StanzaError {
    StanzaError::with_text(StanzaCondition::BadRequest, text)
}

#[async_trait]
impl IqHandler for Private {
    async fn iq(&self, req: &IqRequest<'_>) -> IqResult {
        // §3: only the user's own private data.
        if !matches!(req.target, Target::OwnAccount) {
            return Err(StanzaError::with_text(
                StanzaCondition::Forbidden,
                "private XML storage is the account's own",
            ));
        }
        if !req.payload.has_tag_name((NS_PRIVATE, "query")) {
            return Err(bad("expected <query xmlns='jabber:iq:private'/>"));
        }
        let children: Vec<roxmltree::Node<'_, '_>> =
            req.payload.children().filter(|c| c.is_element()).collect();
        if children.is_empty() {
            return Err(bad("the query needs a child element"));
        }
        let mut namespaces = Vec::with_capacity(children.len());
        for c in &children {
            match c.tag_name().namespace() {
                Some(ns) if !ns.is_empty() && !RESERVED.contains(&ns) => namespaces.push(ns),
                _ => {
                    return Err(StanzaError::with_text(
                        StanzaCondition::NotAcceptable,
                        "the element needs a namespace of its own",
                    ))
                }
            }
        }
        let me = req.me.jid().to_bare();
        let (host, user) = (me.domain(), me.local().unwrap_or_default());
        let ctx = req.ctx;
        let store = &ctx.stores.private;
        let started = std::time::Instant::now();
        if !req.set {
            let mut q = El::new("query").xmlns(NS_PRIVATE);
            let mut found = 0;
            for (c, ns) in children.iter().zip(namespaces) {
                q = match store.private_get(host, user, ns).await.map_err(internal)? {
                    Some(xml) => {
                        found += 1;
                        q.raw_child(&xml)
                    }
                    None => q.child(El::new(c.tag_name().name()).xmlns(ns)),
                };
            }
            ctx.instr
                .module_data("private", "queried", found, started.elapsed());
            return Ok(Some(q));
        }
        let mut items: Vec<(String, String)> = Vec::with_capacity(children.len());
        for (c, ns) in children.iter().zip(namespaces) {
            let mut xml = String::new();
            serialise(*c, None, &mut xml);
            if xml.len() > self.max_bytes {
                ctx.instr.limit("private_bytes");
                return Err(StanzaError::with_text(
                    StanzaCondition::NotAcceptable,
                    format!("a stored element holds at most {} bytes", self.max_bytes),
                ));
            }
            items.push((ns.to_string(), xml));
        }
        // The count check and the write under the account's lock, so two
        // sets at once cannot both pass it.
        let _account = ctx.stores.roster.lock_account(host, user).await;
        let mut all: BTreeSet<String> = store
            .private_namespaces(host, user)
            .await
            .map_err(internal)?
            .into_iter()
            .collect();
        all.extend(items.iter().map(|(ns, _)| ns.clone()));
        if all.len() > self.max_items {
            ctx.instr.limit("private_items");
            return Err(StanzaError::with_text(
                StanzaCondition::ResourceConstraint,
                format!(
                    "private storage holds at most {} namespaces",
                    self.max_items
                ),
            ));
        }
        store
            .private_set(host, user, &items)
            .await
            .map_err(internal)?;
        ctx.instr
            .module_data("private", "stored", items.len() as u64, started.elapsed());
        Ok(None)
    }
}

/// Writes `node` (an element) and its content: every element declares its
/// default namespace where it differs from its parent's (`parent_ns`), and
/// namespaced attributes get a prefix declared on their element; comments
/// and processing instructions are left out.
pub(crate) fn serialise(node: roxmltree::Node<'_, '_>, parent_ns: Option<&str>, out: &mut String) {
    let name = node.tag_name().name();
    let ns = node.tag_name().namespace().filter(|n| !n.is_empty());
    out.push('<');
    out.push_str(name);
    if ns != parent_ns {
        out.push_str(" xmlns='");
        out.push_str(&escape_attr(ns.unwrap_or("")));
        out.push('\'');
    }
    let mut prefixes = 0;
    for a in node.attributes() {
        out.push(' ');
        match a.namespace() {
            None | Some("") => {}
            Some(NS_XML) => out.push_str("xml:"),
            Some(uri) => {
                prefixes += 1;
                out.push_str(&format!(
                    "xmlns:ns{prefixes}='{}' ns{prefixes}:",
                    escape_attr(uri)
                ));
            }
        }
        out.push_str(a.name());
        out.push_str("='");
        out.push_str(&escape_attr(a.value()));
        out.push('\'');
    }
    let mut kids = node
        .children()
        .filter(|c| c.is_element() || c.is_text())
        .peekable();
    if kids.peek().is_none() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for c in kids {
        if c.is_element() {
            serialise(c, ns, out);
        } else if let Some(t) = c.text() {
            out.push_str(&escape_text(t));
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use crate::modules::testing::TestServer;
    use crate::xml::Element;

    const PREFS: &str = "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>";

    async fn set(
        t: &TestServer,
        s: &crate::modules::testing::TestSession,
        id: &str,
        body: &str,
    ) -> String {
        t.iq(
            s,
            &format!(
                "<iq type='set' id='{id}'><query xmlns='jabber:iq:private'>{body}</query></iq>"
            ),
        )
        .await
    }

    async fn get(
        t: &TestServer,
        s: &crate::modules::testing::TestSession,
        id: &str,
        body: &str,
    ) -> String {
        t.iq(
            s,
            &format!(
                "<iq type='get' id='{id}'><query xmlns='jabber:iq:private'>{body}</query></iq>"
            ),
        )
        .await
    }

    fn serialised(xml: &str) -> String {
        let el = Element::parse(xml).expect("xml");
        let mut out = String::new();
        let q = el.node().first_element_child().expect("query");
        let c = q.first_element_child().expect("child");
        super::serialise(c, None, &mut out);
        out
    }

    #[test]
    fn serialising_declares_every_namespace_it_uses() {
        assert_eq!(
            serialised("<iq xmlns:p='urn:p'><query xmlns='jabber:iq:private'><p:a x='1&amp;2' xml:lang='en'><b>t&lt;</b><!-- c --><c xmlns='urn:c'/></p:a></query></iq>"),
            // <b/> is in the query's default namespace, inherited.
            "<a xmlns='urn:p' x='1&amp;2' xml:lang='en'><b xmlns='jabber:iq:private'>t&lt;</b><c xmlns='urn:c'/></a>"
        );
        assert_eq!(
            serialised("<iq><query xmlns='jabber:iq:private'><a xmlns='urn:a' xmlns:q='urn:q' q:k='v'><d xmlns=''/></a></query></iq>"),
            "<a xmlns='urn:a' xmlns:ns1='urn:q' ns1:k='v'><d xmlns=''/></a>"
        );
    }

    #[tokio::test]
    async fn set_get_overwrite_and_several_namespaces() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let r = get(&t, &a, "g0", "<exodus xmlns='exodus:prefs'/>").await;
        assert!(
            r.contains("<query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query>"),
            "{r}"
        );
        let r = set(&t, &a, "s1", PREFS).await;
        assert!(r.contains("type='result'") && !r.contains("<query"), "{r}");
        let r = get(&t, &a, "g1", "<exodus xmlns='exodus:prefs'/>").await;
        assert!(r.contains(PREFS), "{r}");
        // Another resource, and the bare JID as the addressee.
        let a2 = t.session("alice", "a2").await;
        let r = t
            .iq(
                &a2,
                "<iq type='get' id='g2' to='alice@localhost'><query xmlns='jabber:iq:private'><exodus xmlns='exodus:prefs'/></query></iq>",
            )
            .await;
        assert!(r.contains(PREFS), "{r}");
        // Overwrite, and two namespaces in one set.
        let r = set(
            &t,
            &a,
            "s2",
            "<exodus xmlns='exodus:prefs'><defaultnick>Ophelia</defaultnick></exodus><storage xmlns='storage:bookmarks'/>",
        )
        .await;
        assert!(r.contains("type='result'"), "{r}");
        let r = get(
            &t,
            &a,
            "g3",
            "<exodus xmlns='exodus:prefs'/><storage xmlns='storage:bookmarks'/>",
        )
        .await;
        assert!(
            r.contains("<exodus xmlns='exodus:prefs'><defaultnick>Ophelia</defaultnick></exodus><storage xmlns='storage:bookmarks'/>"),
            "{r}"
        );
        // Bob's storage is his own.
        let b = t.session("bob", "b").await;
        let r = get(&t, &b, "g4", "<exodus xmlns='exodus:prefs'/>").await;
        assert!(r.contains("<exodus xmlns='exodus:prefs'/>"), "{r}");
        // Nothing advertised (XEP-0049 has no feature).
        assert!(!t.ctx.hooks.server_features().contains(&"jabber:iq:private"));
        assert!(!t
            .ctx
            .hooks
            .account_features()
            .contains(&"jabber:iq:private"));
    }

    #[tokio::test]
    async fn other_accounts_and_reserved_namespaces_are_refused() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let _b = t.session("bob", "b").await;
        for typ in ["get", "set"] {
            let r = t
                .iq(
                    &a,
                    &format!("<iq type='{typ}' id='o' to='bob@localhost'><query xmlns='jabber:iq:private'>{PREFS}</query></iq>"),
                )
                .await;
            assert!(r.contains("forbidden"), "{r}");
        }
        for (i, child) in [
            "<x/>",
            "<x xmlns=''/>",
            "<x xmlns='jabber:client'/>",
            "<x xmlns='jabber:server'/>",
            "<x xmlns='jabber:iq:private'/>",
        ]
        .iter()
        .enumerate()
        {
            let r = set(&t, &a, &format!("n{i}"), child).await;
            assert!(r.contains("not-acceptable"), "{child}: {r}");
            let r = get(&t, &a, &format!("m{i}"), child).await;
            assert!(r.contains("not-acceptable"), "{child}: {r}");
        }
        // All or none: a bad child stores nothing of the set.
        let r = set(&t, &a, "mix", &format!("{PREFS}<x xmlns='jabber:client'/>")).await;
        assert!(r.contains("not-acceptable"), "{r}");
        let r = get(&t, &a, "g", "<exodus xmlns='exodus:prefs'/>").await;
        assert!(r.contains("<exodus xmlns='exodus:prefs'/>"), "{r}");
        let r = set(&t, &a, "e", "").await;
        assert!(r.contains("bad-request"), "{r}");
    }

    #[tokio::test]
    async fn size_and_count_limits() {
        let t = TestServer::new(&[("private", "max_bytes = 64\nmax_items = 2")]).await;
        let a = t.session("alice", "a").await;
        let big = format!("<big xmlns='urn:big'>{}</big>", "x".repeat(64));
        let r = set(&t, &a, "b", &big).await;
        assert!(
            r.contains("not-acceptable") && r.contains("64 bytes"),
            "{r}"
        );
        let r = set(&t, &a, "1", "<a xmlns='urn:a'/><b xmlns='urn:b'/>").await;
        assert!(r.contains("type='result'"), "{r}");
        // Overwriting is no new namespace.
        let r = set(&t, &a, "2", "<a xmlns='urn:a'>1</a>").await;
        assert!(r.contains("type='result'"), "{r}");
        let r = set(&t, &a, "3", "<a xmlns='urn:a'>2</a><c xmlns='urn:c'/>").await;
        assert!(r.contains("resource-constraint"), "{r}");
        let stored = t
            .ctx
            .stores
            .private
            .private_get("localhost", "alice", "urn:a")
            .await
            .expect("get");
        assert_eq!(stored.as_deref(), Some("<a xmlns='urn:a'>1</a>"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        crate::modules::testing::assert_unknown_key_refused("private", "max_size = 1");
    }

    #[tokio::test]
    async fn off_means_service_unavailable() {
        let t = TestServer::new(&[("private", "enabled = false")]).await;
        let a = t.session("alice", "a").await;
        let r = set(&t, &a, "s", PREFS).await;
        assert!(r.contains("service-unavailable"), "{r}");
        let r = get(&t, &a, "g", "<exodus xmlns='exodus:prefs'/>").await;
        assert!(r.contains("service-unavailable"), "{r}");
    }

    #[tokio::test]
    async fn removing_the_account_removes_its_storage() {
        let t = TestServer::new(&[]).await;
        let a = t.session("alice", "a").await;
        let r = set(&t, &a, "s", PREFS).await;
        assert!(r.contains("type='result'"), "{r}");
        let private = &t.ctx.stores.private;
        assert_eq!(
            private
                .private_namespaces("localhost", "alice")
                .await
                .expect("list"),
            ["exodus:prefs"]
        );
        t.ctx
            .stores
            .accounts
            .remove_account("localhost", "alice")
            .await
            .expect("remove");
        assert!(private
            .private_namespaces("localhost", "alice")
            .await
            .expect("list")
            .is_empty());
    }
}
