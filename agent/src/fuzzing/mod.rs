//! One entry point per fuzz target, shared by the cargo-fuzz harnesses (fuzz/) and the stable corpus replay test.
//!
//! Each function takes the fuzzer's bytes, drives one parser the way the proxy does, and panics
//! only when the code under test breaks one of its promises (a panic, a result that depends on how
//! the input was chunked, a normalized body that reads differently). Not part of Warden's API.
mod client_hello;
mod cuts;
mod loaders;
mod request;
mod sse;
mod stream_mask;

#[cfg(test)]
mod corpus_tests;

pub use client_hello::client_hello;
pub use loaders::{config, policy};
pub use request::request;
pub use sse::sse;
pub use stream_mask::stream_mask;

/// A fuzz target: takes the fuzzer's bytes, panics when the code under test breaks a promise.
pub type Target = fn(&[u8]);

/// Every target by the name of its harness in fuzz/fuzz_targets/ and its corpus in fuzz/corpus/.
pub const TARGETS: &[(&str, Target)] = &[
    ("client_hello", client_hello),
    ("sse", sse),
    ("request", request),
    ("stream_mask", stream_mask),
    ("policy", policy),
    ("config", config),
];
