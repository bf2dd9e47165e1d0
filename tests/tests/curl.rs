//! curl, unmodified, in a selected cgroup: its HTTPS call to api.openai.com goes through Warden,
//! reaches the upstream, and is logged with curl's identity.

use std::time::Duration;

use warden_tests::attribution::{assert_attributed, assert_number};
use warden_tests::curl::{self, http_code, which, CHAT_BODY};
use warden_tests::{require_kernel, CgroupGuard, Client, Daemon, FakeUpstream, HostsFile};

#[test]
fn curl_in_a_selected_cgroup_is_intercepted_and_attributed() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let agent = CgroupGuard::new("curl");
    let daemon = Daemon::builder(&e2e)
        .select(&agent)
        .upstream(&upstream)
        .start();

    let out = Client::new(curl::chat())
        .in_cgroup(&agent)
        .hosts(&hosts)
        .trust(&daemon.trust_bundle())
        .run();

    // curl got the upstream's answer.
    out.assert_success();
    assert_eq!(http_code(&out), 200, "{out}");
    let body = out.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["choices"][0]["message"]["content"], upstream.reply());

    // The upstream saw curl's request, unchanged.
    let requests = upstream.wait_for_requests(1, Duration::from_secs(5));
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.authority.as_deref(), Some("api.openai.com"));
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(request.body, CHAT_BODY.as_bytes());

    // Warden logged the exchange with curl's identity.
    let line = daemon.wait_for_exchange(out.pid());
    assert_attributed(&line, out.pid(), &which("curl"), agent.path());
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
    assert_eq!(daemon.logs().exchanges().len(), 1, "one line per exchange");
}

#[test]
fn the_certificate_curl_sees_is_issued_by_wardens_ca() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let agent = CgroupGuard::new("curl-ca");
    let daemon = Daemon::builder(&e2e)
        .select(&agent)
        .upstream(&upstream)
        .start();

    // Trusting Warden's CA alone is enough...
    let mut argv = curl::chat();
    argv.extend(["--cacert".to_owned(), daemon.ca_pem().display().to_string()]);
    let with_warden_ca = Client::new(argv).in_cgroup(&agent).hosts(&hosts).run();
    with_warden_ca.assert_success();
    assert_eq!(http_code(&with_warden_ca), 200, "{with_warden_ca}");

    // ...and trusting only the upstream's own CA is not: the certificate is not the upstream's.
    let with_upstream_ca = Client::new(curl::chat())
        .in_cgroup(&agent)
        .hosts(&hosts)
        .trust(upstream.ca_pem_path())
        .run();
    assert_eq!(
        with_upstream_ca.code(),
        Some(60),
        "curl must reject a certificate it cannot verify\n{with_upstream_ca}"
    );

    // `warden ca path` names the same CA file.
    let ca_path = daemon.cli("ca", &["path"]);
    ca_path.assert_success();
    assert_eq!(ca_path.stdout.trim(), daemon.ca_pem().display().to_string());
}

#[test]
fn a_streamed_response_reaches_curl_whole_and_is_logged_as_streamed() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::builder()
        .chunk_delay(Duration::from_millis(20))
        .start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let agent = CgroupGuard::new("curl-stream");
    let daemon = Daemon::builder(&e2e)
        .select(&agent)
        .upstream(&upstream)
        .start();

    let out = Client::new(curl::stream_chat())
        .in_cgroup(&agent)
        .hosts(&hosts)
        .trust(&daemon.trust_bundle())
        .run();

    out.assert_success();
    let expected: String = warden_tests::fake_upstream::openai::chat_completion_events(
        "gpt-4o-mini",
        upstream.reply(),
        false,
    )
    .concat();
    assert_eq!(
        out.stdout, expected,
        "the event stream arrives byte for byte"
    );

    let line = daemon.wait_for_exchange(out.pid());
    assert_eq!(line.bool("streamed"), Some(true), "{line}");
    assert_eq!(line.u64("status"), Some(200), "{line}");
    assert_eq!(line.str("model"), Some("gpt-4o-mini"), "{line}");
}
