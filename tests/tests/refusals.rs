//! Requests Warden refuses because what it judged and what the upstream would read could differ,
//! end to end with curl in a selected cgroup: a path with dot segments (`invalid_path`, 400), a
//! body with duplicate JSON keys under a body-reading policy (`invalid_body`, 400), a Host header
//! that is not the TLS server name (`misdirected_request`, 421). Each reaches no upstream and is
//! recorded as `denied` with its reason; the same request without the defect goes through.

use serde_json::{json, Value};
use warden_tests::policy::mask_rule;
use warden_tests::{audit, curl, require_kernel, AgentFixture, ClientOutput, FakeUpstream};

/// curl, as the agent, to `https://api.openai.com{path}` with `args`; the status and the output.
fn curl_to(fx: &AgentFixture, path: &str, args: &[&str]) -> (u16, ClientOutput) {
    let url = format!("https://api.openai.com{path}");
    let mut argv = vec![
        "curl",
        "-sS",
        "--max-time",
        "20",
        "-w",
        "%{stderr}http_code=%{http_code}\\n",
        "-H",
        "Authorization: Bearer sk-test",
    ];
    argv.extend_from_slice(args);
    argv.push(&url);
    let out = fx.client(argv).run();
    out.assert_success();
    (curl::http_code(&out), out)
}

/// The agent got exactly Warden's `invalid_request_error` with `code`; returns the message.
fn assert_refused(out: &ClientOutput, code: &str) -> String {
    let body = out.json();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("the refusal carries a message: {out}"))
        .to_owned();
    assert_eq!(
        body,
        json!({"error": {
            "message": message, "type": "invalid_request_error", "param": null, "code": code,
        }}),
        "{out}"
    );
    message
}

/// The one exchange in the store is `denied` with exactly `reason` and answered with `status`.
fn assert_stored_denial(fx: &AgentFixture, status: u16, reason: &str) -> Value {
    let exchanges = audit::wait_for_finished(&fx.daemon, 1);
    let id = exchanges[0]["id"].as_str().expect("an exchange id");
    let detail = audit::show(&fx.daemon, id);
    assert_eq!(detail["outcome"], "denied", "{detail:#}");
    assert_eq!(detail["response"]["status"], status, "{detail:#}");
    assert_eq!(detail["response"]["reason"], reason, "{detail:#}");
    detail
}

fn assert_upstream_got_nothing(fx: &AgentFixture) {
    let requests = fx.upstream.requests();
    assert!(
        requests.is_empty(),
        "the upstream received {} request(s)",
        requests.len()
    );
}

#[test]
fn a_path_with_dot_segments_is_refused_with_invalid_path() {
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start(&e2e, "refuse-dot-path");

    // --path-as-is: curl sends the dot segments instead of resolving them itself.
    let (status, out) = curl_to(&fx, "/v1/files/../models", &["--path-as-is"]);

    assert_eq!(status, 400, "{out}");
    assert_refused(&out, "invalid_path");
    assert_upstream_got_nothing(&fx);
    let detail = assert_stored_denial(&fx, 400, "ambiguous request path");
    assert_eq!(
        detail["request"]["path"], "/v1/files/../models",
        "{detail:#}"
    );

    // The path resolved, as an upstream would read it, goes through.
    let (status, out) = curl_to(&fx, "/v1/models", &[]);
    assert_eq!(status, 200, "{out}");
    assert_eq!(fx.upstream.requests().len(), 1);
}

#[test]
fn a_body_with_duplicate_keys_under_a_body_reading_policy_is_refused_with_invalid_body() {
    let Some(e2e) = require_kernel() else { return };
    let fx = audit::fixture(
        &e2e,
        "refuse-dup-keys",
        FakeUpstream::start(),
        |daemon, _| daemon.policy_file("mask.toml", &mask_rule("mask-pii", "request", &["email"])),
    );
    // Which `model` counts depends on the parser: Warden's policy and the upstream could disagree.
    let duplicated = r#"{"model":"gpt-4o-mini","model":"gpt-4.1","messages":[{"role":"user","content":"Say hello"}]}"#;
    let chat = |body: &str| {
        curl_to(
            &fx,
            "/v1/chat/completions",
            &["-H", "content-type: application/json", "-d", body],
        )
    };

    let (status, out) = chat(duplicated);

    assert_eq!(status, 400, "{out}");
    let message = assert_refused(&out, "invalid_body");
    assert!(message.contains("duplicated or mistyped fields"), "{out}");
    assert_upstream_got_nothing(&fx);
    assert_stored_denial(&fx, 400, "request body unreadable");

    // One `model` key: the same policy lets it through.
    let (status, out) =
        chat(r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#);
    assert_eq!(status, 200, "{out}");
    assert_eq!(fx.upstream.requests().len(), 1);
}

#[test]
fn a_host_header_that_differs_from_the_tls_server_name_is_refused_as_misdirected() {
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start(&e2e, "refuse-misdirected");

    // TLS for api.openai.com (the SNI), then a request for another host on that connection.
    let (status, out) = curl_to(
        &fx,
        "/v1/models",
        &["--http1.1", "-H", "Host: files.example.com"],
    );

    assert_eq!(status, 421, "{out}");
    let message = assert_refused(&out, "misdirected_request");
    assert!(
        message.contains("api.openai.com") && message.contains("files.example.com"),
        "the refusal names both hosts: {out}"
    );
    assert_upstream_got_nothing(&fx);
    assert_stored_denial(&fx, 421, "host does not match the TLS server name");

    // The server name's own Host goes through.
    let (status, out) = curl_to(
        &fx,
        "/v1/models",
        &["--http1.1", "-H", "Host: api.openai.com"],
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(fx.upstream.requests().len(), 1);
}
