use super::*;
use crate::policy::mask::Masker;
use crate::policy::recognizers::{builtin, custom, Recognizer, BUILTIN_NAMES};

fn recognizers(names: &[&str]) -> Vec<Recognizer> {
    let mut all: Vec<Recognizer> = names
        .iter()
        .map(|name| builtin(name).unwrap_or_else(|| panic!("no builtin {name}")))
        .collect();
    all.push(custom("employee_id", r"EMP-\d{6}").expect("custom pattern compiles"));
    all
}

pub(super) fn prefixes_of(names: &[&str]) -> Arc<StreamPrefixes> {
    let masker = Arc::new(Masker::new(recognizers(names), "[{NAME}]"));
    Arc::new(StreamPrefixes::new(masker).expect("prefix DFAs build"))
}

pub(super) fn all_prefixes() -> Arc<StreamPrefixes> {
    prefixes_of(&BUILTIN_NAMES)
}

/// Streams `deltas` through a fresh masker; the concatenated output and the counts.
fn stream(prefixes: &Arc<StreamPrefixes>, deltas: &[&str]) -> (String, MaskCounts) {
    let mut masker = StreamMasker::new(Arc::clone(prefixes));
    let mut counts = MaskCounts::default();
    let mut out = String::new();
    for delta in deltas {
        out.push_str(&masker.push(delta, &mut counts));
    }
    out.push_str(&masker.finish(&mut counts));
    assert_eq!(masker.held(), 0);
    (out, counts)
}

fn whole(prefixes: &StreamPrefixes, text: &str) -> (String, MaskCounts) {
    let mut counts = MaskCounts::default();
    let masked = prefixes.masker().mask(text, &mut counts).into_owned();
    (masked, counts)
}

pub(super) const TEXTS: [&str; 15] = [
    "Contact john.doe@example.com or jane@corp.example.org today.",
    "Card 4111 1111 1111 1111 and 5500-0055-5555-5559, also 4111111111111111.",
    "Invalid card 4111 1111 1111 1112 stays, 41111111111111112222 too.",
    "SSN 123-45-6789, phone +1 415-555-2671 or (415) 555-2671 or +44 20 7946 0958.",
    "IBAN GB82 WEST 1234 5698 7654 32 and DE89370400440532013000 end",
    "Keys: sk-proj-abcdefghijklmnopqrstuvwxyz0123456789 and AKIAIOSFODNN7EXAMPLE!",
    "token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7+/=\n-----END PRIVATE KEY-----\nbye",
    "Servers 192.168.1.10, 10.0.0.255 and 2001:db8::1 (not 999.1.1.1).",
    "Hello, how are you? The quick brown fox jumps over the lazy dog.",
    "Grüße an jöhn@exämple.com — 電話 415-555-2671, ok? ümlaut@example.com",
    "ab4111111111111111 x123-45-6789 EMP-123456 EMP-1234567 aEMP-654321",
    "a@b.co,c@d.io;e@f.gh",
    "{\"to\":\"bob@example.com\",\"card\":\"4111111111111111\",\"ip\":\"10.1.2.3\"}",
    "",
];

pub(super) fn boundaries(text: &str) -> Vec<usize> {
    (0..=text.len())
        .filter(|&at| text.is_char_boundary(at))
        .collect()
}

/// A small deterministic generator, so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % bound as u64) as usize
    }
}

fn check_split(prefixes: &Arc<StreamPrefixes>, text: &str, cuts: &[usize]) {
    let mut deltas = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain([text.len()].iter()) {
        deltas.push(&text[from..cut]);
        from = cut;
    }
    let (expected, expected_counts) = whole(prefixes, text);
    let (got, got_counts) = stream(prefixes, &deltas);
    assert_eq!(got, expected, "deltas {deltas:?}");
    assert_eq!(got_counts, expected_counts, "deltas {deltas:?}");
}

#[test]
fn every_split_in_two_or_three_masks_like_the_whole_text() {
    let prefixes = all_prefixes();
    for text in TEXTS {
        let cuts = boundaries(text);
        for &first in &cuts {
            check_split(&prefixes, text, &[first]);
            // Three pieces: every second boundary, to keep the debug-build test quick.
            for &second in cuts.iter().filter(|&&at| at > first).step_by(2) {
                check_split(&prefixes, text, &[first, second]);
            }
        }
    }
}

#[test]
fn one_character_per_delta_and_random_splits_mask_like_the_whole_text() {
    let prefixes = all_prefixes();
    let mut random = Lcg(7);
    for text in TEXTS {
        let cuts = boundaries(text);
        let inner = cuts.get(1..cuts.len() - 1).unwrap_or_default();
        check_split(&prefixes, text, inner);
        for _ in 0..200 {
            let mut chosen: Vec<usize> = cuts
                .iter()
                .copied()
                .filter(|_| random.below(4) == 0)
                .collect();
            chosen.dedup();
            check_split(&prefixes, text, &chosen);
        }
    }
}

#[test]
fn a_long_text_in_token_sized_deltas_masks_like_the_whole_text() {
    let prefixes = all_prefixes();
    let text = TEXTS.concat().repeat(3);
    let cuts = boundaries(&text);
    let mut random = Lcg(42);
    for _ in 0..20 {
        let mut chosen = Vec::new();
        let mut at = 0;
        while at < cuts.len() {
            chosen.push(cuts[at]);
            at += 1 + random.below(6);
        }
        check_split(&prefixes, &text, &chosen);
    }
}

#[test]
fn random_texts_of_pii_fragments_mask_like_the_whole_text() {
    const FRAGMENTS: [&str; 40] = [
        "bob",
        "@",
        "example",
        ".",
        "com",
        " ",
        "4111",
        "1111",
        "-",
        "123",
        "45",
        "6789",
        "sk-",
        "abcdefghij",
        "AKIA",
        "IOSFODNN7EXAMPLE",
        "GB82",
        "WEST",
        "eyJ",
        "J9",
        ":",
        "::",
        "192.168.",
        "1",
        "\n",
        "é",
        "電",
        "EMP-",
        "123456",
        "(",
        ")",
        "+1",
        "\\",
        "\"",
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "xy",
        "_",
        "0",
        "2001:db8",
    ];
    let prefixes = all_prefixes();
    let mut random = Lcg(99);
    for _ in 0..400 {
        let pieces = 3 + random.below(40);
        let text: String = (0..pieces)
            .map(|_| FRAGMENTS[random.below(FRAGMENTS.len())])
            .collect();
        let cuts = boundaries(&text);
        for _ in 0..10 {
            let every = 1 + random.below(8);
            let chosen: Vec<usize> = cuts
                .iter()
                .copied()
                .filter(|_| random.below(every) == 0)
                .collect();
            check_split(&prefixes, &text, &chosen);
        }
    }
}

#[test]
fn custom_patterns_with_anchors_and_unicode_boundaries_mask_like_the_whole_text() {
    const FRAGMENTS: [&str; 16] = [
        "EMP-", "12", "\n", " ", "ID", "345", "wörd", "x", "é", "(?)", "SECRET-", "ab", "y", "ß",
        "\r\n", "#",
    ];
    let patterns = [
        ("start", r"^EMP-\d+"),
        ("line", r"(?m)^ID\d{3}$"),
        ("word", r"\bwörd\b"),
        ("tail", r"\d+$"),
        ("secret", r"(?i)secret-[a-zß]+"),
        ("lazy", r"x+?y"),
        ("crlf", r"(?mR)^#\w*$"),
    ];
    let recognizers = patterns
        .iter()
        .map(|(name, regex)| custom(name, regex).expect("compiles"))
        .collect();
    let masker = Arc::new(Masker::new(recognizers, "<{NAME}>"));
    let prefixes = Arc::new(StreamPrefixes::new(masker).expect("builds"));
    let mut random = Lcg(5);
    for _ in 0..400 {
        let pieces = 1 + random.below(16);
        let text: String = (0..pieces)
            .map(|_| FRAGMENTS[random.below(FRAGMENTS.len())])
            .collect();
        let cuts = boundaries(&text);
        for _ in 0..10 {
            let every = 1 + random.below(6);
            let chosen: Vec<usize> = cuts
                .iter()
                .copied()
                .filter(|_| random.below(every) == 0)
                .collect();
            check_split(&prefixes, &text, &chosen);
        }
    }
}

#[test]
fn unicode_patterns_and_text_are_followed_bytewise() {
    let masker = Masker::new(
        vec![custom("name", r"\bJöhn\s+Dœ\b").expect("compiles")],
        "[{NAME}]",
    );
    let prefixes = Arc::new(StreamPrefixes::new(Arc::new(masker)).expect("builds"));
    for text in ["Hi Jöhn  Dœ!", "Hi xJöhn Dœ", "Jöhn Dœé", "電Jöhn Dœ電"] {
        let cuts = boundaries(text);
        for &cut in &cuts {
            check_split(&prefixes, text, &[cut]);
        }
        check_split(&prefixes, text, &cuts[1..cuts.len() - 1]);
    }
}
