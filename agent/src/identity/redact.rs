//! Removes secrets from a process's command line before it joins an identity, and so every log line.
use std::{borrow::Cow, sync::LazyLock};

use regex::Regex;

const REDACTED: &str = "[REDACTED]";

/// The last word of an option or variable name whose value is a secret. Whole words only, so
/// `--keyboard-layout`, `--monkey`, `--key-file` and `--max-tokens` keep their values.
const SECRET_NAME_ENDINGS: &str = "key|token|secret|password|passwd|pass|passphrase|\
     apikey|accesskey|secretkey|privatekey|authtoken|accesstoken|apitoken|clientsecret";

struct Patterns {
    /// `--api-key`, `-token` (Go's flag package): the next argument is the secret.
    secret_option: Regex,
    /// `--api-key=X`, `OPENAI_API_KEY=X` (env, docker -e): the rest of the argument is the secret.
    secret_assignment: Regex,
    /// Secrets recognisable anywhere in the joined line, with what replaces each match.
    inline: Vec<(Regex, &'static str)>,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(Patterns::compile);

impl Patterns {
    fn compile() -> Self {
        let name = format!("(?:[a-z0-9]+[-_.])*(?:{SECRET_NAME_ENDINGS})");
        Patterns {
            secret_option: pattern(&format!("(?i)^-{{1,2}}{name}$")),
            secret_assignment: pattern(&format!("(?is)^(-{{0,2}}{name}=).+$")),
            inline: vec![
                // OpenAI (sk-..., sk-proj-...) and look-alike provider keys.
                (pattern(r"\bsk-[A-Za-z0-9_-]{20,}"), REDACTED),
                // AWS access key ids, long-lived (AKIA) and temporary (ASIA).
                (pattern(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
                // `Authorization: <scheme> X` and a bare `Bearer X`.
                (
                    pattern(r"(?i)\b((?:authorization:\s*[a-z]+|bearer)\s+)\S+"),
                    "${1}[REDACTED]",
                ),
                // Headers and JSON: `x-api-key: X`, `{"token":"X"}`.
                (
                    pattern(&format!(r#"(?i)\b({name}"?\s*:\s*"?)[^\s"',}}]+"#)),
                    "${1}[REDACTED]",
                ),
                // Query strings and key=value lists: `?api_key=X&`, `a=1,token=X`.
                (
                    pattern(&format!(r"(?i)(^|[\s?&;,])({name}=)[^\s&;,]+")),
                    "${1}${2}[REDACTED]",
                ),
                // The password in a URL's user info: `https://user:X@host`.
                (
                    pattern(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@"),
                    "${1}[REDACTED]@",
                ),
            ],
        }
    }
}

fn pattern(source: &str) -> Regex {
    // Every source is built from constants in this file, and the unit tests compile all of them.
    Regex::new(source).expect("redaction patterns are valid regular expressions")
}

/// The arguments joined with ' ', every recognised secret replaced by `[REDACTED]`.
pub fn redact_command_line(args: &[String]) -> String {
    let patterns = &*PATTERNS;
    let mut redacted: Vec<Cow<'_, str>> = Vec::with_capacity(args.len());
    let mut next_is_secret = false;
    for arg in args {
        if std::mem::take(&mut next_is_secret) {
            redacted.push(Cow::Borrowed(REDACTED));
            continue;
        }
        next_is_secret = patterns.secret_option.is_match(arg);
        redacted.push(patterns.secret_assignment.replace(arg, "${1}[REDACTED]"));
    }
    let mut line = redacted.join(" ");
    for (regex, replacement) in &patterns.inline {
        if let Cow::Owned(changed) = regex.replace_all(&line, *replacement) {
            line = changed;
        }
    }
    // A prompt passed as an argument must not reach the log or the audit store with its personal
    // data: every built-in recognizer masks the command line, whatever the policy says.
    let mut counts = crate::policy::mask::MaskCounts::default();
    match PII.mask(&line, &mut counts) {
        Cow::Owned(masked) => masked,
        Cow::Borrowed(_) => line,
    }
}

/// All built-in recognizers, compiled once.
static PII: std::sync::LazyLock<crate::policy::mask::Masker> = std::sync::LazyLock::new(|| {
    let recognizers = crate::policy::recognizers::BUILTIN_NAMES
        .iter()
        .filter_map(|name| crate::policy::recognizers::builtin(name))
        .collect();
    crate::policy::mask::Masker::new(recognizers, "[{NAME}]")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_data_in_arguments_is_masked() {
        let line = redact(&["llm", "mail alice@example.com card 4111 1111 1111 1111"]);
        assert!(
            !line.contains("alice@example.com") && !line.contains("4111"),
            "{line}"
        );
        assert!(
            line.contains("[EMAIL]") && line.contains("[CREDIT_CARD]"),
            "{line}"
        );
    }

    fn redact(args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        redact_command_line(&args)
    }

    const OPENAI_KEY: &str = "sk-abcdefghijklmnopqrstuvwxyz012345";
    const PROJECT_KEY: &str = "sk-proj-Ab3_dE-fGhIjKlMnOpQrStUvWx";

    #[test]
    fn all_patterns_compile() {
        LazyLock::force(&PATTERNS);
    }

    #[test]
    fn redacts_provider_keys_anywhere() {
        assert_eq!(
            redact(&["python3", "agent.py", OPENAI_KEY]),
            "python3 agent.py [REDACTED]"
        );
        assert_eq!(
            redact(&["run", &format!("--config=k:{PROJECT_KEY},x")]),
            "run --config=k:[REDACTED],x"
        );
        assert_eq!(
            redact(&["aws-tool", "AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE"]),
            "aws-tool [REDACTED] [REDACTED]"
        );
    }

    #[test]
    fn redacts_authorization_headers() {
        assert_eq!(
            redact(&[
                "curl",
                "-H",
                &format!("Authorization: Bearer {OPENAI_KEY}"),
                "https://api.openai.com/v1/models",
            ]),
            "curl -H Authorization: Bearer [REDACTED] https://api.openai.com/v1/models"
        );
        assert_eq!(
            redact(&["curl", "-H", "authorization: Basic dXNlcjpwYXNz"]),
            "curl -H authorization: Basic [REDACTED]"
        );
        assert_eq!(
            redact(&["tool", "bearer", "opaque.jwt.value"]),
            "tool bearer [REDACTED]"
        );
        assert_eq!(
            redact(&[
                "curl",
                "-H",
                "x-api-key: opaque-value",
                "-H",
                "anthropic-version: 1"
            ]),
            "curl -H x-api-key: [REDACTED] -H anthropic-version: 1"
        );
        assert_eq!(
            redact(&["agent", "--json", r#"{"model":"m","api_key":"opaque"}"#]),
            r#"agent --json {"model":"m","api_key":"[REDACTED]"}"#
        );
    }

    #[test]
    fn redacts_values_of_secret_options() {
        assert_eq!(
            redact(&["agent", "--api-key", "opaque", "--model", "gpt-4o"]),
            "agent --api-key [REDACTED] --model gpt-4o"
        );
        assert_eq!(
            redact(&["agent", "--api-key=opaque value", "--verbose"]),
            "agent --api-key=[REDACTED] --verbose"
        );
        assert_eq!(
            redact(&[
                "agent",
                "--token=t",
                "--auth-token",
                "t",
                "--client_secret",
                "s"
            ]),
            "agent --token=[REDACTED] --auth-token [REDACTED] --client_secret [REDACTED]"
        );
        assert_eq!(
            redact(&[
                "psql",
                "--password",
                "hunter2",
                "--db-passwd=x",
                "--OPENAI-APIKEY",
                "k"
            ]),
            "psql --password [REDACTED] --db-passwd=[REDACTED] --OPENAI-APIKEY [REDACTED]"
        );
        assert_eq!(
            redact(&["goprog", "-token", "t", "-secret=s"]),
            "goprog -token [REDACTED] -secret=[REDACTED]"
        );
        assert_eq!(
            redact(&["env", "OPENAI_API_KEY=opaque", "python3"]),
            "env OPENAI_API_KEY=[REDACTED] python3"
        );
        assert_eq!(
            redact(&["fetch", "https://example.test/v1?x=1&api_key=opaque&y=2"]),
            "fetch https://example.test/v1?x=1&api_key=[REDACTED]&y=2"
        );
        assert_eq!(
            redact(&["git", "clone", "https://bot:opaque@git.example.test/r.git"]),
            "git clone https://bot:[REDACTED]@git.example.test/r.git"
        );
        // The value is consumed: an option-looking secret is redacted, not taken as an option.
        assert_eq!(
            redact(&["agent", "--token", "--token", "x"]),
            "agent --token [REDACTED] x"
        );
    }

    #[test]
    fn leaves_lookalikes_alone() {
        let untouched: &[&[&str]] = &[
            &["setxkbmap", "--keyboard-layout", "us"],
            &["agent", "--max-tokens", "100", "--token-limit", "5"],
            &[
                "zoo", "--monkey", "banana", "--bypass", "x", "--passes", "3",
            ],
            &["ssh-agent", "--key-file", "/etc/warden/id.pem"],
            &["python3", "-m", "agent", "-p", "8080", "-k", "v"],
            &[
                "task-abcdefghijklmnopqrstuvwxyz0123",
                "sk-short",
                "desk-lamp",
            ],
            &["aws", "AKIAshort", "akiaiosfodnn7example"],
            &[
                "curl",
                "https://api.openai.com/v1/chat/completions",
                "-d",
                "@body.json",
            ],
            &["echo", "keyboard=us", "monkey: 1", "tokens=5"],
            &["git", "clone", "https://git.example.test/r.git"],
        ];
        for args in untouched {
            assert_eq!(redact(args), args.join(" "), "{args:?}");
        }
        assert_eq!(redact(&[]), "");
    }
}
