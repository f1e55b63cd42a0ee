//! SASL, server side: SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802, RFC 7677)
//! on stored keys, and PLAIN (RFC 4616) checked against the same keys.
//! No password is ever stored, and a SCRAM login runs no PBKDF2 here.

mod credentials;
mod error;
mod hash;
mod plain;
mod scram;

pub use credentials::{fake_credentials, verify_plain, ScramCredentials};
pub use error::SaslFailure;
pub use hash::ScramHash;
pub use plain::{parse_plain, PlainRequest};
pub use scram::{parse_client_first, ClientFirst, ScramServer};

/// What an account stores for a password: SCRAM keys for both hashes
/// (the CLI, the admin tools and tests all derive them here).
pub fn account_credentials(
    password: &str,
    iterations: u32,
) -> Result<crate::storage::AccountCredentials, SaslFailure> {
    Ok(crate::storage::AccountCredentials {
        scram_sha1: ScramCredentials::derive(ScramHash::Sha1, password, iterations)?.encode(),
        scram_sha256: ScramCredentials::derive(ScramHash::Sha256, password, iterations)?.encode(),
    })
}

/// The mechanisms this server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    /// The IANA name, as on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    pub fn from_name(s: &str) -> Option<Mechanism> {
        [
            Mechanism::ScramSha256,
            Mechanism::ScramSha1,
            Mechanism::Plain,
        ]
        .into_iter()
        .find(|m| m.name() == s)
    }

    /// For metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "scram_sha_256",
            Mechanism::ScramSha1 => "scram_sha_1",
            Mechanism::Plain => "plain",
        }
    }
}
