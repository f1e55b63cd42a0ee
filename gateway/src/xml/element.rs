//! A complete top-level element: the bytes the peer sent, plus a roxmltree
//! view over them, parsed as a child of a `jabber:client` stream.

use super::XmlError;

/// What a stanza inherits from the stream: the default namespace and the
/// `stream:` prefix (RFC 6120 §4.8).
const WRAP_OPEN: &str =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
const WRAP_CLOSE: &str = "</stream:stream>";

type Doc<'a> = roxmltree::Document<'a>;

self_cell::self_cell!(
    struct Cell {
        owner: String,
        #[covariant]
        dependent: Doc,
    }
);

/// An owned, validated element.
pub struct Element {
    cell: Cell,
    /// The element's node: looked up once, as every accessor needs it.
    id: roxmltree::NodeId,
    /// Parsed inside the stream wrapper (see [`Element::parse`]).
    wrapped: bool,
}

impl Element {
    /// Validates `raw` (one element) and keeps it with its parsed view.
    ///
    /// An element is parsed as the stream's child: it inherits the
    /// stream's default namespace and `stream:` prefix. One that declares
    /// its own default namespace (nonzas such as XEP-0198's `<a/>`) needs
    /// neither, and is parsed alone first, which halves the cost of a small
    /// one; if that fails or the declaration was not the element's own, it
    /// is parsed as the stream's child after all.
    pub fn parse(raw: &str) -> Result<Element, XmlError> {
        // Stanzas (nearly always without a declaration of their own) skip
        // the guess.
        if crate::stanza::Kind::of_xml(raw).is_none() && declares_default_ns(raw) {
            if let Ok(el) = Element::parse_in(raw, false) {
                if el
                    .node()
                    .lookup_namespace_uri(None)
                    .is_some_and(|u| !u.is_empty())
                {
                    return Ok(el);
                }
            }
        }
        Element::parse_in(raw, true)
    }

    fn parse_in(raw: &str, wrapped: bool) -> Result<Element, XmlError> {
        let text = if wrapped {
            let mut text = String::with_capacity(WRAP_OPEN.len() + raw.len() + WRAP_CLOSE.len());
            text.push_str(WRAP_OPEN);
            text.push_str(raw);
            text.push_str(WRAP_CLOSE);
            text
        } else {
            raw.to_string()
        };
        let cell = Cell::try_new(text, |t| {
            roxmltree::Document::parse_with_options(
                t,
                roxmltree::ParsingOptions {
                    allow_dtd: false,
                    ..Default::default()
                },
            )
        })?;
        let doc = cell.borrow_dependent();
        let id = if wrapped {
            // Exactly one element, and nothing but it (no stray text or a
            // second element).
            let mut kids = doc.root_element().children();
            match (kids.next(), kids.next()) {
                (Some(n), None) if n.is_element() => n.id(),
                _ => {
                    return Err(XmlError::NotWellFormed(
                        "expected exactly one element".into(),
                    ))
                }
            }
        } else {
            // A document has one root element; text around it is refused
            // by the parser, and whitespace there is not in `raw` (the
            // framer cuts from `<` to `>`), or is refused just below.
            let root = doc.root_element();
            if root.range() != (0..raw.len()) {
                return Err(XmlError::NotWellFormed(
                    "expected exactly one element".into(),
                ));
            }
            root.id()
        };
        Ok(Element { cell, id, wrapped })
    }

    /// Exactly the element text the peer sent.
    pub fn raw(&self) -> &str {
        let t = self.cell.borrow_owner();
        if self.wrapped {
            &t[WRAP_OPEN.len()..t.len() - WRAP_CLOSE.len()]
        } else {
            t
        }
    }

    /// The element node. Its ranges are offsets into the parsed text: use
    /// [`Element::offset`] to map them into [`Element::raw`].
    pub fn node(&self) -> roxmltree::Node<'_, '_> {
        let doc = self.cell.borrow_dependent();
        // `id` came from this document, so the lookup cannot miss.
        doc.get_node(self.id).unwrap_or_else(|| doc.root_element())
    }

    /// Where `raw()` starts in the text the node ranges refer to.
    pub fn offset(&self) -> usize {
        if self.wrapped {
            WRAP_OPEN.len()
        } else {
            0
        }
    }

    pub fn name(&self) -> &str {
        self.node().tag_name().name()
    }

    pub fn ns(&self) -> Option<&str> {
        self.node().tag_name().namespace()
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.node().attribute(name)
    }

    /// The first child element.
    pub fn first_child(&self) -> Option<roxmltree::Node<'_, '_>> {
        self.node().first_element_child()
    }
}

/// Whether the first start tag of `raw` seems to declare a default
/// namespace (`xmlns=`): a cheap guess, confirmed by the parse.
fn declares_default_ns(raw: &str) -> bool {
    let tag = raw.find('>').map_or(raw, |end| &raw[..end]);
    let mut rest = tag;
    while let Some(i) = rest.find("xmlns") {
        rest = &rest[i + 5..];
        if rest.trim_start().starts_with('=') {
            return true;
        }
    }
    false
}

impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Element").field(&self.raw()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_a_stanza_in_the_client_namespace() {
        let e = Element::parse("<message to='a@b' type='chat'><body>hi &amp; bye</body></message>")
            .unwrap();
        assert_eq!(e.name(), "message");
        assert_eq!(e.ns(), Some("jabber:client"));
        assert_eq!(e.attr("type"), Some("chat"));
        assert_eq!(e.first_child().unwrap().text(), Some("hi & bye"));
        assert!(e.raw().starts_with("<message to='a@b'"));
    }

    #[test]
    fn an_element_with_its_own_default_namespace_is_parsed_alone() {
        let e = Element::parse("<a xmlns='urn:xmpp:sm:3' h='7'/>").unwrap();
        assert!(!e.wrapped);
        assert_eq!(
            (e.name(), e.ns(), e.attr("h")),
            ("a", Some("urn:xmpp:sm:3"), Some("7"))
        );
        assert_eq!(e.raw(), "<a xmlns='urn:xmpp:sm:3' h='7'/>");
        // Children inherit it, as they would inside the stream.
        let e = Element::parse("<x xmlns='u'><y/></x>").unwrap();
        assert_eq!(e.first_child().unwrap().tag_name().namespace(), Some("u"));
        // An undeclared default: as inside the stream.
        let raw = "<x xmlns=''><y/></x>";
        let (e, w) = (
            Element::parse(raw).unwrap(),
            Element::parse_in(raw, true).unwrap(),
        );
        assert_eq!(e.ns(), w.ns());
        let child_ns = |e: &Element| {
            e.first_child()
                .map(|c| c.tag_name().namespace().map(str::to_string))
        };
        assert_eq!(child_ns(&e), child_ns(&w));
        // `xmlns=` inside a value, a prefix declaration only and the
        // stream's prefix: parsed as the stream's child.
        for raw in [
            "<message id='xmlns=' to='a@b'/>",
            "<p:x xmlns:p='u'><y/></p:x>",
            "<x xmlns='u'><stream:error/></x>",
        ] {
            let e = Element::parse(raw).unwrap();
            assert!(e.wrapped, "{raw}");
            assert_eq!(e.raw(), raw);
        }
        let e = Element::parse("<p:x xmlns:p='u'><y/></p:x>").unwrap();
        assert_eq!(
            e.first_child().unwrap().tag_name().namespace(),
            Some("jabber:client")
        );
        // Still exactly one element.
        assert!(Element::parse("<a xmlns='u'/><b/>").is_err());
        assert!(Element::parse("<a xmlns='u'/>x").is_err());
    }

    #[test]
    fn refuses_bad_elements() {
        assert!(matches!(
            Element::parse("<a>&foo;</a>"),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            Element::parse("<a></b>"),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            Element::parse("<a/><b/>"),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            Element::parse("<x:a/>"),
            Err(XmlError::BadNamespacePrefix(_))
        ));
    }
}
