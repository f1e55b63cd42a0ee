//! JIDs (RFC 7622): `[local@]domain[/resource]`, normalised once at parse time
//! so that comparisons and session-table lookups are plain string equality.

use std::fmt;

/// Longest allowed part, in bytes (RFC 7622 §3.2–3.4).
const MAX_PART: usize = 1023;

/// Why a JID was refused. The wire condition for a bad JID is `jid-malformed`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    #[error("empty domain")]
    EmptyDomain,
    #[error("empty localpart")]
    EmptyLocal,
    #[error("empty resource")]
    EmptyResource,
    #[error("a part is longer than 1023 bytes")]
    TooLong,
    #[error("the localpart contains a character that is not allowed")]
    BadLocal,
    #[error("the domain is not a valid name")]
    BadDomain,
    #[error("the resource contains a character that is not allowed")]
    BadResource,
}

/// A parsed, normalised JID.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Jid {
    local: Option<Box<str>>,
    domain: Box<str>,
    resource: Option<Box<str>>,
}

impl Jid {
    /// Parses and normalises (nodeprep, nameprep, resourceprep).
    pub fn parse(s: &str) -> Result<Jid, JidError> {
        // The resource may itself contain '@' and '/', so split it off first.
        let (rest, resource) = match s.split_once('/') {
            Some((r, res)) => (r, Some(res)),
            None => (s, None),
        };
        let (local, domain) = match rest.split_once('@') {
            Some((l, d)) => (Some(l), d),
            None => (None, rest),
        };
        let local = local.map(normalise_local).transpose()?;
        let domain = normalise_domain(domain)?;
        let resource = resource.map(normalise_resource).transpose()?;
        Ok(Jid {
            local: local.map(Into::into),
            domain: domain.into(),
            resource: resource.map(Into::into),
        })
    }

    /// A bare JID from already-normalised parts (from storage or the session table).
    pub fn from_parts(local: Option<&str>, domain: &str, resource: Option<&str>) -> Jid {
        Jid {
            local: local.map(Into::into),
            domain: domain.into(),
            resource: resource.map(Into::into),
        }
    }

    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    pub fn is_bare(&self) -> bool {
        self.resource.is_none()
    }

    /// `local@domain` (or `domain`).
    pub fn bare(&self) -> String {
        match &self.local {
            // Not format!: this runs several times per routed stanza.
            Some(l) => {
                let mut s = String::with_capacity(l.len() + 1 + self.domain.len());
                s.push_str(l);
                s.push('@');
                s.push_str(&self.domain);
                s
            }
            None => self.domain.to_string(),
        }
    }

    /// Same bare JID (local part and domain), without building either.
    pub fn same_bare(&self, other: &Jid) -> bool {
        self.local == other.local && self.domain == other.domain
    }

    pub fn to_bare(&self) -> Jid {
        Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: None,
        }
    }

    pub fn with_resource(&self, resource: &str) -> Jid {
        Jid {
            local: self.local.clone(),
            domain: self.domain.clone(),
            resource: Some(resource.into()),
        }
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.local {
            f.write_str(l)?;
            f.write_str("@")?;
        }
        f.write_str(&self.domain)?;
        if let Some(r) = &self.resource {
            f.write_str("/")?;
            f.write_str(r)?;
        }
        Ok(())
    }
}

/// Normalises a localpart (also used for SASL usernames).
pub fn normalise_local(s: &str) -> Result<String, JidError> {
    if has_unassigned(s) {
        return Err(JidError::BadLocal);
    }
    let out = stringprep::nodeprep(s).map_err(|_| JidError::BadLocal)?;
    // Checked after prep: soft hyphens and zero-width characters map to
    // nothing (found by fuzzing: `\u{ad}@b` gave an empty localpart).
    if out.is_empty() {
        return Err(JidError::EmptyLocal);
    }
    check_len(&out)?;
    Ok(out.into_owned())
}

/// Characters unassigned in Unicode 3.2 (stringprep's tables) are refused
/// before prep: stringprep 0.1 checks them only after NFKC, so a newer
/// character that decomposes to capitals (`㉐` → `PTE`) skipped case
/// folding and normalising twice gave two answers (found by fuzzing).
fn has_unassigned(s: &str) -> bool {
    s.chars().any(stringprep::tables::unassigned_code_point)
}

/// Normalises a domain part; a trailing dot is dropped (RFC 7622 §3.2).
pub fn normalise_domain(s: &str) -> Result<String, JidError> {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() {
        return Err(JidError::EmptyDomain);
    }
    if has_unassigned(s) {
        return Err(JidError::BadDomain);
    }
    let out = stringprep::nameprep(s).map_err(|_| JidError::BadDomain)?;
    check_len(&out)?;
    // A domain is a hostname or an IP literal: no spaces or the other JID separators.
    let ok = out.split('.').all(|label| {
        !label.is_empty()
            && label.chars().all(|c| {
                c.is_alphanumeric() || c == '-' || c == '_' || c == ':' || c == '[' || c == ']'
            })
    });
    if !ok {
        return Err(JidError::BadDomain);
    }
    Ok(out.into_owned())
}

fn normalise_resource(s: &str) -> Result<String, JidError> {
    if has_unassigned(s) {
        return Err(JidError::BadResource);
    }
    let out = stringprep::resourceprep(s).map_err(|_| JidError::BadResource)?;
    if out.is_empty() {
        return Err(JidError::EmptyResource);
    }
    check_len(&out)?;
    Ok(out.into_owned())
}

fn check_len(s: &str) -> Result<(), JidError> {
    if s.len() > MAX_PART {
        Err(JidError::TooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_findings_stay_fixed() {
        assert_eq!(Jid::parse("\u{ad}@b").unwrap_err(), JidError::EmptyLocal);
        assert_eq!(
            Jid::parse("a@b/\u{200d}").unwrap_err(),
            JidError::EmptyResource
        );
        assert!(Jid::parse("\u{3250}@x").is_err());
        assert!(Jid::parse("a@\u{3250}").is_err());
        assert!(Jid::parse("\u{a7f2}@x").is_err());
    }

    #[test]
    fn parses_and_normalises() {
        let j = Jid::parse("Alice@LocalHost/Phone").unwrap();
        assert_eq!(j.local(), Some("alice"));
        assert_eq!(j.domain(), "localhost");
        assert_eq!(j.resource(), Some("Phone"));
        assert_eq!(j.to_string(), "alice@localhost/Phone");
        assert_eq!(j.bare(), "alice@localhost");
    }

    #[test]
    fn resource_may_hold_separators() {
        let j = Jid::parse("a@b/c@d/e").unwrap();
        assert_eq!(j.resource(), Some("c@d/e"));
    }

    #[test]
    fn domain_only_and_trailing_dot() {
        let j = Jid::parse("example.org.").unwrap();
        assert_eq!(j.local(), None);
        assert_eq!(j.domain(), "example.org");
        assert!(j.is_bare());
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(Jid::parse("@host"), Err(JidError::EmptyLocal));
        assert_eq!(Jid::parse("a@"), Err(JidError::EmptyDomain));
        assert_eq!(Jid::parse("a@b/"), Err(JidError::EmptyResource));
        assert_eq!(Jid::parse("a b@host"), Err(JidError::BadLocal));
        assert_eq!(Jid::parse("a@ho st"), Err(JidError::BadDomain));
        assert_eq!(Jid::parse("a@b..c"), Err(JidError::BadDomain));
        let long = "x".repeat(1024);
        assert_eq!(Jid::parse(&format!("{long}@h")), Err(JidError::TooLong));
    }
}
