//! What a sink ships: one audit record as an event, and the transport every sink kind implements.
use std::{future::Future, pin::Pin};

use serde::Serialize;

use crate::audit::ExchangeSummary;

/// The kinds of events a sink's filter chooses among.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventClass {
    /// An exchange's request and response records.
    Exchanges,
    /// Connection records (tunneled and rejected connections included).
    Connections,
    /// Approval requests, decisions, cancellations, expiries.
    Approvals,
    /// Anomaly alerts (governance records named `alert`) and limit refusals.
    Alerts,
    /// Revocations, restores, sign-ins and API requests.
    Admin,
}

/// One committed audit record, ready for a transport.
#[derive(Clone, Debug, Serialize)]
pub struct SinkEvent {
    /// The record's place in the chain: unique on this host, the receiver's deduplication key.
    pub seq: u64,
    pub class: EventClass,
    /// `request`, `response`, `connection`, or a governance event's name (`approval_decided`,
    /// `revoked`, `alert`, …).
    pub name: String,
    /// Unix time in microseconds.
    pub at_us: i64,
    pub exchange_id: Option<String>,
    /// The record as stored (already masked: the store never holds an unmasked body), with the
    /// bodies and stream events removed unless the sink's filter includes bodies.
    pub record: serde_json::Value,
    /// On response records: the exchange as indexed (identity, model, usage, timings), so a
    /// transport can describe the whole exchange (an OTLP span, a SIEM line) from one event.
    pub exchange: Option<ExchangeSummary>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying with backoff: the receiver is down, slow, or answered 5xx/429.
    #[error("{0}")]
    Retryable(String),
    /// Retrying the same batch cannot help (the receiver rejects it as malformed or
    /// unauthorized); the sink logs it loudly and retries with the longest backoff, never skips.
    #[error("{0}")]
    Rejected(String),
}

pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// One sink kind's way of getting a batch to its receiver. `deliver` returns Ok only once the
/// receiver has acknowledged every event of the batch (an HTTP 2xx, a flushed TCP/TLS write,
/// a written-and-flushed file).
pub trait Transport: Send {
    /// `webhook`, `syslog`, `splunk_hec`, `otlp` or `file`: for logs and metric labels.
    fn kind(&self) -> &'static str;
    fn deliver<'a>(&'a mut self, batch: &'a [SinkEvent]) -> DeliveryFuture<'a>;
}
