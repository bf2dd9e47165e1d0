//! Record: the request goes on durable record before anything of it goes upstream; if it cannot
//! be recorded it does not go at all (503). A refusal decided by intake or the policy takes
//! effect here, once the refused request is on record.
use std::borrow::Cow;

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};

use super::{credential::presents_real_key, decide::Decided, ConnectionInfo, Outbound, Refusal};
use crate::{
    approvals::HoldRequest,
    audit::record::{ExchangeRequest, IdentitySnapshot, Outcome},
    openai::error::ApiError,
    policy::prompt::prompt_texts,
    proxy::{
        exchange_log::{AnomalyNote, ExchangeLog, Recorder},
        recording::{new_id, recorded_body, recorded_headers, recorded_target},
    },
};

pub async fn record(
    connection: &ConnectionInfo,
    log: &mut ExchangeLog,
    started_at_us: i64,
    decided: Decided,
) -> Result<Outbound, Refusal> {
    let Decided {
        parts,
        endpoint,
        policy,
        fields,
        whole,
        parsed,
        uninspected_prefix,
        body,
        record: policy_record,
        refusal,
        response_rules,
        approval,
    } = decided;
    let context = &connection.context;
    let body_limit = context.config.audit.max_body_bytes as usize;
    let size = whole
        .as_ref()
        .map_or_else(|| declared_length(&parts.headers), |b| b.len() as u64);
    let exchange_id = new_id("ex");
    let identity = IdentitySnapshot::from(connection.identity.as_ref());
    let hold = approval.map(|required| HoldRequest {
        exchange_id: exchange_id.clone(),
        identity: identity.clone(),
        rule: required.rule,
        approvers: required.approvers,
        timeout: required.timeout,
        model: fields.model.clone(),
        endpoint: endpoint.as_str().to_string(),
        excerpt: excerpt(parsed.as_ref(), whole.as_deref()),
    });
    let mut record = ExchangeRequest {
        exchange_id: exchange_id.clone(),
        connection_id: connection.connection_id.clone(),
        started_at_us,
        identity,
        method: parts.method.to_string(),
        host: connection.server_name.clone(),
        path: recorded_target(parts.uri.path_and_query().map_or("/", |p| p.as_str())),
        endpoint: endpoint.as_str().to_string(),
        model: fields.model,
        params: fields.params,
        headers: recorded_headers(&parts.headers),
        body: recorded_body(
            &parts.headers,
            whole.as_deref().or(uninspected_prefix.as_deref()),
            size,
            body_limit.min(uninspected_prefix.as_ref().map_or(usize::MAX, Bytes::len)),
        ),
        policy: policy_record,
    };
    if uninspected_prefix.is_some() {
        // Only the beginning was read; the rest went upstream as it came.
        record.body.truncated = true;
        record.body.size = record
            .body
            .size
            .max(record.body.text.as_ref().map_or(0, |t| t.len() as u64));
    }
    let anomaly = context.anomaly.is_enabled().then(|| AnomalyNote {
        feed: context.anomaly.clone(),
        started_at_us,
        masked_in_request: record.policy.masked.values().flat_map(|m| m.values()).sum(),
        presented_real_key: presents_real_key(connection, &parts.headers),
    });
    log.record_to(Recorder {
        audit: context.audit.clone(),
        exchange_id: exchange_id.clone(),
        endpoint,
        body_limit,
        anomaly,
    });
    if let Err(error) = context.audit.record_request(record).await {
        tracing::error!(%error, exchange_id, "audit store: request record not committed; refusing the request");
        log.stop_recording();
        let error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "Warden could not record this request in its audit store, so it was not sent",
        )
        .with_code("audit_unavailable");
        return Err(Refusal::new(
            error,
            "audit store unavailable",
            Outcome::Denied,
        ));
    }

    if let Some(refusal) = refusal {
        return Err(match body {
            Ok(body) => refusal.discarding(body),
            Err(_) => refusal,
        });
    }
    Ok(Outbound {
        parts,
        body: body?,
        endpoint,
        policy,
        response_rules,
        hold,
    })
}

/// How much of the prompt an approver sees.
const EXCERPT_CHARS: usize = 280;

/// The beginning of the prompt's text, from the body as forwarded (masked where a rule masked):
/// the value intake parsed, or, when no rule reads bodies, the body parsed now.
fn excerpt(parsed: Option<&serde_json::Value>, body: Option<&[u8]>) -> String {
    let value = match parsed {
        Some(value) => Cow::Borrowed(value),
        None => match body.and_then(|b| serde_json::from_slice(b).ok()) {
            Some(value) => Cow::Owned(value),
            None => return String::new(),
        },
    };
    let joined = prompt_texts(&value).join(" | ");
    let mut excerpt: String = joined.chars().take(EXCERPT_CHARS).collect();
    if joined.chars().nth(EXCERPT_CHARS).is_some() {
        excerpt.push_str("...");
    }
    excerpt
}

fn declared_length(headers: &HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
