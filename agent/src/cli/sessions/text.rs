//! Plain-text building blocks shared by the human renderings of exchanges.
use std::fmt::Display;

use crate::audit::record::RecordedBody;

/// A document built line by line, with indentation. Every line goes through `line`, which keeps
/// recorded text (prompts, model output, paths, header values) from reaching the terminal as
/// control sequences.
#[derive(Default)]
pub struct Doc(String);

impl Doc {
    pub fn line(&mut self, indent: usize, text: impl Display) {
        let text = text.to_string();
        // Every line of a multi-line value keeps the indentation of the first.
        for line in text.split('\n') {
            // A CRLF line ending is a line ending, not a carriage return to show.
            let line = line.strip_suffix('\r').unwrap_or(line);
            if !line.is_empty() {
                self.0.extend(std::iter::repeat_n(' ', indent));
            }
            push_terminal_safe(&mut self.0, line);
            self.0.push('\n');
        }
    }

    /// `name` padded to a column, then the value.
    pub fn field(&mut self, indent: usize, name: &str, value: impl Display) {
        self.line(indent, format_args!("{name:<11} {value}"));
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// What an exchange without a response record shows in place of the response.
pub const NO_RESPONSE: &str =
    "(no response record: the exchange is still open, or the daemon stopped before it ended)";

/// Appends `text` with every control character but tab (and the newlines `Doc::line` splits on)
/// shown as an escape: ESC, CSI and OSC sequences in agent- or model-controlled text would
/// otherwise be obeyed by the operator's terminal (clearing it, retitling it, writing its
/// clipboard).
fn push_terminal_safe(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\t' | '\n' => out.push(c),
            // C0, DEL and C1 (U+0080..U+009F, which some terminals take as 8-bit CSI/OSC).
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
}

/// JSON text with DEL and the C1 controls written as `\u` escapes, which serde_json leaves raw
/// (it escapes only C0): the same JSON value, safe to print on a terminal. Outside strings JSON is
/// ASCII, so every such character is inside a string, where the escape means the same.
pub fn json_terminal_safe(json: String) -> String {
    let raw = |c: char| matches!(c, '\u{7f}'..='\u{9f}');
    if !json.chars().any(raw) {
        return json;
    }
    let mut safe = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if raw(c) {
            safe.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            safe.push(c);
        }
    }
    safe
}

/// `text` on one line: newlines, carriage returns and tabs shown as escapes.
pub fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            '\\' => line.push_str("\\\\"),
            c if c.is_control() => line.extend(c.escape_default()),
            c => line.push(c),
        }
    }
    line
}

/// `850ms` under a second, `1.2s` above.
pub fn duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

/// A body for reading: JSON pretty-printed, other text as it is, and what was not recorded said so.
pub fn body(body: &RecordedBody) -> String {
    let Some(text) = &body.text else {
        return format!(
            "({}, {} bytes, content not recorded)",
            body.content_type.as_deref().unwrap_or("no content type"),
            body.size
        );
    };
    let mut shown = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|json| serde_json::to_string_pretty(&json).ok())
        .unwrap_or_else(|| text.clone());
    if body.truncated {
        shown.push_str(&format!(
            "\n(truncated: {} of {} bytes recorded)",
            text.len(),
            body.size
        ));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_values_stay_indented() {
        let mut doc = Doc::default();
        doc.line(0, "Request");
        doc.field(2, "model", "gpt-4o");
        doc.line(4, "a\n\nb");
        assert_eq!(
            doc.into_string(),
            "Request\n  model       gpt-4o\n    a\n\n    b\n"
        );
    }

    #[test]
    fn control_sequences_never_reach_the_terminal() {
        let clipboard = "\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}";
        let mut doc = Doc::default();
        doc.line(2, format_args!("model {clipboard}x"));
        doc.field(2, "path", "/v1/\u{1b}[2Jchat\r\n\u{9b}31m\u{7f}next\ttab");
        let rendered = doc.into_string();
        assert_eq!(
            rendered,
            "  model \\u{1b}]52;c;ZWNobyBwd25lZA==\\u{7}x\n  \
             path        /v1/\\u{1b}[2Jchat\n  \\u{9b}31m\\u{7f}next\ttab\n"
        );
        assert!(!rendered
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'));
        let mut doc = Doc::default();
        doc.line(0, "a\rb\u{1b}[2J");
        assert_eq!(doc.into_string(), "a\\rb\\u{1b}[2J\n");
    }

    #[test]
    fn json_output_escapes_the_controls_serde_leaves_raw() {
        let json = serde_json::to_string(&"a\u{1b}[2J\u{9b}31m\u{7f}é").unwrap();
        let safe = json_terminal_safe(json);
        assert_eq!(safe, r#""a\u001b[2J\u009b31m\u007fé""#);
        assert_eq!(
            serde_json::from_str::<String>(&safe).unwrap(),
            "a\u{1b}[2J\u{9b}31m\u{7f}é"
        );
    }

    #[test]
    fn one_line_escapes_what_would_break_the_line() {
        assert_eq!(one_line("a\nb\tc\r\\d\u{1b}é"), "a\\nb\\tc\\r\\\\d\\u{1b}é");
    }

    #[test]
    fn durations_switch_to_seconds_at_one_second() {
        assert_eq!(duration(0.4), "0ms");
        assert_eq!(duration(850.0), "850ms");
        assert_eq!(duration(1234.0), "1.2s");
    }

    #[test]
    fn bodies_are_pretty_printed_when_json() {
        let json = RecordedBody {
            content_type: Some("application/json".into()),
            size: 9,
            text: Some(r#"{"a":[1]}"#.into()),
            truncated: false,
        };
        assert_eq!(body(&json), "{\n  \"a\": [\n    1\n  ]\n}");
        let cut = RecordedBody {
            text: Some(r#"{"a":"#.into()),
            size: 100,
            truncated: true,
            ..json
        };
        assert_eq!(body(&cut), "{\"a\":\n(truncated: 5 of 100 bytes recorded)");
        let binary = RecordedBody {
            content_type: Some("image/png".into()),
            size: 7,
            text: None,
            truncated: false,
        };
        assert_eq!(body(&binary), "(image/png, 7 bytes, content not recorded)");
    }
}
