//! The `otlp` sink kind: OTLP/HTTP protobuf exports of logs (every event) and traces (a span per
//! exchange, GenAI semantic conventions), POSTed to `{endpoint}/v1/logs` and `/v1/traces`.
//!
//! A 2xx is the receiver's acknowledgement (records it says it rejected in a partial success are
//! logged: resending them cannot help); 429, 502, 503, 504 and connection failures are
//! Retryable, other statuses Rejected, as the OTLP specification says.
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::Full;
use opentelemetry_proto::tonic::{
    collector::{logs::v1::ExportLogsServiceResponse, trace::v1::ExportTraceServiceResponse},
    resource::v1::Resource,
};
use prost::Message;

use super::{
    event::DeliveryFuture, host_name::host_name, otlp_client::OtlpClient, otlp_logs, otlp_traces,
    otlp_values, DeliveryError, SinkEvent, Transport,
};
use crate::{
    config::sink_otlp::{OtlpSignal, OtlpSinkConfig},
    tls,
};

/// Request hosts remembered for the spans of exchanges whose response comes in a later batch.
const REMEMBERED_HOSTS: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("TLS trust for the otlp sink: {0}")]
    Trust(#[from] tls::TlsError),
}

pub struct OtlpTransport {
    client: OtlpClient,
    logs_url: Option<Uri>,
    traces_url: Option<Uri>,
    headers: HeaderMap,
    resource: Resource,
    hosts: RequestHosts,
}

impl OtlpTransport {
    /// Checks the keys and loads the TLS trust (a bad `ca_file` fails here, at start-up);
    /// connects on the first delivery.
    pub fn new(config: &OtlpSinkConfig) -> Result<OtlpTransport, OtlpError> {
        let invalid = |(key, reason)| OtlpError::Invalid { key, reason };
        config.validate().map_err(invalid)?;
        let endpoint: Uri = config
            .endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(("endpoint", e.to_string())))?;
        let url = |path: &str| -> Result<Uri, OtlpError> {
            let base = config.endpoint.trim_end_matches('/');
            format!("{base}{path}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| invalid(("endpoint", e.to_string())))
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| invalid(("headers", e.to_string())))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| invalid(("headers", format!("the value of {name} is invalid"))))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(OtlpTransport {
            client: OtlpClient::new(&endpoint, config.ca_file.as_deref())?,
            logs_url: config
                .sends(OtlpSignal::Logs)
                .then(|| url("/v1/logs"))
                .transpose()?,
            traces_url: config
                .sends(OtlpSignal::Traces)
                .then(|| url("/v1/traces"))
                .transpose()?,
            headers,
            resource: otlp_values::resource(&config.service_name, &host_name()),
            hosts: RequestHosts::default(),
        })
    }

    async fn send(&mut self, batch: &[SinkEvent]) -> Result<(), DeliveryError> {
        for event in batch {
            self.hosts.note(event);
        }
        if let Some(url) = self.logs_url.clone() {
            let body = otlp_logs::export_request(&self.resource, batch).encode_to_vec();
            let answer = self.post(url, body).await?;
            if let Some(partial) = decode::<ExportLogsServiceResponse>(&answer)
                .and_then(|response| response.partial_success)
                .filter(|partial| partial.rejected_log_records > 0)
            {
                tracing::warn!(
                    rejected = partial.rejected_log_records,
                    reason = partial.error_message,
                    "the OTLP receiver accepted the batch but rejected some log records"
                );
            }
        }
        if let Some(url) = self.traces_url.clone() {
            let spans: Vec<_> = batch
                .iter()
                .filter_map(|event| {
                    let host = event
                        .exchange_id
                        .as_deref()
                        .and_then(|id| self.hosts.get(id));
                    otlp_traces::span(event, host)
                })
                .collect();
            if !spans.is_empty() {
                let body = otlp_traces::export_request(&self.resource, spans).encode_to_vec();
                let answer = self.post(url, body).await?;
                if let Some(partial) = decode::<ExportTraceServiceResponse>(&answer)
                    .and_then(|response| response.partial_success)
                    .filter(|partial| partial.rejected_spans > 0)
                {
                    tracing::warn!(
                        rejected = partial.rejected_spans,
                        reason = partial.error_message,
                        "the OTLP receiver accepted the batch but rejected some spans"
                    );
                }
            }
        }
        Ok(())
    }

    /// POSTs one export; Ok with the 2xx body.
    async fn post(&mut self, url: Uri, body: Vec<u8>) -> Result<Bytes, DeliveryError> {
        let mut request = Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::HOST, host_header(&url))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| DeliveryError::Rejected(format!("building the export to {url}: {e}")))?;
        request.headers_mut().extend(self.headers.clone());
        let response = self
            .client
            .send(request)
            .await
            .map_err(|e| DeliveryError::Retryable(format!("exporting to {url}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.into_body());
        }
        let said = String::from_utf8_lossy(&response.body()[..response.body().len().min(200)])
            .replace(|c: char| c.is_control(), " ");
        let message = format!("the OTLP receiver at {url} answered {status}: {said}");
        Err(if retryable(status) {
            DeliveryError::Retryable(message)
        } else {
            DeliveryError::Rejected(message)
        })
    }
}

impl Transport for OtlpTransport {
    fn kind(&self) -> &'static str {
        "otlp"
    }

    fn deliver<'a>(&'a mut self, batch: &'a [SinkEvent]) -> DeliveryFuture<'a> {
        Box::pin(self.send(batch))
    }
}

/// OTLP/HTTP: only these are worth retrying; any other failure status would fail again.
pub fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// A 2xx body is an Export*ServiceResponse, possibly empty; one that does not decode is not
/// worth failing a delivered batch for.
fn decode<M: Message + Default>(body: &Bytes) -> Option<M> {
    M::decode(body.as_ref()).ok()
}

fn host_header(url: &Uri) -> String {
    match (url.host(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

/// Exchange id → the host its request named, from request events, for `server.address`.
#[derive(Default)]
struct RequestHosts {
    by_exchange: HashMap<String, String>,
    order: VecDeque<String>,
}

impl RequestHosts {
    fn note(&mut self, event: &SinkEvent) {
        let (Some(id), Some(host)) = (
            event.exchange_id.as_ref(),
            event.record.get("host").and_then(|h| h.as_str()),
        ) else {
            return;
        };
        if event.name != "request" || self.by_exchange.contains_key(id) {
            return;
        }
        if self.order.len() == REMEMBERED_HOSTS {
            if let Some(oldest) = self.order.pop_front() {
                self.by_exchange.remove(&oldest);
            }
        }
        self.order.push_back(id.clone());
        self.by_exchange.insert(id.clone(), host.to_owned());
    }

    fn get(&self, exchange_id: &str) -> Option<&str> {
        self.by_exchange.get(exchange_id).map(String::as_str)
    }
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;
