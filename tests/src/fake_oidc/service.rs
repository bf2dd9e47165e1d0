//! The fake provider's HTTP/1.1 server: routes requests to the flow and turns replies into responses.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::flow::{self, Reply};
use super::State;

/// Larger token requests are refused: a real provider caps them too.
const MAX_FORM_BYTES: usize = 64 * 1024;

pub(super) async fn serve(listener: TcpListener, state: Arc<State>) {
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

fn pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// `Authorization: Basic base64(urlencoded id ":" urlencoded secret)` (RFC 6749 §2.3.1).
fn basic_credentials(request: &Request<Incoming>) -> Option<(String, String)> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let query = pairs(request.uri().query().unwrap_or("").as_bytes());
    let reply = match (request.method().clone(), request.uri().path()) {
        (Method::GET, "/.well-known/openid-configuration") => {
            Reply::Json(StatusCode::OK, flow::discovery(&state.issuer))
        }
        (Method::GET, "/jwks") => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            Reply::Json(StatusCode::OK, state.lock().keys.jwks())
        }
        (Method::GET, "/authorize") => flow::authorize(&state, &query),
        (Method::GET, "/end_session") => flow::end_session(&state, &query),
        (Method::POST, "/token") => {
            let form_type = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !form_type.starts_with("application/x-www-form-urlencoded") {
                Reply::Json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({
                        "error": "invalid_request",
                        "error_description": "the body must be application/x-www-form-urlencoded",
                    }),
                )
            } else {
                let basic = basic_credentials(&request);
                match Limited::new(request.into_body(), MAX_FORM_BYTES)
                    .collect()
                    .await
                {
                    Ok(body) => flow::token(&state, &pairs(&body.to_bytes()), basic),
                    Err(_) => Reply::Page(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "the token request is too large".to_owned(),
                    ),
                }
            }
        }
        (method, path) => Reply::Page(
            StatusCode::NOT_FOUND,
            format!("the fake IdP has no {method} {path}"),
        ),
    };
    Ok(response(reply))
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let builder = Response::builder()
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::PRAGMA, "no-cache");
    let response = match reply {
        Reply::Redirect(location) => builder
            .status(StatusCode::FOUND)
            .header(header::LOCATION, location)
            .body(Full::new(Bytes::new())),
        Reply::Page(status, text) => builder
            .status(status)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(text))),
        Reply::Json(status, value) => {
            let builder = if status == StatusCode::UNAUTHORIZED {
                builder.header(header::WWW_AUTHENTICATE, "Basic realm=\"fake-idp\"")
            } else {
                builder
            };
            builder
                .status(status)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(value.to_string())))
        }
    };
    response.expect("a response from valid parts")
}
