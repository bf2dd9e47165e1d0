//! The life of a held request beyond its decision, end to end with the official openai Python SDK
//! in a selected cgroup: a client that gives up cancels its approval; a daemon killed or stopped
//! while requests are held closes them as interrupted; `warden approvals watch` prints each new
//! request; the webhook receives a Slack-compatible POST and the pending gauge counts the hold;
//! and a thousand held requests cost the daemon no CPU while they wait.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use warden_tests::approvals::{id, ApprovalAgent, HOLD_MANY, RULE};
use warden_tests::prometheus::Exposition;
use warden_tests::{audit, wait};

/// How long a thousand held requests may take to be opened and recorded.
const THOUSAND_TIMEOUT: Duration = Duration::from_secs(180);

fn governance_types(agent: &ApprovalAgent, exchange_id: &str) -> Vec<String> {
    let detail = audit::show(&agent.agent.fx.daemon, exchange_id);
    detail["governance"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .filter_map(|r| r["event"]["type"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until exchange `exchange_id` has ended; its `sessions list` object.
fn ended(agent: &ApprovalAgent, exchange_id: &str) -> Value {
    wait::until("the held exchange to end", audit::RECORD_TIMEOUT, || {
        audit::list(&agent.agent.fx.daemon, &["--limit", "1000"])
            .into_iter()
            .find(|e| e["id"] == exchange_id && e["outcome"] != audit::INCOMPLETE)
    })
}

#[test]
fn the_client_giving_up_cancels_its_approval() {
    let Some(agent) = ApprovalAgent::start("approval-cancel", "60s", |d| d) else {
        return;
    };
    let mut known = BTreeSet::new();
    let running = agent.spawn_chat("Say hello", Some(3.0));
    let pending = agent.wait_for_pending(&mut known);

    let call = agent.finish(running);
    assert_eq!(
        call.error()["class"],
        "APITimeoutError",
        "{:#}",
        call.printed
    );
    let exchange_id = pending["exchange_id"].as_str().unwrap();
    let summary = ended(&agent, exchange_id);
    assert_eq!(summary["outcome"], "client_aborted", "{summary:#}");
    wait::until("the cancellation on record", audit::RECORD_TIMEOUT, || {
        (governance_types(&agent, exchange_id) == ["approval_requested", "approval_cancelled"])
            .then_some(())
    });
    assert!(
        agent.pending().is_empty(),
        "a cancelled approval is no longer pending"
    );
    assert_eq!(agent.state_of(id(&pending))["state"], "cancelled");
    agent.agent.assert_upstream_got_nothing();
    audit::assert_verifies(&agent.agent.fx.daemon);
}

#[test]
fn approvals_pending_when_the_daemon_stops_are_closed_as_interrupted() {
    let Some(mut agent) = ApprovalAgent::start("approval-restart", "60s", |d| d) else {
        return;
    };
    let mut known = BTreeSet::new();

    // A crash: the next start finds the approval open in the chain and closes it.
    let crashed = agent.spawn_chat("Say hello", Some(5.0));
    let first = agent.wait_for_pending(&mut known);
    agent.agent.fx.daemon.kill9();
    assert!(!agent.finish(crashed).error().is_null());
    agent.agent.fx.daemon.restart();
    let ready = agent
        .agent
        .fx
        .daemon
        .wait_for_log("warden ready", audit::RECORD_TIMEOUT, |l| {
            l.is("warden ready")
        });
    assert_eq!(ready.u64("interrupted_approvals"), Some(1), "{ready}");
    let exchange_id = first["exchange_id"].as_str().unwrap();
    assert_eq!(
        governance_types(&agent, exchange_id),
        ["approval_requested", "approval_interrupted"]
    );
    assert_eq!(agent.state_of(id(&first))["state"], "interrupted");

    // A clean stop: held requests are refused at once and their approvals interrupted.
    let stopped = agent.spawn_chat("Say hello again", None);
    let second = agent.wait_for_pending(&mut known);
    agent.agent.fx.daemon.stop(libc::SIGTERM);
    let call = agent.finish(stopped);
    assert_eq!(call.error()["status"], 503, "{:#}", call.printed);
    assert_eq!(
        call.error()["code"],
        "approval_interrupted",
        "{:#}",
        call.printed
    );
    let exchange_id = second["exchange_id"].as_str().unwrap();
    assert_eq!(
        governance_types(&agent, exchange_id),
        ["approval_requested", "approval_interrupted"]
    );
    agent.agent.assert_upstream_got_nothing();
    audit::assert_verifies(&agent.agent.fx.daemon);
}

#[test]
fn watch_prints_each_new_request_as_it_arrives() {
    let Some(agent) = ApprovalAgent::start("approval-watch", "60s", |d| d) else {
        return;
    };
    let mut watcher = agent.watch_as(&agent.people.alice);
    let mut known = BTreeSet::new();
    for prompt in ["First question", "Second question"] {
        let running = agent.spawn_chat(prompt, None);
        let pending = agent.wait_for_pending(&mut known);
        let line = watcher
            .wait_for_stdout_line(audit::RECORD_TIMEOUT, |l| l.contains(id(&pending)))
            .unwrap_or_else(|| panic!("the watcher did not print {}", id(&pending)));
        let printed: Value = serde_json::from_str(&line).expect("watch --json prints JSON");
        assert_eq!(printed["rule"], RULE);
        assert!(printed["excerpt"]
            .as_str()
            .unwrap_or_default()
            .contains(prompt));
        agent
            .cli_as(&agent.people.alice, &["approve", id(&pending)])
            .assert_success();
        agent.finish(running).assert_allowed();
    }
}

/// A one-shot HTTP receiver on 127.0.0.1: the body of the first POST, answered 200.
fn webhook_receiver() -> (u16, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the webhook receiver");
    let port = listener.local_addr().unwrap().port();
    let (sent, received) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream);
        let mut length = 0usize;
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            line.clear();
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_ok() {
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = sent.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
        }
    });
    (port, received)
}

#[test]
fn the_webhook_gets_a_slack_style_post_and_the_gauge_counts_the_hold() {
    let (port, posted) = webhook_receiver();
    let webhook = format!("[approvals]\nwebhook = \"http://127.0.0.1:{port}/hooks/warden\"\n");
    let Some(agent) = ApprovalAgent::start("approval-webhook", "60s", |d| {
        d.extra_config(&webhook).metrics()
    }) else {
        return;
    };
    let mut known = BTreeSet::new();
    let running = agent.spawn_chat("Say hello", None);
    let pending = agent.wait_for_pending(&mut known);

    let body = posted
        .recv_timeout(audit::RECORD_TIMEOUT)
        .expect("the webhook receives a POST");
    let text = body["text"].as_str().unwrap_or_default();
    assert!(
        text.contains(id(&pending)) && text.contains(RULE),
        "{body:#}"
    );
    assert_eq!(body["approval"]["id"], id(&pending), "{body:#}");
    let metrics = agent.agent.fx.daemon.metrics_url();
    assert_eq!(
        Exposition::scrape(&metrics).expect("warden_approvals_pending", &[]),
        1.0
    );

    agent
        .cli_as(&agent.people.alice, &["approve", id(&pending)])
        .assert_success();
    agent.finish(running).assert_allowed();
    let scraped = Exposition::scrape(&metrics);
    assert_eq!(scraped.expect("warden_approvals_pending", &[]), 0.0);
    assert_eq!(
        scraped.expect(
            "warden_approval_decisions_total",
            &[("outcome", "approved")]
        ),
        1.0
    );
    assert_eq!(
        scraped.value("warden_approval_webhook_failures_total", &[]),
        Some(0.0)
    );
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading the daemon's stat");
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_thousand_held_requests_cost_no_cpu_while_they_wait() {
    const HELD: usize = 1000;
    let Some(agent) = ApprovalAgent::start("approval-thousand", "10m", |d| d) else {
        return;
    };
    let client = agent
        .agent
        .fx
        .client([
            agent.agent.python.as_os_str(),
            OsStr::new("-c"),
            OsStr::new(HOLD_MANY),
        ])
        .env("WARDEN_TEST_HELD", HELD.to_string())
        .timeout(Duration::from_secs(600));
    let mut running = client.spawn();
    running
        .wait_for_stdout_line(THOUSAND_TIMEOUT, |l| l == format!("sent {HELD}"))
        .expect("the client opened and sent every request");
    wait::until("a thousand pending approvals", THOUSAND_TIMEOUT, || {
        (agent.pending().len() == HELD).then_some(())
    });

    // A resource check, not a timing test: over a few seconds of waiting, the daemon's CPU time
    // barely moves (a polling hold would spend ticks on every request, every poll).
    let pid = agent.agent.fx.daemon.warden_pid();
    let before = cpu_ticks(pid);
    let window = Duration::from_secs(5);
    let spent = wait::within(window, || {
        let spent = cpu_ticks(pid) - before;
        // Fail early if it is already far over the bound.
        (spent > 50).then_some(spent)
    });
    let spent = spent.unwrap_or_else(|| cpu_ticks(pid) - before);
    eprintln!("{HELD} held requests: the daemon spent {spent} CPU ticks over {window:?}");
    assert!(
        spent <= 50,
        "{HELD} held requests cost the daemon {spent} CPU ticks over {window:?} (bound: 50, 0.5 s)"
    );
    agent.agent.assert_upstream_got_nothing();

    // The client leaves: every approval is cancelled.
    drop(running);
    wait::until("every approval cancelled", THOUSAND_TIMEOUT, || {
        agent.pending().is_empty().then_some(())
    });
}
