//! Revoked: an identity cut off by `warden revoke` gets 403 `identity_revoked`, whatever the
//! policy decided. Checked before the request is recorded and refused once it is (in `record`),
//! so the exchange is on record with outcome `revoked`; a revocation made later, while the request
//! waits (held for approval, forwarded, answered), ends it through [`until_revoked`].
use std::future::Future;

use http::StatusCode;

use super::{decide::Decided, ConnectionInfo, Refusal};
use crate::{audit::record::Outcome, openai::error::ApiError, revocation::Revocation};

pub async fn revoked(
    connection: &ConnectionInfo,
    mut decided: Decided,
) -> Result<Decided, Refusal> {
    if let Some(revocation) = connection.context.revocations.revoked(&connection.identity) {
        decided.refusal = Some(refusal(&revocation));
    }
    Ok(decided)
}

/// Runs `stages` until they end or the connection's identity is revoked, whichever comes first;
/// a revocation drops them (and with them the upstream request) and refuses the exchange.
pub async fn until_revoked<T>(
    connection: &ConnectionInfo,
    stages: impl Future<Output = Result<T, Refusal>>,
) -> Result<T, Refusal> {
    // Polled at every wake of the stages: the cut's atomic check, not the channel's lock.
    let mut cut = connection
        .context
        .revocations
        .cut(connection.identity.clone());
    let revoked = std::future::poll_fn(|cx| cut.poll_revoked(cx));
    tokio::select! {
        // Checked first: a request whose identity was revoked since `revoked` ran goes no further.
        biased;
        revocation = revoked => Err(refusal(&revocation)),
        ended = stages => ended,
    }
}

/// The agent's answer and the exchange's outcome and reason, for a request of a revoked identity.
pub fn refusal(revocation: &Revocation) -> Refusal {
    let selector = &revocation.stored.selector;
    let message = format!(
        "Access for this identity has been revoked by the Warden operator (revocation {selector}); \
         requests are refused until it is restored"
    );
    let error = ApiError::new(StatusCode::FORBIDDEN, "permission_error", message)
        .with_code("identity_revoked")
        .with_should_retry(false);
    Refusal::new(error, cut_reason(revocation), Outcome::Revoked)
}

/// What the log line and the audit record say about an exchange a revocation ended.
pub fn cut_reason(revocation: &Revocation) -> String {
    let stored = &revocation.stored;
    let by = stored.by.name();
    match &stored.reason {
        Some(reason) => format!("identity revoked ({} by {by}: {reason})", stored.selector),
        None => format!("identity revoked ({} by {by})", stored.selector),
    }
}
