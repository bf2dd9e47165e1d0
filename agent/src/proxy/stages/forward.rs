//! Forward: send the request upstream as one hop of its own, and hand its response on.
use std::{sync::Arc, time::Duration};

use http::{header, HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{ConnectionInfo, Outbound, Refusal};
use crate::{
    audit::record::Outcome, openai::endpoint::EndpointKind, policy::active::CompiledPolicy,
    proxy::counters::Counters,
};

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1); never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// The upstream's response, with what masking it needs.
pub struct Forwarded {
    pub response: Response<Incoming>,
    pub endpoint: EndpointKind,
    pub policy: Arc<CompiledPolicy>,
    pub response_rules: Vec<String>,
}

pub async fn forward(connection: &ConnectionInfo, request: Outbound) -> Result<Forwarded, Refusal> {
    let Outbound {
        mut parts,
        body,
        endpoint,
        policy,
        response_rules,
        ..
    } = request;
    strip_hop_by_hop(&mut parts.headers);
    // Warden must read the response to record and mask it: ask for it uncompressed (the hop to the
    // agent is local).
    parts.headers.insert(
        header::ACCEPT_ENCODING,
        http::HeaderValue::from_static("identity"),
    );
    // The upstream connection's own authority is set from the URI (Host for h1, :authority for h2).
    parts.headers.remove(header::HOST);
    parts.version = http::Version::HTTP_11;

    let context = &connection.context;
    #[cfg(feature = "fault-hooks")]
    crate::fault_hooks::hold(crate::fault_hooks::Point::BeforeForward).await;
    let response_timeout = Duration::from_secs(context.config.upstream.response_timeout_secs);
    let sent = tokio::time::timeout(
        response_timeout,
        context.upstream.send(Request::from_parts(parts, body)),
    )
    .await;
    let Ok(sent) = sent else {
        // A stalled upstream must not hold the agent (and a connection of Warden's) forever.
        Counters::bump(&context.counters.upstream_errors);
        let reason = format!(
            "the upstream sent no response within {}s ([upstream] response_timeout_secs)",
            response_timeout.as_secs()
        );
        return Err(Refusal::new(
            gateway_timeout(&connection.server_name, &reason),
            reason,
            Outcome::Timeout,
        ));
    };
    match sent {
        Ok(response) => Ok(Forwarded {
            response,
            endpoint,
            policy,
            response_rules,
        }),
        Err(error) => {
            Counters::bump(&context.counters.upstream_errors);
            let reason = upstream_error_reason(&error);
            let outcome = if timed_out(&error) {
                Outcome::Timeout
            } else {
                Outcome::UpstreamError
            };
            let error = crate::openai::error::bad_gateway(&connection.server_name, &reason);
            Err(Refusal::new(error, reason, outcome))
        }
    }
}

/// 504 for an upstream that accepted the request and then said nothing; OpenAI-shaped, and
/// retryable as the SDKs retry a 5xx.
fn gateway_timeout(host: &str, reason: &str) -> crate::openai::error::ApiError {
    crate::openai::error::ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "server_error",
        format!("Warden got no answer from the upstream {host}: {reason}"),
    )
    .with_code("upstream_timeout")
}

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.contains_key(header::CONNECTION) {
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
        return;
    }
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|name| name.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

/// Whether the upstream request failed because something took too long (connect, handshake).
fn timed_out(error: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The most specific cause of a failed upstream request, for the agent and the log.
fn upstream_error_reason(error: &hyper_util::client::legacy::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    let mut reason = error.to_string();
    while let Some(cause) = source {
        reason = cause.to_string();
        source = cause.source();
    }
    reason
}
