//! Fuzzes the streaming masker against the whole-text masker; see warden::fuzzing::stream_mask.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::stream_mask(data));
