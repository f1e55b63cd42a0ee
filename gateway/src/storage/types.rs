//! What storage holds, as the rest of the server sees it.

/// Opaque SCRAM strings (encoded by the SASL module), one per hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCredentials {
    pub scram_sha1: String,
    pub scram_sha256: String,
}

/// The subscription state of a roster item (RFC 6121 §2.1.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(&self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Subscription> {
        Some(match s {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub jid: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// A subscription request is pending out.
    pub ask: bool,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineMessage {
    pub id: i64,
    pub stanza: String,
    pub stored_at_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfflineStored {
    Stored {
        id: i64,
    },
    /// The user already has the maximum number stored.
    Full,
}

/// XEP-0012: an account's last logout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastActivity {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// The status text of the last unavailable presence ("" without one).
    pub status: String,
}

/// XEP-0054: an account's stored vCard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVcard {
    /// The `<vCard xmlns='vcard-temp'/>` element, serialised.
    pub xml: String,
    /// XEP-0153: the SHA-1 hex of the decoded photo, "" without one.
    pub photo_hash: Option<String>,
}

/// XEP-0313: one message in an account's archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedMessage {
    pub host: String,
    pub user: String,
    /// Orders the archive; also the XEP-0359 stanza-id.
    pub id: i64,
    /// The other party (for `with` filters).
    pub peer_bare: String,
    pub peer_resource: String,
    /// Sent by the owner (else received).
    pub outgoing: bool,
    /// The message as routed.
    pub xml: String,
}

/// XEP-0313: one page query of an archive. Bounds are exclusive ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    pub host: String,
    pub user: String,
    /// Only this bare JID, and when `with_resource` is set only that full JID.
    pub with_bare: Option<String>,
    pub with_resource: Option<String>,
    /// Ids strictly above `after` and strictly below `before`.
    pub after: Option<i64>,
    pub before: Option<i64>,
    /// Newest first (a page before a point, or the last page).
    pub reverse: bool,
    /// At most this many rows.
    pub limit: u32,
}

/// XEP-0313 §6: an account's archiving preferences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivePrefs {
    /// always | roster | never.
    pub default_mode: String,
    pub always: Vec<String>,
    pub never: Vec<String>,
}
