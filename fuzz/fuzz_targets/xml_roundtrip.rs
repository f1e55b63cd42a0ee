#![no_main]
// The harness lives in src/xml_roundtrip.rs so that tests/e2e can replay
// fuzz/regressions/xml_roundtrip/ through the same code on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| osprey_fuzz::xml_roundtrip::run(data));
