use std::time::Instant;

use super::*;
use crate::policy::recognizers::{builtin, custom, BUILTIN_NAMES};

fn all_builtins() -> Vec<Recognizer> {
    BUILTIN_NAMES
        .iter()
        .filter_map(|name| builtin(name))
        .collect()
}

fn builtin_ok(name: &str) -> Recognizer {
    builtin(name).unwrap_or_else(|| panic!("no builtin {name}"))
}

fn custom_ok(name: &str, regex: &str) -> Recognizer {
    custom(name, regex).unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn text_without_matches_is_borrowed_and_uncounted() {
    let masker = Masker::new(all_builtins(), "[{NAME}]");
    let mut counts = MaskCounts::default();
    let text = "Summarise the quarterly report, version 1.2.3, due 2024-01-15.";
    assert!(matches!(masker.mask(text, &mut counts), Cow::Borrowed(_)));
    assert!(counts.is_empty());

    let empty = Masker::new(Vec::new(), "[{NAME}]");
    assert!(matches!(
        empty.mask("alice@example.com", &mut counts),
        Cow::Borrowed(_)
    ));
}

#[test]
fn every_match_is_replaced_and_counted_per_label() {
    let masker = Masker::new(all_builtins(), "[{NAME}]");
    let mut counts = MaskCounts::default();
    let text = "Mail alice@example.com or bob@example.org, card 4111 1111 1111 1111, \
                SSN 123-45-6789, from 10.0.0.7 with AKIAIOSFODNN7EXAMPLE.";
    assert_eq!(
        masker.mask(text, &mut counts),
        "Mail [EMAIL] or [EMAIL], card [CREDIT_CARD], SSN [US_SSN], from [IP_ADDRESS] with \
         [AWS_ACCESS_KEY]."
    );
    let expected: BTreeMap<String, u64> = [
        ("AWS_ACCESS_KEY", 1),
        ("CREDIT_CARD", 1),
        ("EMAIL", 2),
        ("IP_ADDRESS", 1),
        ("US_SSN", 1),
    ]
    .into_iter()
    .map(|(label, count)| (label.to_string(), count))
    .collect();
    assert_eq!(counts.0, expected);
    assert_eq!(counts.total(), 6);
}

#[test]
fn replacement_template_names_the_label() {
    let masker = Masker::new(
        vec![custom_ok("employee_id", r"EMP-\d{6}")],
        "<redacted:{NAME}>",
    );
    let mut counts = MaskCounts::default();
    assert_eq!(
        masker.mask("EMP-123456", &mut counts),
        "<redacted:EMPLOYEE_ID>"
    );
    assert_eq!(masker.replacement(0), Some("<redacted:EMPLOYEE_ID>"));
    let fixed = Masker::new(vec![custom_ok("x", "secret")], "***");
    assert_eq!(fixed.mask("a secret b", &mut counts), "a *** b");
}

#[test]
fn leftmost_wins_then_longest_then_first_listed() {
    let mut counts = MaskCounts::default();
    // The email starts at the same place as the custom name but is longer.
    let masker = Masker::new(
        vec![custom_ok("name", "alice"), builtin_ok("email")],
        "[{NAME}]",
    );
    assert_eq!(
        masker.mask("to alice@example.com", &mut counts),
        "to [EMAIL]"
    );
    assert_eq!(masker.mask("to alice now", &mut counts), "to [NAME] now");

    // Leftmost beats longer-but-later.
    let masker = Masker::new(
        vec![custom_ok("short", "ab"), custom_ok("long", "bcdef")],
        "[{NAME}]",
    );
    assert_eq!(masker.mask("abcdef", &mut counts), "[SHORT]cdef");

    // Equal spans go to the recognizer listed first.
    let masker = Masker::new(
        vec![custom_ok("first", "abc"), custom_ok("second", "a.c")],
        "[{NAME}]",
    );
    assert_eq!(masker.mask("abc", &mut counts), "[FIRST]");
}

#[test]
fn a_candidate_overlapped_by_a_winner_is_searched_again_after_it() {
    let masker = Masker::new(
        vec![custom_ok("a", "ab"), custom_ok("b", "bcd|d")],
        "[{NAME}]",
    );
    let mut counts = MaskCounts::default();
    assert_eq!(masker.mask("abcd", &mut counts), "[A]c[B]");
    assert_eq!(counts.0.get("B"), Some(&1));
}

#[test]
fn a_candidate_failing_its_check_is_skipped_and_scanning_goes_on() {
    let masker = Masker::new(vec![builtin_ok("credit_card")], "[{NAME}]");
    let mut counts = MaskCounts::default();
    let text = "bad 4111 1111 1111 1112, good 5555-5555-5555-4444";
    assert_eq!(
        masker.mask(text, &mut counts),
        "bad 4111 1111 1111 1112, good [CREDIT_CARD]"
    );
    assert_eq!(counts.total(), 1);
}

#[test]
fn empty_matches_and_multibyte_text_are_safe() {
    let masker = Masker::new(
        vec![custom_ok("opt", "x*"), custom_ok("word", "naïve")],
        "[{NAME}]",
    );
    let mut counts = MaskCounts::default();
    assert_eq!(masker.mask("ü naïve ü xx", &mut counts), "ü [WORD] ü [OPT]");
    let emails = Masker::new(vec![builtin_ok("email")], "[{NAME}]");
    assert_eq!(
        emails.mask("日本 alice@example.com 日本", &mut counts),
        "日本 [EMAIL] 日本"
    );
}

#[test]
fn counts_merge_and_serialize_as_a_map() {
    let mut left = MaskCounts::default();
    left.add("EMAIL", 2);
    let mut right = MaskCounts::default();
    right.add("EMAIL", 1);
    right.add("JWT", 1);
    left.merge(&right);
    assert_eq!(left.total(), 4);
    let json = serde_json::to_string(&left).unwrap_or_default();
    assert_eq!(json, r#"{"EMAIL":3,"JWT":1}"#);
}

/// A realistic ~4 KiB prompt: prose and code with a few sensitive values.
fn prompt_4kib(with_pii: bool) -> String {
    let paragraph =
        "The deployment pipeline builds the service, runs the integration tests against \
        the staging cluster and then promotes the image. Version 1.2.3 fixed the retry loop in \
        std::collections::HashMap usage; see ticket 4521 from 2024-01-15 for details. ";
    let mut text = String::new();
    while text.len() < 4096 {
        text.push_str(paragraph);
    }
    if with_pii {
        text.push_str("Contact alice@example.com, card 4111 1111 1111 1111, host 10.0.0.7.");
    }
    text
}

/// Run with `cargo test --release -p warden --lib policy::mask -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, run in release"]
fn measure_mask_time_on_a_4kib_prompt() {
    let masker = Masker::new(all_builtins(), "[{NAME}]");
    let non_ascii = "Der Bericht für das Quartal — 報告書を要約してください。 ".repeat(60);
    let texts = [
        ("prose", prompt_4kib(false)),
        ("prose+pii", prompt_4kib(true)),
        ("non-ascii", non_ascii),
    ];
    for (kind, text) in texts {
        let rounds = 2000u32;
        let mut counts = MaskCounts::default();
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(masker.mask(std::hint::black_box(&text), &mut counts));
        }
        let per_call = started.elapsed() / rounds;
        println!("mask {} bytes ({kind}): {per_call:?} per call", text.len());
    }
}

#[test]
fn combined_and_per_recognizer_searches_agree() {
    let mut recognizers = all_builtins();
    recognizers.push(custom_ok("employee_id", r"EMP-\d{6}"));
    recognizers.push(custom_ok("name", "alice"));
    let combined = Masker::new(recognizers, "[{NAME}]");
    assert!(combined.combined.is_some());
    let separate = Masker {
        combined: None,
        ..combined.clone()
    };
    let texts = [
        "to alice@example.com and alice, EMP-123456",
        "bad 4111 1111 1111 1112, good 5555-5555-5555-4444 at 10.0.0.1:80",
        "fe80::1 and std::collections, SSN 123-45-6789 +44 20 7946 0958",
        "nothing to see here, version 1.2.3",
        "DE89 3704 0044 0532 0130 00 AKIAIOSFODNN7EXAMPLE sk-abcdefghij0123456789XYZ",
    ];
    for text in texts {
        let mut combined_counts = MaskCounts::default();
        let mut separate_counts = MaskCounts::default();
        assert_eq!(
            combined.mask(text, &mut combined_counts),
            separate.mask(text, &mut separate_counts),
            "{text}"
        );
        assert_eq!(combined_counts, separate_counts);
    }
}
