//! The client's stream header, as sent (checks are the caller's: which
//! error to send depends on the stream's state).

use super::XmlError;

const NS_XML: &str = "http://www.w3.org/XML/1998/namespace";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// Usually `stream`.
    pub prefix: Option<String>,
    /// Usually `stream`.
    pub local_name: String,
    /// The namespace of the header element (NS_STREAM expected).
    pub ns: Option<String>,
    /// The default namespace (NS_CLIENT expected).
    pub default_ns: Option<String>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
}

impl StreamHeader {
    /// Parses an opening tag such as `<stream:stream ...>`.
    pub fn parse(open_tag: &str) -> Result<StreamHeader, XmlError> {
        let qname: String = open_tag
            .trim_start_matches('<')
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/')
            .collect();
        let text = format!("{open_tag}</{qname}>");
        let doc = roxmltree::Document::parse_with_options(
            &text,
            roxmltree::ParsingOptions {
                allow_dtd: false,
                ..Default::default()
            },
        )?;
        let root = doc.root_element();
        let attr = |n: &str| root.attribute(n).map(str::to_string);
        Ok(StreamHeader {
            prefix: qname.split_once(':').map(|(p, _)| p.to_string()),
            local_name: root.tag_name().name().to_string(),
            ns: root.tag_name().namespace().map(str::to_string),
            default_ns: root.default_namespace().map(str::to_string),
            to: attr("to"),
            from: attr("from"),
            id: attr("id"),
            version: attr("version"),
            lang: root.attribute((NS_XML, "lang")).map(str::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_client_header() {
        let h = StreamHeader::parse(
            "<stream:stream to='localhost' xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>",
        )
        .unwrap();
        assert_eq!(h.prefix.as_deref(), Some("stream"));
        assert_eq!(h.local_name, "stream");
        assert_eq!(h.ns.as_deref(), Some(super::super::NS_STREAM));
        assert_eq!(h.default_ns.as_deref(), Some(super::super::NS_CLIENT));
        assert_eq!(h.to.as_deref(), Some("localhost"));
        assert_eq!(h.version.as_deref(), Some("1.0"));
        assert_eq!(h.lang.as_deref(), Some("en"));
    }

    #[test]
    fn undeclared_prefix_is_reported() {
        let e = StreamHeader::parse("<stream:stream xmlns='jabber:client'>").unwrap_err();
        assert_eq!(e.condition(), "bad-namespace-prefix");
    }
}
