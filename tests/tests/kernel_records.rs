//! What the eBPF programs record: their diagnostics reach Warden's log through aya-log, and the
//! origin records of redirected connections are removed once Warden has claimed them.

use std::time::Duration;

use warden_tests::curl;
use warden_tests::{require_kernel, AgentFixture};

#[test]
fn the_programs_diagnostics_reach_the_log_through_aya_log() {
    let Some(e2e) = require_kernel() else { return };
    let fixture = AgentFixture::start_with(&e2e, "aya-log", |daemon, _| {
        daemon.log_filter("info,warden_ebpf=debug")
    });

    let out = fixture.client(curl::chat()).run();
    curl::assert_ok(&out);

    let expected = format!("redirected tgid {} port 443", out.pid());
    let line = fixture.daemon.wait_for_log(
        "the connect program's redirect diagnostic",
        Duration::from_secs(10),
        |line| line.message() == expected,
    );
    assert_eq!(line.level(), "DEBUG", "{line:?}");
    assert!(
        line.str("target")
            .is_some_and(|t| t.starts_with("warden_ebpf")),
        "{line:?}"
    );
}

#[test]
fn origin_records_are_removed_once_connections_are_claimed() {
    let Some(e2e) = require_kernel() else { return };
    let fixture = AgentFixture::start(&e2e, "origins");

    for _ in 0..3 {
        let out = fixture.client(curl::chat()).run();
        curl::assert_ok(&out);
        fixture.daemon.wait_for_exchange(out.pid());
    }

    let status = fixture.daemon.status();
    let counters = &status.counters;
    assert!(counters["redirected"].as_u64() >= Some(3), "{counters}");
    assert!(
        counters["origins_indexed"].as_u64() >= Some(3),
        "{counters}"
    );
    assert_eq!(counters["origins_unclaimed"], 0, "{counters}");
    assert_eq!(counters["origins_pending"], 0, "{counters}");
}
