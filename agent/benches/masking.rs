//! Criterion benchmarks of masking a 4 KiB prompt with every built-in recognizer, whole and streamed.
//!
//! Benchmarks, not tests: nothing here asserts on time. A prompt that does not mask as described
//! (PII left behind, counts off, streamed output differing from the whole-text output) aborts the
//! run, hence the `expect`s and `assert`s, checked once before measuring.
use std::{hint::black_box, sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warden::policy::{
    mask::{MaskCounts, Masker},
    recognizers::{builtin, BUILTIN_NAMES},
    stream_mask::{StreamMasker, StreamPrefixes},
};

const PROMPT_BYTES: usize = 4096;

/// Business prose without anything a recognizer takes.
const FILLER: &str = "The quarterly reconciliation compares invoices against the ledger and flags \
    any line whose amount, currency or due date disagrees with the purchase order. Summarise the \
    differences by vendor, oldest first, and suggest which ones need a follow-up call this week. ";

/// Three values of every built-in recognizer's kind, by label.
const PII: [(&str, [&str; 3]); 10] = [
    (
        "EMAIL",
        [
            "jane.doe@example.com",
            "ap-team@billing.example.org",
            "r.ortiz+invoices@acme.example.co.uk",
        ],
    ),
    (
        "CREDIT_CARD",
        ["4111 1111 1111 1111", "5500-0055-5555-5559", "378282246310005"],
    ),
    ("US_SSN", ["123-45-6789", "078-05-1120", "219-09-9999"]),
    (
        "PHONE",
        ["+1 415-555-0132", "(212) 555-0199", "+44 20 7946 0958"],
    ),
    (
        "IBAN",
        [
            "DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "FR1420041010050500013M02606",
        ],
    ),
    ("IP_ADDRESS", ["10.20.30.40", "192.168.1.10", "2001:db8::1"]),
    (
        "OPENAI_KEY",
        [
            "sk-ptgUzEjfebzJ6sZWdoHIxrXl0gqn87b1PZqZrmktsO3U9224",
            "sk-proj-VlRXFwF8JlMaLNy02K35uDNHfkf7J8Rszi0z4JxT3PzPmhDJEpQwL6dfTkKPcPKPt0jLy4LrGWuQbUf6vUULm",
            "sk-svcacct-qIhv78ZXBaBubGoYWCgzuQ84dkeo_GrfUkbMSjk6WANXD_ZmjoU314izM92pvVuwtP-RHavaNpo",
        ],
    ),
    (
        "AWS_ACCESS_KEY",
        [
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "AROA3XFRBF535PLBIFPI",
        ],
    ),
    (
        "JWT",
        [
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiaWxsaW5nLWFnZW50In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "eyJhbGciOiJub25lIn0.eyJyb2xlIjoiYWRtaW4ifQ.",
        ],
    ),
    (
        "PRIVATE_KEY",
        [
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7+/=\n-----END PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----",
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA2Hwf1duRSxKtLYX5CB04fSeQ6tF1aY/PuoAoGCCqGSM49\n-----END EC PRIVATE KEY-----",
        ],
    ),
];

/// `PROMPT_BYTES` of prose, with (or without) every PII value in a sentence of its own.
fn prompt(with_pii: bool) -> String {
    let mut text = String::with_capacity(PROMPT_BYTES + FILLER.len());
    if with_pii {
        for round in 0..3 {
            for (label, values) in PII {
                text.push_str(&format!(
                    "Item {round} for {} is {} in the file. ",
                    label.to_lowercase(),
                    values[round]
                ));
            }
            text.push_str(FILLER);
        }
        assert!(text.len() < PROMPT_BYTES, "the PII alone fills the prompt");
    }
    while text.len() < PROMPT_BYTES {
        text.push_str(FILLER);
    }
    text.truncate(PROMPT_BYTES);
    text
}

/// Token-sized deltas, as a model streams them: each word with the space before it.
fn deltas(text: &str) -> Vec<&str> {
    let mut deltas = Vec::new();
    let mut start = 0;
    for (at, _) in text.match_indices([' ', '\n']) {
        if at > start {
            deltas.push(&text[start..at]);
            start = at;
        }
    }
    deltas.push(&text[start..]);
    deltas
}

fn mask_stream(prefixes: &Arc<StreamPrefixes>, deltas: &[&str]) -> (String, MaskCounts) {
    let mut masker = StreamMasker::new(Arc::clone(prefixes));
    let mut counts = MaskCounts::default();
    let mut out = String::new();
    for delta in deltas {
        out.push_str(&masker.push(delta, &mut counts));
    }
    out.push_str(&masker.finish(&mut counts));
    (out, counts)
}

fn bench_masking(c: &mut Criterion) {
    let recognizers = BUILTIN_NAMES
        .iter()
        .map(|name| builtin(name).expect("every listed built-in exists"))
        .collect();
    let masker = Arc::new(Masker::new(recognizers, "[{NAME}]"));
    let prefixes = Arc::new(StreamPrefixes::new(Arc::clone(&masker)).expect("prefix DFAs build"));
    let with_pii = prompt(true);
    let without_pii = prompt(false);
    let pii_deltas = deltas(&with_pii);
    let clean_deltas = deltas(&without_pii);
    assert_eq!(pii_deltas.concat(), with_pii);

    // The prompts are what they claim to be: every PII value masked (three per label), nothing
    // else touched, and the streamed masker agreeing with the whole-text one.
    let mut counts = MaskCounts::default();
    let masked = masker.mask(&with_pii, &mut counts).into_owned();
    for (label, values) in PII {
        assert_eq!(counts.0.get(label), Some(&3), "{label}: {counts:?}");
        for value in values {
            assert!(!masked.contains(value), "{value} survived: {masked}");
        }
    }
    assert_eq!(counts.0.len(), PII.len(), "{counts:?}");
    assert_eq!(mask_stream(&prefixes, &pii_deltas), (masked, counts));
    let mut counts = MaskCounts::default();
    assert_eq!(masker.mask(&without_pii, &mut counts), without_pii);
    assert!(counts.is_empty(), "{counts:?}");
    assert_eq!(
        mask_stream(&prefixes, &clean_deltas),
        (without_pii.clone(), counts)
    );

    let mut group = c.benchmark_group("masking");
    group.throughput(Throughput::Bytes(PROMPT_BYTES as u64));
    for (name, text) in [("mask_4k_no_pii", &without_pii), ("mask_4k_pii", &with_pii)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut counts = MaskCounts::default();
                let masked = masker.mask(black_box(text), &mut counts);
                black_box((masked, counts))
            })
        });
    }
    // One delta of the whole text: what following the text costs per byte, without the
    // per-delta work (an output string, a release decision) that word-sized deltas add.
    let whole_clean = [without_pii.as_str()];
    for (name, deltas) in [
        ("stream_mask_4k_no_pii", &clean_deltas[..]),
        ("stream_mask_4k_pii", &pii_deltas[..]),
        ("stream_mask_4k_no_pii_one_delta", &whole_clean[..]),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| mask_stream(&prefixes, black_box(deltas)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short enough that all the micro-benchmarks together run in well under a minute on two
    // cores; the confidence intervals stay within about 1%.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench_masking
}
criterion_main!(benches);
