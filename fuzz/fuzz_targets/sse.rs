//! Fuzzes the SSE parser and stream assembler, in fuzzer-chosen reads; see warden::fuzzing::sse.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::sse(data));
