//! Tamper evidence: `warden audit verify` passes on an untouched store and, after one row is edited,
//! deleted or moved with the sqlite3 shell, fails naming that record or exchange.

use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::{self, sqlite};
use warden_tests::curl::assert_ok;
use warden_tests::{require_kernel, FakeUpstream};

/// What the failure message must name.
#[derive(Debug)]
enum Names {
    Record(u64),
    Exchange(String),
}

fn seq(detail: &Value, field: &str) -> u64 {
    detail[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {detail:#}"))
}

#[test]
fn editing_deleting_or_reordering_rows_fails_verify_naming_the_record() {
    let Some(e2e) = require_kernel() else { return };
    let upstream = FakeUpstream::builder()
        .chunk_delay(Duration::from_millis(20))
        .start();
    let mut fx = audit::fixture(&e2e, "audit-tamper", upstream, |daemon, _| daemon);
    for argv in [
        audit::curl::chat("gpt-4o-mini", "Say hello"),
        audit::curl::stream_chat("gpt-4o", "Say hello", 20),
        audit::curl::chat("gpt-4.1", "Say hello"),
    ] {
        assert_ok(&fx.client(argv).run());
    }
    audit::wait_for_finished(&fx.daemon, 3);
    audit::assert_verifies(&fx.daemon);

    // The middle exchange: records before and after it, so no edit is at the chain's head.
    let exported = audit::export(&fx.daemon, &[]);
    assert_eq!(exported.len(), 3, "{exported:#?}");
    let middle = &exported[1];
    let id = middle["id"].as_str().expect("an id").to_owned();
    let request_seq = seq(middle, "request_seq");
    let response_seq = seq(middle, "response_seq");
    assert!(request_seq < response_seq, "{middle:#}");

    fx.daemon.stop(libc::SIGTERM);
    let db = audit::db_path(&fx.daemon);
    let backup = sqlite::Backup::take(&db);
    audit::assert_verifies(&fx.daemon);
    let head: u64 = sqlite::query(&db, "SELECT max(seq) FROM records")
        .parse()
        .expect("a max seq");
    assert!(
        response_seq < head,
        "seq {response_seq} is the head ({head})"
    );
    let kind =
        |seq: u64| sqlite::query(&db, &format!("SELECT kind FROM records WHERE seq = {seq}"));
    assert_eq!(kind(request_seq), "request");
    assert_eq!(kind(response_seq), "response");
    let has_prompt =
        format!("SELECT instr(body, 'Say hello') > 0 FROM records WHERE seq = {request_seq}");
    assert_eq!(
        sqlite::query(&db, &has_prompt),
        "1",
        "the request record holds the prompt"
    );

    let cases = [
        (
            "the prompt of a request record edited",
            format!(
                "UPDATE records SET body = replace(body, 'Say hello', 'Say goodbye') WHERE seq = {request_seq}"
            ),
            Names::Record(request_seq),
        ),
        (
            "a response record edited",
            format!("UPDATE records SET body = replace(body, 'x', 'y') WHERE seq = {response_seq}"),
            Names::Record(response_seq),
        ),
        (
            "a record deleted",
            format!("DELETE FROM records WHERE seq = {response_seq}"),
            Names::Record(response_seq),
        ),
        (
            "two records swapped",
            format!(
                "UPDATE records SET seq = -1 WHERE seq = {request_seq}; \
                 UPDATE records SET seq = {request_seq} WHERE seq = {response_seq}; \
                 UPDATE records SET seq = {response_seq} WHERE seq = -1"
            ),
            Names::Record(request_seq),
        ),
        (
            "an exchange's model edited in the index",
            format!("UPDATE exchanges SET model = 'gpt-evil' WHERE id = '{id}'"),
            Names::Exchange(id.clone()),
        ),
        (
            "an exchange's index row deleted",
            format!("DELETE FROM exchanges WHERE id = '{id}'"),
            Names::Exchange(id.clone()),
        ),
    ];
    let mut failures = Vec::new();
    for (what, sql, names) in &cases {
        backup.restore();
        sqlite::tamper(&db, sql);
        let out = audit::verify(&fx.daemon);
        let text = format!("{}{}", out.stdout, out.stderr);
        eprintln!("{what}: {}", text.trim());
        let named = match names {
            Names::Record(seq) => audit::first_number_after(&text, "broken") == Some(*seq),
            Names::Exchange(id) => text.contains(id.as_str()),
        };
        if out.status.success() || !named {
            failures.push(format!(
                "{what} ({sql}): verify should fail naming {names:?}\n{out}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // Untouched again, it verifies again: the failures above were the tampering.
    backup.restore();
    audit::assert_verifies(&fx.daemon);
}
