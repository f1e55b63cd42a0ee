//! XMPP modules. Each one declares, in its own file, the disco features it
//! adds and the IQ namespaces it answers; [`handle_request`] and
//! [`server_features`] collect them, so routing never changes to add one.
//!
//! - [`message`]: messages from a session, routed per RFC 6121 §8.
//! - [`iq`]: IQ dispatch (answer, route, or bounce).
//! - [`roster`]: roster get/set/remove and pushes (RFC 6121 §2).
//! - [`presence`]: initial/broadcast/directed/unavailable presence, probes.
//! - [`subscription`]: the subscription state machine (RFC 6121 §3, App. A).
//! - [`offline`]: offline messages (XEP-0160).
//! - [`disco`]: service discovery (XEP-0030).
//! - [`ping`]: XMPP ping (XEP-0199).

pub mod disco;
pub mod iq;
pub mod message;
pub mod offline;
pub mod ping;
pub mod presence;
pub mod roster;
pub mod subscription;

use std::sync::Arc;

use crate::errors::{StanzaCondition, StanzaError};
use crate::jid::Jid;
use crate::router::SessionHandle;
use crate::server::Ctx;
use crate::xml::{El, Element};

/// The legacy session establishment (RFC 3921), kept as a no-op.
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// Who an IQ request is for.
pub enum Target<'a> {
    /// The server itself (`to` is a served domain).
    Server,
    /// The sender's own account (no `to`, or its bare JID).
    OwnAccount,
    /// Another local account's bare JID (answered on its behalf).
    OtherAccount(&'a Jid),
}

/// An IQ get/set to be answered by a module.
pub struct IqRequest<'a> {
    pub ctx: &'a Ctx,
    pub me: &'a Arc<SessionHandle>,
    pub el: &'a Element,
    pub set: bool,
    pub target: Target<'a>,
    pub payload: roxmltree::Node<'a, 'a>,
}

/// `Ok(Some(child))` becomes the child of the result.
pub type IqResult = Result<Option<El>, StanzaError>;

/// Dispatches a request to the module owning its payload namespace.
pub async fn handle_request(req: &IqRequest<'_>) -> IqResult {
    match req.payload.tag_name().namespace().unwrap_or("") {
        roster::NS_ROSTER => roster::iq(req).await,
        disco::NS_DISCO_INFO | disco::NS_DISCO_ITEMS => disco::iq(req).await,
        ping::NS_PING => ping::iq(req),
        NS_SESSION if req.set => Ok(None),
        // RFC 6120 §8.4: a payload nobody here understands.
        _ => Err(StanzaError::new(StanzaCondition::ServiceUnavailable)),
    }
}

/// Bounded (module, operation) labels for a request.
pub fn operation_of(req: &IqRequest<'_>) -> (&'static str, &'static str) {
    let ns = req.payload.tag_name().namespace().unwrap_or("");
    let op = if req.set { "set" } else { "get" };
    match ns {
        roster::NS_ROSTER
            if req.set
                && req
                    .payload
                    .children()
                    .any(|c| c.attribute("subscription") == Some("remove")) =>
        {
            ("roster", "remove")
        }
        roster::NS_ROSTER => ("roster", op),
        disco::NS_DISCO_INFO => ("disco", "info"),
        disco::NS_DISCO_ITEMS => ("disco", "items"),
        ping::NS_PING => ("ping", op),
        NS_SESSION => ("session", op),
        _ => ("unknown", op),
    }
}

/// Every feature the server advertises in disco#info.
pub fn server_features() -> Vec<&'static str> {
    let mut f: Vec<&'static str> = [
        disco::FEATURES,
        roster::FEATURES,
        ping::FEATURES,
        offline::FEATURES,
    ]
    .concat();
    f.sort_unstable();
    f.dedup();
    f
}
