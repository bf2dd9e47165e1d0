//! Fuzzes the request normalizer; see warden::fuzzing::request.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::request(data));
