//! The policy's word on one request: its verdict, the request body with its masks applied, and
//! what to record about both.
use bytes::Bytes;
use http::StatusCode;

use super::{
    active::CompiledPolicy,
    mask::MaskCounts,
    prompt::{mask_request, prompt_texts},
    RequestFacts, Verdict,
};
use crate::{
    audit::record::PolicyRecord,
    identity::selector::SelectorSubject,
    openai::{endpoint::EndpointKind, error::ApiError, request::RequestFields},
};

pub struct CheckedRequest {
    /// The body to forward and record instead of the original, when a mask changed it.
    pub masked_body: Option<Bytes>,
    /// The body as parsed and masked: what `masked_body` (or the original) reads as.
    pub parsed: Option<serde_json::Value>,
    /// The error the agent gets, and why, when the policy refuses the request.
    pub refusal: Option<(ApiError, String)>,
    pub record: PolicyRecord,
    /// The mask rules that apply to the response, in policy order.
    pub response_rules: Vec<String>,
    /// The human decision the request waits for, when an approve rule decided it.
    pub approval: Option<RequiredApproval>,
}

/// What an approve rule asks for: who may decide, and how long the request waits.
#[derive(Clone, Debug, PartialEq)]
pub struct RequiredApproval {
    pub rule: String,
    pub approvers: Vec<super::model::Approver>,
    pub timeout: std::time::Duration,
}

/// The policy's decision on one request, as the daemon's decide stage and `warden policy test`
/// both take it: `identity` is the caller and `host` the TLS server name.
pub fn check_request(
    policy: &CompiledPolicy,
    identity: &dyn SelectorSubject,
    host: &str,
    endpoint: EndpointKind,
    fields: &RequestFields,
    body: Option<&[u8]>,
) -> CheckedRequest {
    // Only JSON bodies are inspected: for uploads and other bodies, rules about the model,
    // parameters or text cannot hold, and only identity, host and endpoint rules apply.
    let parsed = body.and_then(|b| serde_json::from_slice(b).ok());
    check_parsed(policy, identity, host, endpoint, fields, parsed)
}

/// [`check_request`] on a body already parsed (None: not JSON, or not read because no rule
/// reads bodies), which it masks in place; the proxy's path, which parses a body once.
pub fn check_parsed(
    policy: &CompiledPolicy,
    identity: &dyn SelectorSubject,
    host: &str,
    endpoint: EndpointKind,
    fields: &RequestFields,
    mut parsed: Option<serde_json::Value>,
) -> CheckedRequest {
    let texts: Vec<&str> = parsed.as_ref().map(prompt_texts).unwrap_or_default();
    let facts = RequestFacts {
        identity,
        host,
        endpoint,
        model: fields.model.as_deref(),
        params: &fields.params,
        prompt_texts: &texts,
        body_inspected: parsed.is_some(),
    };
    let decision = policy.policy.decide(&facts);
    drop(texts);

    let mut record = PolicyRecord {
        verdict: "allow".to_string(),
        matched: decision
            .matched
            .iter()
            .map(|name| name.to_string())
            .collect(),
        ..PolicyRecord::default()
    };
    let approval = match &decision.verdict {
        Verdict::Approve {
            rule,
            approvers,
            timeout,
        } => {
            record.verdict = "approve".to_string();
            record.rule = Some(rule.to_string());
            Some(RequiredApproval {
                rule: rule.to_string(),
                approvers: approvers.to_vec(),
                timeout: *timeout,
            })
        }
        _ => None,
    };
    let refusal = match &decision.verdict {
        Verdict::Allow => None,
        Verdict::Deny { rule, message } => {
            record.verdict = "deny".to_string();
            record.rule = Some(rule.to_string());
            let error = ApiError::new(
                StatusCode::FORBIDDEN,
                "policy_violation",
                message.to_string(),
            )
            .with_code(rule.to_string())
            .with_should_retry(false);
            Some((error, format!("denied by rule {rule}")))
        }
        // Not a refusal: the approve stage holds the request for a human decision.
        Verdict::Approve { .. } => None,
    };

    let mut changed = false;
    if let Some(value) = parsed.as_mut() {
        for mask in decision
            .masks
            .iter()
            .filter(|mask| mask.direction.covers_request())
        {
            let Some(compiled) = policy.mask(&mask.rule) else {
                continue;
            };
            let mut counts = MaskCounts::default();
            changed |= mask_request(value, &compiled.masker, &mut counts);
            if !counts.is_empty() {
                record.masked.insert(mask.rule.clone(), counts.0);
            }
        }
    }
    let masked_body = match (changed, &parsed) {
        (true, Some(value)) => serde_json::to_vec(value).ok().map(Bytes::from),
        _ => None,
    };
    let response_rules = decision
        .masks
        .iter()
        .filter(|mask| mask.direction.covers_response())
        .map(|mask| mask.rule.clone())
        .collect();
    CheckedRequest {
        masked_body,
        parsed,
        refusal,
        record,
        response_rules,
        approval,
    }
}
