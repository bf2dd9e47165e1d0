//! Whether a key an agent presented is shaped like a real provider key (and so leaked onto the
//! agent's host) rather than a placeholder.

/// Provider keys start with one of these (OpenAI `sk-`, `sk-proj-`, `sk-svcacct-`; Anthropic
/// `sk-ant-`); all are covered by `sk-`.
const PROVIDER_PREFIXES: [&str; 1] = ["sk-"];
/// Real keys carry far more than this many characters after the prefix; placeholders such as
/// `sk-test` or `sk-placeholder` do not.
const MIN_KEY_BODY: usize = 20;

/// The credential in a header value: the part after an auth scheme (`Bearer sk-…` → `sk-…`).
pub fn presented_key(value: &str) -> &str {
    let value = value.trim();
    match value.split_once(' ') {
        Some((_scheme, key)) => key.trim(),
        None => value,
    }
}

/// `sk-` followed by at least [`MIN_KEY_BODY`] key characters (letters, digits, `-`, `_`).
pub fn looks_like_provider_key(key: &str) -> bool {
    PROVIDER_PREFIXES.iter().any(|prefix| {
        key.strip_prefix(prefix).is_some_and(|body| {
            body.len() >= MIN_KEY_BODY
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_looking_keys_are_told_from_placeholders() {
        for real in [
            "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "sk-svcacct-0123456789abcdefghijklmnop",
            "sk-ant-api03-abcdefghijklmnopqrstuvwxyz",
            "sk-abcdefghijklmnopqrstuvwxyz012345",
        ] {
            assert!(
                looks_like_provider_key(presented_key(&format!("Bearer {real}"))),
                "{real}"
            );
        }
        for placeholder in [
            "sk-test",
            "sk-placeholder",
            "warden-placeholder",
            "",
            "sk-proj-has spaces in it and is long enough",
            "not-sk-proj-abcdefghijklmnopqrstuvwxyz",
        ] {
            assert!(
                !looks_like_provider_key(presented_key(placeholder)),
                "{placeholder}"
            );
        }
    }
}
