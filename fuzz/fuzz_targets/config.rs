#![no_main]
// The harness lives in src/config.rs so that tests/e2e can replay
// fuzz/regressions/config/ through the same code on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| osprey_fuzz::config::run(data));
