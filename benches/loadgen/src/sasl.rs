//! SASL, client side: SCRAM-SHA-256 / SCRAM-SHA-1 (RFC 5802, RFC 7677,
//! without channel binding: GS2 header `n,,`) and PLAIN (RFC 4616).
//!
//! The salted password (PBKDF2, thousands of HMACs) is cached per (hash,
//! salt, iterations, password): benchmark accounts share one salt, and
//! without the cache each login would cost the generator far more CPU than
//! it costs the server, which only compares keys.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// The mechanism a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mech {
    #[serde(rename = "scram-sha-256")]
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "scram-sha-1")]
    #[value(name = "scram-sha-1")]
    ScramSha1,
    Plain,
}

impl Mech {
    /// The IANA name, as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Mech::ScramSha256 => "SCRAM-SHA-256",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::Plain => "PLAIN",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // new_from_slice accepts any key length for HMAC; it cannot fail.
        match self {
            Hash::Sha1 => {
                let mut m = <Hmac<Sha1>>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha256 => {
                let mut m = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC takes any key");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn h(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let key = (self, salt.to_vec(), iterations, password.to_vec());
        let cache = SALTED.get_or_init(Default::default);
        if let Some(v) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return v;
        }
        let out = match self {
            Hash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out.to_vec()
            }
            Hash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out.to_vec()
            }
        };
        if let Ok(mut c) = cache.lock() {
            // Per-account salts would grow it without bound; start over.
            if c.len() > 100_000 {
                c.clear();
            }
            c.insert(key, out.clone());
        }
        out
    }
}

type SaltKey = (Hash, Vec<u8>, u32, Vec<u8>);
static SALTED: OnceLock<Mutex<HashMap<SaltKey, Vec<u8>>>> = OnceLock::new();

/// One authentication exchange in progress.
pub enum Exchange {
    Plain,
    Scram(Scram),
}

impl Exchange {
    /// The exchange and the initial response (raw bytes, before base64).
    pub fn start(mech: Mech, user: &str, password: &str) -> (Exchange, Vec<u8>) {
        match mech {
            Mech::Plain => {
                let mut msg = Vec::with_capacity(user.len() + password.len() + 2);
                msg.push(0);
                msg.extend_from_slice(user.as_bytes());
                msg.push(0);
                msg.extend_from_slice(password.as_bytes());
                (Exchange::Plain, msg)
            }
            Mech::ScramSha256 | Mech::ScramSha1 => {
                let hash = if mech == Mech::ScramSha1 {
                    Hash::Sha1
                } else {
                    Hash::Sha256
                };
                let nonce: [u8; 18] = rand::random();
                let s = Scram::new(hash, user, password, &B64.encode(nonce));
                let first = s.client_first();
                (Exchange::Scram(s), first.into_bytes())
            }
        }
    }

    /// The response to a server challenge.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, Error> {
        match self {
            Exchange::Plain => Err(Error::Auth("unexpected challenge for PLAIN".into())),
            Exchange::Scram(s) => s.client_final(challenge).map(String::into_bytes),
        }
    }

    /// Checks the additional data of `<success/>` (the server signature).
    pub fn finish(&self, data: &[u8]) -> Result<(), Error> {
        match self {
            Exchange::Plain => Ok(()),
            Exchange::Scram(s) => s.verify_server_final(data),
        }
    }
}

pub struct Scram {
    hash: Hash,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    server_signature: Option<Vec<u8>>,
}

impl Scram {
    fn new(hash: Hash, user: &str, password: &str, client_nonce: &str) -> Scram {
        // saslname: '=' and ',' are escaped (RFC 5802 §5.1).
        let user = user.replace('=', "=3D").replace(',', "=2C");
        Scram {
            hash,
            password: password.to_string(),
            client_nonce: client_nonce.to_string(),
            client_first_bare: format!("n={user},r={client_nonce}"),
            server_signature: None,
        }
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    fn client_final(&mut self, server_first: &[u8]) -> Result<String, Error> {
        let bad = |m: &str| Error::Auth(format!("server-first-message: {m}"));
        let text = std::str::from_utf8(server_first).map_err(|_| bad("not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for part in text.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => nonce = Some(v),
                Some(("s=", v)) => salt = Some(B64.decode(v).map_err(|_| bad("salt"))?),
                Some(("i=", v)) => iterations = Some(v.parse::<u32>().map_err(|_| bad("i"))?),
                Some(("m=", _)) => return Err(bad("mandatory extension")),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(bad("r, s or i missing"));
        };
        if !nonce.starts_with(&self.client_nonce) || iterations == 0 {
            return Err(bad("nonce or iteration count"));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let salted = self.hash.hi(self.password.as_bytes(), &salt, iterations);
        let client_key = self.hash.hmac(&salted, b"Client Key");
        let stored_key = self.hash.h(&client_key);
        let signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = self.hash.hmac(&salted, b"Server Key");
        self.server_signature = Some(self.hash.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    fn verify_server_final(&self, data: &[u8]) -> Result<(), Error> {
        let text = std::str::from_utf8(data).unwrap_or("");
        let Some(v) = text.strip_prefix("v=") else {
            return Err(Error::Auth(format!("server-final-message: {text:?}")));
        };
        let v = B64
            .decode(v.split(',').next().unwrap_or(""))
            .map_err(|_| Error::Auth("server signature not base64".into()))?;
        if self.server_signature.as_deref() == Some(&v[..]) {
            Ok(())
        } else {
            Err(Error::Auth("wrong server signature".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5802_sha1_example() {
        let mut s = Scram::new(Hash::Sha1, "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(s.client_first(), "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = s
            .client_final(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .expect("final");
        assert_eq!(
            fin,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        s.verify_server_final(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .expect("server signature");
        assert!(s.verify_server_final(b"v=AAAA").is_err());
    }

    #[test]
    fn rfc7677_sha256_example() {
        let mut s = Scram::new(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        let fin = s
            .client_final(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .expect("final");
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("server signature");
    }

    #[test]
    fn server_nonce_must_extend_ours() {
        let mut s = Scram::new(Hash::Sha1, "user", "pencil", "abc");
        assert!(s.client_final(b"r=xyz,s=QSXCR+Q6sek8bf92,i=4096").is_err());
        assert!(s.client_final(b"r=abcd,s=QSXCR+Q6sek8bf92").is_err());
    }

    #[test]
    fn plain_initial_response() {
        let (_, msg) = Exchange::start(Mech::Plain, "user1", "password");
        assert_eq!(msg, b"\0user1\0password");
    }
}
