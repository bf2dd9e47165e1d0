//! Fuzz target: the request normalizer, whose output is both what a policy judges and what the upstream receives.
use crate::openai::request::{normalized_body, request_fields, try_request_fields};
use crate::policy::prompt::prompt_texts;

/// Normalizes `data` as a request body. A normalized body must read exactly as the original did
/// (same fields) and be a fixed point: normalizing it again changes nothing.
pub fn request(data: &[u8]) {
    let fields = request_fields(data);
    let Ok(normalized) = normalized_body(data) else {
        return;
    };
    let (normalized, normalized_fields) = (normalized.bytes, normalized.fields);
    if data.is_empty() {
        assert!(normalized.is_empty());
        return;
    }
    assert_eq!(
        fields, normalized_fields,
        "request_fields and normalized_body disagree"
    );
    assert_eq!(
        try_request_fields(&normalized).as_ref(),
        Some(&normalized_fields),
        "the normalized body reads differently from the original"
    );
    let again = normalized_body(&normalized).expect("a normalized body normalizes again");
    assert_eq!(again.bytes, normalized, "normalizing is not idempotent");
    let value: serde_json::Value =
        serde_json::from_slice(&normalized).expect("a normalized body is JSON");
    prompt_texts(&value);
}
