//! Parses Warden's JSON log lines (one flattened object per line on stderr) and queries them.

use std::fmt;

use serde_json::{Map, Value};

/// One log line: `{"timestamp":…,"level":"INFO","message":"exchange","pid":1234,…}`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine(pub Map<String, Value>);

impl LogLine {
    pub fn parse(line: &str) -> Option<Self> {
        match serde_json::from_str(line) {
            Ok(Value::Object(map)) => Some(Self(map)),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn message(&self) -> &str {
        self.str("message").unwrap_or_default()
    }

    pub fn level(&self) -> &str {
        self.str("level").unwrap_or_default()
    }

    pub fn is(&self, message: &str) -> bool {
        self.message() == message
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// A JSON number field. A number written as a string does not count: scripts rely on the types.
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.0.get(key).and_then(Value::as_u64)
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        self.0.get(key).and_then(Value::as_bool)
    }

    /// The pid field as a u32, if it is one.
    pub fn pid(&self) -> Option<u32> {
        self.u64("pid").and_then(|p| u32::try_from(p).ok())
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Value::Object(self.0.clone()))
    }
}

/// Every complete line of one daemon's log so far.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    pub lines: Vec<LogLine>,
    /// Complete lines that were not JSON objects (a panic message, say): kept for diagnostics.
    pub unparsed: Vec<String>,
}

impl Logs {
    /// Parses log text; a trailing line without its newline is still being written and is skipped.
    pub fn parse(text: &str) -> Self {
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        let mut logs = Self::default();
        for line in complete.lines().filter(|l| !l.trim().is_empty()) {
            match LogLine::parse(line) {
                Some(parsed) => logs.lines.push(parsed),
                None => logs.unparsed.push(line.to_owned()),
            }
        }
        logs
    }

    pub fn with_message(&self, message: &str) -> Vec<&LogLine> {
        self.lines.iter().filter(|l| l.is(message)).collect()
    }

    /// `"message":"exchange"`: one per intercepted HTTP exchange.
    pub fn exchanges(&self) -> Vec<&LogLine> {
        self.with_message("exchange")
    }

    /// `"message":"tunnel"`: one per tunneled connection.
    pub fn tunnels(&self) -> Vec<&LogLine> {
        self.with_message("tunnel")
    }

    /// `"message":"connection closed"`: a connection refused or closed because of bad input.
    pub fn closed_connections(&self) -> Vec<&LogLine> {
        self.with_message("connection closed")
    }

    pub fn find(&self, mut predicate: impl FnMut(&LogLine) -> bool) -> Option<&LogLine> {
        self.lines.iter().find(|l| predicate(l))
    }
}

impl fmt::Display for Logs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        for line in &self.unparsed {
            writeln!(f, "(not JSON) {line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = concat!(
        r#"{"timestamp":"2025-01-01T00:00:00Z","level":"INFO","message":"warden ready","target":"warden"}"#,
        "\n",
        r#"{"timestamp":"t","level":"INFO","message":"exchange","pid":1234,"exe":"/usr/bin/curl","status":200,"streamed":false,"model":"gpt-4o-mini","uid":"0"}"#,
        "\n",
        "thread 'main' panicked at src/main.rs\n",
        r#"{"level":"WARN","message":"connection closed","reason":"TLS ClientHello has no server name"}"#,
        "\n",
        r#"{"level":"INFO","message":"tunn"#,
    );

    #[test]
    fn parses_complete_lines_and_keeps_the_rest_for_diagnostics() {
        let logs = Logs::parse(SAMPLE);
        assert_eq!(logs.lines.len(), 3);
        assert_eq!(logs.unparsed, vec!["thread 'main' panicked at src/main.rs"]);
        assert!(
            logs.tunnels().is_empty(),
            "the unfinished last line is skipped"
        );
    }

    #[test]
    fn reads_typed_fields() {
        let logs = Logs::parse(SAMPLE);
        let exchange = logs.exchanges()[0];
        assert_eq!(exchange.pid(), Some(1234));
        assert_eq!(exchange.str("exe"), Some("/usr/bin/curl"));
        assert_eq!(exchange.u64("status"), Some(200));
        assert_eq!(exchange.bool("streamed"), Some(false));
        assert_eq!(
            exchange.u64("uid"),
            None,
            "a number written as a string is not a number"
        );
        assert_eq!(exchange.level(), "INFO");
        let closed = logs.closed_connections()[0];
        assert_eq!(closed.level(), "WARN");
        assert_eq!(
            closed.str("reason"),
            Some("TLS ClientHello has no server name")
        );
    }
}
