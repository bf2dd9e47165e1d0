//! A Splunk HTTP Event Collector fake on 127.0.0.1: `POST /services/collector/event` with
//! `Authorization: Splunk TOKEN`, a body of concatenated event objects; answers like HEC does.

use std::convert::Infallible;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::Received;
use crate::background::BackgroundRuntime;

#[derive(Debug)]
pub struct HecFake {
    port: u16,
    pub received: Arc<Received>,
    _runtime: BackgroundRuntime,
}

struct State {
    token: String,
    received: Arc<Received>,
}

impl HecFake {
    /// Listens on a free 127.0.0.1 port, accepting `token`.
    pub fn start(token: &str) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the HEC fake");
        let port = listener.local_addr().expect("local_addr").port();
        let received = Arc::new(Received::default());
        let state = Arc::new(State {
            token: token.to_owned(),
            received: received.clone(),
        });
        let runtime = BackgroundRuntime::serve("HEC fake", listener, move |listener| async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(request, &state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            port,
            received,
            _runtime: runtime,
        }
    }

    /// The collector's base URL, as `[[sink]] url` takes it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

async fn handle(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(format!("Splunk {}", state.token).as_str());
    let path_ok = request.uri().path() == "/services/collector/event";
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return answer(StatusCode::BAD_REQUEST, 6, "Invalid data format"),
    };
    if !path_ok {
        state.received.refuse(&body, "wrong path".into());
        return answer(
            StatusCode::NOT_FOUND,
            404,
            "The requested URL was not found",
        );
    }
    if !authorized {
        state.received.refuse(&body, "bad token".into());
        return answer(StatusCode::UNAUTHORIZED, 3, "Invalid authorization");
    }
    match parse(&body) {
        Ok(events) => {
            state.received.accept(&body, events);
            answer(StatusCode::OK, 0, "Success")
        }
        Err(why) => {
            state.received.refuse(&body, why);
            answer(StatusCode::BAD_REQUEST, 6, "Invalid data format")
        }
    }
}

/// The `event` of each concatenated object, after checking the envelope HEC needs.
fn parse(body: &[u8]) -> Result<Vec<Value>, String> {
    let mut events = Vec::new();
    for object in serde_json::Deserializer::from_slice(body).into_iter::<Value>() {
        let object = object.map_err(|e| format!("not concatenated JSON objects: {e}"))?;
        if !object["time"].is_number() || !object["host"].is_string() {
            return Err(format!("no time or host: {object}"));
        }
        if object["source"] != "warden" || !object["sourcetype"].is_string() {
            return Err(format!("source/sourcetype: {object}"));
        }
        let event = object["event"].clone();
        if !event.is_object() {
            return Err(format!("no event object: {object}"));
        }
        events.push(event);
    }
    Ok(events)
}

fn answer(status: StatusCode, code: u32, text: &str) -> Response<Full<Bytes>> {
    let body = json!({ "text": text, "code": code }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
