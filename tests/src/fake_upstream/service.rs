//! The fake upstream's HTTP routes: records each request, answers like the OpenAI API.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Channel, Full};
use hyper::body::Incoming;
use serde_json::Value;

use super::{faults, openai, RecordedRequest, State};

/// The error lets a fault end a body abnormally (the connection closes mid-body).
pub(super) type Body = UnsyncBoxBody<Bytes, io::Error>;

pub(super) async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    // A body that fails half way is recorded as what arrived; the route then sees invalid JSON.
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let recorded = RecordedRequest::new(&parts, body.clone());
    state.record(recorded);
    if !state.response_delay.is_zero() {
        tokio::time::sleep(state.response_delay).await;
    }

    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = json["model"].as_str().unwrap_or("gpt-4o-mini");
    let stream = json["stream"].as_bool().unwrap_or(false);
    let include_usage = json["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let reply = state.reply.as_str();
    if let Some(fault) = faults::Fault::in_body(&body) {
        return Ok(faults::answer(fault, model, &state).await);
    }

    let response = match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/v1/chat/completions") if stream => sse(
            openai::chat_completion_events_of(model, &state.pieces, include_usage),
            &state,
        ),
        (&Method::POST, "/v1/chat/completions") => {
            json_response(StatusCode::OK, &openai::chat_completion(model, reply))
        }
        (&Method::POST, "/v1/responses") if stream => {
            sse(openai::response_events_of(model, &state.pieces), &state)
        }
        (&Method::POST, "/v1/responses") => json_response(
            StatusCode::OK,
            &openai::response_object(model, reply, "completed"),
        ),
        (&Method::GET, "/v1/models") => json_response(StatusCode::OK, &openai::models()),
        (method, path) => json_response(
            StatusCode::NOT_FOUND,
            &openai::error(
                &format!("Unknown request URL: {method} {path}."),
                "invalid_request_error",
                "unknown_url",
            ),
        ),
    };
    Ok(response)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "req_fake")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .expect("static headers are valid")
}

/// Sends the events one by one with `chunk_delay` between them, holding at the gate if there is
/// one, so a client can tell a stream that was forwarded as it came from one that was buffered.
fn sse(events: Vec<String>, state: &State) -> Response<Body> {
    let (mut sender, body) = Channel::<Bytes, io::Error>::new(1);
    let delay = state.chunk_delay;
    let gate = Arc::clone(&state.gate);
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(delay).await;
            }
            gate.before_event(i).await;
            if sender.send_data(Bytes::from(event)).await.is_err() {
                return;
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-request-id", "req_fake")
        .body(body.boxed_unsync())
        .expect("static headers are valid")
}
