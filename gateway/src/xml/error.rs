//! XML-layer failures, each with the stream error condition it becomes.

use super::XmlLimit;

/// Why the stream's XML was refused. All are fatal to the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    #[error("restricted XML: {0} is not allowed in XMPP")]
    RestrictedXml(&'static str),
    #[error("element larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("only UTF-8 is supported")]
    UnsupportedEncoding,
    #[error("unknown namespace prefix: {0}")]
    BadNamespacePrefix(String),
    #[error("{} {max}", limit.describe())]
    Limit { limit: XmlLimit, max: usize },
}

impl XmlError {
    /// The `limit_hit` label of a protective limit, if this is one.
    pub fn limit_label(&self) -> Option<&'static str> {
        match self {
            XmlError::TooLarge { .. } => Some("stanza_too_large"),
            XmlError::Limit { limit, .. } => Some(limit.label()),
            _ => None,
        }
    }

    /// The RFC 6120 §4.9.3 stream error condition.
    pub fn condition(&self) -> &'static str {
        match self {
            XmlError::NotWellFormed(_) => "not-well-formed",
            XmlError::RestrictedXml(_) => "restricted-xml",
            XmlError::TooLarge { .. } | XmlError::Limit { .. } => "policy-violation",
            XmlError::UnsupportedEncoding => "unsupported-encoding",
            XmlError::BadNamespacePrefix(_) => "bad-namespace-prefix",
        }
    }
}

impl From<roxmltree::Error> for XmlError {
    fn from(e: roxmltree::Error) -> Self {
        match e {
            roxmltree::Error::UnknownNamespace(prefix, _) => XmlError::BadNamespacePrefix(prefix),
            roxmltree::Error::DtdDetected => XmlError::RestrictedXml("a DTD"),
            other => XmlError::NotWellFormed(other.to_string()),
        }
    }
}
