//! Fuzz targets: the policy and config loaders over arbitrary file contents.
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::identity::selector::SelectorSubject;
use crate::openai::endpoint::EndpointKind;
use crate::openai::request::request_fields;
use crate::policy::active::CompiledPolicy;
use crate::policy::check::check_request;
use crate::policy::load::parse_rules;
use crate::policy::Policy;

/// The name the loaders give the fuzzed file in their errors.
const FILE: &str = "fuzz.toml";

/// A request with text every built-in recognizer can find, for the rules a fuzzed policy compiles.
const REQUEST: &str = r#"{"model":"gpt-4o-mini","stream":true,"temperature":0.7,"max_tokens":512,
"messages":[{"role":"user","content":"Mail jane@example.com, card 4111 1111 1111 1111, EMP-123456"}],
"tools":[{"type":"function","function":{"name":"send_mail"}}]}"#;

/// Loads `data` as a policy file; a policy that loads is compiled and judges a request. Errors
/// must name a line of the file.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let rules = match parse_rules(text, Path::new(FILE)) {
        Ok(rules) => rules,
        Err(error) => return check_error_lines(text, &error.to_string()),
    };
    let policy = Policy {
        rules,
        limits: Vec::new(),
        files: vec![PathBuf::from(FILE)],
    };
    let Ok(compiled) = CompiledPolicy::compile(policy) else {
        return;
    };
    let body = REQUEST.as_bytes();
    let fields = request_fields(body);
    for endpoint in [EndpointKind::ChatCompletions, EndpointKind::Responses] {
        let checked = check_request(
            &compiled,
            &Agent,
            "api.openai.com",
            endpoint,
            &fields,
            Some(body),
        );
        if let Some(masked) = checked.masked_body {
            serde_json::from_slice::<serde_json::Value>(&masked).expect("a masked body is JSON");
        }
    }
}

/// Loads `data` as the daemon's config file. Errors must name a line of the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, Path::new(FILE)) {
        Ok(config) => {
            config.is_intercepted_host("api.openai.com");
            config.upstream_override("api.openai.com");
        }
        Err(error) => check_error_lines(text, &error.to_string()),
    }
}

/// Every `fuzz.toml:LINE` in `message` names a line `text` has.
fn check_error_lines(text: &str, message: &str) {
    let lines = text.lines().count().max(1) + 1;
    let marker = format!("{FILE}:");
    for (at, _) in message.match_indices(&marker) {
        let digits: String = message[at + marker.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(line) = digits.parse::<usize>() {
            assert!(
                (1..=lines).contains(&line),
                "line {line} of {lines}: {message}"
            );
        }
    }
}

/// The caller the fuzzed rules are judged for: a systemd service run by an ordinary user.
struct Agent;

impl SelectorSubject for Agent {
    fn account(&self) -> Option<&str> {
        Some("agent")
    }
    fn unit(&self) -> Option<&str> {
        Some("agent.service")
    }
    fn user(&self) -> Option<&str> {
        Some("agent")
    }
    fn uid(&self) -> u32 {
        1000
    }
    fn cgroup(&self) -> Option<&str> {
        Some("/system.slice/agent.service")
    }
    fn exe(&self) -> Option<&str> {
        Some("/usr/bin/python3")
    }
    fn pid(&self) -> u32 {
        4242
    }
    fn service_account(&self) -> Option<&str> {
        None
    }
}
