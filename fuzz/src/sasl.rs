//! Target `sasl`: the server side of SCRAM-SHA-1/256 and PLAIN
//! (`osprey::sasl`), against a known account (password `pencil`).
//!
//! Input: byte 0 picks the hash (bit 0) and what the rest is (bits 1-2):
//! - 0: a PLAIN message, checked against the account;
//! - 1: a SCRAM client-first, 0xFF, a client-final (both as sent);
//! - 2: a SCRAM client-first, 0xFF, extensions for a client-final that the
//!   harness completes with the right channel binding, nonce and proof
//!   (bit 7 set: the proof is wrong by one bit);
//! - 3: stored credentials (`iterations,salt,stored_key,server_key`).
//!
//! Invariants: nothing panics; PLAIN accepts exactly the passwords that
//! SASLprep to `pencil`; a SCRAM exchange succeeds only with the right proof,
//! and then returns the right server signature; stored credentials that
//! decode encode back to themselves.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use osprey::sasl::{
    parse_client_first, parse_plain, Mechanism, SaslFailure, ScramCredentials, ScramHash,
    ScramServer,
};

const PASSWORD: &str = "pencil";
const SALT: &[u8] = b"fuzz-salt-16byte";
/// Low, so that PLAIN's key derivation does not dominate the run time.
const ITERATIONS: u32 = 2;
/// The server nonce (the gateway draws a random one).
const SERVER_NONCE: &str = "3rfcNHYJY1ZVvWVs7j";

struct Account {
    creds: ScramCredentials,
    client_key: Vec<u8>,
}

fn account(hash: ScramHash) -> &'static Account {
    static SHA1: OnceLock<Account> = OnceLock::new();
    static SHA256: OnceLock<Account> = OnceLock::new();
    let cell = match hash {
        ScramHash::Sha1 => &SHA1,
        ScramHash::Sha256 => &SHA256,
    };
    cell.get_or_init(|| {
        let creds = ScramCredentials::derive_with_salt(hash, PASSWORD, SALT, ITERATIONS)
            .expect("derive the known account");
        let mut salted = vec![0; hash.output_len()];
        match hash {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(
                PASSWORD.as_bytes(),
                SALT,
                ITERATIONS,
                &mut salted,
            ),
            ScramHash::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(
                PASSWORD.as_bytes(),
                SALT,
                ITERATIONS,
                &mut salted,
            ),
        }
        let client_key = hmac(hash, &salted, b"Client Key");
        Account { creds, client_key }
    })
}

fn hmac(hash: ScramHash, key: &[u8], data: &[u8]) -> Vec<u8> {
    match hash {
        ScramHash::Sha1 => {
            let mut m = Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        ScramHash::Sha256 => {
            let mut m = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }
}

pub fn run(data: &[u8]) {
    let [sel, rest @ ..] = data else {
        return;
    };
    let hash = if sel & 1 == 0 {
        ScramHash::Sha1
    } else {
        ScramHash::Sha256
    };
    match (sel >> 1) & 3 {
        0 => plain(rest),
        1 => {
            let (first, last) = super::split_ff(rest);
            scram(hash, first, |_| last.to_vec());
        }
        2 => {
            let (first, extensions) = super::split_ff(rest);
            scram_with_proof(hash, first, extensions, sel & 0x80 != 0);
        }
        _ => stored(hash, rest),
    }
    if let Ok(name) = std::str::from_utf8(rest) {
        if let Some(m) = Mechanism::from_name(name) {
            assert_eq!(m.name(), name);
        }
    }
}

fn plain(msg: &[u8]) {
    let Ok(req) = parse_plain(msg) else {
        return;
    };
    let rebuilt = format!(
        "{}\0{}\0{}",
        req.authzid.as_deref().unwrap_or(""),
        req.authcid,
        req.password
    );
    assert_eq!(rebuilt.as_bytes(), msg, "PLAIN fields lost or invented");
    assert!(!req.authcid.is_empty() && !req.password.is_empty());
    assert!(req.authzid.as_deref() != Some(""));
    // What c2s does next: the username, the authzid, the password.
    let _ = osprey::jid::normalise_local(&req.authcid);
    if let Some(a) = &req.authzid {
        let _ = osprey::jid::Jid::parse(a);
    }
    let expected = stringprep::saslprep(&req.password).is_ok_and(|p| p == PASSWORD);
    assert_eq!(
        account(ScramHash::Sha256)
            .creds
            .verify_password(&req.password),
        expected,
        "PLAIN password {:?}",
        req.password
    );
}

/// Runs an exchange; `last` makes the client-final from the server-first.
/// Returns the server-final, or why the exchange failed.
fn scram(
    hash: ScramHash,
    first: &[u8],
    last: impl FnOnce(&str) -> Vec<u8>,
) -> Option<Result<Vec<u8>, SaslFailure>> {
    let parsed = parse_client_first(first).ok()?;
    assert!(!parsed.username.is_empty());
    let _ = osprey::jid::normalise_local(&parsed.username);
    if let Some(a) = &parsed.authzid {
        let _ = osprey::jid::Jid::parse(a);
    }
    let acct = account(hash);
    let (server, server_first) = ScramServer::with_nonce(parsed, acct.creds.clone(), SERVER_NONCE);
    let server_first = String::from_utf8(server_first).expect("server-first is text");
    let text = std::str::from_utf8(first).expect("a parsed client-first is UTF-8");
    let (_, bare) = gs2_split(text);
    let client_nonce = client_nonce(bare);
    assert_eq!(
        server_first,
        format!(
            "r={client_nonce}{SERVER_NONCE},s={},i={ITERATIONS}",
            B64.encode(SALT)
        )
    );
    let client_final = last(&server_first);
    let outcome = server.finish(&client_final);
    if let Ok(server_final) = &outcome {
        // Only possible with the right proof: check it independently.
        let text = std::str::from_utf8(&client_final).expect("accepted, so UTF-8");
        let (without_proof, proof) = text.rsplit_once(",p=").expect("accepted, so has a proof");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = hmac(hash, &acct.creds.stored_key, auth_message.as_bytes());
        let right: Vec<u8> = acct
            .client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(
            B64.decode(proof).ok(),
            Some(right),
            "a wrong proof was accepted: {text:?}"
        );
        let expected = hmac(hash, &acct.creds.server_key, auth_message.as_bytes());
        assert_eq!(
            server_final,
            format!("v={}", B64.encode(expected)).as_bytes()
        );
    }
    Some(outcome)
}

/// `gs2-header` (with its final comma) and `client-first-message-bare`.
fn gs2_split(text: &str) -> (String, &str) {
    let mut parts = text.splitn(3, ',');
    let (Some(cbind), Some(authz), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        panic!("a parsed client-first has three parts: {text:?}");
    };
    (format!("{cbind},{authz},"), bare)
}

fn client_nonce(bare: &str) -> &str {
    bare.split(',')
        .nth(1)
        .and_then(|a| a.strip_prefix("r="))
        .unwrap_or_else(|| panic!("a parsed client-first has a nonce: {bare:?}"))
}

fn scram_with_proof(hash: ScramHash, first: &[u8], extensions: &[u8], wrong: bool) {
    let extensions = String::from_utf8_lossy(extensions);
    let outcome = scram(hash, first, |server_first| {
        let text = std::str::from_utf8(first).expect("parsed, so UTF-8");
        let (gs2, bare) = gs2_split(text);
        let nonce = format!("{}{SERVER_NONCE}", client_nonce(bare));
        let mut without_proof = format!("c={},r={nonce}", B64.encode(&gs2));
        if !extensions.is_empty() {
            without_proof.push(',');
            without_proof.push_str(&extensions);
        }
        let acct = account(hash);
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = hmac(hash, &acct.creds.stored_key, auth_message.as_bytes());
        let mut proof: Vec<u8> = acct
            .client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        if wrong {
            let i = extensions.len() % proof.len();
            proof[i] ^= 1 << (extensions.len() % 8);
        }
        format!("{without_proof},p={}", B64.encode(proof)).into_bytes()
    });
    match outcome {
        None => {}
        Some(Ok(_)) => assert!(!wrong, "a wrong proof was accepted"),
        Some(Err(e)) => {
            assert!(wrong, "the right proof was refused: {e}");
            assert_eq!(e, SaslFailure::NotAuthorized);
        }
    }
}

fn stored(hash: ScramHash, text: &[u8]) {
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(c) = ScramCredentials::decode(hash, text) {
        assert_eq!(c.stored_key.len(), hash.output_len());
        assert_eq!(ScramCredentials::decode(hash, &c.encode()), Ok(c));
    }
}
