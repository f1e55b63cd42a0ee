//! What the framer lets through to the parser. Every cap is checked while
//! the bytes arrive, so the parser (roxmltree, which recurses on nesting and
//! copies in-scope namespaces per element) only ever sees input whose cost
//! is linear in its size.

use serde::Deserialize;

/// `[listen.c2s.xml]`: caps on one element's shape (sizes are
/// `max_stanza_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct XmlLimits {
    /// Nesting depth of a stanza, the stanza itself being 1.
    pub max_depth: usize,
    /// Attributes on one element (namespace declarations included).
    pub max_attributes: usize,
    /// Namespace declarations on one element.
    pub max_namespaces: usize,
    /// Namespace declarations in one stanza, all elements together.
    pub max_namespaces_per_stanza: usize,
    /// Bytes in an element or attribute name (prefix included).
    pub max_name_length: usize,
    /// Bytes in one attribute value, as sent.
    pub max_attribute_length: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        XmlLimits {
            max_depth: 64,
            max_attributes: 64,
            max_namespaces: 16,
            max_namespaces_per_stanza: 128,
            max_name_length: 256,
            max_attribute_length: 65_536,
        }
    }
}

/// Which cap was hit: its bounded name (the `limit_hit` label) and what
/// the peer reads in the stream error's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmlLimit {
    Depth,
    Attributes,
    Namespaces,
    NamespacesPerStanza,
    NameLength,
    AttributeLength,
}

impl XmlLimit {
    /// The `limit` label of `limit_hit`.
    pub fn label(&self) -> &'static str {
        match self {
            XmlLimit::Depth => "xml_depth",
            XmlLimit::Attributes => "xml_attributes",
            XmlLimit::Namespaces => "xml_namespaces",
            XmlLimit::NamespacesPerStanza => "xml_namespaces_per_stanza",
            XmlLimit::NameLength => "xml_name_length",
            XmlLimit::AttributeLength => "xml_attribute_length",
        }
    }

    pub const ALL: [XmlLimit; 6] = [
        XmlLimit::Depth,
        XmlLimit::Attributes,
        XmlLimit::Namespaces,
        XmlLimit::NamespacesPerStanza,
        XmlLimit::NameLength,
        XmlLimit::AttributeLength,
    ];

    pub(super) fn describe(&self) -> &'static str {
        match self {
            XmlLimit::Depth => "elements nested deeper than",
            XmlLimit::Attributes => "attributes on one element, more than",
            XmlLimit::Namespaces => "namespace declarations on one element, more than",
            XmlLimit::NamespacesPerStanza => "namespace declarations in one stanza, more than",
            XmlLimit::NameLength => "a name longer than",
            XmlLimit::AttributeLength => "an attribute value longer than",
        }
    }
}
