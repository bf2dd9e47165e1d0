//! `warden policy test`'s verdict on one request, checked as the daemon checks it.
use std::{collections::BTreeMap, fmt::Write as _};

use serde::Serialize;
use serde_json::Value;

use crate::{
    audit::record::IdentitySnapshot,
    openai::{endpoint::EndpointKind, request::request_fields},
    policy::{
        active::CompiledPolicy,
        check::{check_request, CheckedRequest},
    },
};

/// What `policy test` prints; also its `--json` shape.
#[derive(Debug, Serialize, PartialEq)]
pub struct TestReport {
    /// `allow`, `deny` or `approve`.
    pub decision: String,
    /// The rule behind a deny or approve.
    pub rule: Option<String>,
    /// What the agent is told when the request is refused.
    pub message: Option<String>,
    /// Every rule that matched, in policy order.
    pub matched: Vec<String>,
    /// Per mask rule, how many values of each recognizer were masked.
    pub masked: BTreeMap<String, BTreeMap<String, u64>>,
    /// The body as the daemon forwards and records it.
    pub body: Value,
}

/// Evaluates with the daemon's own request check (`check_request`).
pub fn evaluate(
    policy: &CompiledPolicy,
    caller: &IdentitySnapshot,
    host: &str,
    endpoint: EndpointKind,
    body: Value,
) -> TestReport {
    // Serializing a `Value` cannot fail: its keys are strings.
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let fields = request_fields(&bytes);
    let checked = check_request(policy, caller, host, endpoint, &fields, Some(&bytes));
    report(checked, body)
}

/// The report on a checked request; `body` is what was checked, shown masked.
pub fn report(checked: CheckedRequest, body: Value) -> TestReport {
    let CheckedRequest {
        masked_body,
        refusal,
        record,
        approval,
        ..
    } = checked;
    let held = approval.map(|required| {
        let approvers: Vec<String> = required.approvers.iter().map(ToString::to_string).collect();
        format!(
            "the request is held until one of {} approves it (timeout {})",
            approvers.join(", "),
            humantime::format_duration(required.timeout)
        )
    });
    let body = masked_body
        .and_then(|masked| serde_json::from_slice(&masked).ok())
        .unwrap_or(body);
    TestReport {
        decision: record.verdict,
        rule: record.rule,
        message: refusal.map(|(error, _)| error.message).or(held),
        matched: record.matched,
        masked: record.masked,
        body,
    }
}

impl TestReport {
    pub fn render_text(&self) -> String {
        let rule = self.rule.as_deref().unwrap_or("?");
        let decision = match self.decision.as_str() {
            "deny" => format!(
                "deny by {rule}: {}",
                self.message.as_deref().unwrap_or_default()
            ),
            "approve" => format!(
                "approval required by {rule} ({})",
                self.message.as_deref().unwrap_or_default()
            ),
            other => other.to_string(),
        };
        let mut out = format!("decision: {decision}\n");
        match self.matched.is_empty() {
            true => out.push_str("matched: none\n"),
            false => {
                let _ = writeln!(out, "matched: {}", self.matched.join(", "));
            }
        }
        match self.masked.is_empty() {
            true => out.push_str("masked: nothing\n"),
            false => out.push_str("masked:\n"),
        }
        for (rule, labels) in &self.masked {
            for (label, n) in labels {
                let _ = writeln!(out, "  {rule} {label}: {n}");
            }
        }
        let body = serde_json::to_string_pretty(&self.body).unwrap_or_default();
        let _ = writeln!(out, "body:\n{body}");
        out
    }
}
