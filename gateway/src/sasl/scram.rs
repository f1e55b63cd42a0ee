//! The SCRAM exchange, server side (RFC 5802 §5): client-first,
//! server-first, client-final (proof checked), server-final.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::{SaslFailure, ScramCredentials};

/// The parsed client-first message.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    /// The username (`n=`), decoded and SASLprep'd.
    pub username: String,
    /// The authorization identity (`a=`), if any.
    pub authzid: Option<String>,
    /// The GS2 header exactly as sent (echoed in `c=`).
    gs2_header: String,
    client_nonce: String,
    /// client-first-message-bare, part of the AuthMessage.
    bare: String,
}

pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, SaslFailure> {
    let text = std::str::from_utf8(msg).map_err(|_| SaslFailure::MalformedRequest)?;
    let mut split = text.splitn(3, ',');
    let (Some(cbind), Some(authz), Some(bare)) = (split.next(), split.next(), split.next()) else {
        return Err(SaslFailure::MalformedRequest);
    };
    match cbind {
        // We offer no -PLUS mechanism, so "y" (client could bind, thinks we
        // cannot) is fine; "p=" asks for binding we never offered.
        "n" | "y" => {}
        _ => return Err(SaslFailure::MalformedRequest),
    }
    let authzid = match authz {
        "" => None,
        a => Some(decode_saslname(
            a.strip_prefix("a=").ok_or(SaslFailure::MalformedRequest)?,
        )?),
    };
    let mut attrs = bare.split(',');
    let user = attrs
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or(SaslFailure::MalformedRequest)?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
        .ok_or(SaslFailure::MalformedRequest)?;
    // Mandatory extensions (m=) are not supported (RFC 5802 §5.1).
    if bare.starts_with("m=") {
        return Err(SaslFailure::MalformedRequest);
    }
    let username = decode_saslname(user)?;
    let username = stringprep::saslprep(&username)
        .map_err(|_| SaslFailure::NotAuthorized)?
        .into_owned();
    if username.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(ClientFirst {
        username,
        authzid,
        gs2_header: format!("{cbind},{authz},"),
        client_nonce: nonce.to_string(),
        bare: bare.to_string(),
    })
}

/// `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_saslname(s: &str) -> Result<String, SaslFailure> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(SaslFailure::MalformedRequest),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The server between its first message and the client's final one.
pub struct ScramServer {
    first: ClientFirst,
    creds: ScramCredentials,
    nonce: String,
    server_first: String,
}

impl ScramServer {
    pub fn new(first: ClientFirst, creds: ScramCredentials) -> (ScramServer, Vec<u8>) {
        let server_nonce = B64.encode(rand::random::<[u8; 24]>());
        Self::with_nonce(first, creds, &server_nonce)
    }

    /// With a chosen server nonce (tests use the RFC's).
    pub fn with_nonce(
        first: ClientFirst,
        creds: ScramCredentials,
        server_nonce: &str,
    ) -> (ScramServer, Vec<u8>) {
        let nonce = format!("{}{}", first.client_nonce, server_nonce);
        let server_first = format!(
            "r={},s={},i={}",
            nonce,
            B64.encode(&creds.salt),
            creds.iterations
        );
        let out = server_first.clone().into_bytes();
        (
            ScramServer {
                first,
                creds,
                nonce,
                server_first,
            },
            out,
        )
    }

    /// Checks the client's proof; returns the server-final message.
    pub fn finish(self, client_final: &[u8]) -> Result<Vec<u8>, SaslFailure> {
        let text = std::str::from_utf8(client_final).map_err(|_| SaslFailure::MalformedRequest)?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(SaslFailure::MalformedRequest)?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(SaslFailure::MalformedRequest)?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(SaslFailure::MalformedRequest)?;
        let cbind = B64
            .decode(cbind)
            .map_err(|_| SaslFailure::IncorrectEncoding)?;
        if cbind != self.first.gs2_header.as_bytes() || nonce != self.nonce {
            return Err(SaslFailure::NotAuthorized);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| SaslFailure::IncorrectEncoding)?;
        let hash = self.creds.hash;
        if proof.len() != hash.output_len() {
            return Err(SaslFailure::NotAuthorized);
        }
        let auth_message = format!(
            "{},{},{}",
            self.first.bare, self.server_first, without_proof
        );
        let signature = hash.hmac(&self.creds.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        if !bool::from(hash.h(&client_key).ct_eq(&self.creds.stored_key)) {
            return Err(SaslFailure::NotAuthorized);
        }
        let server_signature = hash.hmac(&self.creds.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{fake_credentials, ScramHash};
    use super::*;

    fn run(
        hash: ScramHash,
        salt: &str,
        cnonce: &str,
        snonce: &str,
        password: &str,
        proof_msg: &str,
    ) -> Result<String, SaslFailure> {
        let salt = B64.decode(salt).unwrap();
        let creds = ScramCredentials::derive_with_salt(hash, password, &salt, 4096).unwrap();
        let first = parse_client_first(format!("n,,n=user,r={cnonce}").as_bytes()).unwrap();
        let (server, _) = ScramServer::with_nonce(first, creds, snonce);
        server
            .finish(proof_msg.as_bytes())
            .map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn rfc5802_sha1_example() {
        let salt = B64.decode("QSXCR+Q6sek8bf92").unwrap();
        let creds =
            ScramCredentials::derive_with_salt(ScramHash::Sha1, "pencil", &salt, 4096).unwrap();
        let first = parse_client_first(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL").unwrap();
        let (server, server_first) = ScramServer::with_nonce(first, creds, "3rfcNHYJY1ZVvWVs7j");
        assert_eq!(
            String::from_utf8(server_first).unwrap(),
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );
        let v = server
            .finish(b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=")
            .unwrap();
        assert_eq!(v, b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn rfc7677_sha256_example() {
        let v = run(
            ScramHash::Sha256,
            "W22ZaJ0SNY7soEsUEjb6gQ==",
            "rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "pencil",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        );
        assert_eq!(v.unwrap(), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn wrong_password_nonce_or_binding_fail() {
        let ok = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let salt = "W22ZaJ0SNY7soEsUEjb6gQ==";
        let (c, s) = ("rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            run(ScramHash::Sha256, salt, c, s, "pencil2", ok),
            Err(SaslFailure::NotAuthorized)
        );
        let other_nonce = ok.replace("k0,p", "k1,p");
        assert_eq!(
            run(ScramHash::Sha256, salt, c, s, "pencil", &other_nonce),
            Err(SaslFailure::NotAuthorized)
        );
        let other_cb = ok.replace("c=biws", "c=eSws");
        assert_eq!(
            run(ScramHash::Sha256, salt, c, s, "pencil", &other_cb),
            Err(SaslFailure::NotAuthorized)
        );
        assert_eq!(
            run(ScramHash::Sha256, salt, c, s, "pencil", "c=biws"),
            Err(SaslFailure::MalformedRequest)
        );
        let bad_b64 = ok.replace("p=dHz", "p=*Hz");
        assert_eq!(
            run(ScramHash::Sha256, salt, c, s, "pencil", &bad_b64),
            Err(SaslFailure::IncorrectEncoding)
        );
    }

    #[test]
    fn client_first_parsing() {
        let f = parse_client_first(b"n,a=alice@x,n=al=2Cice=3D,r=abc").unwrap();
        assert_eq!(
            (f.username.as_str(), f.authzid.as_deref()),
            ("al,ice=", Some("alice@x"))
        );
        assert!(parse_client_first(b"y,,n=u,r=abc").is_ok());
        for bad in [
            &b"p=tls-unique,,n=u,r=abc"[..],
            b"n,,r=abc",
            b"n,,n=u",
            b"n,,n=u=ZZ,r=x",
            b"x,,n=u,r=a",
            b"n,,m=ext,n=u,r=a",
            b"n,,n=,r=a",
        ] {
            assert!(parse_client_first(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn credentials_round_trip_and_plain_check() {
        let c = ScramCredentials::derive(ScramHash::Sha256, "secret", 4096).unwrap();
        let back = ScramCredentials::decode(ScramHash::Sha256, &c.encode()).unwrap();
        assert_eq!(back, c);
        assert!(c.verify_password("secret"));
        assert!(!c.verify_password("Secret"));
        assert!(
            ScramCredentials::decode(ScramHash::Sha1, &c.encode()).is_err(),
            "key length checked"
        );
        assert!(ScramCredentials::decode(ScramHash::Sha256, "4096,a,b").is_err());
    }

    #[test]
    fn fake_credentials_are_stable_per_user() {
        let a1 = fake_credentials(ScramHash::Sha1, "ann", b"k", 4096);
        let a2 = fake_credentials(ScramHash::Sha1, "ann", b"k", 4096);
        let b = fake_credentials(ScramHash::Sha1, "bob", b"k", 4096);
        assert_eq!(a1, a2);
        assert_ne!(a1.salt, b.salt);
        assert_eq!(a1.stored_key.len(), 20);
    }
}
