//! Decide: the policy's word on the request, taken on the request as it came and applied (masks)
//! before anything is recorded or forwarded, so that the original values go nowhere.
//!
//! A refusal decided here takes effect once the request is on record (see `record`).
use std::sync::Arc;

use bytes::Bytes;
use http::header;
use http_body_util::BodyExt;

use super::{intake::Intake, whole_body, ConnectionInfo, Refusal};
use crate::{
    audit::record::{IdentitySnapshot, Outcome, PolicyRecord},
    metrics::MaskedIn,
    openai::{endpoint::EndpointKind, request::RequestFields},
    policy::{
        active::CompiledPolicy,
        check::{check_parsed, RequiredApproval},
    },
    proxy::{exchange_log::ExchangeLog, upstream::UpstreamBody},
};

/// The request once the policy has decided on it.
pub struct Decided {
    pub parts: http::request::Parts,
    pub endpoint: EndpointKind,
    pub policy: Arc<CompiledPolicy>,
    pub fields: RequestFields,
    /// The body read whole, masked when a mask changed it: what is recorded and forwarded.
    pub whole: Option<Bytes>,
    /// `whole` parsed, when a policy rule reads bodies (the one parse of the request).
    pub parsed: Option<serde_json::Value>,
    pub uninspected_prefix: Option<Bytes>,
    /// The body to forward, or why it cannot be.
    pub body: Result<UpstreamBody, Refusal>,
    pub record: PolicyRecord,
    /// The policy's refusal, if it refuses the request.
    pub refusal: Option<Refusal>,
    pub response_rules: Vec<String>,
    /// The human decision the request must wait for (none when a duration grant covers it).
    pub approval: Option<RequiredApproval>,
}

pub async fn decide(
    connection: &ConnectionInfo,
    log: &mut ExchangeLog,
    intake: Intake,
) -> Result<Decided, Refusal> {
    let Intake {
        mut parts,
        endpoint,
        policy,
        fields,
        mut whole,
        parsed,
        streamed,
        uninspected_prefix,
        unreadable,
    } = intake;
    let checked = check_parsed(
        &policy,
        connection.identity.as_ref(),
        &connection.server_name,
        endpoint,
        &fields,
        parsed,
    );
    let mut record = checked.record;
    let mut approval = checked.approval;
    if let Some(required) = &approval {
        let identity = IdentitySnapshot::from(connection.identity.as_ref());
        if let Some(grant) = connection
            .context
            .approvals
            .grant_for(&identity, &required.rule)
        {
            // An approver approved this identity under this rule for a while: no hold.
            record.grant = Some(grant);
            approval = None;
        }
    }
    let metrics = &connection.context.metrics;
    metrics.policy_decided(&policy.policy, &record);
    metrics.masked(MaskedIn::Request, &record.masked);
    if let Some(masked) = checked.masked_body {
        whole = Some(masked);
        // The body changed length: hyper sets the new Content-Length from it.
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    let body = match (unreadable, &whole, streamed) {
        (Some(refusal), _, _) => Err(refusal),
        (None, Some(bytes), _) => {
            log.summary.set_request_bytes(bytes.len() as u64);
            Ok(whole_body(bytes.clone()))
        }
        (None, None, Some(body)) => Ok(body.boxed_unsync()),
        (None, None, None) => Ok(whole_body(Bytes::new())),
    };
    let refusal = checked
        .refusal
        .map(|(error, reason)| Refusal::new(error, reason, Outcome::Denied));
    Ok(Decided {
        parts,
        endpoint,
        policy,
        fields,
        whole,
        parsed: checked.parsed,
        uninspected_prefix,
        body,
        record,
        refusal,
        response_rules: checked.response_rules,
        approval,
    })
}
