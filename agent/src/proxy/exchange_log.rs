//! The end of an intercepted exchange: its "exchange" log line and its audit response record,
//! each emitted exactly once however the exchange ends.
//!
//! [`ExchangeLog`] is a drop guard: Warden's own error responses and the end of the upstream
//! response body ([`LoggedBody`]) end it explicitly; if hyper drops the request handler before
//! either (the client reset the stream, timed out or the connection was drained), dropping the
//! guard ends it as `client_aborted` instead.
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use http::{HeaderValue, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use tracing::Level;

use super::{
    counters::Counters,
    recording::{recorded_headers, ResponseCapture},
    response_mask::SharedMaskCounts,
    upstream::UpstreamBody,
};
use crate::{
    anomaly::{AnomalyFeed, ExchangeFacts, Observation},
    audit::{
        record::{AuditRecord, Outcome},
        AuditWriter,
    },
    identity::Identity,
    identity_event,
    identity_limits::{Admission, RateHeaders, Settlement},
    metrics::{ExchangeEnd, MaskedIn, Metrics},
    openai::{assemble::Usage, endpoint::EndpointKind, error::ApiError},
};

/// The error of a response body as hyper gets it: the upstream's, or a revocation's cut.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CLIENT_WENT_AWAY: &str = "client went away before the response";
const CLIENT_LEFT_MID_RESPONSE: &str = "client went away before the response ended";

/// What the exchange log line reports about the request side.
pub struct RequestSummary {
    pub method: String,
    pub host: String,
    pub path: String,
    pub endpoint: EndpointKind,
    pub model: Option<String>,
    /// Shared with the [`CountedBody`] forwarding a streamed request body.
    request_bytes: Arc<AtomicU64>,
}

impl RequestSummary {
    pub fn new(method: String, host: String, path: String, endpoint: EndpointKind) -> Self {
        RequestSummary {
            method,
            host,
            path,
            endpoint,
            model: None,
            request_bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records a request body read whole.
    pub fn set_request_bytes(&self, bytes: u64) {
        self.request_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Wraps a request body forwarded as a stream so that its bytes are counted as they pass.
    pub fn count_request_body<B>(&self, inner: B) -> CountedBody<B> {
        CountedBody::new(inner, self.request_bytes.clone())
    }

    pub fn request_bytes(&self) -> u64 {
        self.request_bytes.load(Ordering::Relaxed)
    }
}

/// Where an exchange's response record goes, once its request record is committed.
pub struct Recorder {
    pub audit: AuditWriter,
    pub exchange_id: String,
    pub endpoint: EndpointKind,
    /// Response bodies are recorded up to this many bytes.
    pub body_limit: usize,
    /// What the anomaly detectors get of this exchange when it ends (None: they are off).
    pub anomaly: Option<AnomalyNote>,
}

/// What the request side knows for the anomaly detectors; the end of the exchange adds the rest.
pub struct AnomalyNote {
    pub feed: AnomalyFeed,
    pub started_at_us: i64,
    /// Values the policy masked in the request.
    pub masked_in_request: u64,
    /// A real-looking provider key was presented on a host with credential custody.
    pub presented_real_key: bool,
}

/// Ends the exchange once: explicitly, or on drop if the handler was abandoned.
pub struct ExchangeLog {
    identity: Arc<Identity>,
    counters: Arc<Counters>,
    metrics: Arc<Metrics>,
    started: Instant,
    pub summary: RequestSummary,
    emitted: bool,
    recorder: Option<Recorder>,
    capture: Option<ResponseCapture>,
    response_headers: Vec<(String, String)>,
    /// What response masking masked, filled in as the response streams.
    response_masks: Option<SharedMaskCounts>,
    /// The request's reservations under `[[limit]]`s, settled when the exchange ends.
    limits: Option<Admission>,
    /// Warden asked the upstream for `include_usage`; the agent's stream must not show it.
    injected_usage: bool,
}

impl ExchangeLog {
    pub fn new(
        identity: Arc<Identity>,
        counters: Arc<Counters>,
        metrics: Arc<Metrics>,
        started: Instant,
        summary: RequestSummary,
    ) -> Self {
        counters.open_exchanges.fetch_add(1, Ordering::SeqCst);
        ExchangeLog {
            identity,
            counters,
            metrics,
            started,
            summary,
            emitted: false,
            recorder: None,
            capture: None,
            response_headers: Vec::new(),
            response_masks: None,
            limits: None,
            injected_usage: false,
        }
    }

    /// From now on, ending the exchange also writes its response record. Set before the request
    /// record is committed, so that a handler dropped during the commit still closes the exchange.
    pub fn record_to(&mut self, recorder: Recorder) {
        self.recorder = Some(recorder);
    }

    /// The response is masked: its record carries what was masked.
    pub fn record_response_masks(&mut self, counts: SharedMaskCounts) {
        self.response_masks = Some(counts);
    }

    /// The exchange holds these reservations until it ends; its usage settles them then.
    pub fn settle_limits(&mut self, admission: Admission) {
        self.limits = Some(admission);
    }

    /// `x-ratelimit-*` as the limits covering this exchange see them.
    pub fn rate_headers(&self) -> Option<RateHeaders> {
        self.limits.as_ref().map(Admission::rate_headers)
    }

    /// The request went upstream with `include_usage` that the agent did not ask for.
    pub fn strip_injected_usage(&mut self) {
        self.injected_usage = true;
    }

    pub fn injected_usage(&self) -> bool {
        self.injected_usage
    }

    /// The request record could not be committed: there is no exchange to close in the store.
    pub fn stop_recording(&mut self) {
        self.recorder = None;
    }

    /// Warden's own answer: ends the exchange with `outcome` and `reason` and returns the
    /// OpenAI-shaped error, marked with `x-warden-error: true`.
    pub fn error_response(
        mut self,
        error: ApiError,
        reason: &str,
        outcome: Outcome,
    ) -> Response<UpstreamBody> {
        if let Some(recorder) = &self.recorder {
            // What the agent got is Warden's own JSON error: record it as the response body.
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let mut capture = ResponseCapture::new(
                recorder.endpoint,
                &headers,
                false,
                self.started,
                recorder.body_limit,
            );
            capture.on_data(&error.body());
            self.capture = Some(capture);
            self.response_headers = recorded_headers(&headers);
        }
        self.emit(Some(error.status), false, 0, Some(reason), outcome);
        let mut response = error.into_response();
        response
            .headers_mut()
            .insert("x-warden-error", HeaderValue::from_static("true"));
        response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
    }

    /// Hands the exchange over to the upstream response body, which ends it when it ends.
    pub fn into_response_body<B: Body>(
        mut self,
        status: StatusCode,
        headers: &http::HeaderMap,
        streamed: bool,
        inner: B,
    ) -> LoggedBody<B> {
        if let Some(recorder) = &self.recorder {
            self.response_headers = recorded_headers(headers);
            self.capture = Some(ResponseCapture::new(
                recorder.endpoint,
                headers,
                streamed,
                self.started,
                recorder.body_limit,
            ));
        }
        LoggedBody::new(inner, status, streamed, self)
    }

    fn on_response_data(&mut self, chunk: &[u8]) {
        if let Some(capture) = &mut self.capture {
            capture.on_data(chunk);
        }
    }

    /// Whether the streamed response seen so far has passed its final event.
    fn stream_complete(&self) -> bool {
        self.capture
            .as_ref()
            .is_some_and(ResponseCapture::stream_complete)
    }

    /// `status` is None when no response was sent.
    fn emit(
        &mut self,
        status: Option<StatusCode>,
        streamed: bool,
        response_bytes: u64,
        error: Option<&str>,
        outcome: Outcome,
    ) {
        if std::mem::replace(&mut self.emitted, true) {
            return;
        }
        let recorded = self.record_response(status, error, outcome);
        if let Some(admission) = self.limits.take() {
            admission.settle(settlement(recorded, outcome));
        }
        Counters::bump(&self.counters.exchanges);
        let summary = &self.summary;
        let duration = self.started.elapsed();
        // The response record's outcome is the final one (a stream that reported an error is an
        // upstream_error however it ended on the wire).
        self.metrics.exchange_ended(&ExchangeEnd {
            identity: &self.identity,
            model: summary.model.as_deref(),
            endpoint: summary.endpoint,
            outcome: recorded.map_or(outcome, |r| r.outcome),
            duration,
            ttfb: recorded.and_then(|r| r.ttfb),
            usage: recorded.and_then(|r| r.usage),
        });
        identity_event!(
            Level::INFO,
            &self.identity,
            method = %summary.method,
            host = %summary.host,
            path = %summary.path,
            status = status.map(|s| s.as_u16()),
            model = summary.model.as_deref(),
            streamed,
            request_bytes = summary.request_bytes(),
            response_bytes,
            duration_ms = duration.as_secs_f64() * 1000.0,
            error,
            "exchange"
        );
    }
}

/// How the exchange's reservations settle: with its usage when the upstream reported it, with
/// nothing when Warden refused it before it went, else (a stream cut short, an upstream error)
/// the estimate stays charged.
fn settlement(recorded: Option<Recorded>, outcome: Outcome) -> Settlement {
    if let Some(usage) = recorded.and_then(|r| r.usage) {
        return Settlement::Used(usage);
    }
    match outcome {
        Outcome::Denied
        | Outcome::Revoked
        | Outcome::ApprovalDenied
        | Outcome::ApprovalTimeout
        | Outcome::Limited => Settlement::NothingSent,
        Outcome::Ok | Outcome::UpstreamError | Outcome::ClientAborted | Outcome::Timeout => {
            Settlement::Unknown
        }
    }
}

/// What the response record says that the metrics count too.
#[derive(Clone, Copy)]
struct Recorded {
    outcome: Outcome,
    ttfb: Option<Duration>,
    usage: Option<Usage>,
}

impl ExchangeLog {
    /// Submits the response record, if the exchange is recorded; returns what metrics need of it.
    fn record_response(
        &mut self,
        status: Option<StatusCode>,
        reason: Option<&str>,
        outcome: Outcome,
    ) -> Option<Recorded> {
        let recorder = self.recorder.take()?;
        let capture = self.capture.take().unwrap_or_else(|| {
            ResponseCapture::no_response(recorder.endpoint, self.started, recorder.body_limit)
        });
        let record = capture.into_record(
            recorder.exchange_id,
            status.map(|s| s.as_u16()),
            std::mem::take(&mut self.response_headers),
            outcome,
            reason.map(str::to_string),
        );
        let mut record = record;
        if let Some(masks) = &self.response_masks {
            let masks = masks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            record.masked = masks
                .iter()
                .map(|(rule, counts)| (rule.clone(), counts.0.clone()))
                .collect();
            self.metrics.masked(MaskedIn::Response, &record.masked);
        }
        let recorded = Recorded {
            outcome: record.outcome,
            ttfb: record
                .ttfb_ms
                .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0)),
            usage: record.assembled.as_ref().and_then(|a| a.usage),
        };
        let observed = recorder.anomaly.map(|note| {
            let masked_in_response: u64 = record.masked.values().flat_map(|m| m.values()).sum();
            let facts = ExchangeFacts {
                exchange_id: record.exchange_id.clone(),
                started_us: note.started_at_us,
                model: self.summary.model.clone(),
                tokens: recorded
                    .usage
                    .map_or(0, |u| u.input_tokens + u.output_tokens),
                denied: record.outcome == Outcome::Denied,
                masked: note.masked_in_request + masked_in_response,
                presented_real_key: note.presented_real_key,
            };
            (note.feed, facts)
        });
        recorder.audit.submit(AuditRecord::Response(record));
        // After the submit: the alert the exchange may raise follows its record in the chain.
        if let Some((feed, facts)) = observed {
            feed.observe(Observation {
                identity: self.identity.clone(),
                facts,
            });
        }
        Some(recorded)
    }
}

impl Drop for ExchangeLog {
    fn drop(&mut self) {
        self.emit(
            None,
            false,
            0,
            Some(CLIENT_WENT_AWAY),
            Outcome::ClientAborted,
        );
        self.counters.open_exchanges.fetch_sub(1, Ordering::SeqCst);
    }
}

mod bodies;
#[cfg(test)]
mod tests;

pub use bodies::{CountedBody, LoggedBody};
