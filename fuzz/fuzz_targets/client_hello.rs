//! Fuzzes the ClientHello classifier; see warden::fuzzing::client_hello.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::client_hello(data));
