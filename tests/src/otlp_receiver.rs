//! An OTLP/HTTP receiver on 127.0.0.1: decodes the protobuf exports of `/v1/logs` and `/v1/traces`
//! with opentelemetry-proto and keeps them for the test. It can be stopped (the port refuses) and
//! started again on the same port, or told to answer a failure status.
use std::{
    net::{SocketAddr, TcpListener as StdTcpListener},
    sync::{
        atomic::{AtomicU16, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
pub use opentelemetry_proto::tonic::{
    collector::{
        logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse},
        trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    },
    common::v1::{any_value::Value, KeyValue},
    logs::v1::LogRecord,
    trace::v1::Span,
};
use prost::Message;
use tokio::net::TcpListener;

use crate::{background::BackgroundRuntime, wait};

/// What the receiver got, in arrival order.
#[derive(Default)]
pub struct Received {
    pub logs: Vec<ExportLogsServiceRequest>,
    pub traces: Vec<ExportTraceServiceRequest>,
    /// Every request's (path, content-type, the value of `x-test-token`).
    pub requests: Vec<(String, Option<String>, Option<String>)>,
}

impl Received {
    pub fn log_records(&self) -> Vec<LogRecord> {
        self.logs
            .iter()
            .flat_map(|export| &export.resource_logs)
            .flat_map(|resource| &resource.scope_logs)
            .flat_map(|scope| scope.log_records.clone())
            .collect()
    }

    pub fn spans(&self) -> Vec<Span> {
        self.traces
            .iter()
            .flat_map(|export| &export.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| scope.spans.clone())
            .collect()
    }

    /// The resource attributes of the first export of either signal.
    pub fn resource_attributes(&self) -> Vec<KeyValue> {
        let from_logs = self
            .logs
            .first()
            .and_then(|export| export.resource_logs.first()?.resource.clone());
        let from_traces = self
            .traces
            .first()
            .and_then(|export| export.resource_spans.first()?.resource.clone());
        from_logs
            .or(from_traces)
            .map(|resource| resource.attributes)
            .unwrap_or_default()
    }
}

/// An attribute's value as text (strings as they are, integers in decimal).
pub fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    match value {
        Value::StringValue(text) => Some(text.clone()),
        Value::IntValue(n) => Some(n.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

struct State {
    received: Mutex<Received>,
    /// 200, or the failure status every export is answered with.
    answer: AtomicU16,
}

pub struct OtlpReceiver {
    addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<BackgroundRuntime>,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("OTLP receiver listener");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(State {
            received: Mutex::new(Received::default()),
            answer: AtomicU16::new(200),
        });
        let mut receiver = OtlpReceiver {
            addr,
            state,
            runtime: None,
        };
        receiver.serve(listener);
        receiver
    }

    /// `http://127.0.0.1:PORT`, the sink's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Closes the port (connections are refused) until [`OtlpReceiver::restart`].
    pub fn stop(&mut self) {
        self.runtime = None;
    }

    /// Listens again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let listener = wait::until(
            "the OTLP receiver's port to be free again",
            Duration::from_secs(10),
            || StdTcpListener::bind(self.addr).ok(),
        );
        self.serve(listener);
    }

    /// Every export from now on is answered with `status` (200 to accept again).
    pub fn answer_with(&self, status: u16) {
        self.state.answer.store(status, Ordering::SeqCst);
    }

    /// Calls `look` with what has arrived so far.
    pub fn with_received<T>(&self, look: impl FnOnce(&Received) -> T) -> T {
        let received = self
            .state
            .received
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        look(&received)
    }

    /// Waits until `check` holds for what has arrived.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Received) -> Option<T>,
    ) -> T {
        wait::until(&format!("the OTLP receiver to get {what}"), timeout, || {
            self.with_received(&check)
        })
    }

    fn serve(&mut self, listener: StdTcpListener) {
        let state = Arc::clone(&self.state);
        self.runtime = Some(BackgroundRuntime::serve(
            "the OTLP receiver",
            listener,
            |listener| accept(listener, state),
        ));
    }
}

async fn accept(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| handle(request, Arc::clone(&state)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    let token = header("x-test-token");
    let body = request.into_body().collect().await?.to_bytes();
    let answer = state.answer.load(Ordering::SeqCst);
    if answer != 200 {
        return Ok(reply(answer, Bytes::from_static(b"receiver told to fail")));
    }
    let mut received = state
        .received
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    received
        .requests
        .push((path.clone(), content_type.clone(), token));
    if content_type.as_deref() != Some("application/x-protobuf") {
        return Ok(reply(415, Bytes::from_static(b"protobuf only")));
    }
    let encoded = match path.as_str() {
        "/v1/logs" => match ExportLogsServiceRequest::decode(body) {
            Ok(export) => {
                received.logs.push(export);
                ExportLogsServiceResponse::default().encode_to_vec()
            }
            Err(e) => return Ok(reply(400, Bytes::from(e.to_string()))),
        },
        "/v1/traces" => match ExportTraceServiceRequest::decode(body) {
            Ok(export) => {
                received.traces.push(export);
                ExportTraceServiceResponse::default().encode_to_vec()
            }
            Err(e) => return Ok(reply(400, Bytes::from(e.to_string()))),
        },
        _ => return Ok(reply(404, Bytes::from_static(b"no such signal"))),
    };
    Ok(reply(200, Bytes::from(encoded)))
}

fn reply(status: u16, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(
        "content-type",
        "application/x-protobuf".parse().expect("static"),
    );
    response
}
