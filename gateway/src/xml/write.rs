//! Building outgoing XML: escaping, a small element builder, and edits of
//! received elements that keep every byte but the ones changed.

use std::borrow::Cow;
use std::fmt;

use super::Element;

/// Escapes character data.
pub fn escape_text(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Escapes an attribute value (we always quote with `'`).
pub fn escape_attr(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, attr: bool) -> Cow<'_, str> {
    let needs = |c: char| matches!(c, '&' | '<' | '>') || (attr && matches!(c, '\'' | '"'));
    if !s.contains(needs) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' if attr => out.push_str("&apos;"),
            '"' if attr => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[derive(Debug, Clone)]
enum Child {
    El(El),
    Text(String),
    Raw(String),
}

/// An element to send: `El::new("iq").attr("type", "result").child(…)`.
#[derive(Debug, Clone)]
pub struct El {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Child>,
}

impl El {
    pub fn new(name: &str) -> El {
        El {
            name: name.to_string(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    pub fn attr(mut self, name: &str, value: &str) -> El {
        self.attrs.push((name.to_string(), value.to_string()));
        self
    }

    pub fn attr_opt(self, name: &str, value: Option<&str>) -> El {
        match value {
            Some(v) => self.attr(name, v),
            None => self,
        }
    }

    pub fn xmlns(self, ns: &str) -> El {
        self.attr("xmlns", ns)
    }

    pub fn child(mut self, child: El) -> El {
        self.children.push(Child::El(child));
        self
    }

    pub fn text(mut self, text: &str) -> El {
        self.children.push(Child::Text(text.to_string()));
        self
    }

    /// Already-serialised XML, inserted as is.
    pub fn raw_child(mut self, xml: &str) -> El {
        self.children.push(Child::Raw(xml.to_string()));
        self
    }

    pub fn into_string(self) -> String {
        self.to_string()
    }
}

impl fmt::Display for El {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}", self.name)?;
        for (k, v) in &self.attrs {
            write!(f, " {}='{}'", k, escape_attr(v))?;
        }
        if self.children.is_empty() {
            return f.write_str("/>");
        }
        f.write_str(">")?;
        for c in &self.children {
            match c {
                Child::El(e) => write!(f, "{e}")?,
                Child::Text(t) => f.write_str(&escape_text(t))?,
                Child::Raw(r) => f.write_str(r)?,
            }
        }
        write!(f, "</{}>", self.name)
    }
}

/// The element's text with the outer tag's `from`/`to` replaced or added
/// (`None` leaves that attribute as it was); every other byte is kept.
pub fn rewrite_from_to(el: &Element, from: Option<&str>, to: Option<&str>) -> String {
    let raw = el.raw();
    let base = el.offset();
    let node = el.node();
    // The byte ranges (in `raw`) of the attributes to drop.
    let mut drop: Vec<std::ops::Range<usize>> = node
        .attributes()
        .filter(|a| a.namespace().is_none())
        .filter(|a| (a.name() == "from" && from.is_some()) || (a.name() == "to" && to.is_some()))
        .map(|a| {
            let r = a.range();
            r.start - base..r.end - base
        })
        .collect();
    drop.sort_by_key(|r| r.start);
    let name_end = 1 + el.node().tag_name().name().len() + node_prefix_len(raw);
    let mut out = String::with_capacity(raw.len() + 64);
    out.push_str(&raw[..name_end]);
    if let Some(f) = from {
        out.push_str(" from='");
        out.push_str(&escape_attr(f));
        out.push('\'');
    }
    if let Some(t) = to {
        out.push_str(" to='");
        out.push_str(&escape_attr(t));
        out.push('\'');
    }
    let mut at = name_end;
    for r in drop {
        // Also drop the whitespace before the attribute.
        let start = raw[..r.start].trim_end().len().max(at);
        out.push_str(&raw[at..start]);
        at = r.end;
    }
    out.push_str(&raw[at..]);
    out
}

/// Length of `prefix:` in the element's own qualified name, if any.
fn node_prefix_len(raw: &str) -> usize {
    let qname: &str = raw[1..]
        .split(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .next()
        .unwrap_or("");
    qname.find(':').map(|i| i + 1).unwrap_or(0)
}

/// Inserts `child` as the last child of the element in `el_text`.
pub fn append_child(el_text: &str, child: &str) -> String {
    let trimmed = el_text.trim_end();
    let open_end = start_tag_end(trimmed);
    if open_end + 1 == trimmed.len() && trimmed[..open_end].ends_with('/') {
        // A self-closing root: <a x='1'/> becomes <a x='1'>child</a>.
        let name: &str = trimmed[1..]
            .split(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
            .next()
            .unwrap_or("");
        return format!("{}>{child}</{name}>", &trimmed[..open_end - 1]);
    }
    match trimmed.rfind("</") {
        Some(i) => format!("{}{}{}", &trimmed[..i], child, &trimmed[i..]),
        None => format!("{trimmed}{child}"),
    }
}

/// Index of the `>` that ends the first tag (quotes respected).
fn start_tag_end(text: &str) -> usize {
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if q == c => quote = None,
            (None, '>') => return i,
            _ => {}
        }
    }
    text.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_escapes() {
        let e = El::new("message")
            .attr("to", "a'b<c")
            .child(El::new("body").text("1 < 2 & 3 > 2"));
        assert_eq!(
            e.to_string(),
            "<message to='a&apos;b&lt;c'><body>1 &lt; 2 &amp; 3 &gt; 2</body></message>"
        );
        assert_eq!(
            El::new("ping").xmlns("urn:xmpp:ping").to_string(),
            "<ping xmlns='urn:xmpp:ping'/>"
        );
    }

    #[test]
    fn rewrite_keeps_children_byte_identical() {
        let raw = "<message  to='bob@x' from=\"evil@x\" type='chat'><body a='1'>hé &amp; <![CDATA[<x>]]></body></message>";
        let el = Element::parse(raw).unwrap();
        let out = rewrite_from_to(&el, Some("alice@x/r'1"), None);
        assert_eq!(
            out,
            "<message from='alice@x/r&apos;1'  to='bob@x' type='chat'><body a='1'>hé &amp; <![CDATA[<x>]]></body></message>"
        );
        assert!(Element::parse(&out).is_ok());
        let out = rewrite_from_to(&el, Some("a@x"), Some("c@x"));
        let re = Element::parse(&out).unwrap();
        assert_eq!(
            (re.attr("from"), re.attr("to"), re.attr("type")),
            (Some("a@x"), Some("c@x"), Some("chat"))
        );
        let plain = Element::parse("<presence/>").unwrap();
        assert_eq!(
            rewrite_from_to(&plain, Some("a@x/r"), None),
            "<presence from='a@x/r'/>"
        );
    }

    #[test]
    fn append_child_on_both_forms() {
        assert_eq!(
            append_child("<message to='a'><body>x</body></message>", "<delay/>"),
            "<message to='a'><body>x</body><delay/></message>"
        );
        assert_eq!(
            append_child("<message to='a'/>", "<delay/>"),
            "<message to='a'><delay/></message>"
        );
        assert_eq!(
            append_child("<message to='a/>'/>", "<d/>"),
            "<message to='a/>'><d/></message>"
        );
    }
}
