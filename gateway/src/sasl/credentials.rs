//! What is stored per account and hash: salt, iterations, StoredKey and
//! ServerKey (RFC 5802 §3). Enough to verify a login, useless to log in.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use subtle::{Choice, ConstantTimeEq};

use super::{SaslFailure, ScramHash};

/// Lowest iteration count accepted when deriving.
pub const MIN_ITERATIONS: u32 = 4096;

#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub hash: ScramHash,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredentials {
    // Keys stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentials {
    /// New credentials with a random 16-byte salt.
    pub fn derive(hash: ScramHash, password: &str, iterations: u32) -> Result<Self, SaslFailure> {
        let salt: [u8; 16] = rand::random();
        Self::derive_with_salt(hash, password, &salt, iterations)
    }

    pub fn derive_with_salt(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, SaslFailure> {
        let password = stringprep::saslprep(password).map_err(|_| SaslFailure::MalformedRequest)?;
        let salted = hash.hi(password.as_bytes(), salt, iterations.max(1));
        let client_key = hash.hmac(&salted, b"Client Key");
        Ok(ScramCredentials {
            hash,
            iterations,
            salt: salt.to_vec(),
            stored_key: hash.h(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        })
    }

    /// `iterations,salt,stored_key,server_key` (base64), the storage form.
    pub fn encode(&self) -> String {
        format!(
            "{},{},{},{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }

    pub fn decode(hash: ScramHash, s: &str) -> Result<Self, SaslFailure> {
        let bad = |_| SaslFailure::TemporaryAuthFailure;
        let mut parts = s.split(',');
        let (Some(i), Some(salt), Some(stored), Some(server), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(SaslFailure::TemporaryAuthFailure);
        };
        let creds = ScramCredentials {
            hash,
            iterations: i.parse().map_err(|_| SaslFailure::TemporaryAuthFailure)?,
            salt: B64.decode(salt).map_err(bad)?,
            stored_key: B64.decode(stored).map_err(bad)?,
            server_key: B64.decode(server).map_err(bad)?,
        };
        if creds.stored_key.len() != hash.output_len()
            || creds.server_key.len() != hash.output_len()
        {
            return Err(SaslFailure::TemporaryAuthFailure);
        }
        Ok(creds)
    }

    /// Checks a password offered in clear (PLAIN): derive, compare StoredKey
    /// in constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        bool::from(self.password_matches(password))
    }

    fn password_matches(&self, password: &str) -> Choice {
        match Self::derive_with_salt(self.hash, password, &self.salt, self.iterations) {
            Ok(c) => c.stored_key.ct_eq(&self.stored_key),
            Err(_) => Choice::from(0),
        }
    }
}

/// Checks a PLAIN password against an account's stored keys or, for an
/// account that does not exist, against its [`fake_credentials`]: the same
/// PBKDF2 derivation with the same iteration count and a constant-time
/// comparison either way, so the time taken does not tell whether the
/// account exists.
pub fn verify_plain(
    stored: Option<&ScramCredentials>,
    username: &str,
    password: &str,
    secret: &[u8],
    iterations: u32,
) -> bool {
    let fake;
    let (creds, exists) = match stored {
        Some(c) => (c, Choice::from(1)),
        None => {
            fake = fake_credentials(ScramHash::Sha256, username, secret, iterations);
            (&fake, Choice::from(0))
        }
    };
    bool::from(creds.password_matches(password) & exists)
}

/// Stable fake credentials for an unknown user, so that the SCRAM exchange
/// runs to its end and fails just like a wrong password would (and PLAIN
/// does the same work). `iterations`: those of new accounts, at least
/// [`MIN_ITERATIONS`].
pub fn fake_credentials(
    hash: ScramHash,
    username: &str,
    secret: &[u8],
    iterations: u32,
) -> ScramCredentials {
    let derive = |label: &[u8]| {
        let mut data = label.to_vec();
        data.extend_from_slice(username.as_bytes());
        ScramHash::Sha256.hmac(secret, &data)
    };
    let mut salt = derive(b"salt:");
    salt.truncate(16);
    let mut stored_key = derive(b"stored:");
    stored_key.truncate(hash.output_len());
    let mut server_key = derive(b"server:");
    server_key.truncate(hash.output_len());
    ScramCredentials {
        hash,
        iterations: iterations.max(MIN_ITERATIONS),
        salt,
        stored_key,
        server_key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::hash::HI_CALLS;

    /// The PBKDF2 runs (their iteration counts) of `f` on this thread.
    fn derivations(f: impl FnOnce() -> bool) -> (bool, Vec<u32>) {
        HI_CALLS.with(|c| c.borrow_mut().clear());
        let ok = f();
        (ok, HI_CALLS.with(|c| c.take()))
    }

    #[test]
    fn plain_on_an_unknown_account_derives_like_a_wrong_password() {
        let known = ScramCredentials::derive(ScramHash::Sha256, "secret", 4096).unwrap();
        let secret = b"process secret";
        let (ok, wrong) =
            derivations(|| verify_plain(Some(&known), "alice", "guess", secret, 4096));
        assert!(!ok);
        let (ok, unknown) = derivations(|| verify_plain(None, "nobody", "guess", secret, 4096));
        assert!(!ok);
        assert_eq!(wrong, [4096], "a wrong password runs one PBKDF2");
        assert_eq!(unknown, wrong, "so does an unknown account");
        let (ok, right) =
            derivations(|| verify_plain(Some(&known), "alice", "secret", secret, 4096));
        assert!(ok);
        assert_eq!(right, wrong);
        // Accounts derived with more iterations: the fake ones follow.
        let (_, more) = derivations(|| verify_plain(None, "nobody", "guess", secret, 10_000));
        assert_eq!(more, [10_000]);
    }

    #[test]
    fn fake_credentials_are_the_same_for_each_probe_and_never_match() {
        let a = fake_credentials(ScramHash::Sha256, "nobody", b"k", 4096);
        assert_eq!(a, fake_credentials(ScramHash::Sha256, "nobody", b"k", 4096));
        assert_eq!(a.iterations, 4096);
        assert_eq!(
            fake_credentials(ScramHash::Sha256, "nobody", b"k", 100).iterations,
            MIN_ITERATIONS
        );
        // Even the password that happens to derive the fake keys is refused.
        for pw in ["", "nobody", "k", "password"] {
            assert!(!verify_plain(None, "nobody", pw, b"k", 4096));
        }
    }
}
