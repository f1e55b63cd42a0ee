//! PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`.

use super::SaslFailure;

#[derive(Debug, PartialEq, Eq)]
pub struct PlainRequest {
    pub authzid: Option<String>,
    pub authcid: String,
    pub password: String,
}

pub fn parse_plain(msg: &[u8]) -> Result<PlainRequest, SaslFailure> {
    let text = std::str::from_utf8(msg).map_err(|_| SaslFailure::MalformedRequest)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslFailure::MalformedRequest);
    };
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(PlainRequest {
        authzid: (!authzid.is_empty()).then(|| authzid.to_string()),
        authcid: authcid.to_string(),
        password: password.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let r = parse_plain(b"\0alice\0secret").unwrap();
        assert_eq!(
            (r.authzid, r.authcid.as_str(), r.password.as_str()),
            (None, "alice", "secret")
        );
        let r = parse_plain(b"alice@x\0alice\0pw").unwrap();
        assert_eq!(r.authzid.as_deref(), Some("alice@x"));
        for bad in [
            &b"alice\0secret"[..],
            b"\0\0pw",
            b"\0alice\0",
            b"\0a\0b\0c",
            b"\0a\0\xff",
        ] {
            assert_eq!(
                parse_plain(bad),
                Err(SaslFailure::MalformedRequest),
                "{bad:?}"
            );
        }
    }
}
