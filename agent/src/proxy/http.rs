//! Serve one intercepted HTTP request: run it through the request stages (`stages/`) and end the
//! exchange, with the upstream's response or Warden's own refusal.
//!
//! Request bodies are read whole (the API call is parsed and recorded from them), except uploads
//! and media; every response is streamed frame by frame, so an SSE response reaches the agent event
//! by event.
use std::{convert::Infallible, sync::Arc, time::Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt};
use hyper::body::Incoming;

use super::{
    exchange_log::{BoxError, ExchangeLog, RequestSummary},
    injected_usage::WithoutInjectedUsage,
    recording::now_us,
    stages::{
        approve::approve, credential::credential, decide::decide, forward::forward, guard::guard,
        intake::intake, limit::limit, record::record, respond::respond, respond::Answer,
        revoked::revoked, revoked::until_revoked, ConnectionInfo, Refusal,
    },
};
use crate::openai::endpoint::EndpointKind;
// The helpers the stages share with this module's tests.
#[cfg(test)]
use {
    super::stages::{
        forward::strip_hop_by_hop,
        guard::{ambiguous_path, requested_upgrade, upstream_uri},
        respond::is_event_stream,
    },
    crate::openai::request::normalized_body,
    http::{HeaderMap, Method},
};

/// A response body as the agent gets it: the upstream's, Warden's own, or one a revocation cut.
pub type AgentBody = UnsyncBoxBody<Bytes, BoxError>;

pub async fn handle(
    connection: Arc<ConnectionInfo>,
    request: Request<Incoming>,
) -> Result<Response<AgentBody>, Infallible> {
    let started = Instant::now();
    let started_at_us = now_us();
    let (parts, body) = request.into_parts();
    let summary = RequestSummary::new(
        parts.method.to_string(),
        connection.server_name.clone(),
        parts.uri.path().to_string(),
        EndpointKind::of_path(parts.uri.path()),
    );
    // Dropped unlogged only if hyper abandons this handler; its drop then logs the client leaving.
    let mut log = ExchangeLog::new(
        connection.identity.clone(),
        connection.context.counters.clone(),
        connection.context.metrics.clone(),
        started,
        summary,
    );
    let stages = async {
        let request = intake(&connection, &mut log, parts, body).await?;
        let request = decide(&connection, &mut log, request).await?;
        let request = revoked(&connection, request).await?;
        let request = limit(&connection, &mut log, request).await?;
        let request = record(&connection, &mut log, started_at_us, request).await?;
        let request = guard(&connection, request).await?;
        // From here the request waits (on an approver, on the upstream): a revocation ends it.
        until_revoked(&connection, async {
            let request = approve(&connection, request).await?;
            let request = credential(&connection, request).await?;
            let response = forward(&connection, request).await?;
            respond(&connection, &mut log, response).await
        })
        .await
    };
    let answered: Result<Answer, Refusal> = stages.await;
    // The one place an exchange ends: the log line, the audit response record and the metrics
    // are fed from here, or from the response body the log takes over.
    Ok(match answered {
        Ok(Answer {
            mut parts,
            body,
            streamed,
        }) => {
            if let Some(rate_headers) = log.rate_headers() {
                rate_headers.apply(&mut parts.headers, now_us());
            }
            let injected_usage = log.injected_usage() && streamed;
            let revoked = (connection.context.revocations).cut(connection.identity.clone());
            // The log records the stream as the upstream sent it, usage included.
            let body = log
                .into_response_body(parts.status, &parts.headers, streamed, body)
                .cut_when(revoked)
                .idle_timeout(connection.context.config.upstream_idle_timeout())
                .boxed_unsync();
            let body = match injected_usage {
                true => WithoutInjectedUsage::new(body).boxed_unsync(),
                false => body,
            };
            Response::from_parts(parts, body)
        }
        Err(refusal) => refusal
            .end(log)
            .await
            .map(|body| body.map_err(BoxError::from).boxed_unsync()),
    })
}

#[cfg(test)]
mod tests;
