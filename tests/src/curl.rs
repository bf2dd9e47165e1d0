//! curl command lines for the OpenAI API, as an agent's shell script would run them, and what a
//! successful run through Warden looks like.

use std::path::PathBuf;

use crate::attribution::exchange_from;
use crate::cgroup::CgroupGuard;
use crate::client::{Client, ClientOutput};
use crate::daemon::Daemon;
use crate::hosts::HostsFile;
use crate::logs::LogLine;

/// The chat request body every curl test sends.
pub const CHAT_BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello"}]}"#;

/// The streamed chat request body.
pub const STREAM_CHAT_BODY: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Say hello"}]}"#;

const STATUS_PREFIX: &str = "http_code=";

fn base(url: &str) -> Vec<String> {
    [
        "curl",
        "-sS",
        "--max-time",
        "20",
        // The status goes to stderr so stdout stays exactly the response body.
        "-w",
        "%{stderr}http_code=%{http_code}\\n",
        url,
        "-H",
        "Authorization: Bearer sk-test",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// `POST https://{host}/v1/chat/completions` with [`CHAT_BODY`].
pub fn chat_at(host: &str) -> Vec<String> {
    let mut argv = base(&format!("https://{host}/v1/chat/completions"));
    argv.extend(["-H", "content-type: application/json", "-d", CHAT_BODY].map(str::to_owned));
    argv
}

/// `POST https://api.openai.com/v1/chat/completions` with [`CHAT_BODY`].
pub fn chat() -> Vec<String> {
    chat_at("api.openai.com")
}

/// The streamed chat request, printing events as they arrive (`-N`).
pub fn stream_chat() -> Vec<String> {
    let mut argv = base("https://api.openai.com/v1/chat/completions");
    argv.extend(
        [
            "-N",
            "-H",
            "content-type: application/json",
            "-d",
            STREAM_CHAT_BODY,
        ]
        .map(str::to_owned),
    );
    argv
}

/// The HTTP status curl reported (0 when there was no response).
pub fn http_code(out: &ClientOutput) -> u16 {
    out.stderr
        .lines()
        .find_map(|l| l.strip_prefix(STATUS_PREFIX))
        .and_then(|code| code.trim().parse().ok())
        .unwrap_or_else(|| panic!("curl did not report an HTTP status\n{out}"))
}

/// curl exited 0 and reported HTTP 200.
pub fn assert_ok(out: &ClientOutput) {
    out.assert_success();
    assert_eq!(http_code(out), 200, "{out}");
}

/// curl got a 200 chat completion whose message is the upstream's `reply`.
pub fn assert_chat_reply(out: &ClientOutput, reply: &str) {
    assert_ok(out);
    assert_eq!(
        out.json()["choices"][0]["message"]["content"],
        reply,
        "{out}"
    );
}

/// The chat request from `cgroup` (seeing `hosts`, trusting `daemon`'s bundle) gets a 200 through
/// Warden; returns Warden's exchange line for it, which places it in `cgroup`.
pub fn intercepted_chat(daemon: &Daemon, cgroup: &CgroupGuard, hosts: &HostsFile) -> LogLine {
    let out = Client::new(chat())
        .in_cgroup(cgroup)
        .hosts(hosts)
        .trust(&daemon.trust_bundle())
        .run();
    assert_ok(&out);
    exchange_from(daemon, &out, cgroup.path())
}

/// The canonical path of an executable on PATH, as /proc/PID/exe shows it.
pub fn which(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .and_then(|found| found.canonicalize().ok())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}
