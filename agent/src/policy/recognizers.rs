//! Built-in recognizers of sensitive data (emails, cards, keys, …) and user-defined patterns.
use std::net::Ipv6Addr;

use regex::Regex;

/// One kind of sensitive text: a regex plus an optional validity check on each candidate.
#[derive(Clone, Debug)]
pub struct Recognizer {
    /// The label written into the replacement, e.g. `EMAIL`, `CREDIT_CARD`, `EMPLOYEE_ID`.
    pub name: String,
    /// The regex source.
    pub pattern: String,
    pub regex: Regex,
    /// Rejects candidates the regex alone cannot (Luhn for cards, mod-97 for IBANs). A candidate
    /// failing it is no match, and scanning goes on from the character after its start.
    pub check: Option<fn(&str) -> bool>,
    /// Longest text (in bytes) a match can have: bounds how much a stream holds back. Exact for
    /// the built-ins (their regexes are bounded or their checks reject longer candidates).
    pub max_len: usize,
}

/// A validity check on a regex candidate.
pub type Check = fn(&str) -> bool;

/// The names `builtin` knows, in the order the policy format documents them.
pub const BUILTIN_NAMES: [&str; 10] = [
    "email",
    "credit_card",
    "us_ssn",
    "phone",
    "iban",
    "ip_address",
    "openai_key",
    "aws_access_key",
    "jwt",
    "private_key",
];

/// Assumed bound of a custom pattern whose regex has no maximum length (`EMP-\d+`).
pub const UNBOUNDED_CUSTOM_MAX_LEN: usize = 1024;

const EMAIL_MAX_LEN: usize = 254;
const PRIVATE_KEY_MAX_LEN: usize = 8192;

// ASCII word boundaries keep the lazy DFA usable on non-ASCII prompts (a Unicode `\b` makes the
// regex engine fall back to a slower one as soon as the text holds a non-ASCII byte).
const EMAIL: &str = concat!(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*",
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?-u:\b)",
);
const CREDIT_CARD: &str = concat!(
    r"(?-u:\b)(?:[0-9]{13,19}",
    r"|[0-9]{4}(?: [0-9]{4}){2} [0-9]{1,4}(?: [0-9]{1,3})?",
    r"|[0-9]{4}(?:-[0-9]{4}){2}-[0-9]{1,4}(?:-[0-9]{1,3})?",
    r"|[0-9]{4} [0-9]{6} [0-9]{4,5}|[0-9]{4}-[0-9]{6}-[0-9]{4,5})(?-u:\b)",
);
const US_SSN: &str = concat!(
    r"(?-u:\b)(?:00[1-9]|0[1-9][0-9]|[1-578][0-9]{2}|6[0-57-9][0-9]|66[0-57-9])",
    r"-(?:0[1-9]|[1-9][0-9])-(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})(?-u:\b)",
);
const PHONE: &str = concat!(
    r"\+[1-9](?:[ .-]?[0-9]){7,14}(?-u:\b)",
    r"|(?:\+1[ .-]?)?(?:\([2-9][0-9]{2}\) ?[0-9]{3}-[0-9]{4}",
    r"|(?-u:\b)[2-9][0-9]{2}-[0-9]{3}-[0-9]{4}|(?-u:\b)[2-9][0-9]{2}\.[0-9]{3}\.[0-9]{4})(?-u:\b)",
);
const IBAN: &str = r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?-u:\b)";
const IP_ADDRESS: &str = concat!(
    r"(?-u:\b)(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}",
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?-u:\b)",
    r"|(?:(?-u:\b)[0-9A-Fa-f]{1,4})?(?::[0-9A-Fa-f]{0,4}){1,6}:[0-9A-Fa-f]{1,4}",
    r"(?:\.[0-9]{1,3}){0,3}(?-u:\b)",
);
const OPENAI_KEY: &str = r"(?-u:\b)sk-[A-Za-z0-9_-]{20,256}";
const AWS_ACCESS_KEY: &str =
    r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}(?-u:\b)";
const JWT: &str =
    r"(?-u:\b)eyJ[A-Za-z0-9_-]{1,1024}\.eyJ[A-Za-z0-9_-]{1,6144}\.[A-Za-z0-9_-]{0,1024}";
// The body class admits `\` so that a key inside JSON-encoded tool arguments (`\n` escapes) is
// still one match.
const PRIVATE_KEY: &str = concat!(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    r"[A-Za-z0-9+/=:,.()\\ \t\r\n-]*?",
    r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
);

/// The built-in recognizer called `name` (`email`, `credit_card`, …), if there is one.
pub fn builtin(name: &str) -> Option<Recognizer> {
    let (pattern, check, max_len): (&str, Option<Check>, Option<usize>) = match name {
        "email" => (EMAIL, Some(email_len_ok), Some(EMAIL_MAX_LEN)),
        "credit_card" => (CREDIT_CARD, Some(luhn_ok), None),
        "us_ssn" => (US_SSN, None, None),
        "phone" => (PHONE, None, None),
        "iban" => (IBAN, Some(iban_mod97_ok), None),
        "ip_address" => (IP_ADDRESS, Some(ip_address_ok), None),
        "openai_key" => (OPENAI_KEY, None, None),
        "aws_access_key" => (AWS_ACCESS_KEY, None, None),
        "jwt" => (JWT, None, None),
        "private_key" => (
            PRIVATE_KEY,
            Some(private_key_len_ok),
            Some(PRIVATE_KEY_MAX_LEN),
        ),
        _ => return None,
    };
    // The patterns are constants covered by tests; a failure here is a programming error that
    // surfaces as "unknown recognizer" rather than a panic on the data path.
    let regex = Regex::new(pattern).ok()?;
    let max_len = max_len.or_else(|| regex_max_len(pattern))?;
    Some(Recognizer {
        name: name.to_uppercase(),
        pattern: pattern.to_string(),
        regex,
        check,
        max_len,
    })
}

/// A user-defined recognizer; its label is `name` uppercased. Its `max_len` is the regex's own
/// bound, or `UNBOUNDED_CUSTOM_MAX_LEN` when the regex has none.
pub fn custom(name: &str, regex: &str) -> Result<Recognizer, regex::Error> {
    let compiled = Regex::new(regex)?;
    Ok(Recognizer {
        name: name.to_uppercase(),
        pattern: regex.to_string(),
        regex: compiled,
        check: None,
        max_len: regex_max_len(regex).unwrap_or(UNBOUNDED_CUSTOM_MAX_LEN),
    })
}

/// The longest UTF-8 text `pattern` can match, if bounded.
fn regex_max_len(pattern: &str) -> Option<usize> {
    regex_automata::util::syntax::parse(pattern)
        .ok()?
        .properties()
        .maximum_len()
}

/// Only the total length (RFC 5321) is enforced, to keep `max_len` honest; an over-long local
/// part is still masked, since masking too much is the safe side.
fn email_len_ok(candidate: &str) -> bool {
    candidate.len() <= EMAIL_MAX_LEN
}

/// Luhn checksum over the digits of a (possibly grouped) card number.
pub fn luhn_ok(candidate: &str) -> bool {
    let mut sum = 0u32;
    let mut count = 0usize;
    for byte in candidate.bytes().rev() {
        let digit = match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b' ' | b'-' => continue,
            _ => return false,
        };
        let doubled = if count % 2 == 1 { digit * 2 } else { digit };
        sum += if doubled > 9 { doubled - 9 } else { doubled };
        count += 1;
    }
    (13..=19).contains(&count) && sum.is_multiple_of(10)
}

/// ISO 13616 check: the rearranged IBAN, letters as 10..35, is 1 mod 97.
pub fn iban_mod97_ok(candidate: &str) -> bool {
    let compact: Vec<u8> = candidate.bytes().filter(|byte| *byte != b' ').collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0u32;
    for &byte in tail.iter().chain(head) {
        remainder = match byte {
            b'0'..=b'9' => (remainder * 10 + u32::from(byte - b'0')) % 97,
            b'A'..=b'Z' => (remainder * 100 + u32::from(byte - b'A') + 10) % 97,
            _ => return false,
        };
    }
    remainder == 1
}

/// IPv4 candidates are exact from the regex; IPv6 ones must parse and hold a digit, which keeps
/// code like `Vec::new` or `dead::beef` out.
fn ip_address_ok(candidate: &str) -> bool {
    !candidate.contains(':')
        || (candidate.parse::<Ipv6Addr>().is_ok() && candidate.bytes().any(|b| b.is_ascii_digit()))
}

fn private_key_len_ok(candidate: &str) -> bool {
    candidate.len() <= PRIVATE_KEY_MAX_LEN
}

#[cfg(test)]
#[path = "recognizers_tests.rs"]
mod tests;
