#![no_main]
// The harness lives in src/sasl.rs so that tests/e2e can replay
// fuzz/regressions/sasl/ through the same code on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| osprey_fuzz::sasl::run(data));
