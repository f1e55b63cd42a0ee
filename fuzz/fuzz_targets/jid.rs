#![no_main]
// The harness lives in src/jid.rs so that tests/e2e can replay
// fuzz/regressions/jid/ through the same code on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| osprey_fuzz::jid::run(data));
