//! Anomaly detection end to end, with the official openai Python SDK in selected cgroups and an
//! audit store seeded with three days of history (written by Warden's own AuditWriter before the
//! daemon starts): calls at the baseline rate raise nothing, a synthetic spike raises a
//! `request_spike` alert whose `block` action revokes exactly that identity (the SDK's next call
//! is `PermissionDeniedError` identity_revoked while another identity still works), `warden
//! restore` lifts it; and a real-looking provider key presented on a host with credential custody
//! raises a `real_key` alert on that exchange.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use warden::audit::record::PolicyRecord;
use warden::audit::{
    AuditRecord, AuditWriter, ExchangeRequest, ExchangeResponse, IdentitySnapshot, Outcome,
    RecordedBody, RequestParams,
};
use warden_tests::audit::{self, sqlite};
use warden_tests::custody::{
    assert_secret_nowhere, credential_toml, sdk_chat_presenting, SecretDir, ACCOUNT, CREDENTIAL,
};
use warden_tests::daemon::{Account, Daemon};
use warden_tests::policy::PolicyAgent;
use warden_tests::prometheus::Exposition;
use warden_tests::{require_kernel, require_python, wait, AgentFixture, CgroupGuard, FakeUpstream};

const SPIKY: &str = "spike-a";
const STEADY: &str = "spike-b";
const MODEL: &str = "gpt-4o-mini";
const HOUR_US: i64 = 3_600_000_000;
/// Exchanges per hour in the seeded history: 4 and 5 in turn (mean 4.5, stddev 0.5).
const BASELINE_PER_HOUR: [u64; 2] = [4, 5];
/// The spike floor the test configures: the 15th call of an hour is a spike (k·σ alone says 6).
const SPIKE_FLOOR: u64 = 15;
const WAIT: Duration = Duration::from_secs(30);

/// Calls the chat API up to `CALLS` times, stopping at the first error; prints how many
/// succeeded and the error (class, status, code, x-should-retry).
const CALL_UNTIL_REFUSED: &str = r#"
import json, os
import openai
from openai import OpenAI

client = OpenAI(api_key="sk-test", max_retries=0)
out = {"ok": 0}
for _ in range(int(os.environ["CALLS"])):
    try:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}],
        )
        out["ok"] += 1
    except openai.APIStatusError as e:
        out.update(
            error=type(e).__name__, status=e.status_code, code=e.code,
            should_retry=e.response.headers.get("x-should-retry"),
        )
        break
print(json.dumps(out))
"#;

fn now_us() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since.as_micros()).expect("µs fit an i64")
}

/// Three days of history for each account, every hour of the day, before the current hour.
fn seed_history(dir: &Path, accounts: &[&str]) {
    let writer = AuditWriter::start(&dir.join("audit.db"), Default::default())
        .expect("starting an audit writer on the seed store");
    let this_hour = now_us().div_euclid(HOUR_US);
    let mut n = 0u64;
    for hour in this_hour - 72..this_hour {
        for account in accounts {
            let per_hour = BASELINE_PER_HOUR[(hour % 2) as usize];
            for i in 0..per_hour {
                n += 1;
                let started = hour * HOUR_US + i as i64 * 60_000_000;
                let id = format!("ex-seed-{n:06}");
                for record in exchange(&id, account, started) {
                    writer
                        .commit_blocking(record)
                        .expect("committing a seed record");
                }
            }
        }
    }
    writer.shutdown();
}

fn exchange(id: &str, account: &str, started_us: i64) -> [AuditRecord; 2] {
    let request = ExchangeRequest {
        exchange_id: id.to_owned(),
        connection_id: format!("co-{id}"),
        started_at_us: started_us,
        identity: IdentitySnapshot {
            pid: 4242,
            comm: "python3".into(),
            uid: 0,
            user: Some("root".into()),
            account: Some(account.to_owned()),
            ..IdentitySnapshot::default()
        },
        method: "POST".into(),
        host: "api.openai.com".into(),
        path: "/v1/chat/completions".into(),
        endpoint: "chat.completions".into(),
        model: Some(MODEL.into()),
        params: RequestParams::default(),
        headers: Vec::new(),
        body: RecordedBody::default(),
        policy: PolicyRecord::default(),
    };
    let response = ExchangeResponse {
        exchange_id: id.to_owned(),
        ended_at_us: started_us + 500_000,
        status: Some(200),
        headers: Vec::new(),
        body: None,
        streamed: false,
        events: Vec::new(),
        assembled: None,
        ttfb_ms: Some(100.0),
        duration_ms: 500.0,
        outcome: Outcome::Ok,
        reason: None,
        masked: Default::default(),
    };
    [
        AuditRecord::Request(request),
        AuditRecord::Response(response),
    ]
}

struct Agents {
    fx: AgentFixture,
    /// The second identity, selected too.
    steady: CgroupGuard,
    python: PathBuf,
    _seed: tempfile::TempDir,
}

impl Agents {
    fn start(name: &str, extra: &str) -> Option<Self> {
        let e2e = require_kernel()?;
        let python = require_python()?;
        let seed = tempfile::tempdir().expect("a seed directory");
        seed_history(seed.path(), &[SPIKY, STEADY]);
        let steady = CgroupGuard::new(&format!("{name}-steady"));
        let fx = audit::fixture(&e2e, name, FakeUpstream::start(), |daemon, agent| {
            daemon
                .account(Account::cgroup(SPIKY, agent.path()))
                .account(Account::cgroup(STEADY, steady.path()))
                .select(&steady)
                .metrics()
                .seed_state_dir(seed.path())
                .extra_config(extra)
        });
        Some(Agents {
            fx,
            steady,
            python,
            _seed: seed,
        })
    }

    /// `CALLS` calls from `cgroup`; what the script printed.
    fn calls(&self, cgroup: &CgroupGuard, calls: u64) -> Value {
        let out = warden_tests::Client::new([
            self.python.as_os_str(),
            OsStr::new("-c"),
            OsStr::new(CALL_UNTIL_REFUSED),
        ])
        .in_cgroup(cgroup)
        .hosts(&self.fx.hosts)
        .trust(&self.fx.daemon.trust_bundle())
        .env("CALLS", calls.to_string())
        .timeout(Duration::from_secs(300))
        .run();
        out.assert_success();
        out.last_line_json()
    }

    fn metrics(&self) -> Exposition {
        Exposition::scrape(&self.fx.daemon.metrics_url())
    }

    /// Waits until the detectors have judged `n` exchanges of this run.
    fn wait_judged(&self, n: u64) {
        wait::until("the detectors to judge the exchanges", WAIT, || {
            let judged = self
                .metrics()
                .value("warden_anomaly_observed_exchanges_total", &[])
                .unwrap_or(0.0);
            (judged >= n as f64).then_some(())
        });
    }
}

/// The chain's governance records of `type`.
fn governance(daemon: &Daemon, kind: &str) -> Vec<Value> {
    let rows = sqlite::query(
        &audit::db_path(daemon),
        "SELECT body FROM records WHERE kind = 'governance' ORDER BY seq",
    );
    rows.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .filter(|record| record["event"]["type"] == kind)
        .collect()
}

#[test]
fn a_spike_alerts_and_blocks_that_identity_alone_while_the_baseline_rate_raises_nothing() {
    let config = format!(
        "[anomaly.request_spike]\naction = \"block\"\nk = 3.0\nmin_per_hour = {SPIKE_FLOOR}\n"
    );
    let Some(agents) = Agents::start("anomaly-spike", &config) else {
        return;
    };
    let daemon = &agents.fx.daemon;
    let learned = daemon.wait_for_log("the baseline learned", WAIT, |l| {
        l.message() == "anomaly baseline learned from the audit store"
    });
    assert_eq!(learned.u64("identities"), Some(2), "{learned}");

    // The baseline rate: nothing, from any detector (the model, the hours, the rate are usual).
    let printed = agents.calls(&agents.fx.agent, 3);
    assert_eq!(printed["ok"], 3, "{printed:#}");
    let printed = agents.calls(&agents.steady, 3);
    assert_eq!(printed["ok"], 3, "{printed:#}");
    agents.wait_judged(6);
    assert_eq!(governance(daemon, "alert"), Vec::<Value>::new());
    assert_eq!(
        agents.metrics().value(
            "warden_anomaly_alerts_total",
            &[("detector", "request_spike"), ("action", "block")]
        ),
        None
    );

    // The spike: calls until Warden refuses; the block lands once the floor is passed.
    let printed = agents.calls(&agents.fx.agent, 4 * SPIKE_FLOOR);
    assert_eq!(printed["error"], "PermissionDeniedError", "{printed:#}");
    assert_eq!(printed["status"], 403, "{printed:#}");
    assert_eq!(printed["code"], "identity_revoked", "{printed:#}");
    assert_eq!(printed["should_retry"], "false", "{printed:#}");
    let served = printed["ok"].as_u64().unwrap_or(0);
    assert!(
        served + 3 >= SPIKE_FLOOR - 1,
        "cut off before the floor: {printed:#}"
    );

    let alerts = governance(daemon, "alert");
    assert_eq!(
        alerts.len(),
        1,
        "one alert, repeats suppressed: {alerts:#?}"
    );
    let alert = &alerts[0];
    let event = &alert["event"];
    assert_eq!(event["detector"], "request_spike", "{alert:#}");
    assert_eq!(event["selector"], format!("account:{SPIKY}"), "{alert:#}");
    assert_eq!(event["action"], "block", "{alert:#}");
    let details = &event["details"];
    assert!(
        details["observed"].as_f64() >= Some(SPIKE_FLOOR as f64),
        "{alert:#}"
    );
    assert_eq!(details["mean"], 4.5, "{alert:#}");
    assert_eq!(details["stddev"], 0.5, "{alert:#}");
    assert_eq!(details["baseline_hours"], 72, "{alert:#}");
    let listed = daemon.cli("alerts", &["--json"]);
    assert!(listed.status.success(), "{listed}");
    let listed: Value = serde_json::from_str(listed.stdout.trim()).expect("a JSON array");
    assert_eq!(listed[0]["detector"], "request_spike", "{listed:#}");
    assert_eq!(listed[0]["exchange_id"], alert["exchange_id"], "{listed:#}");
    let tipped = alert["exchange_id"]
        .as_str()
        .expect("the exchange that tipped it");
    let shown = audit::show(daemon, tipped);
    assert_eq!(shown["outcome"], "ok", "{shown:#}");

    let revoked = governance(daemon, "revoked");
    assert_eq!(revoked.len(), 1, "{revoked:#?}");
    let event = &revoked[0]["event"];
    assert_eq!(event["selector"], format!("account:{SPIKY}"), "{event:#}");
    assert_eq!(
        event["by"]["user"], "warden (anomaly detection)",
        "{event:#}"
    );
    let reason = event["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("request_spike") && reason.contains("requests this hour"),
        "{reason}"
    );
    let metrics = agents.metrics();
    assert_eq!(
        metrics.expect(
            "warden_anomaly_alerts_total",
            &[("detector", "request_spike"), ("action", "block")]
        ),
        1.0
    );

    // Exactly that identity: the other one still works.
    let printed = agents.calls(&agents.steady, 1);
    assert_eq!(printed["ok"], 1, "{printed:#}");

    // Until an admin restores it; the spike goes on within the hour, but its repeat is suppressed.
    let out = daemon.cli("restore", &[&format!("account:{SPIKY}")]);
    assert!(out.status.success(), "{out}");
    let judged_before = agents
        .metrics()
        .value("warden_anomaly_observed_exchanges_total", &[])
        .unwrap_or(0.0) as u64;
    let printed = agents.calls(&agents.fx.agent, 1);
    assert_eq!(printed["ok"], 1, "{printed:#}");
    agents.wait_judged(judged_before + 1);
    assert_eq!(governance(daemon, "alert").len(), 1);
    assert_eq!(governance(daemon, "revoked").len(), 1);
    assert!(
        agents.metrics().expect(
            "warden_anomaly_suppressed_total",
            &[("detector", "request_spike")]
        ) >= 1.0
    );
    audit::assert_verifies(daemon);
}

#[test]
fn a_real_looking_key_presented_under_custody_raises_an_alert_on_that_exchange() {
    /// A provider key that leaked onto the agent's host.
    const LEAKED_KEY: &str = "sk-proj-LEAKEDkey0123456789abcdefghijklmnopQRST";
    const PLACEHOLDER: &str = "warden-placeholder";
    let secrets = SecretDir::new();
    let key_file = secrets.write(CREDENTIAL, "sk-custodied-REAL-key-0f3c9a7d51e24b8c", 0o600);
    let identity = format!("account:{ACCOUNT}");
    let Some(agent) = PolicyAgent::start("anomaly-real-key", |daemon, agent| {
        daemon
            .account(Account::cgroup(ACCOUNT, agent.path()))
            .metrics()
            .extra_config(&credential_toml(CREDENTIAL, &key_file, &[&identity]))
    }) else {
        return;
    };
    let daemon = &agent.fx.daemon;
    // A placeholder is what custody expects: no alert.
    let served = sdk_chat_presenting(&agent, &agent.fx.agent, PLACEHOLDER);
    assert!(served["error"].is_null(), "{served:#}");
    // The leaked key: custody replaces it (presented = "replace"), and the detector says so.
    let served = sdk_chat_presenting(&agent, &agent.fx.agent, LEAKED_KEY);
    assert!(served["error"].is_null(), "{served:#}");

    let alerts = wait::until("the real_key alert", WAIT, || {
        let alerts = governance(daemon, "alert");
        (!alerts.is_empty()).then_some(alerts)
    });
    let ids = audit::list_ids(daemon, &[]);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let event = &alerts[0]["event"];
    assert_eq!(event["detector"], "real_key", "{alerts:#?}");
    assert_eq!(event["selector"], identity, "{alerts:#?}");
    assert_eq!(event["action"], "alert", "{alerts:#?}");
    // On the exchange that presented it (the newer one), and `sessions show` tells it.
    let leaked_exchange = alerts[0]["exchange_id"].as_str().unwrap_or_default();
    assert_eq!(
        Some(leaked_exchange),
        ids.last().map(String::as_str),
        "{alerts:#?}"
    );
    let text = daemon.cli("sessions", &["show", leaked_exchange]);
    assert!(
        text.stdout
            .contains("anomaly real_key (alert) for account:custodied-agent"),
        "{text}"
    );
    assert_eq!(
        Exposition::scrape(&daemon.metrics_url()).expect(
            "warden_anomaly_alerts_total",
            &[("detector", "real_key"), ("action", "alert")]
        ),
        1.0
    );
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_secret_nowhere(daemon, LEAKED_KEY, &[]);
    audit::assert_verifies(daemon);
}
