//! The approval webhook: one JSON POST per new pending approval, with a Slack-compatible `text`
//! and the approval's fields. Fire and forget: it never delays the hold; a failure or timeout is
//! logged and counted.
use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::HeaderMap;

use super::ApprovalView;
use crate::{audit::reader::format_timestamp_us, http_post::HttpPoster, metrics::Metrics};

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
            let sent = match HttpPoster::new(&url, None, timeout) {
                Ok(poster) => poster.post(HeaderMap::new(), body).await.map(|a| a.status),
                Err(error) => Err(error),
            };
            let failed = match sent {
                Ok(status) if status.is_success() => None,
                Ok(status) => Some(format!("the receiver answered {status}")),
                Err(error) => Some(error.to_string()),
            };
            if let Some(error) = failed {
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
