use super::*;
use crate::policy::mask::{MaskCounts, Masker};

/// `text` masked by the built-in `name` alone.
fn masked(name: &str, text: &str) -> String {
    let recognizer = builtin(name).unwrap_or_else(|| panic!("no builtin {name}"));
    let masker = Masker::new(vec![recognizer], "[{NAME}]");
    masker.mask(text, &mut MaskCounts::default()).into_owned()
}

fn assert_whole(name: &str, label: &str, positives: &[&str]) {
    for text in positives {
        assert_eq!(
            masked(name, text),
            format!("[{label}]"),
            "{name} should match {text:?}"
        );
        let embedded = format!("see {text}, thanks");
        assert_eq!(
            masked(name, &embedded),
            format!("see [{label}], thanks"),
            "{embedded:?}"
        );
    }
}

fn assert_untouched(name: &str, negatives: &[&str]) {
    for text in negatives {
        assert_eq!(
            masked(name, text),
            *text,
            "{name} should not match {text:?}"
        );
    }
}

#[test]
fn every_documented_name_is_a_builtin_with_an_upper_case_label() {
    for name in BUILTIN_NAMES {
        let recognizer = builtin(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(recognizer.name, name.to_uppercase());
        assert!(
            recognizer.max_len > 0 && recognizer.max_len <= 10_240,
            "{name}"
        );
    }
    assert!(builtin("passport").is_none());
}

#[test]
fn max_len_bounds_every_bounded_regex() {
    for name in BUILTIN_NAMES {
        let recognizer = builtin(name).unwrap_or_else(|| panic!("{name}"));
        if let Some(regex_bound) = regex_max_len(&recognizer.pattern) {
            assert!(recognizer.max_len >= regex_bound, "{name}");
        }
    }
    assert_eq!(builtin("aws_access_key").map(|r| r.max_len), Some(20));
    assert_eq!(builtin("us_ssn").map(|r| r.max_len), Some(11));
}

#[test]
fn email_follows_the_address_grammar() {
    assert_whole(
        "email",
        "EMAIL",
        &[
            "alice@example.com",
            "john.doe+billing@mail.example.co.uk",
            "o'brien@example.ie",
            "first_last-x@sub-domain.example.org",
            "user!#$%&*=?^`{|}~@example.io",
        ],
    );
    assert_untouched(
        "email",
        &[
            "a@b",
            "foo@bar.",
            "foo@bar.c",
            "foo@-bar.com",
            "foo@bar-.com",
            "@example.com",
            "x@1.2",
        ],
    );
    // Consecutive or trailing dots never become part of a match.
    assert_ne!(masked("email", "john..doe@example.com"), "[EMAIL]");
    assert_ne!(masked("email", "john.@example.com"), "[EMAIL]");
    assert_eq!(masked("email", "mail alice@example.com."), "mail [EMAIL].");
    let long_local = format!("{}@example.com", "a".repeat(65));
    assert_eq!(masked("email", &long_local), "[EMAIL]");
}

#[test]
fn credit_cards_are_luhn_checked() {
    assert_whole(
        "credit_card",
        "CREDIT_CARD",
        &[
            "4111111111111111",
            "4111 1111 1111 1111",
            "5555-5555-5555-4444",
            "3782 822463 10005",
            "6011111111111117",
            "4111111111119",
            "6304000000000000018",
            "6304 0000 0000 0000 018",
        ],
    );
    assert_untouched(
        "credit_card",
        &[
            "4111111111111112",
            "4111 1111 1111 1112",
            "411111111116",
            "41111111111111111111111",
            "4111 1111-1111 1111",
            "order 12345678901234",
        ],
    );
    assert_eq!(
        masked("credit_card", "ref 1234 4111 1111 1111 1111"),
        "ref 1234 [CREDIT_CARD]"
    );
    // A valid Luhn sum, but too short to be a card number.
    assert!(!luhn_ok("79927398713"));
    assert!(luhn_ok("4111-1111-1111-1111"));
}

#[test]
fn us_ssn_excludes_invalid_ranges() {
    assert_whole(
        "us_ssn",
        "US_SSN",
        &["123-45-6789", "001-01-0001", "899-99-9999", "665-12-3456"],
    );
    assert_untouched(
        "us_ssn",
        &[
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "999-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123456789",
            "1123-45-6789",
            "123-45-67890",
        ],
    );
}

#[test]
fn phone_numbers_in_e164_and_nanp_forms() {
    assert_whole(
        "phone",
        "PHONE",
        &[
            "+14155552671",
            "+44 20 7946 0958",
            "+49-30-901820",
            "(555) 123-4567",
            "555-123-4567",
            "555.123.4567",
            "+1 (555) 123-4567",
            "+1-555-123-4567",
        ],
    );
    assert_untouched(
        "phone",
        &[
            "123456",
            "call 555123",
            "2024-01-15",
            "15.01.2024",
            "01/15/2024",
            "+1234567",
            "+1234567890123456789",
            "155-123-4567",
            "555-123-45678",
            "version 1.2.3",
        ],
    );
}

#[test]
fn iban_is_mod97_checked() {
    assert_whole(
        "iban",
        "IBAN",
        &[
            "DE89 3704 0044 0532 0130 00",
            "DE89370400440532013000",
            "GB82 WEST 1234 5698 7654 32",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NO9386011117947",
        ],
    );
    assert_untouched(
        "iban",
        &[
            "DE89 3704 0044 0532 0130 01",
            "GB82 WEST 1234 5698 7654 33",
            "DE89 3704",
            "AB12 CDEF GHIJ KLMN",
        ],
    );
}

#[test]
fn ip_addresses_v4_and_common_v6() {
    assert_whole(
        "ip_address",
        "IP_ADDRESS",
        &[
            "192.168.1.10",
            "10.0.0.1",
            "255.255.255.255",
            "2001:db8:85a3:0:0:8a2e:370:7334",
            "2001:db8::1",
            "fe80::1",
            "::1",
            "::ffff:192.0.2.1",
        ],
    );
    assert_untouched(
        "ip_address",
        &[
            "version 1.2.3",
            "256.1.1.1",
            "1.2.3.999",
            "01.02.03.04",
            "at 12:30:45",
            "00:1a:2b:3c:4d:5e",
            "std::collections::HashMap",
            "u8::MAX and i32::from(x)",
            "dead::beef",
        ],
    );
    assert_eq!(
        masked("ip_address", "host 10.1.2.3:8080"),
        "host [IP_ADDRESS]:8080"
    );
}

const LEGACY_KEY: &str = "sk-ptgUzEjfebzJ6sZWdoHIxrXl0gqn87b1PZqZrmktsO3U9224";
const PROJECT_KEY: &str = concat!(
    "sk-proj-VlRXFwF8JlMaLNy02K35uDNHfkf7J8Rszi0z4JxT3PzPmhDJEpQwL6dfTkKPcPKPt0jLy4LrGWuQbUf6vUULm",
    "4A2Aohhhvtf_FPepL0z9zE40_eC14F2B-yeeGGFAD1HsPgOoZf-Xl3AvRL8O1BIRY-jJyfY",
);

#[test]
fn openai_keys_in_their_real_formats() {
    assert_whole(
        "openai_key",
        "OPENAI_KEY",
        &[
            LEGACY_KEY,
            PROJECT_KEY,
            "sk-svcacct-qIhv78ZXBaBubGoYWCgzuQ84dkeo_GrfUkbMSjk6WANXD_ZmjoU314izM92pvVuwtP-RHavaNpo",
            "sk-admin-K40bGx6UZXdti6SNlH9C9itEiMqguYHcFumAeOkpIhKwt1qkUat0tBM9iWvuGYMZQvXh2dJcMt",
            "sk-abcdefghij0123456789",
        ],
    );
    assert_untouched(
        "openai_key",
        &[
            "sk-short",
            "sk-abcdefghij012345678",
            "task-abcdefghij0123456789xyz",
            "ask-me-anything",
        ],
    );
    assert_eq!(
        masked(
            "openai_key",
            &format!("Authorization: Bearer {PROJECT_KEY}\n")
        ),
        "Authorization: Bearer [OPENAI_KEY]\n"
    );
}

#[test]
fn aws_access_key_ids() {
    assert_whole(
        "aws_access_key",
        "AWS_ACCESS_KEY",
        &[
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "AROA1234567890ABCDEF",
        ],
    );
    assert_untouched(
        "aws_access_key",
        &[
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLE1",
            "ABCDIOSFODNN7EXAMPLE",
            "akiaiosfodnn7example",
        ],
    );
}

const JWT_TOKEN: &str = concat!(
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.",
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.",
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
);

#[test]
fn jwts_have_three_base64url_segments() {
    assert_whole("jwt", "JWT", &[JWT_TOKEN]);
    assert_eq!(
        masked("jwt", &format!("Bearer {JWT_TOKEN}")),
        "Bearer [JWT]"
    );
    assert_untouched(
        "jwt",
        &[
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9.payload.sig",
            "abc.eyJzdWIiOiIxIn0.sig",
            "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
        ],
    );
}

fn pem(kind: &str, headers: &str, newline: &str) -> String {
    let body =
        ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"; 20].join(newline);
    format!(
        "-----BEGIN {kind}-----{newline}{headers}{body}{newline}Zz0=={newline}-----END {kind}-----"
    )
}

#[test]
fn private_key_blocks_through_their_end_line() {
    let encrypted_headers = "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n";
    assert_whole(
        "private_key",
        "PRIVATE_KEY",
        &[
            &pem("PRIVATE KEY", "", "\n"),
            &pem("RSA PRIVATE KEY", encrypted_headers, "\n"),
            &pem("OPENSSH PRIVATE KEY", "", "\r\n"),
            &pem("ENCRYPTED PRIVATE KEY", "", "\n"),
            &pem("EC PRIVATE KEY", "", "\\n"),
            &pem("PGP PRIVATE KEY BLOCK", "Version: GnuPG v2\n\n", "\n"),
        ],
    );
    assert_untouched(
        "private_key",
        &[
            &pem("PUBLIC KEY", "", "\n"),
            &pem("CERTIFICATE", "", "\n"),
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n(truncated)",
        ],
    );
    let two_keys = format!(
        "{}\nand\n{}",
        pem("PRIVATE KEY", "", "\n"),
        pem("EC PRIVATE KEY", "", "\n")
    );
    assert_eq!(
        masked("private_key", &two_keys),
        "[PRIVATE_KEY]\nand\n[PRIVATE_KEY]"
    );
}

#[test]
fn custom_patterns_use_the_upper_cased_name() {
    let recognizer = custom("employee_id", r"EMP-\d{6}").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(recognizer.name, "EMPLOYEE_ID");
    assert!(recognizer.max_len >= 10);
    let masker = Masker::new(vec![recognizer], "[{NAME}]");
    let mut counts = MaskCounts::default();
    assert_eq!(
        masker.mask("badge EMP-123456 ok", &mut counts),
        "badge [EMPLOYEE_ID] ok"
    );
    assert_eq!(counts.0.get("EMPLOYEE_ID"), Some(&1));

    let unbounded = custom("ticket", r"T-\d+").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unbounded.max_len, UNBOUNDED_CUSTOM_MAX_LEN);
    assert!(custom("broken", "(unclosed").is_err());
}

#[test]
fn iban_and_luhn_checks_reject_junk() {
    assert!(!iban_mod97_ok("DE89"));
    assert!(!iban_mod97_ok("de89370400440532013000"));
    assert!(iban_mod97_ok("GB82WEST12345698765432"));
    assert!(!luhn_ok("4111x1111111111111"));
    assert!(!luhn_ok("0000000"));
}
