//! A PEP node's configuration (the XEP-0060 subset PEP needs): the
//! defaults of XEP-0163, data forms in and out (`pubsub#publish-options`,
//! `pubsub#node_config`), and the precondition test of XEP-0060 §7.1.5.

use crate::errors::{StanzaCondition, StanzaError};
use crate::storage::PepNode;
use crate::xml::El;

pub const NS_XDATA: &str = "jabber:x:data";
pub const NS_PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
pub const FORM_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
pub const FORM_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Contacts with a `from` or `both` subscription (XEP-0163's default).
    Presence,
    Open,
    /// Only the owner (XEP-0223 private storage, XEP-0402 bookmarks).
    Whitelist,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Presence => "presence",
            Access::Open => "open",
            Access::Whitelist => "whitelist",
        }
    }

    pub fn parse(s: &str) -> Option<Access> {
        Some(match s {
            "presence" => Access::Presence,
            "open" => Access::Open,
            "whitelist" => Access::Whitelist,
            _ => return None,
        })
    }
}

const SEND_LAST: &[&str] = &["never", "on_sub", "on_sub_and_presence"];

/// One node's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub access: Access,
    pub persist: bool,
    /// `None`: "max" (the module's `max_items`).
    pub max_items: Option<u32>,
    pub send_last: &'static str,
}

impl Default for Config {
    /// XEP-0163 §4.3 / ejabberd and Prosody: presence access, one
    /// persistent item, the last one sent on presence.
    fn default() -> Self {
        Config {
            access: Access::Presence,
            persist: true,
            max_items: Some(1),
            send_last: "on_sub_and_presence",
        }
    }
}

impl Config {
    pub fn from_stored(n: &PepNode) -> Config {
        Config {
            access: Access::parse(&n.access_model).unwrap_or(Access::Whitelist),
            persist: n.persist_items,
            max_items: n.max_items,
            send_last: SEND_LAST
                .iter()
                .find(|s| **s == n.send_last)
                .copied()
                .unwrap_or("never"),
        }
    }

    pub fn to_stored(&self, node: &str) -> PepNode {
        PepNode {
            node: node.to_string(),
            access_model: self.access.as_str().to_string(),
            persist_items: self.persist,
            max_items: self.max_items,
            send_last: self.send_last.to_string(),
        }
    }

    /// How many items the node keeps, with `cap` the module's most.
    pub fn keep(&self, cap: u32) -> u32 {
        self.max_items.unwrap_or(cap).min(cap).max(1)
    }

    /// Applies the fields of a submitted form; an unknown or bad value of
    /// a field we implement is `not-acceptable`, other fields are ignored.
    pub fn apply(&mut self, fields: &[(String, Vec<String>)], cap: u32) -> Result<(), StanzaError> {
        for (var, values) in fields {
            let v = values.first().map(String::as_str).unwrap_or_default();
            let bad = || {
                StanzaError::with_text(
                    StanzaCondition::NotAcceptable,
                    format!("unsupported value for {var}: {v:?}"),
                )
            };
            match var.as_str() {
                "pubsub#access_model" => self.access = Access::parse(v).ok_or_else(bad)?,
                "pubsub#persist_items" => self.persist = parse_bool(v).ok_or_else(bad)?,
                "pubsub#max_items" => self.max_items = parse_max(v, cap).ok_or_else(bad)?,
                "pubsub#send_last_published_item" => {
                    self.send_last = SEND_LAST.iter().find(|s| **s == v).ok_or_else(bad)?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// XEP-0060 §7.1.5: whether every option we implement matches the
    /// node's configuration ("max" matches the cap, as Prosody does).
    pub fn satisfies(&self, fields: &[(String, Vec<String>)], cap: u32) -> bool {
        let mut want = self.clone();
        if want.apply(fields, cap).is_err() {
            return false;
        }
        let norm = |m: Option<u32>| m.unwrap_or(cap).min(cap);
        want.access == self.access
            && want.persist == self.persist
            && want.send_last == self.send_last
            && norm(want.max_items) == norm(self.max_items)
    }

    /// The `pubsub#node_config` form (owner configure get).
    pub fn form(&self, cap: u32) -> El {
        let field = |var: &str, typ: &str, value: &str| {
            El::new("field")
                .attr("var", var)
                .attr("type", typ)
                .child(El::new("value").text(value))
        };
        let mut access = field("pubsub#access_model", "list-single", self.access.as_str());
        for a in ["open", "presence", "whitelist"] {
            access = access.child(El::new("option").child(El::new("value").text(a)));
        }
        let mut send_last = field(
            "pubsub#send_last_published_item",
            "list-single",
            self.send_last,
        );
        for s in SEND_LAST {
            send_last = send_last.child(El::new("option").child(El::new("value").text(s)));
        }
        let max = match self.max_items {
            None => "max".to_string(),
            Some(n) => n.min(cap).to_string(),
        };
        El::new("x")
            .xmlns(NS_XDATA)
            .attr("type", "form")
            .child(field("FORM_TYPE", "hidden", FORM_NODE_CONFIG))
            .child(access)
            .child(field(
                "pubsub#persist_items",
                "boolean",
                if self.persist { "1" } else { "0" },
            ))
            .child(field("pubsub#max_items", "text-single", &max))
            .child(send_last)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// `max`, or a number from 1 to `cap`.
fn parse_max(v: &str, cap: u32) -> Option<Option<u32>> {
    if v == "max" {
        return Some(None);
    }
    let n: u32 = v.trim().parse().ok()?;
    (1..=cap).contains(&n).then_some(Some(n))
}

/// The fields of a `jabber:x:data` form (`FORM_TYPE` left out), if `x` is
/// one of type `submit` whose FORM_TYPE (when given) is `form_type`.
pub fn form_fields(
    x: roxmltree::Node<'_, '_>,
    form_type: &str,
) -> Result<Vec<(String, Vec<String>)>, StanzaError> {
    let bad = |t: &str| StanzaError::with_text(StanzaCondition::BadRequest, t.to_string());
    if !x.has_tag_name((NS_XDATA, "x")) {
        return Err(bad("expected a jabber:x:data form"));
    }
    if !matches!(x.attribute("type"), Some("submit") | None) {
        return Err(bad("expected a submitted form"));
    }
    let mut out = Vec::new();
    for f in x.children().filter(|f| f.has_tag_name((NS_XDATA, "field"))) {
        let var = f.attribute("var").unwrap_or_default().to_string();
        let values: Vec<String> = f
            .children()
            .filter(|v| v.has_tag_name((NS_XDATA, "value")))
            .map(|v| v.text().unwrap_or_default().trim().to_string())
            .collect();
        if var == "FORM_TYPE" {
            if values.first().map(String::as_str) != Some(form_type) {
                return Err(bad("wrong FORM_TYPE"));
            }
        } else {
            out.push((var, values));
        }
    }
    Ok(out)
}

/// A pubsub error: a defined condition with a `pubsub#errors` one.
pub fn pubsub_error(condition: StanzaCondition, app: &str) -> StanzaError {
    StanzaError::new(condition).with_app(format!("<{app} xmlns='{NS_PUBSUB_ERRORS}'/>"))
}

/// `<conflict/>` + `<precondition-not-met/>`.
pub fn precondition_not_met() -> StanzaError {
    pubsub_error(StanzaCondition::Conflict, "precondition-not-met")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(f: &[(&str, &str)]) -> Vec<(String, Vec<String>)> {
        f.iter()
            .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
            .collect()
    }

    #[test]
    fn preconditions_match_like_prosody() {
        let mut bookmarks = Config::default();
        let opts = fields(&[
            ("pubsub#persist_items", "true"),
            ("pubsub#max_items", "max"),
            ("pubsub#send_last_published_item", "never"),
            ("pubsub#access_model", "whitelist"),
        ]);
        assert!(!bookmarks.satisfies(&opts, 256));
        bookmarks.apply(&opts, 256).expect("apply");
        assert!(bookmarks.satisfies(&opts, 256));
        // "max" is the cap, and the cap is "max".
        bookmarks.max_items = Some(256);
        assert!(bookmarks.satisfies(&opts, 256));
        assert!(bookmarks.satisfies(&fields(&[("pubsub#max_items", "256")]), 256));
        assert!(!bookmarks.satisfies(&fields(&[("pubsub#max_items", "10")]), 256));
        // Beyond the cap, or nonsense: refused.
        let mut c = Config::default();
        assert!(c
            .apply(&fields(&[("pubsub#max_items", "257")]), 256)
            .is_err());
        assert!(c
            .apply(&fields(&[("pubsub#access_model", "roster")]), 256)
            .is_err());
        // Unknown fields are ignored.
        assert!(Config::default().satisfies(&fields(&[("pubsub#title", "x")]), 256));
    }
}
