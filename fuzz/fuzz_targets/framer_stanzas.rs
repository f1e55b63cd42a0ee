#![no_main]
// The harness lives in src/framer.rs so that tests/e2e can replay
// fuzz/regressions/framer_stanzas/ through the same code on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| osprey_fuzz::framer::run_stanzas(data));
