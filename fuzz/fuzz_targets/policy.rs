//! Fuzzes the policy file loader; see warden::fuzzing::policy.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::policy(data));
