//! A webhook receiver on 127.0.0.1 that checks each POST's `X-Warden-Signature` (HMAC-SHA256 over
//! `TIMESTAMP.BODY`) and keeps the events of the batches it accepts; a bad signature gets 401.

use std::convert::Infallible;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ring::hmac;
use serde_json::Value;

use super::Received;
use crate::background::BackgroundRuntime;

/// How far the signed timestamp may be from the receiver's clock.
const TIMESTAMP_TOLERANCE_SECS: u64 = 300;

#[derive(Debug)]
pub struct WebhookReceiver {
    port: u16,
    pub received: Arc<Received>,
    _runtime: BackgroundRuntime,
}

struct State {
    key: hmac::Key,
    received: Arc<Received>,
}

impl WebhookReceiver {
    /// Listens on 127.0.0.1:`port` (0: any free port), verifying with `secret`.
    pub fn start_on(port: u16, secret: &str) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|e| panic!("binding the webhook receiver on port {port}: {e}"));
        let port = listener.local_addr().expect("local_addr").port();
        let received = Arc::new(Received::default());
        let state = Arc::new(State {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            received: received.clone(),
        });
        let runtime =
            BackgroundRuntime::serve("webhook receiver", listener, move |listener| async move {
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

    pub fn url_for(port: u16) -> String {
        format!("http://127.0.0.1:{port}/warden")
    }

    pub fn url(&self) -> String {
        Self::url_for(self.port)
    }
}

async fn handle(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (timestamp, signature) = (header("x-warden-timestamp"), header("x-warden-signature"));
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return answer(StatusCode::BAD_REQUEST),
    };
    let verdict = check(state, timestamp.as_deref(), signature.as_deref(), &body);
    match verdict {
        Ok(events) => {
            state.received.accept(&body, events);
            answer(StatusCode::NO_CONTENT)
        }
        Err(why) => {
            state.received.refuse(&body, why);
            answer(StatusCode::UNAUTHORIZED)
        }
    }
}

fn check(
    state: &State,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Vec<Value>, String> {
    let timestamp = timestamp.ok_or("no X-Warden-Timestamp")?;
    let signature = signature
        .and_then(|s| s.strip_prefix("sha256="))
        .ok_or("no X-Warden-Signature: sha256=…")?;
    let mac = crate::hex::decode(signature).ok_or("the signature is not hex")?;
    let mut signed = timestamp.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(body);
    hmac::verify(&state.key, &signed, &mac).map_err(|_| "the signature does not match")?;
    let at: u64 = timestamp
        .parse()
        .map_err(|_| "the timestamp is not a number")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(at) > TIMESTAMP_TOLERANCE_SECS {
        return Err(format!("timestamp {at} is too far from now ({now})"));
    }
    let batch: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    batch["events"]
        .as_array()
        .cloned()
        .ok_or_else(|| "no events array".to_owned())
}

fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
