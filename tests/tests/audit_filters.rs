//! `warden sessions list` filters: by account, cgroup, pid, uid, model glob, endpoint, outcome,
//! time (durations and RFC 3339) and limit, each returning exactly the matching exchanges.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use warden_tests::audit::{self, time::rfc3339};
use warden_tests::curl::assert_ok;
use warden_tests::daemon::Account;
use warden_tests::{require_kernel, CgroupGuard, Client, ClientOutput, FakeUpstream};

const NOBODY_UID: u32 = 65534;

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).clone()).collect()
}

#[test]
fn each_filter_returns_exactly_the_matching_exchanges() {
    let Some(e2e) = require_kernel() else { return };
    let research = CgroupGuard::new("audit-research");
    // Streams take 10 × 300 ms: long enough for curl to give up on one after a second.
    let upstream = FakeUpstream::builder()
        .chunk_delay(Duration::from_millis(300))
        .start();
    let fx = audit::fixture(&e2e, "audit-billing", upstream, |daemon, billing| {
        daemon
            .select(&research)
            .account(Account::cgroup("billing-agent", billing.path()))
            .account(Account::cgroup("research-agent", research.path()))
    });
    let billing = &fx.agent;
    let daemon = &fx.daemon;
    let in_research = |argv: Vec<String>| {
        Client::new(argv)
            .in_cgroup(&research)
            .hosts(&fx.hosts)
            .trust(&daemon.trust_bundle())
    };
    let mut known = BTreeSet::new();
    let mut next = |out: &ClientOutput| {
        let exchange = audit::wait_for_new_exchange(daemon, &mut known);
        assert_eq!(exchange["pid"], out.pid(), "{exchange:#}");
        exchange["id"].as_str().expect("an id").to_owned()
    };

    let before_all = SystemTime::now();
    // 1: billing, chat, gpt-4o-mini, ok.
    let out = fx.client(audit::curl::chat("gpt-4o-mini", "one")).run();
    assert_ok(&out);
    let e1 = next(&out);
    // 2: billing, chat, gpt-4.1, ok.
    let out2 = fx.client(audit::curl::chat("gpt-4.1", "two")).run();
    assert_ok(&out2);
    let e2 = next(&out2);
    std::thread::sleep(Duration::from_millis(20));
    let between = SystemTime::now();
    std::thread::sleep(Duration::from_millis(20));
    // 3: research, streamed chat, gpt-4.1-mini, curl gives up after 1 s: client_aborted.
    let out = in_research(audit::curl::stream_chat("gpt-4.1-mini", "three", 1)).run();
    assert_eq!(out.code(), Some(28), "curl timed out\n{out}");
    let e3 = next(&out);
    // 4: research, as nobody, GET /v1/models, ok.
    let (_bundle_dir, bundle) = audit::world_readable_copy(&daemon.trust_bundle());
    let as_nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let argv: Vec<String> = as_nobody
        .iter()
        .map(|s| (*s).to_owned())
        .chain(audit::curl::get("/v1/models"))
        .collect();
    let out = Client::new(argv)
        .in_cgroup(&research)
        .hosts(&fx.hosts)
        .trust(&bundle)
        .run();
    assert_ok(&out);
    let e4 = next(&out);

    let all = audit::list(daemon, &[]);
    assert_eq!(
        audit::ids(&all),
        vec![e4.clone(), e3.clone(), e2.clone(), e1.clone()],
        "newest first"
    );
    let field = |id: &str, name: &str| -> Value {
        let exchange = all.iter().find(|e| e["id"] == id).expect("listed");
        exchange[name].clone()
    };
    assert_eq!(field(&e1, "account"), "billing-agent");
    assert_eq!(field(&e3, "account"), "research-agent");
    assert_eq!(field(&e3, "outcome"), "client_aborted");
    assert_eq!(field(&e4, "uid"), NOBODY_UID);
    assert_eq!(field(&e4, "endpoint"), "models");

    let pid2 = format!("pid:{}", out2.pid());
    let billing_cgroup = format!("cgroup:{}", billing.path());
    let research_cgroup = format!("cgroup:{}", research.path());
    let nobody = format!("uid:{NOBODY_UID}");
    let between = rfc3339(between);
    let before_all = rfc3339(before_all);
    let cases: Vec<(Vec<&str>, BTreeSet<String>)> = vec![
        (
            vec!["--identity", "account:billing-agent"],
            set(&[&e1, &e2]),
        ),
        (vec!["--identity", "account:research-*"], set(&[&e3, &e4])),
        (vec!["--identity", &billing_cgroup], set(&[&e1, &e2])),
        (vec!["--identity", &research_cgroup], set(&[&e3, &e4])),
        (vec!["--identity", &pid2], set(&[&e2])),
        (vec!["--identity", "uid:0"], set(&[&e1, &e2, &e3])),
        (vec!["--identity", &nobody], set(&[&e4])),
        (vec!["--model", "gpt-4.1*"], set(&[&e2, &e3])),
        (vec!["--model", "gpt-4o-mini"], set(&[&e1])),
        (
            vec!["--endpoint", "chat.completions"],
            set(&[&e1, &e2, &e3]),
        ),
        (vec!["--endpoint", "models"], set(&[&e4])),
        (vec!["--outcome", "ok"], set(&[&e1, &e2, &e4])),
        (vec!["--outcome", "client_aborted"], set(&[&e3])),
        (vec!["--since", "1h"], set(&[&e1, &e2, &e3, &e4])),
        (vec!["--since", &between], set(&[&e3, &e4])),
        (vec!["--until", &between], set(&[&e1, &e2])),
        (vec!["--until", &before_all], set(&[])),
        (vec!["--limit", "1"], set(&[&e4])),
        (vec!["--limit", "2"], set(&[&e4, &e3])),
        (
            vec!["--identity", "account:billing-agent", "--model", "gpt-4.1*"],
            set(&[&e2]),
        ),
    ];
    let mut failures = Vec::new();
    for (args, expected) in &cases {
        let got = audit::list_ids(daemon, args);
        if &got != expected {
            failures.push(format!("{args:?}: got {got:?}, expected {expected:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "ids e1..e4 = {:?}\n{}",
        [&e1, &e2, &e3, &e4],
        failures.join("\n")
    );

    // Export takes the same filters, oldest first.
    let exported = audit::export(daemon, &["--identity", "account:research-agent"]);
    assert_eq!(audit::ids(&exported), vec![e3.clone(), e4.clone()]);

    // A selector with an unknown prefix is refused, naming the valid ones.
    let bad = daemon.cli("sessions", &["list", "--identity", "bogus:x"]);
    assert!(!bad.status.success(), "{bad}");
    assert!(
        bad.stderr.contains("bogus") && bad.stderr.contains("account"),
        "{bad}"
    );

    // The table: a header and one row per exchange.
    let table = daemon.cli("sessions", &["list"]);
    table.assert_success();
    let rows: Vec<&str> = table
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), 5, "{table}");
    assert!(
        rows[0].contains("MODEL") && rows[0].contains("OUTCOME"),
        "{table}"
    );
    assert!(table.stdout.contains("billing-agent"), "{table}");
}
