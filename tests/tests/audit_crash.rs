//! Durability: `kill -9` of the daemon while eight SDK clients send requests, then a restart on the
//! same config and state dir. Every request the upstream received has its record, the database is
//! intact, the chain verifies, and the restarted daemon goes on appending to it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::{self, scripts, sqlite};
use warden_tests::client::RunningClient;
use warden_tests::curl::assert_ok;
use warden_tests::{require_kernel, require_python, wait, FakeUpstream, RecordedRequest};

const WORKERS: usize = 8;
/// Bounds on the load: requests per worker, and seconds per worker.
const PER_WORKER: usize = 60;
const LOAD_SECONDS: u32 = 60;
/// The daemon dies once the upstream has seen this many requests.
const KILL_AFTER: usize = 48;
/// The upstream holds every answer this long, so that requests are in flight at the kill.
const RESPONSE_DELAY: Duration = Duration::from_millis(150);

/// The upstream's requests once no more arrive (in-flight ones land right after the kill).
fn settled_requests(upstream: &FakeUpstream) -> Vec<RecordedRequest> {
    let mut last = usize::MAX;
    wait::until(
        "the upstream's requests to settle",
        Duration::from_secs(10),
        || {
            std::thread::sleep(Duration::from_millis(300));
            let requests = upstream.requests();
            let settled = requests.len() == last;
            last = requests.len();
            settled.then_some(requests)
        },
    )
}

fn body_text(detail: &Value) -> &str {
    detail["request"]["body"]["text"]
        .as_str()
        .unwrap_or_default()
}

#[test]
fn kill_9_under_load_loses_no_record_of_a_forwarded_request() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let upstream = FakeUpstream::builder()
        .response_delay(RESPONSE_DELAY)
        .start();
    let mut fx = audit::fixture(&e2e, "audit-crash", upstream, |daemon, _| daemon);

    let clients: Vec<RunningClient> = (0..WORKERS)
        .map(|worker| {
            audit::sdk_client(&fx, &python, scripts::LOAD)
                .env("WORKER", worker.to_string())
                .env("COUNT", PER_WORKER.to_string())
                .env("SECONDS", LOAD_SECONDS.to_string())
                .timeout(Duration::from_secs(u64::from(LOAD_SECONDS) + 60))
                .spawn()
        })
        .collect();
    fx.upstream
        .wait_for_requests(KILL_AFTER, Duration::from_secs(90));
    let status = fx.daemon.kill9();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    drop(clients);

    let received = settled_requests(&fx.upstream);
    let mut forwarded = BTreeSet::new();
    let mut partial = 0;
    for request in &received {
        let markers = scripts::load_markers(&String::from_utf8_lossy(&request.body));
        match markers.as_slice() {
            [marker] => {
                assert!(
                    forwarded.insert(marker.clone()),
                    "{marker} reached the upstream twice (the clients do not retry)"
                );
            }
            // The daemon died while sending this body: the upstream got only its beginning.
            [] => partial += 1,
            more => panic!("one request, several markers: {more:?}"),
        }
    }
    assert!(
        partial <= WORKERS,
        "{partial} partial bodies at the upstream"
    );
    assert!(
        forwarded.len() >= KILL_AFTER - WORKERS,
        "{}",
        forwarded.len()
    );

    fx.daemon.restart();
    let db = audit::db_path(&fx.daemon);
    assert_eq!(sqlite::query(&db, "PRAGMA integrity_check"), "ok");
    audit::assert_verifies(&fx.daemon);

    let exported = audit::export(&fx.daemon, &[]);
    let mut recorded: BTreeMap<String, &Value> = BTreeMap::new();
    for detail in &exported {
        for marker in scripts::load_markers(body_text(detail)) {
            recorded.insert(marker, detail);
        }
    }
    let missing: Vec<&String> = forwarded
        .iter()
        .filter(|m| !recorded.contains_key(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} requests the upstream received have no record: {missing:?}",
        missing.len(),
        forwarded.len()
    );
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for detail in &exported {
        let outcome = detail["outcome"].as_str().unwrap_or("(none)").to_owned();
        match outcome.as_str() {
            "ok" => assert!(detail["response"].is_object(), "{detail:#}"),
            audit::INCOMPLETE => assert!(detail["response"].is_null(), "{detail:#}"),
            other => panic!("unexpected outcome {other} after a crash: {detail:#}"),
        }
        *outcomes.entry(outcome).or_default() += 1;
    }
    eprintln!(
        "upstream received {} requests ({partial} partial); {} exchanges recorded: {outcomes:?}",
        received.len(),
        exported.len()
    );

    // The restarted daemon records again, and the chain still verifies from genesis.
    let mut known: BTreeSet<String> = audit::ids(&exported).into_iter().collect();
    assert_ok(
        &fx.client(audit::curl::chat("gpt-4o-mini", "after the restart"))
            .run(),
    );
    let after = audit::wait_for_new_exchange(&fx.daemon, &mut known);
    assert_eq!(after["outcome"], "ok", "{after:#}");
    audit::assert_verifies(&fx.daemon);
    assert_eq!(sqlite::query(&db, "PRAGMA integrity_check"), "ok");
}
