//! The records of the audit store: what is kept about each connection and each exchange.
//!
//! Each record is serialized to canonical JSON (fields in declaration order, no whitespace) and that
//! text is what the hash chain covers, so field order here is part of the on-disk format.
use serde::{Deserialize, Serialize};

// Kept here too: they are part of these records' on-disk format.
use crate::openai::assemble::Assembled;
pub use crate::{identity::IdentitySnapshot, openai::request::RequestParams};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    Intercepted,
    Tunneled,
    Rejected,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Intercepted => "intercepted",
            Disposition::Tunneled => "tunneled",
            Disposition::Rejected => "rejected",
        }
    }
}

/// One redirected connection, written when it ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRecord {
    pub id: String,
    pub identity: IdentitySnapshot,
    pub original_dst: String,
    pub server_name: Option<String>,
    pub disposition: Disposition,
    pub reason: Option<String>,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    /// Unix time in microseconds.
    pub started_at_us: i64,
    pub ended_at_us: i64,
}

/// A message body as recorded: JSON and text bodies are kept whole (up to the recording limit);
/// other bodies only by type and size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedBody {
    pub content_type: Option<String>,
    pub size: u64,
    pub text: Option<String>,
    /// The body was longer than the recording limit; `text` holds its beginning.
    pub truncated: bool,
}

/// An exchange's request, committed before the request is forwarded upstream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeRequest {
    pub exchange_id: String,
    pub connection_id: String,
    pub started_at_us: i64,
    pub identity: IdentitySnapshot,
    pub method: String,
    pub host: String,
    pub path: String,
    /// `chat.completions`, `responses`, `embeddings`, `completions`, `files`, `batches`, `models` or `other`.
    pub endpoint: String,
    pub model: Option<String>,
    pub params: RequestParams,
    /// Header name and value; `authorization` holds a fingerprint, never the credential.
    pub headers: Vec<(String, String)>,
    /// As forwarded: masked where a policy masked it (the original is never recorded).
    pub body: RecordedBody,
    #[serde(default)]
    pub policy: PolicyRecord,
}

/// What the policy decided for a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    /// `allow`, `deny` or `approve`.
    pub verdict: String,
    /// The rule behind a deny or approve.
    pub rule: Option<String>,
    /// Every rule that matched.
    pub matched: Vec<String>,
    /// Per mask rule, how many values of each recognizer were masked in the request.
    pub masked: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    /// An `approve` verdict passed without holding under this duration grant (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// One server-sent event of a streamed response, with when it arrived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamEvent {
    /// Milliseconds since the exchange started.
    pub offset_ms: f64,
    pub event: Option<String>,
    pub data: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    UpstreamError,
    ClientAborted,
    Denied,
    Timeout,
    /// A held request's approver said no.
    ApprovalDenied,
    /// A held request's approval was not decided in time.
    ApprovalTimeout,
    /// The requester's identity was revoked (before or during the exchange).
    Revoked,
    /// Refused by a `[[limit]]`: over a rate (429 rate_limit_exceeded) or a spent budget
    /// (429 insufficient_quota).
    Limited,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::UpstreamError,
        Outcome::ClientAborted,
        Outcome::Denied,
        Outcome::Timeout,
        Outcome::ApprovalDenied,
        Outcome::ApprovalTimeout,
        Outcome::Revoked,
        Outcome::Limited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ClientAborted => "client_aborted",
            Outcome::Denied => "denied",
            Outcome::Timeout => "timeout",
            Outcome::ApprovalDenied => "approval_denied",
            Outcome::ApprovalTimeout => "approval_timeout",
            Outcome::Revoked => "revoked",
            Outcome::Limited => "limited",
        }
    }
}

/// How an exchange ended, committed when it ends (aborted streams too, with what had arrived).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeResponse {
    pub exchange_id: String,
    pub ended_at_us: i64,
    /// None when no response was sent (the client left first).
    pub status: Option<u16>,
    pub headers: Vec<(String, String)>,
    /// Non-streamed responses.
    pub body: Option<RecordedBody>,
    pub streamed: bool,
    /// Streamed responses: every event as it arrived.
    pub events: Vec<StreamEvent>,
    pub assembled: Option<Assembled>,
    pub ttfb_ms: Option<f64>,
    pub duration_ms: f64,
    pub outcome: Outcome,
    /// The rule or reason behind the outcome.
    pub reason: Option<String>,
    /// Per mask rule, how many values of each recognizer were masked in the response.
    #[serde(default)]
    pub masked: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
}

/// What the writer appends to the chain.
// Moved once into the writer's queue; boxing the variants would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum AuditRecord {
    Connection(ConnectionRecord),
    Request(ExchangeRequest),
    Response(ExchangeResponse),
    Governance(super::governance::GovernanceRecord),
}
