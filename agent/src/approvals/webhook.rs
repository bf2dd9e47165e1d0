//! The approval webhook: one JSON POST per new pending approval, with a Slack-compatible `text`
//! and the approval's fields. Fire and forget: it never delays the hold; a failure or timeout is
//! logged and counted.
use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use super::ApprovalView;
use crate::{audit::reader::format_timestamp_us, metrics::Metrics};

#[derive(Debug, thiserror::Error)]
enum WebhookError {
    #[error("invalid webhook URL")]
    Url,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] http::Error),
    #[error("TLS trust: {0}")]
    Trust(String),
    #[error("the receiver answered {0}")]
    Status(http::StatusCode),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

pub struct Webhook {
    url: String,
    timeout: Duration,
}

impl Webhook {
    pub fn new(url: String, timeout: Duration) -> Webhook {
        Webhook { url, timeout }
    }

    pub fn notify(&self, view: &ApprovalView, metrics: Arc<Metrics>) {
        let body = payload(view);
        let url = self.url.clone();
        let timeout = self.timeout;
        let id = view.id.clone();
        tokio::spawn(async move {
            let sent = tokio::time::timeout(timeout, post(&url, body))
                .await
                .unwrap_or(Err(WebhookError::Timeout(timeout)));
            if let Err(error) = sent {
                metrics.approvals.webhook_failed();
                // The URL may carry a token (Slack's do): never logged.
                tracing::warn!(%error, approval_id = id, "approval webhook failed");
            }
        });
    }
}

/// Slack shows `text`; other receivers can read the fields.
fn payload(view: &ApprovalView) -> Bytes {
    let who = view
        .requester
        .account
        .clone()
        .or_else(|| view.requester.unit.clone())
        .or_else(|| view.requester.user.clone())
        .unwrap_or_else(|| format!("uid {}", view.requester.uid));
    let text = format!(
        "Warden: {who} ({}) asks to call {} with model {} under rule {}; approve with `warden approvals approve {}` (expires {})",
        view.requester.exe.as_deref().unwrap_or(&view.requester.comm),
        view.endpoint,
        view.model.as_deref().unwrap_or("-"),
        view.rule,
        view.id,
        format_timestamp_us(view.expires_at_us),
    );
    let body = serde_json::json!({ "text": text, "approval": view });
    Bytes::from(body.to_string())
}

async fn post(url: &str, body: Bytes) -> Result<(), WebhookError> {
    let uri: Uri = url.parse().map_err(|_| WebhookError::Url)?;
    let host = uri.host().ok_or(WebhookError::Url)?.to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host_for_connect = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = TcpStream::connect((host_for_connect.as_str(), port)).await?;
    let request = Request::post(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("warden/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))?;
    let status = if https {
        let config = crate::tls::upstream_client_config(None)
            .map_err(|e| WebhookError::Trust(e.to_string()))?;
        let name = ServerName::try_from(host_for_connect).map_err(|_| WebhookError::Url)?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        send(TokioIo::new(tls), request).await?
    } else {
        send(TokioIo::new(tcp), request).await?
    };
    if !status.is_success() {
        return Err(WebhookError::Status(status));
    }
    Ok(())
}

async fn send<T>(io: T, request: Request<Full<Bytes>>) -> Result<http::StatusCode, WebhookError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    // Read the answer so the receiver sees a clean exchange.
    let _ = response.into_body().collect().await;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{approvals::ApprovalState, audit::record::IdentitySnapshot, metrics::LiveReadings};

    fn view() -> ApprovalView {
        ApprovalView {
            id: "ap-1".into(),
            exchange_id: Some("ex-1".into()),
            state: ApprovalState::Pending,
            requester: IdentitySnapshot {
                account: Some("billing-agent".into()),
                ..IdentitySnapshot::default()
            },
            rule: "review".into(),
            approvers: vec!["group:secops".into()],
            model: Some("gpt-4o".into()),
            endpoint: "chat.completions".into(),
            excerpt: "hello".into(),
            created_at_us: 0,
            expires_at_us: 1,
            closed_at_us: None,
            decided_by: None,
            reason: None,
            grant: None,
        }
    }

    #[test]
    fn the_payload_has_a_slack_text_and_the_approval() {
        let body: serde_json::Value = serde_json::from_slice(&payload(&view())).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("billing-agent") && text.contains("ap-1") && text.contains("review"));
        assert_eq!(body["approval"]["model"], "gpt-4o");
    }

    #[tokio::test]
    async fn a_failed_post_is_counted_without_delaying_the_caller() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics = Arc::new(Metrics::new(LiveReadings::zero()));
        let webhook = Webhook::new(format!("http://127.0.0.1:{port}/x"), Duration::from_secs(5));
        webhook.notify(&view(), metrics.clone());
        let counted = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let text = metrics.encode().unwrap();
                if text.contains("warden_approval_webhook_failures_total 1") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(counted.is_ok(), "{}", metrics.encode().unwrap());
    }
}
