//! PKCE (RFC 7636) with S256: the challenge of a verifier, and the checks on both.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest;

/// BASE64URL(SHA256(verifier)), what a client sends as `code_challenge`.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn check_verifier_syntax(verifier: &str) -> Result<(), String> {
    let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
    if !(43..=128).contains(&verifier.len()) {
        return Err(format!(
            "code_verifier must be 43 to 128 characters, got {}",
            verifier.len()
        ));
    }
    if !verifier.chars().all(unreserved) {
        return Err("code_verifier has characters outside [A-Za-z0-9-._~]".to_owned());
    }
    Ok(())
}

/// Whether `verifier` is the one `challenge` was made from.
pub fn verify(verifier: &str, challenge: &str) -> Result<(), String> {
    check_verifier_syntax(verifier)?;
    if s256_challenge(verifier) == challenge {
        Ok(())
    } else {
        Err("code_verifier does not match the code_challenge".to_owned())
    }
}

/// A fresh random verifier (43 characters) for clients in tests.
pub fn new_verifier() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system RNG");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_challenge() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            s256_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(
            verify(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            Ok(())
        );
    }

    #[test]
    fn a_wrong_or_malformed_verifier_is_refused() {
        let verifier = new_verifier();
        let challenge = s256_challenge(&verifier);
        assert!(verify(&new_verifier(), &challenge).is_err());
        assert!(verify("short", &s256_challenge("short")).is_err());
        let spaced = format!("{} ", &verifier[..42]);
        assert!(verify(&spaced, &s256_challenge(&spaced)).is_err());
        // The plain method (challenge = verifier) is not S256.
        assert!(verify(&verifier, &verifier).is_err());
    }
}
