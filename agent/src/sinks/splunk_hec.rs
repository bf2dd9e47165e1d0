//! `kind = "splunk_hec"`: a batch as concatenated HEC event objects POSTed to
//! `{url}/services/collector/event` with `Authorization: Splunk TOKEN`; acknowledged by HEC's
//! `{"text":"Success","code":0}`.
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::{
    event::{DeliveryError, DeliveryFuture, SinkEvent, Transport},
    webhook::status_verdict,
};
use crate::{
    config::sinks::SplunkHecSinkConfig, credentials::secret::read_secret, http_post::HttpPoster,
};

pub const COLLECTOR_PATH: &str = "/services/collector/event";

pub struct SplunkHecTransport {
    poster: HttpPoster,
    token: SecretString,
    /// The constant part of every event object: host, source, sourcetype, index.
    envelope: String,
}

#[derive(serde::Deserialize)]
struct HecAnswer {
    code: Option<i64>,
    text: Option<String>,
}

impl SplunkHecTransport {
    pub fn new(config: &SplunkHecSinkConfig, sink: &str) -> Result<SplunkHecTransport, String> {
        let token = read_secret(&config.token_file).map_err(|e| format!("token_file: {e}"))?;
        let url = format!("{}{COLLECTOR_PATH}", config.url.trim_end_matches('/'));
        let poster = HttpPoster::new(
            &url,
            config.ca_file.as_deref(),
            Duration::from_secs(config.timeout_secs),
        )
        .map_err(|e| format!("url: {e}"))?;
        let host = config.host.clone().unwrap_or_else(host_name);
        let quote = |s: &str| serde_json::Value::from(s).to_string();
        let mut envelope = format!(
            "\"host\":{},\"source\":\"warden\",\"sourcetype\":{}",
            quote(&host),
            quote(&format!("warden:{sink}"))
        );
        if let Some(index) = &config.index {
            envelope.push_str(&format!(",\"index\":{}", quote(index)));
        }
        Ok(SplunkHecTransport {
            poster,
            token,
            envelope,
        })
    }

    /// `{"time":SECS.MICROS,…,"event":{…}}` per event, back to back (HEC's batch format).
    pub fn body(&self, batch: &[SinkEvent]) -> Result<Vec<u8>, DeliveryError> {
        let mut body = Vec::new();
        for event in batch {
            let secs = event.at_us.div_euclid(1_000_000);
            let micros = event.at_us.rem_euclid(1_000_000);
            body.extend_from_slice(
                format!("{{\"time\":{secs}.{micros:06},{},\"event\":", self.envelope).as_bytes(),
            );
            serde_json::to_writer(&mut body, event)
                .map_err(|e| DeliveryError::Rejected(e.to_string()))?;
            body.push(b'}');
        }
        Ok(body)
    }
}

impl Transport for SplunkHecTransport {
    fn kind(&self) -> &'static str {
        "splunk_hec"
    }

    fn deliver<'a>(&'a mut self, batch: &'a [SinkEvent]) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let body = self.body(batch)?;
            let mut headers = HeaderMap::new();
            let mut authorization =
                HeaderValue::from_str(&format!("Splunk {}", self.token.expose_secret())).map_err(
                    |_| DeliveryError::Rejected("token_file: not a header value".into()),
                )?;
            authorization.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, authorization);
            let answer = self
                .poster
                .post(headers, Bytes::from(body))
                .await
                .map_err(|e| DeliveryError::Retryable(e.to_string()))?;
            let said: Option<HecAnswer> = serde_json::from_slice(&answer.body).ok();
            let detail = said
                .as_ref()
                .and_then(|a| a.text.clone())
                .map(|text| format!(" ({text})"))
                .unwrap_or_default();
            status_verdict(answer.status).map_err(|error| match error {
                DeliveryError::Retryable(e) => DeliveryError::Retryable(format!("{e}{detail}")),
                DeliveryError::Rejected(e) => DeliveryError::Rejected(format!("{e}{detail}")),
            })?;
            match said {
                Some(HecAnswer { code: Some(0), .. }) => Ok(()),
                _ => Err(DeliveryError::Rejected(format!(
                    "HEC answered {} without its success code{detail}",
                    answer.status
                ))),
            }
        })
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::sinks::event::EventClass;

    #[test]
    fn the_body_is_concatenated_hec_events_with_microsecond_times() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        let mut file = std::fs::File::create(&token).unwrap();
        file.write_all(b"tok\n").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = SplunkHecSinkConfig {
            url: "http://127.0.0.1:8088/".into(),
            token_file: token,
            index: Some("sec".into()),
            host: Some("h1".into()),
            ca_file: None,
            timeout_secs: 5,
        };
        // read_secret insists on a root-owned file: as another user this test has nothing to do.
        if std::fs::metadata(&config.token_file).unwrap().uid() != 0 {
            return;
        }
        let hec = SplunkHecTransport::new(&config, "splunk").unwrap();
        let event = |seq| SinkEvent {
            seq,
            class: EventClass::Exchanges,
            name: "request".into(),
            at_us: 1_700_000_000_000_042,
            exchange_id: Some("ex".into()),
            record: serde_json::json!({}),
            exchange: None,
        };
        let body = String::from_utf8(hec.body(&[event(1), event(2)]).unwrap()).unwrap();
        let objects: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(objects.len(), 2);
        assert!(body.starts_with("{\"time\":1700000000.000042,\"host\":\"h1\",\"source\":\"warden\",\"sourcetype\":\"warden:splunk\",\"index\":\"sec\",\"event\":{\"seq\":1,"), "{body}");
        assert_eq!(objects[1]["event"]["seq"], 2);
    }
}
