//! The request path as named stages, run in order by `http::handle`, one file each.
//!
//! Each stage is a plain async fn that takes what the stage before it produced and returns what
//! the next one needs, or a [`Refusal`]. A refusal ends the exchange in one place
//! ([`Refusal::end`]): Warden's own OpenAI-shaped error, its outcome and reason.
pub mod approve;
pub mod credential;
pub mod decide;
pub mod forward;
pub mod guard;
pub mod intake;
pub mod limit;
pub mod record;
pub mod respond;
pub mod revoked;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;

use super::{exchange_log::ExchangeLog, upstream::UpstreamBody, ProxyContext};
use crate::{
    audit::record::Outcome,
    identity::Identity,
    openai::{endpoint::EndpointKind, error::ApiError},
    policy::active::CompiledPolicy,
};

/// Everything a request handler needs to know about its connection.
pub struct ConnectionInfo {
    pub context: Arc<ProxyContext>,
    pub identity: Arc<Identity>,
    pub server_name: String,
    /// The port the agent connected to; the upstream is reached on the same port.
    pub destination_port: u16,
    pub connection_id: String,
}

/// Why an exchange ends with Warden's own answer instead of the upstream's.
pub struct Refusal {
    /// What the agent gets.
    pub error: Box<ApiError>,
    pub outcome: Outcome,
    /// For the log line and the audit record.
    pub reason: String,
    /// A request body still arriving, read and discarded before the refusal goes out.
    pub unread_body: Option<UpstreamBody>,
}

impl Refusal {
    pub fn new(error: ApiError, reason: impl Into<String>, outcome: Outcome) -> Self {
        Refusal {
            error: Box::new(error),
            outcome,
            reason: reason.into(),
            unread_body: None,
        }
    }

    /// The refusal, after the rest of `body` has been read and discarded.
    pub fn discarding(mut self, body: UpstreamBody) -> Self {
        self.unread_body = Some(body);
        self
    }

    /// Ends the exchange with Warden's own answer.
    pub async fn end(self, log: ExchangeLog) -> Response<UpstreamBody> {
        if let Some(body) = self.unread_body {
            discard_rest(body).await;
        }
        log.error_response(*self.error, &self.reason, self.outcome)
    }
}

/// The request as it goes upstream, once it is on record: what guard, approve, credential and
/// forward pass on.
pub struct Outbound {
    pub parts: http::request::Parts,
    pub body: UpstreamBody,
    pub endpoint: EndpointKind,
    /// The policy this request was decided by; its response masks come from it too.
    pub policy: Arc<CompiledPolicy>,
    /// The mask rules that apply to the response, in policy order.
    pub response_rules: Vec<String>,
    /// A request an approve rule holds for a human decision (the approve stage waits on it).
    pub hold: Option<crate::approvals::HoldRequest>,
}

impl Outbound {
    /// Ends the request with `refusal`, the body still arriving read and discarded first.
    pub fn refuse(self, refusal: Refusal) -> Refusal {
        refusal.discarding(self.body)
    }
}

/// A body held whole, as the upstream body type.
fn whole_body(bytes: Bytes) -> UpstreamBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Before refusing a request whose body is still arriving (an upload forwarded as it streams),
/// read and discard the rest of it, up to a bound: an HTTP/2 stream answered before its request
/// ended is reset, and clients such as curl then report the reset instead of Warden's answer.
/// Past the bound (or the deadline) the refusal goes out anyway.
async fn discard_rest(body: UpstreamBody) {
    const MAX_DISCARDED: usize = 16 * 1024 * 1024;
    const DEADLINE: Duration = Duration::from_secs(5);
    let discard = async {
        let mut body = body;
        let mut discarded = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            discarded += frame.data_ref().map_or(0, Bytes::len);
            if discarded > MAX_DISCARDED {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DEADLINE, discard).await;
}
