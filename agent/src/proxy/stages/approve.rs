//! Approve: a request an `approve` rule decided is held here, its connection open, until an
//! approver approves (it goes on), denies (403 `approval_denied`), or nobody decides within the
//! rule's timeout (403 `approval_timeout`). The pending approval is on the chain before the hold
//! begins; if the client leaves meanwhile, the dropped hold records the cancellation. A request
//! credential custody would refuse (see `credential`) is refused here, before anyone is asked.
use http::StatusCode;

use super::{ConnectionInfo, Outbound, Refusal};
use crate::{approvals::Resolution, audit::record::Outcome, openai::error::ApiError};

pub async fn approve(
    connection: &ConnectionInfo,
    mut request: Outbound,
) -> Result<Outbound, Refusal> {
    let Some(hold) = request.hold.take() else {
        return Ok(request);
    };
    // Nobody is asked to approve what custody refuses anyway (its credential stage comes later).
    if let Some(refusal) = super::credential::refusal_before_hold(connection, &request) {
        return Err(request.refuse(refusal));
    }
    let rule = hold.rule.clone();
    let resolution = match connection.context.approvals.hold(hold).await {
        Ok(resolution) => resolution,
        Err(error) => {
            tracing::error!(%error, rule, "pending approval not recorded; refusing the request");
            return Err(request.refuse(unrecorded(&rule)));
        }
    };
    let refused = |status, code: &str, message: String, reason: String, outcome| {
        let error = ApiError::new(status, "policy_violation", message)
            .with_code(code)
            .with_should_retry(false);
        Refusal::new(error, reason, outcome)
    };
    let refusal = match resolution {
        Resolution::Approved { .. } => return Ok(request),
        Resolution::Denied { reason } => {
            let why = reason.unwrap_or_default();
            refused(
                StatusCode::FORBIDDEN,
                "approval_denied",
                format!("This request (rule {rule}) was denied by its approver: {why}"),
                format!("approval denied (rule {rule}): {why}"),
                Outcome::ApprovalDenied,
            )
        }
        Resolution::Expired => refused(
            StatusCode::FORBIDDEN,
            "approval_timeout",
            format!(
                "This request (rule {rule}) needed a human approval that was not given in time"
            ),
            format!("approval timed out (rule {rule})"),
            Outcome::ApprovalTimeout,
        ),
        Resolution::Interrupted => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "approval_interrupted",
            format!("Warden stopped while this request (rule {rule}) waited for approval"),
            format!("approval interrupted by shutdown (rule {rule})"),
            Outcome::Denied,
        ),
        Resolution::Unrecorded => unrecorded(&rule),
    };
    Err(request.refuse(refusal))
}

fn unrecorded(rule: &str) -> Refusal {
    let error = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server_error",
        "Warden could not record this request's approval in its audit store, so it was not sent",
    )
    .with_code("audit_unavailable")
    .with_should_retry(false);
    Refusal::new(
        error,
        format!("approval (rule {rule}) not recorded"),
        Outcome::Denied,
    )
}
