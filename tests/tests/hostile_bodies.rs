//! Hostile clients, bodies: many concurrent large uploads share one body memory budget (over it:
//! a retryable, OpenAI-shaped 503), and a body far over `max_inspect_bytes` streams through. The
//! daemon runs under a memory limit that either attack would pass if bodies were buffered
//! without bound, and is never OOM-killed. A well-behaved client is served throughout.

use std::io::Write;

use warden_tests::hostile::{self, HostileReport};
use warden_tests::hostile_fixture::{
    api_address, assert_served, metric, wait_for_metric, GENEROUS,
};
use warden_tests::memcg::MemoryCgroup;
use warden_tests::{require_kernel, AgentFixture, E2e};

const MIB: u64 = 1024 * 1024;
/// The daemon's memory limit: its baseline (~45 MiB) and room to work, far below what the
/// attacks would make it hold without the budget.
const DAEMON_MEMORY: u64 = 128 * MIB;

/// A fixture whose daemon inspects up to `max_inspect_bytes` and has `limits`.
fn start(e2e: &E2e, name: &str, max_inspect_bytes: u64, limits: &str) -> AgentFixture {
    let limits = limits.to_owned();
    AgentFixture::start_with(e2e, name, move |daemon, _| {
        daemon
            .metrics()
            .max_inspect_bytes(max_inspect_bytes)
            .extra_config(&limits)
    })
}

fn limited(fx: &AgentFixture) -> MemoryCgroup {
    let limit = MemoryCgroup::new("hostile-daemon");
    limit.limit(DAEMON_MEMORY);
    limit.add(fx.daemon.warden_pid());
    limit
}

fn assert_survived(fx: &mut AgentFixture, limit: &MemoryCgroup) {
    assert_eq!(limit.oom_kills(), 0, "the daemon was OOM-killed");
    assert_served(fx);
}

#[test]
fn concurrent_large_uploads_share_the_body_budget_and_the_rest_get_a_retryable_503() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(
        &e2e,
        "uploads",
        8 * MIB,
        "[limits]\nbody_memory_budget_bytes = 16777216\nbody_read_timeout_secs = 20\n",
    );
    let limit = limited(&fx);
    // 40 uploads of 4 MiB: 160 MiB if all were held, past the daemon's memory limit. Each sends
    // all but the last bytes at once, then one byte a second: what fits stays reserved.
    const UPLOADS: usize = 40;
    let body_start = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":""#;
    let body_len = 4 * MIB as usize;
    // Longer than body_read_timeout_secs: the uploads that fit hold their share until answered 408.
    let held_back = 30;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n{body_start}{}",
        "a".repeat(body_len - body_start.len() - held_back)
    );
    let head_file = tempfile::NamedTempFile::new_in("/dev/shm").expect("a temp file");
    head_file
        .as_file()
        .write_all(head.as_bytes())
        .expect("writing the upload");

    let attackers: Vec<_> = (0..UPLOADS)
        .map(|_| {
            fx.client(hostile::slow_from_file(
                api_address(&fx),
                "api.openai.com",
                &fx.daemon.ca_pem(),
                head_file.path(),
                &[b'a'; 30],
                150,
            ))
            .timeout(GENEROUS)
            .spawn()
        })
        .collect();
    assert_served(&mut fx);
    let reports: Vec<HostileReport> = attackers
        .into_iter()
        .map(|attacker| hostile::report(&attacker.wait()))
        .collect();

    let refused: Vec<_> = reports
        .iter()
        .filter(|r| r.received.starts_with("HTTP/1.1 503"))
        .collect();
    // At most 4 uploads of 4 MiB fit in 16 MiB; every other one was refused, none went up.
    assert!(refused.len() >= UPLOADS - 4, "{reports:#?}");
    for report in &refused {
        assert!(
            report
                .received
                .contains(r#""code":"body_memory_budget_exhausted""#),
            "{report:?}"
        );
        assert!(
            report.received.contains(r#""type":"server_error""#),
            "{report:?}"
        );
        assert!(
            report
                .received
                .to_lowercase()
                .contains("x-should-retry: true"),
            "{report:?}"
        );
    }
    assert!(
        metric(&fx, "warden_body_budget_refusals_total", &[]) >= refused.len() as f64,
        "every refusal counted"
    );
    wait_for_metric(&fx, "warden_body_budget_used_bytes", &[], 0.0);
    assert_survived(&mut fx, &limit);
}

#[test]
fn a_body_far_over_max_inspect_bytes_streams_through_without_being_held() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "huge-body", MIB, "[limits]\n");
    let limit = limited(&fx);
    // 256 MiB, twice the daemon's memory limit and 256 times what it inspects.
    let size = 256 * MIB;
    let body = tempfile::NamedTempFile::new_in("/dev/shm").expect("a temp file");
    let start = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":""#;
    let end = br#""}]}"#;
    let mut file = body.as_file();
    file.write_all(start).expect("writing the body");
    let filler = vec![b'a'; MIB as usize];
    let mut written = (start.len() + end.len()) as u64;
    while written + MIB <= size {
        file.write_all(&filler).expect("writing the body");
        written += MIB;
    }
    file.write_all(&filler[..(size - written) as usize])
        .expect("writing the body");
    file.write_all(end).expect("writing the body");

    let mut command = warden_tests::curl::chat();
    let data = command
        .iter()
        .position(|arg| arg == "-d")
        .expect("curl::chat sends a body with -d");
    command[data] = "--data-binary".into();
    command[data + 1] = format!("@{}", body.path().display());
    // curl::chat's 20 s is for a small call; 256 MiB through two TLS legs of a debug build on a
    // busy machine may take longer, and this test judges the outcome, not the time.
    let max_time = command
        .iter()
        .position(|arg| arg == "--max-time")
        .expect("curl::chat sets --max-time");
    command[max_time + 1] = GENEROUS.as_secs().to_string();
    let out = fx.client(command).timeout(GENEROUS).run();

    assert_eq!(warden_tests::curl::http_code(&out), 200, "{out}");
    let requests = fx.upstream.requests();
    assert_eq!(requests.last().map(|r| r.body.len() as u64), Some(size));
    assert_survived(&mut fx, &limit);
}
