//! XMPP ping (XEP-0199): the server and an account's own bare JID answer.

use super::{IqRequest, IqResult, Target};
use crate::errors::{StanzaCondition, StanzaError};

pub const NS_PING: &str = "urn:xmpp:ping";
pub const FEATURES: &[&str] = &[NS_PING];

pub fn iq(req: &IqRequest<'_>) -> IqResult {
    if req.set {
        return Err(StanzaError::new(StanzaCondition::FeatureNotImplemented));
    }
    match req.target {
        Target::Server | Target::OwnAccount => Ok(None),
        Target::OtherAccount(_) => Err(StanzaError::new(StanzaCondition::ServiceUnavailable)),
    }
}
