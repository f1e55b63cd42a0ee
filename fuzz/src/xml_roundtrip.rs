//! Target `xml_roundtrip`: the XML writer (`osprey::xml::{escape_text,
//! escape_attr, El, rewrite_from_to, append_child}`) read back by roxmltree,
//! the parser the gateway itself uses.
//!
//! Input: up to three strings separated by 0xFF (text, attribute value,
//! another value); invalid UTF-8 becomes U+FFFD and characters XML 1.0
//! cannot carry at all (most C0 controls, U+FFFE, U+FFFF) are dropped, and
//! so is CR (see below).
//!
//! Invariants: nothing panics; an escaped text or attribute value (quoted
//! with `'` or `"`) parses back to the same string; escaping borrows when
//! nothing needs escaping; elements built with `El`, and edited with
//! `rewrite_from_to`/`append_child`, parse as one element with the values
//! put in.
//!
//! Known gap (reported, not fixed here): the escapers leave TAB, LF and CR
//! as they are, so a parser's attribute-value normalisation turns them into
//! spaces, and line-end normalisation turns CR into LF. The values the
//! gateway writes come from parsed XML or prepped JIDs, where these have
//! already been normalised or refused; the harness expects spaces for TAB
//! and LF in attribute values (`as_parsed_attr`) and leaves CR out, since
//! roxmltree itself is not consistent about it (`<a>x&amp;\r</a>` keeps the
//! CR, while CR LF without an entity reference becomes LF).

use std::borrow::Cow;

use osprey::xml::{append_child, escape_attr, escape_text, rewrite_from_to, El, Element};

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// What an XML parser gives back for an attribute value written as is.
fn as_parsed_attr(s: &str) -> String {
    s.replace(['\t', '\n'], " ")
}

fn parse(xml: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(xml)
        .unwrap_or_else(|e| panic!("the writer's output does not parse: {e}: {xml:?}"))
}

pub fn run(data: &[u8]) {
    let (text, rest) = super::split_ff(data);
    let (value, other) = super::split_ff(rest);
    let clean = |b: &[u8]| -> String {
        String::from_utf8_lossy(b)
            .chars()
            .filter(|&c| is_xml_char(c))
            .collect()
    };
    let (text, value, other) = (clean(text), clean(value), clean(other));

    // Escapers alone.
    for s in [&text, &value, &other] {
        let needs_text = s.contains(['&', '<', '>']);
        let needs_attr = needs_text || s.contains(['\'', '"']);
        assert_eq!(matches!(escape_text(s), Cow::Owned(_)), needs_text, "{s:?}");
        assert_eq!(matches!(escape_attr(s), Cow::Owned(_)), needs_attr, "{s:?}");

        let xml = format!("<a>{}</a>", escape_text(s));
        let doc = parse(&xml);
        let got: String = doc
            .root_element()
            .children()
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(got, *s, "text round trip via {xml:?}");

        let xml = format!("<a x='{0}' y=\"{0}\"/>", escape_attr(s));
        let doc = parse(&xml);
        let expected = as_parsed_attr(s);
        let root = doc.root_element();
        assert_eq!(root.attribute("x"), Some(expected.as_str()), "{xml:?}");
        assert_eq!(root.attribute("y"), Some(expected.as_str()), "{xml:?}");
    }

    // The builder, as the gateway uses it for stanzas.
    let mut body = El::new("body");
    if !text.is_empty() {
        body = body.text(&text);
    }
    let built = El::new("message")
        .attr("to", &value)
        .attr_opt("id", Some(other.as_str()))
        .attr_opt("type", None)
        .child(body)
        .child(El::new("x").xmlns("urn:x").attr("v", &text).text(&other))
        .raw_child("<raw xmlns='urn:raw'/>")
        .to_string();
    let el = Element::parse(&built)
        .unwrap_or_else(|e| panic!("a built element does not parse: {e}: {built:?}"));
    assert_eq!((el.name(), el.ns()), ("message", Some("jabber:client")));
    assert_eq!(el.attr("to"), Some(as_parsed_attr(&value).as_str()));
    assert_eq!(el.attr("id"), Some(as_parsed_attr(&other).as_str()));
    assert_eq!(el.attr("type"), None);
    let kids: Vec<_> = el.node().children().filter(|n| n.is_element()).collect();
    assert_eq!(kids.len(), 3, "{built:?}");
    assert_eq!(kids[0].text().unwrap_or(""), text, "{built:?}");
    assert_eq!(kids[1].tag_name().namespace(), Some("urn:x"));
    assert_eq!(kids[1].attribute("v"), Some(as_parsed_attr(&text).as_str()));
    assert_eq!(kids[1].text().unwrap_or(""), other);
    assert_eq!(kids[2].tag_name().namespace(), Some("urn:raw"));

    // Edits of a received stanza with these values as the new addresses.
    let received = Element::parse(&built).expect("parsed above");
    let out = rewrite_from_to(&received, Some(&text), Some(&value));
    let edited = Element::parse(&out)
        .unwrap_or_else(|e| panic!("rewrite_from_to output does not parse: {e}: {out:?}"));
    assert_eq!(edited.attr("from"), Some(as_parsed_attr(&text).as_str()));
    assert_eq!(edited.attr("to"), Some(as_parsed_attr(&value).as_str()));
    assert_eq!(edited.attr("id"), el.attr("id"));
    let stamped = append_child(&out, &El::new("delay").attr("stamp", &other).to_string());
    let stamped_el = Element::parse(&stamped)
        .unwrap_or_else(|e| panic!("append_child output does not parse: {e}: {stamped:?}"));
    let last = stamped_el.node().last_element_child().expect("a child");
    assert_eq!(last.tag_name().name(), "delay");
    assert_eq!(
        last.attribute("stamp"),
        Some(as_parsed_attr(&other).as_str())
    );
}
