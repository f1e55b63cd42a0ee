//! Fuzz harnesses for Osprey, one module per target. Each `run` takes the
//! raw fuzzer bytes and panics only when an invariant is broken.
//!
//! These files are compiled twice: by the cargo-fuzz targets
//! (fuzz_targets/*.rs, nightly, libFuzzer) and, on stable, by
//! tests/e2e/fuzz_regressions.rs, which replays every committed input under
//! fuzz/regressions/<target>/ through the same functions. So they use only
//! `osprey` and crates the gateway itself depends on.

pub mod config;
pub mod framer;
pub mod jid;
pub mod sasl;
pub mod xml_roundtrip;

/// A harness: the fuzzer's bytes in, a panic when an invariant breaks.
pub type Harness = fn(&[u8]);

/// Every target: its name (the fuzz_targets/ file, the regressions/ and
/// seeds/ directory) and its harness.
pub const TARGETS: &[(&str, Harness)] = &[
    ("framer", framer::run),
    ("framer_stanzas", framer::run_stanzas),
    ("sasl", sasl::run),
    ("jid", jid::run),
    ("config", config::run),
    ("xml_roundtrip", xml_roundtrip::run),
];

/// Splits `data` at the first 0xFF byte (never part of UTF-8, so seeds stay
/// readable): the fields of structured inputs.
fn split_ff(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}
