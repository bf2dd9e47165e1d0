//! Bodies the policy does not read whole, end to end with curl in a selected cgroup: a multipart
//! upload is forwarded uninspected (only identity, host and endpoint rules can match it) and
//! recorded by type and size; a JSON body above `[policy] max_inspect_bytes` is refused with 413
//! when a body-reading rule exists (nothing reaches the upstream), and otherwise forwarded byte for
//! byte and recorded truncated.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tempfile::TempDir;
use warden_tests::daemon::Account;
use warden_tests::policy::{
    assert_recorded_denial, chat_request, deny_rule, mask_rule, PolicyAgent, POLICY_VIOLATION,
};
use warden_tests::{audit, curl, ClientOutput, RecordedRequest};

const MAX_INSPECT_BYTES: u64 = 65536;
/// Comfortably above [`MAX_INSPECT_BYTES`].
const BIG_BODY_BYTES: usize = 100 * 1024;

/// One batch line that every body-reading rule below would match if the upload were read as text:
/// a model outside the allow list and text the text rule looks for.
const BATCH_LINE: &str = r#"{"custom_id":"r1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4.1","messages":[{"role":"user","content":"Here is my credit card statement"}]}}"#;

/// A deny rule on the model and one on the prompt text: neither may match an upload.
fn body_rules() -> String {
    let models = deny_rule(
        "approved-models-only",
        "Only gpt-4o-mini may be used from this host",
        r#"model_not_in = ["gpt-4o-mini"]"#,
    );
    let text = deny_rule(
        "no-card-talk",
        "Prompts may not mention credit cards",
        r#"text_matches = ["(?i)credit[- ]card"]"#,
    );
    format!("{models}{text}")
}

/// A file for curl to send, in a directory of its own.
struct UploadFile {
    _dir: TempDir,
    path: PathBuf,
}

impl UploadFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let dir = tempfile::tempdir().expect("creating a tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Self { _dir: dir, path }
    }

    fn at(&self) -> String {
        format!("@{}", self.path.display())
    }
}

/// curl, as the agent, to `https://api.openai.com{path}` with `args`; the status on stderr.
fn curl_to(agent: &PolicyAgent, path: &str, args: &[&str]) -> (u16, ClientOutput) {
    let url = format!("https://api.openai.com{path}");
    let mut argv = vec![
        "curl",
        "-sS",
        "--max-time",
        "30",
        "-w",
        "%{stderr}http_code=%{http_code}\\n",
        &url,
        "-H",
        "Authorization: Bearer sk-test",
    ];
    argv.extend_from_slice(args);
    let out = agent.fx.client(argv).run();
    out.assert_success();
    (curl::http_code(&out), out)
}

/// `curl -F file=@FILE -F purpose=batch` to /v1/files.
fn upload(agent: &PolicyAgent, file: &Path) -> (u16, ClientOutput) {
    let field = format!("file=@{}", file.display());
    curl_to(agent, "/v1/files", &["-F", &field, "-F", "purpose=batch"])
}

/// `curl --data-binary @FILE` as JSON to /v1/chat/completions.
fn post_json_file(agent: &PolicyAgent, file: &UploadFile) -> (u16, ClientOutput) {
    curl_to(
        agent,
        "/v1/chat/completions",
        &[
            "-H",
            "content-type: application/json",
            "--data-binary",
            &file.at(),
        ],
    )
}

/// A chat request of exactly [`BIG_BODY_BYTES`] bytes with nothing any recognizer would mask.
fn big_chat_body() -> Vec<u8> {
    let shell = chat_request("gpt-4o-mini", "").to_string();
    let filler = "All work and no play makes a dull prompt. ";
    let mut prompt = filler.repeat(BIG_BODY_BYTES / filler.len() + 1);
    prompt.truncate(BIG_BODY_BYTES - shell.len());
    let body = chat_request("gpt-4o-mini", &prompt)
        .to_string()
        .into_bytes();
    assert_eq!(body.len(), BIG_BODY_BYTES);
    body
}

fn only_upstream_request(agent: &PolicyAgent) -> RecordedRequest {
    let mut seen = agent.fx.upstream.requests();
    assert_eq!(seen.len(), 1, "exactly one request reached the upstream");
    seen.remove(0)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The `sessions show` object of the only exchange in the store.
fn only_exchange(agent: &PolicyAgent) -> Value {
    let summary = audit::wait_for_finished(&agent.fx.daemon, 1).remove(0);
    let id = summary["id"].as_str().expect("an id");
    audit::show(&agent.fx.daemon, id)
}

#[test]
fn a_multipart_upload_is_not_matched_by_model_or_text_rules_and_is_recorded_by_type_and_size() {
    let Some(agent) = PolicyAgent::start("policy-body-upload", |daemon, _| {
        daemon.policy_file("body-rules.toml", &body_rules())
    }) else {
        return;
    };
    let batch = UploadFile::new("batch.jsonl", format!("{BATCH_LINE}\n").as_bytes());

    let (status, out) = upload(&agent, &batch.path);
    assert_ne!(status, 403, "a body rule matched an upload\n{out}");
    let seen = only_upstream_request(&agent);
    // The fake upstream has no files route: its 404 proves the response came from it.
    assert_eq!(status, 404, "{out}");
    assert_eq!(out.json()["error"]["code"], "unknown_url", "{out}");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/files");
    let content_type = seen.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("multipart/form-data"),
        "{:?}",
        seen.headers
    );
    assert!(
        contains(&seen.body, BATCH_LINE.as_bytes()),
        "the file reached the upstream unchanged: {}",
        String::from_utf8_lossy(&seen.body)
    );

    let detail = only_exchange(&agent);
    assert_ne!(detail["outcome"], "denied", "{detail:#}");
    let body = &detail["request"]["body"];
    let recorded_type = body["content_type"].as_str().unwrap_or_default();
    assert!(
        recorded_type.starts_with("multipart/form-data"),
        "request.body.content_type: {detail:#}"
    );
    assert_eq!(
        body["size"].as_u64(),
        Some(seen.body.len() as u64),
        "request.body.size is the upload's size: {detail:#}"
    );
    assert!(
        body["text"].is_null(),
        "an upload is recorded without its text: {detail:#}"
    );
}

#[test]
fn a_host_and_endpoint_rule_denies_a_multipart_upload() {
    const RULE: &str = "no-uploads";
    const MESSAGE: &str = "Files may not be uploaded from this host";
    let Some(agent) = PolicyAgent::start("policy-body-upload-denied", |daemon, _| {
        daemon.policy_file(
            "uploads.toml",
            &deny_rule(
                RULE,
                MESSAGE,
                r#"host = ["api.openai.com"]
                   endpoint = ["files"]"#,
            ),
        )
    }) else {
        return;
    };
    let batch = UploadFile::new("batch.jsonl", format!("{BATCH_LINE}\n").as_bytes());

    let (status, out) = upload(&agent, &batch.path);
    assert_eq!(status, 403, "{out}");
    assert_eq!(
        out.json(),
        json!({"error": {
            "message": MESSAGE, "type": POLICY_VIOLATION, "param": null, "code": RULE,
        }}),
        "{out}"
    );
    agent.assert_upstream_got_nothing();
    let mut known = BTreeSet::new();
    assert_recorded_denial(&agent.fx, &mut known, out.pid(), RULE);
}

#[test]
fn a_denied_upload_still_being_sent_gets_the_refusal_not_a_reset_stream() {
    const RULE: &str = "no-uploads";
    let Some(agent) = PolicyAgent::start("policy-body-big-upload-denied", |daemon, _| {
        daemon.policy_file(
            "uploads.toml",
            &deny_rule(RULE, "No uploads", r#"endpoint = ["files"]"#),
        )
    }) else {
        return;
    };
    // 8 MiB: curl is still sending over HTTP/2 when the refusal is ready.
    let big = UploadFile::new("big.jsonl", &vec![b'x'; 8 * 1024 * 1024]);
    let (status, out) = upload(&agent, &big.path);
    assert_eq!(status, 403, "{out}");
    assert_eq!(out.json()["error"]["code"], RULE, "{out}");
    agent.assert_upstream_got_nothing();
}

#[test]
fn a_body_above_max_inspect_bytes_is_refused_with_413_when_a_mask_rule_applies() {
    let Some(agent) = PolicyAgent::start("policy-body-too-big", |daemon, _| {
        daemon
            .max_inspect_bytes(MAX_INSPECT_BYTES)
            .policy_file("mask.toml", &mask_rule("mask-pii", "both", &["email"]))
    }) else {
        return;
    };
    let big = UploadFile::new("big.json", &big_chat_body());

    let (status, out) = post_json_file(&agent, &big);
    assert_eq!(status, 413, "{out}");
    let error = out.json();
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(!message.is_empty(), "the 413 carries a message: {out}");
    assert_eq!(
        error,
        json!({"error": {
            "message": message, "type": "invalid_request_error", "param": null,
            "code": "invalid_body",
        }}),
        "{out}"
    );
    agent.assert_upstream_got_nothing();

    // A body under the limit still goes through: the refusal was about the size.
    let small = UploadFile::new(
        "small.json",
        chat_request("gpt-4o-mini", "Say hello")
            .to_string()
            .as_bytes(),
    );
    let (status, out) = post_json_file(&agent, &small);
    assert_eq!(status, 200, "{out}");
    assert_eq!(agent.fx.upstream.requests().len(), 1);
}

#[test]
fn a_body_above_max_inspect_bytes_is_forwarded_unchanged_and_recorded_truncated_without_body_rules()
{
    let Some(agent) = PolicyAgent::start("policy-body-big-ok", |daemon, this| {
        daemon
            .max_inspect_bytes(MAX_INSPECT_BYTES)
            .account(Account::cgroup("this-agent", this.path()))
            .policy_file(
                "accounts.toml",
                &deny_rule(
                    "other-account-only",
                    "The other agent may not call the API",
                    r#"identity = ["account:other-agent"]"#,
                ),
            )
    }) else {
        return;
    };
    let body = big_chat_body();
    let big = UploadFile::new("big.json", &body);

    let (status, out) = post_json_file(&agent, &big);
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out.json()["choices"][0]["message"]["content"],
        agent.fx.upstream.reply(),
        "{out}"
    );
    let seen = only_upstream_request(&agent);
    assert!(
        seen.body[..] == body[..],
        "the upstream received {} bytes, not the {} sent byte for byte",
        seen.body.len(),
        body.len()
    );

    let detail = only_exchange(&agent);
    let recorded = &detail["request"]["body"];
    assert_eq!(
        recorded["truncated"], true,
        "request.body.truncated (content_type {}, size {})",
        recorded["content_type"], recorded["size"]
    );
    assert_eq!(
        recorded["size"].as_u64(),
        Some(body.len() as u64),
        "request.body.size: {}",
        recorded["size"]
    );
}
