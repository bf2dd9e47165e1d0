//! `/api/v1/approvals`: the list, a live stream of new and closed approvals (Server-Sent
//! Events), and decisions — taken by `Approvals::decide`, the admin socket's own.
use std::time::Duration;

use bytes::Bytes;
use http::{header, request::Parts, HeaderValue, Method, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::broadcast::{error::RecvError, Receiver};

use super::{blocking, body_as};
use crate::api::login::query_pairs;
use crate::{
    api::{
        auth::Caller,
        problem::Problem,
        response::{json, ApiResponse, ChannelBody},
        Api,
    },
    approvals::{ApprovalView, DecideError},
    audit::governance::Decision,
};

/// A comment line this often keeps proxies and the browser from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    #[serde(default)]
    reason: Option<String>,
    /// Approve for this long: a grant for the requester's identity under the rule.
    #[serde(default)]
    for_secs: Option<u64>,
}

pub async fn answer(
    api: &Api,
    caller: &Caller,
    parts: &Parts,
    rest: &[&str],
    body: Bytes,
) -> Result<ApiResponse, Problem> {
    let approvals = api.context.approvals.clone();
    let peer = caller.principal.peer();
    match (&parts.method, rest) {
        (&Method::GET, [] | [""]) => {
            let all = query_pairs(parts)
                .iter()
                .any(|(k, v)| k == "all" && v == "true");
            let list = match all {
                false => approvals.pending_for(&peer),
                true => blocking(move || Ok(approvals.all_for(&peer)?)).await?,
            };
            Ok(json(&serde_json::json!({ "approvals": list })))
        }
        (&Method::GET, ["stream"]) => Ok(stream(api, approvals.pending_for(&peer))),
        (&Method::POST, [id, verb @ ("approve" | "deny")]) => {
            let decision = match *verb {
                "approve" => Decision::Approve,
                _ => Decision::Deny,
            };
            let request: DecisionBody = body_as(&body)?;
            let view = approvals
                .decide(
                    &peer,
                    id,
                    decision,
                    request.reason,
                    request.for_secs.map(Duration::from_secs),
                )
                .await
                .map_err(|error| {
                    tracing::warn!(%error, approval_id = id, by = caller.principal.describe(), "approval decision refused");
                    refusal(error)
                })?;
            Ok(json(&view))
        }
        _ => Err(Problem::not_found("no such approvals endpoint")),
    }
}

fn refusal(error: DecideError) -> Problem {
    let status = match &error {
        DecideError::NotPending(_) => StatusCode::CONFLICT,
        DecideError::Refused(_) => StatusCode::FORBIDDEN,
        DecideError::ReasonRequired | DecideError::DurationOnDeny => StatusCode::BAD_REQUEST,
        DecideError::Unrecorded(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    Problem::new(status, error.to_string())
}

/// `text/event-stream`: `approval` for each pending approval now and each new one, `closed` for
/// each that closes, until the client leaves or the daemon stops.
fn stream(api: &Api, pending: Vec<ApprovalView>) -> ApiResponse {
    let (sender, body) = ChannelBody::channel(64);
    let mut announced = api.context.approvals.subscribe();
    let mut closed = api.context.approvals.subscribe_closed();
    let mut shutdown = api.shutdown.clone();
    tokio::spawn(async move {
        for view in pending {
            if sender.send(event("approval", &view)).await.is_err() {
                return;
            }
        }
        loop {
            let chunk = tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(KEEP_ALIVE) => Some(Bytes::from_static(b": keep-alive\n\n")),
                next = next(&mut announced) => next.map(|view| event("approval", &view)),
                next = next(&mut closed) => next.map(|view| event("closed", &view)),
            };
            let Some(chunk) = chunk else { return };
            if sender.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// The next view; None when the channel closed. A watcher that fell behind skips what it missed.
async fn next(receiver: &mut Receiver<ApprovalView>) -> Option<ApprovalView> {
    loop {
        match receiver.recv().await {
            Ok(view) => return Some(view),
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "API approvals stream fell behind");
            }
            Err(RecvError::Closed) => return None,
        }
    }
}

fn event(name: &str, view: &ApprovalView) -> Bytes {
    let data = serde_json::to_string(view).unwrap_or_default();
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}
