//! Service discovery (XEP-0030) on the server and on accounts.

use super::{server_features, IqRequest, IqResult, Target};
use crate::errors::{StanzaCondition, StanzaError};
use crate::xml::El;

pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const FEATURES: &[&str] = &[NS_DISCO_INFO, NS_DISCO_ITEMS];

pub async fn iq(req: &IqRequest<'_>) -> IqResult {
    if req.set {
        return Err(StanzaError::new(StanzaCondition::FeatureNotImplemented));
    }
    // We publish no nodes.
    if req.payload.attribute("node").is_some() {
        return Err(StanzaError::new(StanzaCondition::ItemNotFound));
    }
    if let Target::OtherAccount(jid) = req.target {
        let (Some(user), host) = (jid.local(), jid.domain()) else {
            return Err(StanzaError::new(StanzaCondition::ServiceUnavailable));
        };
        let exists = req
            .ctx
            .storage
            .account_exists(host, user)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "account lookup failed");
                StanzaError::new(StanzaCondition::InternalServerError)
            })?;
        if !exists {
            return Err(StanzaError::new(StanzaCondition::ServiceUnavailable));
        }
    }
    let ns = req.payload.tag_name().namespace().unwrap_or_default();
    let mut query = El::new("query").xmlns(ns);
    if ns == NS_DISCO_ITEMS {
        return Ok(Some(query));
    }
    let features = match req.target {
        Target::Server => {
            query = query.child(
                El::new("identity")
                    .attr("category", "server")
                    .attr("type", "im")
                    .attr("name", "Osprey"),
            );
            server_features()
        }
        Target::OwnAccount | Target::OtherAccount(_) => {
            query = query.child(
                El::new("identity")
                    .attr("category", "account")
                    .attr("type", "registered"),
            );
            FEATURES.to_vec()
        }
    };
    for f in features {
        query = query.child(El::new("feature").attr("var", f));
    }
    Ok(Some(query))
}
