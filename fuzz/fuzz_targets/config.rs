//! Fuzzes the config file loader; see warden::fuzzing::config.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::config(data));
