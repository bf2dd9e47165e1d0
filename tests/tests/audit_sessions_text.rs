//! What `warden sessions` prints without `--json`: `show` says what the policy decided, which
//! rules matched and how many values of each recognizer it masked, in the request and in the
//! response; `list` has a MASKED column and names the caller by user and program when no account,
//! unit or container is known; a connection the client closed says so; `export` writes JSON lines
//! without being told the format.

use warden_tests::audit;
use warden_tests::curl::assert_ok;
use warden_tests::policy::{mask_rule, PolicyAgent};
use warden_tests::FakeUpstream;

const RULE: &str = "mask-pii";
const PROMPT: &str = "Mail alice@example.com or call 415-555-2671 about it";
const REPLY: &str = "I wrote to bob@example.com.";

/// The lines of `text` from the line `start` up to (not including) the line `end`.
fn section<'a>(text: &'a str, start: &str, end: Option<&str>) -> &'a str {
    let from = text
        .find(&format!("\n{start}\n"))
        .unwrap_or_else(|| panic!("no {start} section in\n{text}"));
    let rest = &text[from + 1..];
    match end.and_then(|end| rest.find(&format!("\n{end}\n"))) {
        Some(to) => &rest[..to + 1],
        None => rest,
    }
}

/// The `sessions list` table: the header's columns, and each row's cells by column name.
fn table(text: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header = lines.next().expect("a header line");
    // Columns start where a header word starts; cells are padded to the column's width.
    let starts: Vec<(usize, &str)> = header
        .match_indices(|c: char| c.is_ascii_uppercase())
        .filter(|(at, _)| *at == 0 || header.as_bytes()[at - 1] == b' ')
        .map(|(at, _)| (at, header[at..].split(' ').next().unwrap_or("")))
        .collect();
    lines
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(index, &(at, name))| {
                    let end = starts.get(index + 1).map_or(line.len(), |next| next.0);
                    let cell = line
                        .get(at.min(line.len())..end.min(line.len()))
                        .unwrap_or("");
                    (name.to_owned(), cell.trim().to_owned())
                })
                .collect()
        })
        .collect()
}

#[test]
fn show_and_list_say_what_the_policy_masked_and_who_called() {
    let upstream = FakeUpstream::builder().reply(REPLY).start();
    let Some(agent) = PolicyAgent::with_upstream("sessions-text", upstream, |daemon, _| {
        daemon.policy_file("mask.toml", &mask_rule(RULE, "both", &["email", "phone"]))
    }) else {
        return;
    };
    let fx = &agent.fx;
    let masked_call = fx.client(audit::curl::chat("gpt-4o-mini", PROMPT)).run();
    assert_ok(&masked_call);
    let first = audit::wait_for_finished(&fx.daemon, 1).remove(0);
    // The model list: nothing in it to mask, either way. Over HTTP/1.1, where a client that
    // closes without a TLS close_notify reaches the server as an unexpected end of file.
    let mut models = audit::curl::get("/v1/models");
    models.insert(1, "--http1.1".to_owned());
    let plain_call = fx.client(models).run();
    assert_ok(&plain_call);
    let finished = audit::wait_for_finished(&fx.daemon, 2);
    let masked_id = first["id"].as_str().expect("an id").to_owned();
    let plain_id = finished
        .iter()
        .filter_map(|summary| summary["id"].as_str())
        .find(|id| *id != masked_id)
        .expect("a second exchange")
        .to_owned();

    // `sessions show`: the decision, the matched rule, the counts, per direction; and the
    // connection's end, once its record is written (when curl's connection closed).
    let shown = warden_tests::wait::until(
        "the exchange's connection record",
        audit::RECORD_TIMEOUT,
        || {
            let out = fx.daemon.cli("sessions", &["show", &masked_id]);
            assert!(out.status.success(), "{out}");
            (!out.stdout.contains("no connection record yet")).then_some(out.stdout)
        },
    );
    let connection = section(&shown, "Connection", Some("Request"));
    assert!(
        connection.contains("\n  reason      closed by the client\n"),
        "{shown}"
    );
    let request = section(&shown, "Request", Some("Response"));
    assert!(
        request.contains(&format!("\n  policy      allow; matched {RULE}\n")),
        "{shown}"
    );
    assert!(
        request.contains(&format!("\n  masked      EMAIL 1, PHONE 1 (rule {RULE})\n")),
        "{shown}"
    );
    let response = section(&shown, "Response", None);
    assert!(
        response.contains(&format!("\n  masked      EMAIL 1 (rule {RULE})\n")),
        "{shown}"
    );
    assert!(!shown.contains("alice@example.com") && !shown.contains("bob@example.com"));

    let plain = warden_tests::wait::until(
        "the HTTP/1.1 exchange's connection record",
        audit::RECORD_TIMEOUT,
        || {
            let out = fx.daemon.cli("sessions", &["show", &plain_id]);
            assert!(out.status.success(), "{out}");
            (!out.stdout.contains("no connection record yet")).then_some(out)
        },
    );
    assert!(
        section(&plain.stdout, "Connection", Some("Request"))
            .contains("\n  reason      closed by the client\n"),
        "{plain}"
    );
    assert!(
        plain
            .stdout
            .contains(&format!("\n  policy      allow; matched {RULE}\n")),
        "{plain}"
    );
    assert_eq!(
        plain.stdout.matches("\n  masked      nothing\n").count(),
        2,
        "nothing masked in the request nor the response\n{plain}"
    );

    // `sessions list`: MASKED says which exchange had values masked; IDENTITY is user:program.
    let listed = fx.daemon.cli("sessions", &["list"]);
    assert!(listed.status.success(), "{listed}");
    assert!(
        listed
            .stdout
            .lines()
            .next()
            .is_some_and(|header| header.contains("  MASKED  ")),
        "{listed}"
    );
    let rows = table(&listed.stdout);
    let row = |id: &str| {
        rows.iter()
            .find(|row| row.get("ID").map(String::as_str) == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}\n{listed}"))
    };
    assert_eq!(row(&masked_id)["MASKED"], "yes (3)", "{listed}");
    assert_eq!(row(&plain_id)["MASKED"], "no", "{listed}");
    assert_eq!(
        row(&masked_id)["IDENTITY"],
        format!("root:curl[{}]", masked_call.pid()),
        "{listed}"
    );
    assert_eq!(
        row(&plain_id)["IDENTITY"],
        format!("root:curl[{}]", plain_call.pid()),
        "{listed}"
    );
}

/// The official SDK (httpx, HTTP/1.1) reads a stream up to `[DONE]` and leaves without a TLS
/// close_notify, often while Warden still writes the body's last bytes: the server then reads an
/// unexpected end of file, which is still the client closing its connection.
const SDK_STREAM_THEN_EXIT: &str = r#"
import os
from openai import OpenAI
stream = OpenAI().chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True)
print(len([chunk for chunk in stream]), os.getpid())
os._exit(0)
"#;

#[test]
fn a_connection_the_sdk_closed_is_recorded_as_closed_by_the_client() {
    let Some(agent) =
        PolicyAgent::with_upstream("sessions-closed", FakeUpstream::start(), |d, _| d)
    else {
        return;
    };
    let out = audit::sdk_client(&agent.fx, &agent.python, SDK_STREAM_THEN_EXIT).run();
    out.assert_success();
    let id = audit::wait_for_finished(&agent.fx.daemon, 1).remove(0)["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let shown = warden_tests::wait::until(
        "the exchange's connection record",
        audit::RECORD_TIMEOUT,
        || {
            let out = agent.fx.daemon.cli("sessions", &["show", &id]);
            assert!(out.status.success(), "{out}");
            (!out.stdout.contains("no connection record yet")).then_some(out.stdout)
        },
    );
    assert!(
        section(&shown, "Connection", Some("Request"))
            .contains("\n  reason      closed by the client\n"),
        "{shown}"
    );
}

#[test]
fn export_writes_json_lines_without_a_format() {
    let upstream = FakeUpstream::builder().reply(REPLY).start();
    let Some(agent) = PolicyAgent::with_upstream("sessions-export", upstream, |daemon, _| daemon)
    else {
        return;
    };
    let fx = &agent.fx;
    assert_ok(&fx.client(audit::curl::chat("gpt-4o-mini", "one")).run());
    assert_ok(&fx.client(audit::curl::chat("gpt-4o-mini", "two")).run());
    let finished = audit::wait_for_finished(&fx.daemon, 2);

    let out = fx.daemon.cli("sessions", &["export"]);
    assert!(
        out.status.success(),
        "`sessions export` without --format\n{out}"
    );
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    let exported: Vec<&str> = lines
        .iter()
        .filter_map(|line| line["id"].as_str())
        .collect();
    // Oldest first; `list` is newest first.
    let listed: Vec<&str> = finished
        .iter()
        .rev()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(exported, listed, "{out}");
    // The same as asking for it.
    assert_eq!(
        out.stdout,
        audit_export_jsonl(fx),
        "the default is --format jsonl"
    );
}

fn audit_export_jsonl(fx: &warden_tests::AgentFixture) -> String {
    let out = fx.daemon.cli("sessions", &["export", "--format", "jsonl"]);
    assert!(out.status.success(), "{out}");
    out.stdout
}
