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
}

impl Element {
    /// Validates `raw` (one element) and keeps it with its parsed view.
    pub fn parse(raw: &str) -> Result<Element, XmlError> {
        let mut text = String::with_capacity(WRAP_OPEN.len() + raw.len() + WRAP_CLOSE.len());
        text.push_str(WRAP_OPEN);
        text.push_str(raw);
        text.push_str(WRAP_CLOSE);
        let cell = Cell::try_new(text, |t| {
            roxmltree::Document::parse_with_options(
                t,
                roxmltree::ParsingOptions {
                    allow_dtd: false,
                    ..Default::default()
                },
            )
        })?;
        let el = Element { cell };
        // Exactly one element, and nothing but it (no stray text or a second element).
        let root = el.cell.borrow_dependent().root_element();
        let mut kids = root.children();
        match (kids.next(), kids.next()) {
            (Some(n), None) if n.is_element() => Ok(el),
            _ => Err(XmlError::NotWellFormed(
                "expected exactly one element".into(),
            )),
        }
    }

    /// Exactly the element text the peer sent.
    pub fn raw(&self) -> &str {
        let t = self.cell.borrow_owner();
        &t[WRAP_OPEN.len()..t.len() - WRAP_CLOSE.len()]
    }

    /// The element node. Its ranges are offsets into the wrapped text: use
    /// [`Element::offset`] to map them into [`Element::raw`].
    pub fn node(&self) -> roxmltree::Node<'_, '_> {
        let root = self.cell.borrow_dependent().root_element();
        // parse() guaranteed exactly one element child.
        root.first_element_child().unwrap_or(root)
    }

    /// Where `raw()` starts in the text the node ranges refer to.
    pub fn offset(&self) -> usize {
        WRAP_OPEN.len()
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
