//! A Prometheus exposition as a test reads it: scraped with curl, validated with `promtool check
//! metrics`, and looked up series by series.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::client::Client;

/// One sample line: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The text of one scrape and its samples.
#[derive(Debug, Clone)]
pub struct Exposition {
    text: String,
    samples: Vec<Sample>,
}

impl Exposition {
    /// `GET url` with curl; panics unless it answers 200.
    pub fn scrape(url: &str) -> Self {
        let out = Client::new(["curl", "-sS", "--fail", "--max-time", "10", url]).run();
        out.assert_success();
        Self::parse(&out.stdout)
    }

    /// Parses the text format; panics on a line it cannot read.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| parse_sample(line).unwrap_or_else(|| panic!("unreadable sample {line:?}")))
            .collect();
        Self {
            text: text.to_owned(),
            samples,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Every sample of metric `name` (for a histogram: `name_bucket`, `name_count`, ...).
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The value of the series `name` with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Like [`Exposition::value`], panicking with the whole exposition when the series is absent.
    pub fn expect(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or_else(|| {
            panic!(
                "no series {name}{labels:?}; the exposition was:\n{}",
                self.text
            )
        })
    }

    /// `promtool check metrics` accepts the text with no problem (lint findings included).
    pub fn assert_valid(&self, promtool: &Path) {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(self.text.as_bytes())
            .expect("writing the exposition to promtool");
        let out = child.wait_with_output().expect("waiting for promtool");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.trim().is_empty(),
            "promtool check metrics: {}\n{report}\nthe exposition was:\n{}",
            out.status,
            self.text
        );
    }
}

/// `name{k="v",...} value` or `name value`.
fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(at) => line.split_at(at),
        None => return None,
    };
    let mut labels = BTreeMap::new();
    let rest = match rest.strip_prefix('{') {
        Some(mut inner) => loop {
            if let Some(after) = inner.strip_prefix('}') {
                break after;
            }
            inner = inner.strip_prefix(',').unwrap_or(inner);
            let (key, after) = inner.split_once("=\"")?;
            let (value, after) = unescape_until_quote(after)?;
            labels.insert(key.to_owned(), value);
            inner = after;
        },
        None => rest,
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A label value up to its closing quote (escapes `\\`, `\"`, `\n` undone), and what follows.
fn unescape_until_quote(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                escaped => value.push(escaped),
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels_escapes_and_values() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\n\
                    x_total{a=\"1\",b=\"q\\\"uo\\\\te\"} 3\n\
                    y 0.5\n\
                    h_bucket{le=\"+Inf\"} 2\n";
        let exposition = Exposition::parse(text);
        assert_eq!(
            exposition.value("x_total", &[("a", "1"), ("b", "q\"uo\\te")]),
            Some(3.0)
        );
        assert_eq!(
            exposition.value("x_total", &[("a", "1")]),
            None,
            "labels match exactly"
        );
        assert_eq!(exposition.value("y", &[]), Some(0.5));
        assert_eq!(exposition.expect("h_bucket", &[("le", "+Inf")]), 2.0);
    }
}
