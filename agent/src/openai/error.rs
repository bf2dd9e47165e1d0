//! OpenAI-shaped error bodies and responses for errors Warden itself returns to an agent.
//!
//! Body type choice: `into_response` returns `Response<Full<Bytes>>` (concrete, so call sites need
//! no type annotations), and `into_boxed_response::<E>` returns `Response<BoxBody<Bytes, E>>` for
//! any error type `E` (e.g. `hyper::Error`), since `Full`'s error is `Infallible`. A generic
//! `B: From<Bytes>` was not used: `BoxBody` does not implement it, and inference suffers.
use std::convert::Infallible;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use serde::Serialize;

/// The `type` of errors Warden reports about the upstream (connect, TLS, protocol failures).
pub const UPSTREAM_ERROR: &str = "upstream_error";
/// The header the official SDKs consult before their own retry rules (408/409/429/5xx).
pub const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// An error as an agent sees it: `{"error":{"message","type","param","code"}}` plus a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Serialized as `type`.
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    /// When set, the response carries `x-should-retry: true|false` (policy denials: `false`).
    pub should_retry: Option<bool>,
    /// More response headers (a rate limit's `retry-after`, `retry-after-ms`).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Fields<'a>,
}

/// Field order matches OpenAI's own error bodies.
#[derive(Serialize)]
struct Fields<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
            should_retry: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Adds `x-should-retry` to the response; use `false` for policy denials.
    pub fn with_should_retry(mut self, should_retry: bool) -> Self {
        self.should_retry = Some(should_retry);
        self
    }

    /// The JSON body; `param` and `code` are `null` when unset.
    pub fn body(&self) -> Bytes {
        let envelope = Envelope {
            error: Fields {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        };
        // Serializing a struct of strings and options to a Vec cannot fail.
        let json = serde_json::to_vec(&envelope).expect("a struct of strings serializes to JSON");
        Bytes::from(json)
    }

    /// The full response: status, `content-type: application/json`, optional `x-should-retry`.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(retry) = self.should_retry {
            let value = if retry { "true" } else { "false" };
            headers.insert(X_SHOULD_RETRY, HeaderValue::from_static(value));
        }
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(*name, value);
            }
        }
        response
    }

    /// [`into_response`](Self::into_response) with a boxed body of any error type, e.g.
    /// `BoxBody<Bytes, hyper::Error>`.
    pub fn into_boxed_response<E: 'static>(self) -> Response<BoxBody<Bytes, E>> {
        self.into_response()
            .map(|body| body.map_err(|never: Infallible| match never {}).boxed())
    }
}

/// 502 for an upstream Warden could not reach or talk to; the message names host and reason.
pub fn bad_gateway(host: &str, reason: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        UPSTREAM_ERROR,
        format!("Warden could not reach the upstream {host}: {reason}"),
    )
    .with_code("upstream_unreachable")
}

/// 501 for a protocol upgrade (WebSocket, e.g. the Realtime API) on an intercepted host, which
/// Warden cannot forward yet. Retrying cannot help, so the SDKs are told not to.
pub fn upgrade_not_supported(host: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "invalid_request_error",
        format!(
            "Warden does not support WebSocket or other protocol upgrades for intercepted hosts \
             ({host}) yet; use the HTTP API instead"
        ),
    )
    .with_code("upgrade_not_supported")
    .with_should_retry(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(
        body: impl http_body::Body<Data = Bytes, Error = impl std::fmt::Debug>,
    ) -> Bytes {
        body.collect().await.unwrap().to_bytes()
    }

    #[test]
    fn body_has_openai_shape_with_null_param() {
        let err = bad_gateway("api.openai.com", "connection refused");
        assert_eq!(
            err.body(),
            Bytes::from_static(
                br#"{"error":{"message":"Warden could not reach the upstream api.openai.com: connection refused","type":"upstream_error","param":null,"code":"upstream_unreachable"}}"#
            )
        );
    }

    #[test]
    fn upgrades_are_refused_as_not_implemented_without_retry() {
        let err = upgrade_not_supported("api.openai.com");
        assert_eq!(err.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(err.kind, "invalid_request_error");
        assert_eq!(err.code.as_deref(), Some("upgrade_not_supported"));
        assert_eq!(err.should_retry, Some(false));
        assert!(err.message.contains("WebSocket"), "{}", err.message);
        assert!(err.message.contains("api.openai.com"), "{}", err.message);
    }

    #[test]
    fn code_and_param_are_null_or_set() {
        let bare = ApiError::new(StatusCode::FORBIDDEN, "invalid_request_error", "denied");
        assert_eq!(
            bare.body(),
            Bytes::from_static(
                br#"{"error":{"message":"denied","type":"invalid_request_error","param":null,"code":null}}"#
            )
        );
        let full = bare.with_code("policy_denied").with_param("model");
        let json: serde_json::Value = serde_json::from_slice(&full.body()).unwrap();
        assert_eq!(json["error"]["param"], "model");
        assert_eq!(json["error"]["code"], "policy_denied");
    }

    #[test]
    fn message_is_json_escaped() {
        let err = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "a \"b\"\n",
        );
        let json: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(json["error"]["message"], "a \"b\"\n");
    }

    #[tokio::test]
    async fn response_has_status_headers_and_body() {
        let err = ApiError::new(StatusCode::FORBIDDEN, "invalid_request_error", "denied")
            .with_should_retry(false);
        let body = err.body();
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[X_SHOULD_RETRY], "false");
        assert_eq!(collect(response.into_body()).await, body);
    }

    #[tokio::test]
    async fn boxed_response_fits_hyper_error_bodies() {
        let err = bad_gateway("api.openai.com", "timed out");
        let body = err.body();
        let response: Response<BoxBody<Bytes, hyper::Error>> = err.into_boxed_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert!(response.headers().get(X_SHOULD_RETRY).is_none());
        assert_eq!(collect(response.into_body()).await, body);
    }
}
