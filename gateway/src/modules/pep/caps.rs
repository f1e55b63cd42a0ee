//! Entity capabilities (XEP-0115) as PEP needs them: what each available
//! resource said it supports (its `+notify` features, XEP-0163 §4), learnt
//! by asking it (disco#info) when its `ver` is new, and a bounded cache of
//! verified `ver` hashes so that the next client with the same one is not asked.
//!
//! Also [`PendingIqs`]: the requests the server sent to a client and
//! awaits the answers of (the disco#info queries); answers are taken out of
//! the client's stream by the module's IQ send hook.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::sync::oneshot;

use crate::modules::disco::NS_DISCO_INFO;

pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
const NS_XDATA: &str = "jabber:x:data";
const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

/// The most features one disco#info answer may list (a bigger one is not cached).
const MAX_FEATURES: usize = 1000;

/// A resource's features (disco#info `var`s).
pub type Features = Arc<HashSet<String>>;

/// The `<c/>` of a presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapsAd {
    /// `None`: legacy caps (no `hash`), never verifiable.
    pub hash: Option<String>,
    pub node: String,
    pub ver: String,
}

/// The caps element of a presence, if it has one.
pub fn parse_caps(presence: roxmltree::Node<'_, '_>) -> Option<CapsAd> {
    let c = presence
        .children()
        .find(|c| c.has_tag_name((NS_CAPS, "c")))?;
    Some(CapsAd {
        hash: c.attribute("hash").map(str::to_string),
        node: c.attribute("node").unwrap_or_default().to_string(),
        ver: c.attribute("ver").filter(|v| !v.is_empty())?.to_string(),
    })
}

/// The features listed by a disco#info `<query/>`.
pub fn features_of(query: roxmltree::Node<'_, '_>) -> HashSet<String> {
    query
        .children()
        .filter(|c| c.has_tag_name((NS_DISCO_INFO, "feature")))
        .filter_map(|c| c.attribute("var").map(str::to_string))
        .take(MAX_FEATURES)
        .collect()
}

/// A form field: its `var` and values.
type Field = (String, Vec<String>);

/// XEP-0115 §5.1: the verification string of a disco#info `<query/>`,
/// hashed with SHA-1 and base64-encoded. `None` when the answer is
/// ill-formed for hashing (§5.4: duplicate identities, features or form
/// types, or a form type that is not hidden).
pub fn sha1_ver(query: roxmltree::Node<'_, '_>) -> Option<String> {
    let mut identities = Vec::new();
    let mut features = Vec::new();
    let mut forms: Vec<(String, Vec<Field>)> = Vec::new();
    for c in query.children().filter(|c| c.is_element()) {
        if c.has_tag_name((NS_DISCO_INFO, "identity")) {
            identities.push(format!(
                "{}/{}/{}/{}",
                c.attribute("category").unwrap_or_default(),
                c.attribute("type").unwrap_or_default(),
                c.attribute((NS_XML, "lang")).unwrap_or_default(),
                c.attribute("name").unwrap_or_default()
            ));
        } else if c.has_tag_name((NS_DISCO_INFO, "feature")) {
            features.push(c.attribute("var").unwrap_or_default().to_string());
        } else if c.has_tag_name((NS_XDATA, "x")) {
            let mut form_type = None;
            let mut fields = Vec::new();
            for f in c.children().filter(|f| f.has_tag_name((NS_XDATA, "field"))) {
                let var = f.attribute("var").unwrap_or_default().to_string();
                let mut values: Vec<String> = f
                    .children()
                    .filter(|v| v.has_tag_name((NS_XDATA, "value")))
                    .map(|v| v.text().unwrap_or_default().to_string())
                    .collect();
                if var == "FORM_TYPE" {
                    if f.attribute("type") != Some("hidden") || values.len() != 1 {
                        return None;
                    }
                    form_type = values.pop();
                } else {
                    values.sort();
                    fields.push((var, values));
                }
            }
            // A form without FORM_TYPE is ignored (§5.4 3.6).
            if let Some(t) = form_type {
                fields.sort();
                forms.push((t, fields));
            }
        }
    }
    identities.sort();
    features.sort();
    forms.sort_by(|a, b| a.0.cmp(&b.0));
    let dup = |v: &[String]| v.windows(2).any(|w| w[0] == w[1]);
    if dup(&identities) || dup(&features) || forms.windows(2).any(|w| w[0].0 == w[1].0) {
        return None;
    }
    let mut s = String::new();
    for x in identities.iter().chain(features.iter()) {
        s.push_str(x);
        s.push('<');
    }
    for (t, fields) in &forms {
        s.push_str(t);
        s.push('<');
        for (var, values) in fields {
            s.push_str(var);
            s.push('<');
            for v in values {
                s.push_str(v);
                s.push('<');
            }
        }
    }
    Some(base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes())))
}

/// What the server knows of resources' capabilities.
pub struct Caps {
    inner: Mutex<CapsInner>,
    /// The most `ver` hashes cached.
    max: usize,
}

#[derive(Default)]
struct CapsInner {
    /// Verified hashes (sha-1 `ver` → features), oldest first in `order`.
    by_ver: HashMap<String, Features>,
    order: VecDeque<String>,
    /// Each resource that announced caps: the `ver` it announced and its
    /// features (a verified cache entry, or its own unverified answer).
    by_jid: HashMap<String, (String, Features)>,
}

impl Caps {
    pub fn new(max: usize) -> Caps {
        Caps {
            inner: Mutex::new(CapsInner::default()),
            max,
        }
    }

    fn inner(&self) -> MutexGuard<'_, CapsInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A verified `ver`'s features.
    pub fn cached(&self, ver: &str) -> Option<Features> {
        self.inner().by_ver.get(ver).cloned()
    }

    /// Caches a verified `ver` (the oldest goes beyond `max`).
    pub fn cache(&self, ver: &str, features: Features) {
        if self.max == 0 {
            return;
        }
        let mut i = self.inner();
        if i.by_ver.insert(ver.to_string(), features).is_none() {
            i.order.push_back(ver.to_string());
            while i.order.len() > self.max {
                if let Some(old) = i.order.pop_front() {
                    i.by_ver.remove(&old);
                }
            }
        }
    }

    /// The `ver` a resource last announced (with features known).
    pub fn ver_of(&self, full: &str) -> Option<String> {
        self.inner().by_jid.get(full).map(|(v, _)| v.clone())
    }

    pub fn features_of(&self, full: &str) -> Option<Features> {
        self.inner().by_jid.get(full).map(|(_, f)| f.clone())
    }

    /// Records a resource's features; whether its `ver` changed.
    pub fn set_jid(&self, full: &str, ver: &str, features: Features) -> bool {
        let prev = self
            .inner()
            .by_jid
            .insert(full.to_string(), (ver.to_string(), features));
        prev.is_none_or(|(v, _)| v != ver)
    }

    pub fn forget_jid(&self, full: &str) {
        self.inner().by_jid.remove(full);
    }

    /// Whether the resource asked for `node`'s notifications (`node+notify`).
    pub fn interested(&self, full: &str, node: &str) -> bool {
        let i = self.inner();
        i.by_jid
            .get(full)
            .is_some_and(|(_, f)| f.contains(&format!("{node}+notify")))
    }

    #[cfg(test)]
    pub fn cached_count(&self) -> usize {
        self.inner().by_ver.len()
    }
}

/// IQ requests the server sent to clients, awaiting their answers.
pub struct PendingIqs {
    inner: Mutex<HashMap<String, (String, oneshot::Sender<String>)>>,
    seq: AtomicU64,
    /// The most requests in flight; beyond, [`PendingIqs::register`] says no.
    max: usize,
}

impl PendingIqs {
    pub fn new(max: usize) -> PendingIqs {
        PendingIqs {
            inner: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            max,
        }
    }

    fn inner(&self) -> MutexGuard<'_, HashMap<String, (String, oneshot::Sender<String>)>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh id for a request to `to` (a full JID) and the receiver of
    /// its answer; `None` when too many are in flight, or one to `to` is.
    pub fn register(&self, to: &str) -> Option<(String, oneshot::Receiver<String>)> {
        let mut i = self.inner();
        // One request in flight per resource: a client cannot fill the table.
        if i.len() >= self.max || i.values().any(|(t, _)| t == to) {
            return None;
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let id = format!("pep-caps-{n}-{:08x}", rand::random::<u32>());
        let (tx, rx) = oneshot::channel();
        i.insert(id.clone(), (to.to_string(), tx));
        Some((id, rx))
    }

    /// An answer (result or error) with `id` from `from`: handed to its
    /// waiter; false if it answers nothing we asked `from`.
    pub fn resolve(&self, id: &str, from: &str, xml: &str) -> bool {
        let mut i = self.inner();
        match i.get(id) {
            Some((to, _)) if to == from => {}
            _ => return false,
        }
        if let Some((_, tx)) = i.remove(id) {
            let _ = tx.send(xml.to_string());
        }
        true
    }

    /// Gives up on a request (timed out).
    pub fn forget(&self, id: &str) {
        self.inner().remove(id);
    }

    pub fn is_empty(&self) -> bool {
        self.inner().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.2's simple example.
    #[test]
    fn ver_of_the_xep_example() {
        let xml = "<query xmlns='http://jabber.org/protocol/disco#info' node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>\
            <identity category='client' name='Exodus 0.9.1' type='pc'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/muc'/></query>";
        let doc = roxmltree::Document::parse(xml).expect("xml");
        assert_eq!(
            sha1_ver(doc.root_element()).as_deref(),
            Some("QgayPKawpkPSDYmwT/WM94uAlu0=")
        );
    }

    /// XEP-0115 §5.3's complex example (identities in two languages, a form).
    #[test]
    fn ver_of_the_complex_example() {
        let xml = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>\
            <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>\
            <feature var='http://jabber.org/protocol/caps'/>\
            <feature var='http://jabber.org/protocol/disco#info'/>\
            <feature var='http://jabber.org/protocol/disco#items'/>\
            <feature var='http://jabber.org/protocol/muc'/>\
            <x xmlns='jabber:x:data' type='result'>\
              <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>\
              <field var='ip_version'><value>ipv4</value><value>ipv6</value></field>\
              <field var='os'><value>Mac</value></field>\
              <field var='os_version'><value>10.5.1</value></field>\
              <field var='software'><value>Psi</value></field>\
              <field var='software_version'><value>0.11</value></field>\
            </x></query>";
        let doc = roxmltree::Document::parse(xml).expect("xml");
        assert_eq!(
            sha1_ver(doc.root_element()).as_deref(),
            Some("q07IKJEyjvHSyhy//CH0CxmKi8w=")
        );
    }

    #[test]
    fn duplicates_are_not_hashable() {
        let xml = "<query xmlns='http://jabber.org/protocol/disco#info'>\
            <feature var='a'/><feature var='a'/></query>";
        let doc = roxmltree::Document::parse(xml).expect("xml");
        assert_eq!(sha1_ver(doc.root_element()), None);
    }

    #[test]
    fn cache_is_bounded_and_jids_are_tracked() {
        let caps = Caps::new(2);
        let f: Features = Arc::new(["n+notify".to_string()].into_iter().collect());
        for v in ["a", "b", "c"] {
            caps.cache(v, f.clone());
        }
        assert_eq!(caps.cached_count(), 2);
        assert!(caps.cached("a").is_none() && caps.cached("c").is_some());
        assert!(caps.set_jid("x@h/r", "c", f.clone()));
        assert!(!caps.set_jid("x@h/r", "c", f.clone()));
        assert!(caps.interested("x@h/r", "n") && !caps.interested("x@h/r", "m"));
        caps.forget_jid("x@h/r");
        assert!(!caps.interested("x@h/r", "n"));
    }

    #[test]
    fn pending_answers_only_from_the_asked_jid() {
        let p = PendingIqs::new(1);
        let (id, mut rx) = p.register("b@h/r").expect("room");
        assert!(p.register("c@h/r").is_none(), "bounded");
        let roomy = PendingIqs::new(5);
        assert!(roomy.register("b@h/r").is_some());
        assert!(roomy.register("b@h/r").is_none(), "one per resource");
        assert!(!p.resolve(&id, "c@h/r", "<iq/>"));
        assert!(!p.resolve("other", "b@h/r", "<iq/>"));
        assert!(p.resolve(&id, "b@h/r", "<iq/>"));
        assert_eq!(rx.try_recv().ok().as_deref(), Some("<iq/>"));
        assert!(p.is_empty());
    }
}
