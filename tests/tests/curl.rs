//! curl, unmodified, in a selected cgroup: its HTTPS call to api.openai.com goes through Warden,
//! reaches the upstream, and is logged with curl's identity; a streamed answer arrives as a stream.

use std::time::Duration;

use warden_tests::attribution::{assert_attributed, assert_number};
use warden_tests::curl::{self, assert_chat_reply, assert_ok, which, CHAT_BODY};
use warden_tests::{require_kernel, AgentFixture, Client, FakeUpstream};

#[test]
fn curl_in_a_selected_cgroup_is_intercepted_and_attributed() {
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start(&e2e, "curl");

    let out = fx.client(curl::chat()).run();

    // curl got the upstream's answer.
    assert_chat_reply(&out, fx.upstream.reply());
    let body = out.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini");

    // The upstream saw curl's request, unchanged.
    let requests = fx.upstream.wait_for_requests(1, Duration::from_secs(5));
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.authority.as_deref(), Some("api.openai.com"));
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(request.body, CHAT_BODY.as_bytes());

    // Warden logged the exchange with curl's identity.
    let line = fx.daemon.wait_for_exchange(out.pid());
    assert_attributed(&line, out.pid(), &which("curl"), fx.agent.path());
    assert_eq!(line.str("comm"), Some("curl"), "{line}");
    assert!(
        line.str("cmdline")
            .is_some_and(|c| c.contains("curl") && c.contains("api.openai.com")),
        "{line}"
    );
    assert_eq!(line.str("method"), Some("POST"), "{line}");
    assert_eq!(line.str("host"), Some("api.openai.com"), "{line}");
    assert_eq!(line.str("path"), Some("/v1/chat/completions"), "{line}");
    assert_eq!(line.u64("status"), Some(200), "{line}");
    assert_eq!(line.str("model"), Some("gpt-4o-mini"), "{line}");
    assert_eq!(line.bool("streamed"), Some(false), "{line}");
    assert!(line.u64("request_bytes").is_some_and(|n| n > 0), "{line}");
    assert!(line.u64("response_bytes").is_some_and(|n| n > 0), "{line}");
    assert_number(&line, "duration_ms");
    assert_eq!(line.level(), "INFO", "{line}");
    assert_eq!(
        fx.daemon.logs().exchanges().len(),
        1,
        "one line per exchange"
    );
}

#[test]
fn the_certificate_curl_sees_is_issued_by_wardens_ca() {
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start(&e2e, "curl-ca");

    // Trusting Warden's CA alone is enough...
    let mut argv = curl::chat();
    argv.extend([
        "--cacert".to_owned(),
        fx.daemon.ca_pem().display().to_string(),
    ]);
    let with_warden_ca = Client::new(argv)
        .in_cgroup(&fx.agent)
        .hosts(&fx.hosts)
        .run();
    assert_ok(&with_warden_ca);

    // ...and trusting only the upstream's own CA is not: the certificate is not the upstream's.
    let with_upstream_ca = Client::new(curl::chat())
        .in_cgroup(&fx.agent)
        .hosts(&fx.hosts)
        .trust(fx.upstream.ca_pem_path())
        .run();
    assert_eq!(
        with_upstream_ca.code(),
        Some(60),
        "curl must reject a certificate it cannot verify\n{with_upstream_ca}"
    );

    // `warden ca path` names the same CA file.
    let ca_path = fx.daemon.cli("ca", &["path"]);
    ca_path.assert_success();
    assert_eq!(
        ca_path.stdout.trim(),
        fx.daemon.ca_pem().display().to_string()
    );
}

#[test]
fn a_streamed_response_reaches_curl_whole_and_is_logged_as_streamed() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::builder()
        .chunk_delay(Duration::from_millis(20))
        .gate_after(1)
        .start();
    let fx = AgentFixture::with_upstream(&e2e, "curl-stream", upstream);

    // curl -N writes each event out as it arrives; the upstream holds all but the first at its
    // gate until curl has printed it, which a buffering proxy would never let happen.
    let running = fx.client(curl::stream_chat()).spawn();
    let out = fx
        .upstream
        .assert_first_line_before_gate(running, |line| line.starts_with("data: "));

    out.assert_success();
    let expected: String = warden_tests::fake_upstream::openai::chat_completion_events(
        "gpt-4o-mini",
        fx.upstream.reply(),
        false,
    )
    .concat();
    assert_eq!(
        out.stdout, expected,
        "the event stream arrives byte for byte"
    );

    let line = fx.daemon.wait_for_exchange(out.pid());
    assert_eq!(line.bool("streamed"), Some(true), "{line}");
    assert_eq!(line.u64("status"), Some(200), "{line}");
    assert_eq!(line.str("model"), Some("gpt-4o-mini"), "{line}");
}
