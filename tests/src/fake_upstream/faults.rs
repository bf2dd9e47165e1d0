//! Misbehaviours the fake upstream shows on demand: a request whose body carries a fault's marker
//! (e.g. in the prompt) gets that fault instead of a good answer, so one upstream serves a good
//! request and each broken one in turn.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, Channel};

use super::service::Body;
use super::{openai, State};

/// Bigger than any HTTP/1.1 client accepts as a response head (hyper's limit is about 400 KiB).
pub const HUGE_HEADER_BYTES: usize = 1 << 20;
/// The stream events sent before a mid-stream fault (the role chunk and the first piece).
pub const EVENTS_BEFORE_FAULT: usize = 2;

/// One way the upstream misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A stream's first events, then the connection closes mid-body (no chunked terminator).
    /// With [`gate_after`](super::FakeUpstreamBuilder::gate_after) the reset waits for the gate,
    /// so a test knows the client had the first events before it.
    ResetMidStream,
    /// A stream whose middle event's data is cut-off JSON; it ends normally with `[DONE]`.
    MalformedSse,
    /// A 200 whose head carries a [`HUGE_HEADER_BYTES`] header.
    HugeHeader,
    /// The request is read and never answered.
    StallBeforeHeaders,
    /// A stream's first events, then silence with the connection open.
    StallMidStream,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::ResetMidStream,
        Fault::MalformedSse,
        Fault::HugeHeader,
        Fault::StallBeforeHeaders,
        Fault::StallMidStream,
    ];

    /// What a request body carries to get this fault.
    pub fn marker(self) -> &'static str {
        match self {
            Fault::ResetMidStream => "fake-upstream-fault:reset-mid-stream",
            Fault::MalformedSse => "fake-upstream-fault:malformed-sse",
            Fault::HugeHeader => "fake-upstream-fault:huge-header",
            Fault::StallBeforeHeaders => "fake-upstream-fault:stall-before-headers",
            Fault::StallMidStream => "fake-upstream-fault:stall-mid-stream",
        }
    }

    pub(super) fn in_body(body: &[u8]) -> Option<Fault> {
        let text = String::from_utf8_lossy(body);
        Fault::ALL.into_iter().find(|f| text.contains(f.marker()))
    }
}

/// The malformed event [`Fault::MalformedSse`] sends: JSON cut off half way.
pub const MALFORMED_EVENT: &str = "data: {\"id\": \"chatcmpl-fake-1\", \"choices\": [{\"delta\n\n";

pub(super) async fn answer(fault: Fault, model: &str, state: &State) -> Response<Body> {
    let events = openai::chat_completion_events_of(model, &state.pieces, false);
    match fault {
        Fault::ResetMidStream => stream(events, state, After::Reset),
        Fault::StallMidStream => stream(events, state, After::Stall),
        Fault::MalformedSse => {
            let mut events = events;
            events.insert(EVENTS_BEFORE_FAULT, MALFORMED_EVENT.to_owned());
            stream(events, state, After::Finish)
        }
        Fault::HugeHeader => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-fake-padding", "a".repeat(HUGE_HEADER_BYTES))
            .body(
                http_body_util::Full::new(Bytes::from(
                    openai::chat_completion(model, &state.reply).to_string(),
                ))
                .map_err(|never| match never {})
                .boxed_unsync(),
            )
            .expect("static headers are valid"),
        Fault::StallBeforeHeaders => std::future::pending().await,
    }
}

/// What a stream does after its first [`EVENTS_BEFORE_FAULT`] events.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Reset,
    Stall,
    Finish,
}

fn stream(events: Vec<String>, state: &State, after: After) -> Response<Body> {
    let (mut sender, body) = Channel::<Bytes, io::Error>::new(1);
    let delay = state.chunk_delay;
    let gate = Arc::clone(&state.gate);
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if i == EVENTS_BEFORE_FAULT {
                match after {
                    After::Reset => {
                        gate.before_event(i).await;
                        let reset = io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            "fake upstream: reset mid-stream",
                        );
                        sender.abort(reset);
                        return;
                    }
                    // Holds the stream open until the upstream is dropped.
                    After::Stall => std::future::pending::<()>().await,
                    After::Finish => {}
                }
            }
            if i > 0 {
                tokio::time::sleep(delay).await;
            }
            if sender.send_data(Bytes::from(event)).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header("x-request-id", "req_fake")
        .body(body.boxed_unsync())
        .expect("static headers are valid")
}
