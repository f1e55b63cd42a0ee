//! The XML layer: an incremental framer that finds where each top-level
//! element of the stream ends, element views (roxmltree), and the writer.
//!
//! RFC 6120 §11 restricts XMPP's XML: no DTDs, entity declarations,
//! comments or processing instructions. The framer refuses them as soon as
//! their first bytes arrive, so nothing is ever expanded or buffered.

mod element;
mod error;
mod framer;
mod header;
mod limits;
mod write;

pub use element::Element;
pub use error::XmlError;
pub use framer::{Frame, Framer};
pub use header::StreamHeader;
pub use limits::{XmlLimit, XmlLimits};
pub use write::{append_child, escape_attr, escape_text, rewrite_from_to, El};

pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
pub const NS_CLIENT: &str = "jabber:client";
