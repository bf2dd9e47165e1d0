//! `kind = "webhook"`: a batch as one signed JSON POST, or (`format = "slack"`) one Slack message
//! per alert, approval or admin event.
//!
//! Signature: `X-Warden-Timestamp: T` (unix seconds) and `X-Warden-Signature: sha256=HEX`, where
//! HEX is the lowercase hex HMAC-SHA256, keyed with the secret file's content (surrounding
//! whitespace dropped), of the bytes `T` `.` BODY: the timestamp, a dot, and the exact body.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use ring::hmac;
use secrecy::ExposeSecret;

use super::event::{DeliveryError, DeliveryFuture, EventClass, SinkEvent, Transport};
use crate::{
    config::sinks::{WebhookFormat, WebhookSinkConfig},
    credentials::secret::read_secret,
    http_post::HttpPoster,
};

pub const SIGNATURE_HEADER: &str = "x-warden-signature";
pub const TIMESTAMP_HEADER: &str = "x-warden-timestamp";

pub struct WebhookTransport {
    poster: HttpPoster,
    format: WebhookFormat,
    key: Option<hmac::Key>,
}

impl WebhookTransport {
    /// Reads the secret (root-owned, 0600) and builds the TLS trust; errors name the file, never
    /// the secret or the URL (a Slack URL is a credential).
    pub fn new(config: &WebhookSinkConfig) -> Result<WebhookTransport, String> {
        let key = match &config.secret_file {
            Some(path) => {
                let secret = read_secret(path).map_err(|e| format!("secret_file: {e}"))?;
                Some(hmac::Key::new(
                    hmac::HMAC_SHA256,
                    secret.expose_secret().as_bytes(),
                ))
            }
            None => None,
        };
        let poster = HttpPoster::new(
            &config.url,
            config.ca_file.as_deref(),
            Duration::from_secs(config.timeout_secs),
        )
        .map_err(|e| format!("url: {e}"))?;
        Ok(WebhookTransport {
            poster,
            format: config.format,
            key,
        })
    }

    async fn post(&self, body: Bytes) -> Result<(), DeliveryError> {
        let mut headers = HeaderMap::new();
        if let Some(key) = &self.key {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                .to_string();
            let signature = sign(key, &timestamp, &body);
            headers.insert(TIMESTAMP_HEADER, header_value(&timestamp)?);
            headers.insert(SIGNATURE_HEADER, header_value(&signature)?);
        }
        let answer = self
            .poster
            .post(headers, body)
            .await
            .map_err(|e| DeliveryError::Retryable(e.to_string()))?;
        status_verdict(answer.status)
    }
}

impl Transport for WebhookTransport {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn deliver<'a>(&'a mut self, batch: &'a [SinkEvent]) -> DeliveryFuture<'a> {
        Box::pin(async move {
            match self.format {
                WebhookFormat::Json => {
                    let body = serde_json::to_vec(&serde_json::json!({ "events": batch }))
                        .map_err(|e| DeliveryError::Rejected(e.to_string()))?;
                    self.post(Bytes::from(body)).await
                }
                // One message per POST (a Slack incoming webhook takes one); a failure retries the
                // batch, so messages before it may be posted twice.
                WebhookFormat::Slack => {
                    for event in batch.iter().filter(|e| slack_worthy(e.class)) {
                        let text = serde_json::json!({ "text": slack_text(event) });
                        self.post(Bytes::from(text.to_string())).await?;
                    }
                    Ok(())
                }
            }
        })
    }
}

/// `sha256=HEX(HMAC-SHA256(key, TIMESTAMP "." BODY))`.
pub fn sign(key: &hmac::Key, timestamp: &str, body: &[u8]) -> String {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp.as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// 2xx acknowledges; 429 and 5xx are worth retrying; any other answer rejects the batch.
pub fn status_verdict(status: StatusCode) -> Result<(), DeliveryError> {
    if status.is_success() {
        Ok(())
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Err(DeliveryError::Retryable(format!(
            "the receiver answered {status}"
        )))
    } else {
        Err(DeliveryError::Rejected(format!(
            "the receiver answered {status}"
        )))
    }
}

fn header_value(text: &str) -> Result<HeaderValue, DeliveryError> {
    HeaderValue::from_str(text).map_err(|e| DeliveryError::Rejected(e.to_string()))
}

fn slack_worthy(class: EventClass) -> bool {
    matches!(
        class,
        EventClass::Alerts | EventClass::Approvals | EventClass::Admin
    )
}

/// `Warden alert (seq 42, 2025-…Z): detector=spike selector=account:x …`: the event's scalar
/// fields, each value cut at 200 characters.
fn slack_text(event: &SinkEvent) -> String {
    let mut text = format!(
        "Warden {} (seq {}, {})",
        event.name,
        event.seq,
        crate::audit::format_timestamp_us(event.at_us)
    );
    let fields = event.record["event"].as_object();
    let mut first = true;
    for (key, value) in fields.into_iter().flatten() {
        let value = match value {
            serde_json::Value::String(s) => s.chars().take(200).collect::<String>(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Object(o) if key == "by" => o
                .get("user")
                .and_then(|u| u.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| o.get("uid").map(|u| format!("uid {u}")).unwrap_or_default()),
            _ => continue,
        };
        if key == "type" {
            continue;
        }
        text.push_str(if first { ": " } else { " " });
        first = false;
        text.push_str(&format!("{key}={value}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        let signature = sign(&key, "1700000000", b"{\"events\":[]}");
        // echo -n '1700000000.{"events":[]}' | openssl dgst -sha256 -hmac secret
        let expected = hmac::sign(&key, b"1700000000.{\"events\":[]}");
        assert_eq!(
            signature,
            format!("sha256={}", hex::encode(expected.as_ref()))
        );
        assert_ne!(signature, sign(&key, "1700000001", b"{\"events\":[]}"));
        assert_ne!(signature, sign(&key, "1700000000", b"{\"events\":[1]}"));
    }

    #[test]
    fn answers_map_to_ack_retry_or_reject() {
        assert!(status_verdict(StatusCode::NO_CONTENT).is_ok());
        for retry in [429, 500, 502, 503] {
            let status = StatusCode::from_u16(retry).unwrap();
            assert!(matches!(
                status_verdict(status),
                Err(DeliveryError::Retryable(_))
            ));
        }
        for reject in [400, 401, 403, 404, 301] {
            let status = StatusCode::from_u16(reject).unwrap();
            assert!(matches!(
                status_verdict(status),
                Err(DeliveryError::Rejected(_))
            ));
        }
    }

    #[test]
    fn slack_text_names_the_event_and_its_fields() {
        let event = SinkEvent {
            seq: 7,
            class: EventClass::Admin,
            name: "revoked".into(),
            at_us: 0,
            exchange_id: None,
            record: serde_json::json!({"event": {"type": "revoked", "selector": "account:x",
                "by": {"uid": 0, "user": "root"}, "reason": null}}),
            exchange: None,
        };
        let text = slack_text(&event);
        assert!(
            text.starts_with("Warden revoked (seq 7, 1970-01-01T00:00:00.000000Z): "),
            "{text}"
        );
        assert!(
            text.contains("selector=account:x") && text.contains("by=root"),
            "{text}"
        );
        assert!(!slack_worthy(EventClass::Exchanges) && slack_worthy(EventClass::Alerts));
    }
}
