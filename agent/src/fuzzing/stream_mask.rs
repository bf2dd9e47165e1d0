//! Fuzz target: the streaming masker against the whole-text masker as its oracle, in fuzzer-chosen deltas.
use std::sync::{Arc, OnceLock};

use crate::policy::mask::{MaskCounts, Masker};
use crate::policy::recognizers::{builtin, custom, Recognizer, BUILTIN_NAMES};
use crate::policy::stream_mask::{StreamMasker, StreamPrefixes};

/// Splits the text into deltas; never inside a character, as 0xFF is not UTF-8.
const DELTA_SEPARATOR: u8 = 0xFF;

/// Custom patterns with the constructs the prefix DFAs must get right: anchors, line modes, word
/// boundaries, Unicode, laziness and case folding.
const TRICKY_PATTERNS: [(&str, &str); 8] = [
    ("start", r"^EMP-\d+"),
    ("line", r"(?m)^ID\d{3}$"),
    ("word", r"\bwörd\b"),
    ("tail", r"\d+$"),
    ("secret", r"(?i)secret-[a-zß]+"),
    ("lazy", r"x+?y"),
    ("crlf", r"(?mR)^#\w*$"),
    ("name", r"\bJöhn\s+Dœ\b"),
];

/// Byte 0: bit 0 masks with every built-in recognizer (plus `EMP-\d{6}`), else with
/// [`TRICKY_PATTERNS`]; bit 1 masks a JSON channel (tool-call arguments). The rest is the text,
/// its deltas separated by 0xFF (invalid UTF-8 inside a delta becomes U+FFFD).
///
/// Plain channels: the deltas' output joined must equal the whole-text masker's output, with the
/// same counts. JSON channels escape a backslash before a replacement, so there the oracle is
/// the same text pushed as one delta, and valid JSON must stay valid.
pub fn stream_mask(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let prefixes = if flags & 1 == 0 {
        builtin_prefixes()
    } else {
        tricky_prefixes()
    };
    let json = flags & 2 != 0;
    let deltas: Vec<String> = rest
        .split(|&byte| byte == DELTA_SEPARATOR)
        .map(|delta| String::from_utf8_lossy(delta).into_owned())
        .collect();
    let whole = deltas.concat();

    let (streamed, streamed_counts) = stream(prefixes, json, &deltas);
    if json {
        let (single, single_counts) = stream(prefixes, json, std::slice::from_ref(&whole));
        assert_eq!(
            streamed, single,
            "JSON channel output depends on the deltas"
        );
        assert_eq!(streamed_counts, single_counts);
        if serde_json::from_str::<serde_json::Value>(&whole).is_ok() {
            serde_json::from_str::<serde_json::Value>(&streamed)
                .expect("masking kept valid JSON valid");
        }
    } else {
        let mut whole_counts = MaskCounts::default();
        let masked = prefixes.masker().mask(&whole, &mut whole_counts);
        assert_eq!(
            streamed, masked,
            "streamed masking differs from whole-text masking"
        );
        assert_eq!(streamed_counts, whole_counts, "streamed counts differ");
    }
}

/// The concatenated output of `deltas` through a fresh masker, and its counts.
fn stream(prefixes: &Arc<StreamPrefixes>, json: bool, deltas: &[String]) -> (String, MaskCounts) {
    let mut masker = if json {
        StreamMasker::new_json(Arc::clone(prefixes))
    } else {
        StreamMasker::new(Arc::clone(prefixes))
    };
    let mut counts = MaskCounts::default();
    let mut out = String::new();
    for delta in deltas {
        out.push_str(&masker.push(delta, &mut counts));
    }
    out.push_str(&masker.finish(&mut counts));
    assert_eq!(masker.held(), 0, "finish left text held");
    (out, counts)
}

fn builtin_prefixes() -> &'static Arc<StreamPrefixes> {
    static PREFIXES: OnceLock<Arc<StreamPrefixes>> = OnceLock::new();
    PREFIXES.get_or_init(|| {
        let mut recognizers: Vec<Recognizer> = BUILTIN_NAMES
            .iter()
            .map(|name| builtin(name).expect("every built-in name has a recognizer"))
            .collect();
        recognizers.push(custom("employee_id", r"EMP-\d{6}").expect("the pattern compiles"));
        prefixes_of(recognizers)
    })
}

fn tricky_prefixes() -> &'static Arc<StreamPrefixes> {
    static PREFIXES: OnceLock<Arc<StreamPrefixes>> = OnceLock::new();
    PREFIXES.get_or_init(|| {
        let recognizers = TRICKY_PATTERNS
            .iter()
            .map(|(name, pattern)| custom(name, pattern).expect("the pattern compiles"))
            .collect();
        prefixes_of(recognizers)
    })
}

fn prefixes_of(recognizers: Vec<Recognizer>) -> Arc<StreamPrefixes> {
    let masker = Arc::new(Masker::new(recognizers, "[{NAME}]"));
    Arc::new(StreamPrefixes::new(masker).expect("the prefix DFAs build"))
}
