//! The syslog and otlp sinks in the real daemon: a call by the official openai Python SDK arrives
//! at rsyslogd (TCP and UDP, its own process) as RFC 5424 messages and at an OTLP/HTTP receiver as
//! log records and a GenAI span with the call's token counts; a syslog receiver that is down when
//! the call is made gets every record once it is back.
use std::{path::Path, time::Duration};

use warden_tests::{
    fake_upstream::openai::reply_pieces,
    otlp_receiver::{attribute, OtlpReceiver},
    require_kernel, require_python,
    rsyslog::{Listener, Rsyslogd, SyslogMessage},
    sdk_scripts, AgentFixture, ClientOutput,
};

const ARRIVAL: Duration = Duration::from_secs(60);

fn sink(name: &str, kind_keys: &str) -> String {
    format!(
        "[[sink]]\nname = \"{name}\"\nflush_interval_ms = 100\nretry_max_backoff_secs = 1\n{kind_keys}\n"
    )
}

/// Runs the SDK's chat call; returns its pid and the total tokens it was told.
fn chat(fx: &AgentFixture, python: &Path) -> (u32, u64) {
    let out = fx
        .client([
            python.as_os_str(),
            "-c".as_ref(),
            sdk_scripts::CHAT.as_ref(),
        ])
        .run();
    out.assert_success();
    let printed = ClientOutput::json(&out);
    let pid = printed["pid"].as_u64().expect("pid") as u32;
    fx.daemon.wait_for_exchange(pid);
    (pid, printed["total_tokens"].as_u64().expect("total_tokens"))
}

fn exchange_messages<'a>(messages: &'a [SyslogMessage], name: &str) -> Vec<&'a SyslogMessage> {
    messages.iter().filter(|m| m.msgid == name).collect()
}

#[test]
fn an_sdk_call_reaches_rsyslogd_and_the_otlp_receiver_with_genai_attributes() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let tcp = Rsyslogd::start(Listener::Tcp);
    let udp = Rsyslogd::start(Listener::Udp);
    let otlp = OtlpReceiver::start();
    let sinks = [
        sink(
            "syslog-tcp",
            &format!(
                "kind = \"syslog\"\ntransport = \"tcp\"\naddress = \"{}\"",
                tcp.address()
            ),
        ),
        sink(
            "syslog-udp",
            &format!(
                "kind = \"syslog\"\ntransport = \"udp\"\naddress = \"{}\"",
                udp.address()
            ),
        ),
        sink(
            "otel",
            &format!("kind = \"otlp\"\nendpoint = \"{}\"", otlp.endpoint()),
        ),
    ]
    .concat();
    let fx = AgentFixture::start_with(&e2e, "sink-syslog-otlp", |builder, _| {
        builder.extra_config(&sinks)
    });
    let (pid, total_tokens) = chat(&fx, &python);
    let output_tokens = reply_pieces(fx.upstream.reply()).len() as u64;

    for (what, rsyslogd) in [("TCP", &tcp), ("UDP", &udp)] {
        let messages = rsyslogd.wait_for(&format!("the exchange over {what}"), ARRIVAL, |m| {
            !exchange_messages(m, "response").is_empty()
        });
        let request = exchange_messages(&messages, "request");
        let response = exchange_messages(&messages, "response")[0];
        assert_eq!(request.len(), 1, "{what}");
        let exchange_id = response.sd_param("exchange_id").expect("exchange_id");
        assert_eq!(
            request[0].sd_param("exchange_id"),
            Some(exchange_id.clone())
        );
        assert_eq!(response.app_name, "warden");
        assert_eq!(response.pri, "134", "local0.info");
        assert_eq!(response.sd_param("model").as_deref(), Some("gpt-4o-mini"));
        assert_eq!(response.sd_param("outcome").as_deref(), Some("ok"));
        let event = response.event();
        assert_eq!(event["exchange"]["pid"], pid);
        assert_eq!(event["exchange"]["total_tokens"], total_tokens);
        assert!(
            event["record"]["body"]["text"].is_null(),
            "bodies are not shipped"
        );
        assert!(
            !response.msg.contains("sk-test"),
            "the agent's key never leaves"
        );
    }

    let span = otlp.wait_for("the exchange's span", ARRIVAL, |got| {
        got.spans().into_iter().next()
    });
    let a = &span.attributes;
    assert_eq!(span.name, "chat gpt-4o-mini");
    for (key, value) in [
        ("gen_ai.system", "openai".to_owned()),
        ("gen_ai.provider.name", "openai".to_owned()),
        ("gen_ai.operation.name", "chat".to_owned()),
        ("gen_ai.request.model", "gpt-4o-mini".to_owned()),
        (
            "gen_ai.usage.input_tokens",
            (total_tokens - output_tokens).to_string(),
        ),
        ("gen_ai.usage.output_tokens", output_tokens.to_string()),
        ("server.address", "api.openai.com".to_owned()),
        ("warden.outcome", "ok".to_owned()),
        ("warden.pid", pid.to_string()),
    ] {
        assert_eq!(attribute(a, key), Some(value), "{key}");
    }
    otlp.wait_for("the exchange's log records", ARRIVAL, |got| {
        let names: Vec<_> = got
            .log_records()
            .iter()
            .filter_map(|l| attribute(&l.attributes, "warden.event"))
            .collect();
        (names.contains(&"request".to_owned()) && names.contains(&"response".to_owned()))
            .then_some(())
    });
}

#[test]
fn a_syslog_receiver_down_during_the_call_gets_every_record_when_it_returns() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let mut tcp = Rsyslogd::start(Listener::Tcp);
    let config = sink(
        "syslog-tcp",
        &format!(
            "kind = \"syslog\"\ntransport = \"tcp\"\naddress = \"{}\"",
            tcp.address()
        ),
    );
    let fx = AgentFixture::start_with(&e2e, "sink-syslog-down", |builder, _| {
        builder.extra_config(&config)
    });
    let (first_pid, _) = chat(&fx, &python);
    tcp.wait_for("the first exchange", ARRIVAL, |m| {
        exchange_messages(m, "response").len() == 1
    });

    tcp.stop();
    let (second_pid, _) = chat(&fx, &python);
    fx.daemon.wait_for_log("the sink failing", ARRIVAL, |line| {
        line.to_string().contains("syslog-tcp") && line.to_string().contains("refused")
    });
    tcp.restart();
    let messages = tcp.wait_for("both exchanges", ARRIVAL, |m| {
        exchange_messages(m, "response").len() >= 2
    });
    let pids: Vec<_> = exchange_messages(&messages, "response")
        .iter()
        .map(|m| m.event()["exchange"]["pid"].as_u64())
        .collect();
    assert!(pids.contains(&Some(u64::from(first_pid))), "{pids:?}");
    assert!(pids.contains(&Some(u64::from(second_pid))), "{pids:?}");
    assert_eq!(exchange_messages(&messages, "request").len(), 2);
}
