//! Synthetic audit records for the benchmarks: a proxied exchange's payload, and exchanges with
//! varied identities, models, endpoints, outcomes and times spread over 30 days.
use warden::{
    audit::{
        AuditRecord, ExchangeRequest, ExchangeResponse, IdentitySnapshot, Outcome, RecordedBody,
        RequestParams,
    },
    openai::assemble::{Assembled, Usage},
};

pub const MICROS_PER_DAY: i64 = 86_400_000_000;
/// 2025-01-31T00:00:00Z: the newest exchange of the list store. `since 1 day` counts back from
/// here, as `--since 1d` would right after the data was recorded.
pub const STORE_END_US: i64 = 1_738_281_600_000_000;
pub const STORE_SPAN_DAYS: i64 = 30;

/// What one proxied exchange records, besides ids, times and identity.
pub struct Payload {
    pub request_headers: Vec<(String, String)>,
    pub request_body: String,
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
    pub assembled_text: String,
}

impl Payload {
    /// A ~1 KiB chat request, a ~2 KiB response, a dozen headers each way.
    pub fn realistic() -> Payload {
        let prompt = "Summarize the open invoices for account 4411 and flag any that are overdue \
                      by more than thirty days. ";
        let answer = "Account 4411 has seven open invoices totalling 18,240.00 EUR; two are \
                      overdue by more than thirty days (INV-2291, INV-2307). ";
        Payload {
            request_headers: headers(
                "host: api.openai.com\ncontent-type: application/json\naccept: application/json\n\
                 authorization: …x9Qz sha256:5be1c0d2a7f39e44\nuser-agent: OpenAI/Python 1.82.0\n\
                 x-stainless-lang: python\nx-stainless-package-version: 1.82.0\n\
                 x-stainless-os: Linux\nx-stainless-arch: x64\nx-stainless-runtime: CPython\n\
                 x-stainless-retry-count: 0\ncontent-length: 1043",
            ),
            request_body: format!(
                r#"{{"model":"gpt-4.1","temperature":0.2,"max_tokens":512,"messages":[{{"role":"system","content":"You are the billing assistant. Answer from the ledger only."}},{{"role":"user","content":"{}"}}],"tools":[{{"type":"function","function":{{"name":"lookup_invoice","parameters":{{"type":"object","properties":{{"id":{{"type":"string"}}}}}}}}}}]}}"#,
                prompt.repeat(7)
            ),
            response_headers: headers(
                "date: Fri, 31 Jan 2025 00:00:00 GMT\ncontent-type: application/json\n\
                 content-length: 2071\nopenai-organization: org-bench\nopenai-processing-ms: 812\n\
                 openai-version: 2020-10-01\nx-request-id: req_0f6c2a9b5d3e4f718293a4b5c6d7e8f9\n\
                 x-ratelimit-limit-requests: 10000\nx-ratelimit-remaining-requests: 9999\n\
                 x-ratelimit-limit-tokens: 2000000\nx-ratelimit-remaining-tokens: 1999200\n\
                 strict-transport-security: max-age=31536000",
            ),
            response_body: format!(
                r#"{{"id":"chatcmpl-bench","object":"chat.completion","created":1738281600,"model":"gpt-4.1-2025-04-14","choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":245,"completion_tokens":412,"total_tokens":657}}}}"#,
                answer.repeat(12)
            ),
            assembled_text: answer.repeat(12),
        }
    }

    /// Small bodies for the list store: `list` reads only the `exchanges` index, so bodies only
    /// cost disk and build time there.
    pub fn compact() -> Payload {
        Payload {
            request_headers: headers(
                "content-type: application/json\nauthorization: …x9Qz sha256:5be1c0d2a7f39e44",
            ),
            request_body:
                r#"{"messages":[{"role":"user","content":"Which invoices are overdue?"}]}"#.into(),
            response_headers: headers("content-type: application/json"),
            response_body: r#"{"choices":[{"message":{"content":"Two: INV-2291, INV-2307."}}]}"#
                .into(),
            assembled_text: "Two: INV-2291, INV-2307.".into(),
        }
    }
}

/// `name: value` lines, as the proxy records them.
pub fn headers(lines: &str) -> Vec<(String, String)> {
    lines
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// What varies between exchanges: who, which model and endpoint, when, and how it ended.
pub struct Shape {
    pub id: String,
    pub connection_id: String,
    pub identity: IdentitySnapshot,
    pub endpoint: &'static str,
    pub model: Option<&'static str>,
    pub started_us: i64,
    pub duration_us: i64,
    /// None: no response record (the exchange shows as incomplete).
    pub outcome: Option<Outcome>,
    pub tokens: (u64, u64),
}

pub fn request(shape: &Shape, payload: &Payload) -> AuditRecord {
    AuditRecord::Request(ExchangeRequest {
        exchange_id: shape.id.clone(),
        connection_id: shape.connection_id.clone(),
        started_at_us: shape.started_us,
        identity: shape.identity.clone(),
        method: "POST".into(),
        host: "api.openai.com".into(),
        path: format!("/v1/{}", shape.endpoint.replace('.', "/")),
        endpoint: shape.endpoint.into(),
        model: shape.model.map(str::to_owned),
        params: RequestParams {
            stream: Some(false),
            temperature: Some(0.2),
            max_tokens: Some(512),
            max_output_tokens: None,
            tools: vec!["lookup_invoice".into()],
        },
        headers: payload.request_headers.clone(),
        body: recorded_body(&payload.request_body),
        policy: Default::default(),
    })
}

pub fn response(shape: &Shape, outcome: Outcome, payload: &Payload) -> AuditRecord {
    let (input_tokens, output_tokens) = shape.tokens;
    let duration_ms = shape.duration_us as f64 / 1000.0;
    AuditRecord::Response(ExchangeResponse {
        exchange_id: shape.id.clone(),
        ended_at_us: shape.started_us + shape.duration_us,
        status: Some(if outcome == Outcome::UpstreamError {
            500
        } else {
            200
        }),
        headers: payload.response_headers.clone(),
        body: Some(recorded_body(&payload.response_body)),
        streamed: false,
        events: Vec::new(),
        assembled: Some(Assembled {
            text: payload.assembled_text.clone(),
            finish_reason: Some("stop".into()),
            usage: Some(Usage {
                input_tokens,
                output_tokens,
                total_tokens: input_tokens + output_tokens,
            }),
            ..Assembled::default()
        }),
        ttfb_ms: Some(duration_ms * 0.6),
        duration_ms,
        outcome,
        reason: (outcome != Outcome::Ok).then(|| "bench".into()),
        masked: Default::default(),
    })
}

pub fn recorded_body(text: &str) -> RecordedBody {
    RecordedBody {
        content_type: Some("application/json".into()),
        size: text.len() as u64,
        text: Some(text.to_owned()),
        truncated: false,
    }
}

pub fn identity(pid: u32, account: Option<&str>, unit: &str, user: &str) -> IdentitySnapshot {
    IdentitySnapshot {
        pid,
        comm: "python3".into(),
        exe: Some("/usr/bin/python3.12".into()),
        cmdline: Some(format!("python3 /opt/agents/{unit}/main.py")),
        uid: 1000 + pid % 7,
        user: Some(user.into()),
        gid: 1000,
        cgroup_id: u64::from(pid),
        cgroup: Some(format!("/system.slice/{unit}")),
        unit: Some(unit.into()),
        container: None,
        account: account.map(str::to_owned),
        k8s_sa: None,
        k8s_sa_verified: None,
        process_exited: false,
    }
}

/// The proxy's id format: `ex-<ms hex>-<sequence hex>`, so ids sort by time like real ones.
pub fn exchange_id(started_us: i64, n: u64) -> String {
    format!("ex-{:011x}-{n:06x}", started_us / 1000)
}

/// Per-exchange pseudo-random bits, reproducible without a rand dependency.
pub fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn pick<T: Copy>(choices: &[T], bits: u64) -> T {
    choices[(bits % choices.len() as u64) as usize]
}

/// Exchanges pick one of these or, one time in eleven, no account.
pub const ACCOUNTS: [&str; 10] = [
    "billing-etl",
    "billing-reports",
    "billing-recon",
    "support-bot",
    "support-triage",
    "research-agent",
    "research-eval",
    "marketing-copy",
    "sre-oncall",
    "legal-review",
];
pub const USERS: [&str; 5] = ["alice", "bob", "carol", "ci", "svc-agents"];
pub const CHAT_MODELS: [&str; 7] = [
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4o",
    "gpt-4o-mini",
    "o3",
    "o4-mini",
];

/// Exchange `n` of `total`, spread evenly over the 30 days before `STORE_END_US`.
pub fn synthetic_shape(n: u64, total: u64) -> Shape {
    let bits = splitmix64(n);
    let account = ACCOUNTS.get((bits % 11) as usize).copied();
    let unit = format!("{}.service", account.unwrap_or("adhoc-agent"));
    let (endpoint, model) = match (bits >> 8) % 20 {
        0..=11 => ("chat.completions", Some(pick(&CHAT_MODELS, bits >> 16))),
        12..=16 => ("responses", Some(pick(&CHAT_MODELS, bits >> 16))),
        17 | 18 => ("embeddings", Some("text-embedding-3-small")),
        _ => ("models", None),
    };
    let outcome = match (bits >> 24) % 100 {
        0..=89 => Some(Outcome::Ok),
        90..=93 => Some(Outcome::UpstreamError),
        94..=96 => Some(Outcome::ClientAborted),
        97 => Some(Outcome::Timeout),
        98 => Some(Outcome::Denied),
        _ => None,
    };
    let span_us = STORE_SPAN_DAYS * MICROS_PER_DAY;
    let step_us = span_us / total.max(1) as i64;
    let started_us = STORE_END_US - span_us + n as i64 * step_us + (bits >> 32) as i64 % step_us;
    Shape {
        id: exchange_id(started_us, n),
        connection_id: format!("conn-{:06x}", n / 4),
        identity: identity(
            2000 + (bits >> 40) as u32 % 500,
            account,
            &unit,
            pick(&USERS, bits >> 48),
        ),
        endpoint,
        model,
        started_us,
        duration_us: 200_000 + (bits >> 20) as i64 % 20_000_000,
        outcome,
        tokens: (20 + (bits >> 12) % 4000, (bits >> 36) % 2000),
    }
}
