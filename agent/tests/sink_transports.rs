//! The syslog and otlp sink transports against real receivers on loopback: Debian's rsyslogd
//! (TCP, TLS with its OpenSSL driver, UDP, a unix socket of its own) and an OTLP/HTTP receiver
//! that decodes the protobuf. Each delivers events shaped as the sinks runner builds them.
use std::time::Duration;

use serde_json::json;
use warden::{
    audit::ExchangeSummary,
    config::{sink_otlp::OtlpSinkConfig, sink_syslog::SyslogSinkConfig},
    sinks::{
        otlp::OtlpTransport, syslog::SyslogTransport, DeliveryError, EventClass, SinkEvent,
        Transport,
    },
};
use warden_tests::{
    otlp_receiver::{attribute, OtlpReceiver},
    rsyslog::{Listener, Rsyslogd, SyslogMessage},
};

const ARRIVAL: Duration = Duration::from_secs(30);

fn summary(id: &str) -> ExchangeSummary {
    ExchangeSummary {
        id: id.to_owned(),
        started_at: String::new(),
        started_us: 1_700_000_000_000_000,
        pid: 4242,
        uid: 1000,
        // A user name that tries to break out of its SD-PARAM.
        user: Some("eve\"] [evil@1 x=\"y\\".to_owned()),
        account: Some("billing-bot".to_owned()),
        unit: Some("agent.service".to_owned()),
        exe: Some("/usr/bin/python3".to_owned()),
        cgroup: None,
        container: Some("c0ffee".to_owned()),
        model: Some("gpt-4o-mini".to_owned()),
        endpoint: "chat.completions".to_owned(),
        status: Some(200),
        outcome: "ok".to_owned(),
        input_tokens: Some(12),
        output_tokens: Some(5),
        total_tokens: Some(17),
        duration_ms: Some(250.0),
        masked: 2,
    }
}

/// An exchange's request and response events, and an alert.
fn batch(seq: u64, id: &str) -> Vec<SinkEvent> {
    vec![
        SinkEvent {
            seq,
            class: EventClass::Exchanges,
            name: "request".to_owned(),
            at_us: 1_700_000_000_000_000,
            exchange_id: Some(id.to_owned()),
            record: json!({"exchange_id": id, "host": "api.openai.com", "model": "gpt-4o-mini"}),
            exchange: None,
        },
        SinkEvent {
            seq: seq + 1,
            class: EventClass::Exchanges,
            name: "response".to_owned(),
            at_us: 1_700_000_000_250_123,
            exchange_id: Some(id.to_owned()),
            record: json!({"exchange_id": id, "status": 200, "outcome": "ok", "note": "é ünïcode"}),
            exchange: Some(summary(id)),
        },
        SinkEvent {
            seq: seq + 2,
            class: EventClass::Alerts,
            name: "alert".to_owned(),
            at_us: 1_700_000_001_000_000,
            exchange_id: None,
            record: json!({"event": {"kind": "alert", "detector": "spike"}}),
            exchange: None,
        },
    ]
}

fn syslog(listener: &Rsyslogd, transport: &str, extra: &str) -> SyslogTransport {
    let config: SyslogSinkConfig = toml::from_str(&format!(
        "transport = \"{transport}\"\naddress = \"{}\"\n{extra}",
        listener.address()
    ))
    .expect("syslog config");
    SyslogTransport::new(&config).expect("syslog transport")
}

fn by_seq(messages: &[SyslogMessage], seq: u64) -> Option<&SyslogMessage> {
    messages
        .iter()
        .find(|m| m.sd_param("seq").as_deref() == Some(&seq.to_string()))
}

/// rsyslogd parsed each field where Warden put it.
fn assert_parsed(messages: &[SyslogMessage], seq: u64) {
    let response = by_seq(messages, seq + 1).expect("the response message");
    assert_eq!(response.pri, "134", "local0.info");
    assert_eq!(response.timestamp, "2023-11-14T22:13:20.250123Z");
    assert_eq!(response.app_name, "warden");
    assert_eq!(response.procid, std::process::id().to_string());
    assert_eq!(response.msgid, "response");
    assert_eq!(
        response.sd_param("user").as_deref(),
        Some("eve\"] [evil@1 x=\"y\\"),
        "escaped user survives: {}",
        response.structured_data
    );
    // One element, parsed to its end: the user did not open a second one.
    assert!(
        response.structured_data.ends_with(" outcome=\"ok\"]"),
        "{}",
        response.structured_data
    );
    assert_eq!(response.sd_param("model").as_deref(), Some("gpt-4o-mini"));
    assert_eq!(response.sd_param("outcome").as_deref(), Some("ok"));
    let event = response.event();
    assert_eq!(event["seq"], seq + 1);
    assert_eq!(event["record"]["note"], "é ünïcode");
    assert_eq!(event["exchange"]["output_tokens"], 5);
    let alert = by_seq(messages, seq + 2).expect("the alert message");
    assert_eq!(alert.pri, "132", "local0.warning");
    assert_eq!(alert.msgid, "alert");
    assert!(by_seq(messages, seq).is_some(), "the request message");
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_over_tcp_arrives_octet_counted_and_parsed_by_rsyslogd() {
    let rsyslogd = Rsyslogd::start(Listener::Tcp);
    let mut transport = syslog(&rsyslogd, "tcp", "");
    transport
        .deliver(&batch(10, "ex_tcp"))
        .await
        .expect("delivered");
    let messages = rsyslogd.wait_for("3 messages over TCP", ARRIVAL, |m| m.len() >= 3);
    assert_parsed(&messages, 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_over_tls_reaches_rsyslogd_trusting_the_ca_file() {
    let rsyslogd = Rsyslogd::start(Listener::Tls);
    let ca = format!("ca_file = \"{}\"", rsyslogd.ca_file().display());
    let mut transport = syslog(&rsyslogd, "tls", &ca);
    transport
        .deliver(&batch(20, "ex_tls"))
        .await
        .expect("delivered");
    let messages = rsyslogd.wait_for("3 messages over TLS", ARRIVAL, |m| m.len() >= 3);
    assert_parsed(&messages, 20);

    // Without the CA the receiver's certificate is not trusted: nothing is sent.
    let mut untrusting = syslog(&rsyslogd, "tls", "");
    let error = untrusting
        .deliver(&batch(30, "ex_x"))
        .await
        .expect_err("untrusted");
    assert!(matches!(error, DeliveryError::Retryable(_)), "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_over_udp_is_one_datagram_each_cut_at_the_maximum() {
    let rsyslogd = Rsyslogd::start(Listener::Udp);
    let mut transport = syslog(&rsyslogd, "udp", "max_message_bytes = 1024");
    let mut events = batch(40, "ex_udp");
    events[2].record = json!({"padding": "x".repeat(4000)});
    transport.deliver(&events).await.expect("sent");
    let messages = rsyslogd.wait_for("3 datagrams", ARRIVAL, |m| m.len() >= 3);
    let response = by_seq(&messages, 41).expect("the response");
    assert_eq!(response.event()["exchange"]["input_tokens"], 12);
    let cut = by_seq(&messages, 42).expect("the long alert, cut");
    assert!(cut.msg.len() < 1024, "{}", cut.msg.len());
    assert!(cut.msg.ends_with("xxxx"), "cut inside the padding");
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_over_a_unix_socket_reaches_rsyslogd() {
    let rsyslogd = Rsyslogd::start(Listener::Unix);
    let mut transport = syslog(&rsyslogd, "unix", "");
    transport
        .deliver(&batch(50, "ex_unix"))
        .await
        .expect("sent");
    let messages = rsyslogd.wait_for("3 messages on the socket", ARRIVAL, |m| m.len() >= 3);
    assert_parsed(&messages, 50);
}

/// A batch sent while the receiver is gone must not count as delivered, even though the first
/// write to a connection the peer closed succeeds; once it is back everything arrives.
#[tokio::test(flavor = "multi_thread")]
async fn syslog_tcp_receiver_down_is_retryable_then_every_record_arrives() {
    let mut rsyslogd = Rsyslogd::start(Listener::Tcp);
    let mut transport = syslog(&rsyslogd, "tcp", "");
    transport
        .deliver(&batch(60, "ex_a"))
        .await
        .expect("delivered");
    rsyslogd.wait_for("the first batch", ARRIVAL, |m| m.len() >= 3);

    rsyslogd.stop();
    let down = batch(63, "ex_b");
    for attempt in 0..3 {
        let error = transport
            .deliver(&down)
            .await
            .expect_err("receiver is down");
        assert!(
            matches!(error, DeliveryError::Retryable(_)),
            "{attempt}: {error}"
        );
    }
    rsyslogd.restart();
    transport
        .deliver(&down)
        .await
        .expect("delivered after the restart");
    let messages = rsyslogd.wait_for("both batches", ARRIVAL, |m| m.len() >= 6);
    for seq in 60..66 {
        assert!(by_seq(&messages, seq).is_some(), "seq {seq} is missing");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn syslog_unix_receiver_down_is_retryable() {
    let mut rsyslogd = Rsyslogd::start(Listener::Unix);
    let mut transport = syslog(&rsyslogd, "unix", "");
    rsyslogd.stop();
    let error = transport
        .deliver(&batch(70, "ex_u"))
        .await
        .expect_err("down");
    assert!(matches!(error, DeliveryError::Retryable(_)), "{error}");
    rsyslogd.restart();
    transport
        .deliver(&batch(70, "ex_u"))
        .await
        .expect("delivered");
    rsyslogd.wait_for("the batch", ARRIVAL, |m| m.len() >= 3);
}

fn otlp(receiver: &OtlpReceiver, extra: &str) -> OtlpTransport {
    let config: OtlpSinkConfig = toml::from_str(&format!(
        "endpoint = \"{}\"\nheaders = {{ x-test-token = \"t0ken\" }}\n{extra}",
        receiver.endpoint()
    ))
    .expect("otlp config");
    OtlpTransport::new(&config).expect("otlp transport")
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_logs_and_genai_spans_arrive_decoded() {
    let receiver = OtlpReceiver::start();
    let mut transport = otlp(&receiver, "service_name = \"warden-test\"");
    transport
        .deliver(&batch(80, "ex_otlp"))
        .await
        .expect("delivered");
    // A redelivery (at-least-once) is the same span again.
    transport
        .deliver(&batch(80, "ex_otlp"))
        .await
        .expect("delivered again");

    receiver.with_received(|got| {
        for (path, content_type, token) in &got.requests {
            assert!(path == "/v1/logs" || path == "/v1/traces", "{path}");
            assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
            assert_eq!(token.as_deref(), Some("t0ken"));
        }
        let resource = got.resource_attributes();
        assert_eq!(
            attribute(&resource, "service.name").as_deref(),
            Some("warden-test")
        );
        assert!(attribute(&resource, "host.name").is_some_and(|h| !h.is_empty()));

        let logs = got.log_records();
        assert_eq!(logs.len(), 6);
        let response = logs
            .iter()
            .find(|l| attribute(&l.attributes, "warden.seq").as_deref() == Some("81"))
            .expect("the response's log record");
        assert_eq!(
            attribute(&response.attributes, "warden.event").as_deref(),
            Some("response")
        );
        assert_eq!(
            attribute(&response.attributes, "warden.exchange_id").as_deref(),
            Some("ex_otlp")
        );
        let alert = logs
            .iter()
            .find(|l| attribute(&l.attributes, "warden.event").as_deref() == Some("alert"))
            .expect("the alert's log record");
        assert_eq!(alert.severity_number, 13, "WARN");

        let spans = got.spans();
        assert_eq!(spans.len(), 2, "one span per delivery of the response");
        let span = &spans[0];
        assert_eq!(span.name, "chat gpt-4o-mini");
        assert_eq!(
            (&span.trace_id, &span.span_id),
            (&spans[1].trace_id, &spans[1].span_id)
        );
        assert_eq!(
            response.trace_id, span.trace_id,
            "the log record is in the span's trace"
        );
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            250_000_000
        );
        let a = &span.attributes;
        for (key, value) in [
            ("gen_ai.system", "openai"),
            ("gen_ai.provider.name", "openai"),
            ("gen_ai.operation.name", "chat"),
            ("gen_ai.request.model", "gpt-4o-mini"),
            ("gen_ai.usage.input_tokens", "12"),
            ("gen_ai.usage.output_tokens", "5"),
            ("server.address", "api.openai.com"),
            ("warden.account", "billing-bot"),
            ("warden.container", "c0ffee"),
            ("warden.outcome", "ok"),
            ("warden.masked", "2"),
        ] {
            assert_eq!(attribute(a, key).as_deref(), Some(value), "{key}");
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn otlp_receiver_down_or_overloaded_is_retryable_bad_requests_rejected_then_ok() {
    let mut receiver = OtlpReceiver::start();
    let mut transport = otlp(&receiver, "signals = [\"traces\"]");
    let events = batch(90, "ex_down");

    receiver.stop();
    let error = transport.deliver(&events).await.expect_err("down");
    assert!(matches!(error, DeliveryError::Retryable(_)), "{error}");
    receiver.restart();
    for status in [429, 502, 503, 504] {
        receiver.answer_with(status);
        let error = transport.deliver(&events).await.expect_err("failing");
        assert!(
            matches!(error, DeliveryError::Retryable(_)),
            "{status}: {error}"
        );
    }
    for status in [400, 401, 404] {
        receiver.answer_with(status);
        let error = transport.deliver(&events).await.expect_err("failing");
        assert!(
            matches!(error, DeliveryError::Rejected(_)),
            "{status}: {error}"
        );
        assert!(!error.to_string().contains("t0ken"), "{error}");
    }
    receiver.answer_with(200);
    transport.deliver(&events).await.expect("delivered");
    receiver.with_received(|got| {
        assert!(got.logs.is_empty(), "logs were not asked for");
        assert_eq!(got.spans().len(), 1);
    });
}
