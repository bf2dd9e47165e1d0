//! Tests of the metric families: what each recording method adds to the exposition.
use super::*;
use crate::{audit::record::PolicyRecord, policy::load::parse_rules};

fn parse_policy_text(text: &str) -> Policy {
    let file = std::path::PathBuf::from("/etc/warden/policies/test.toml");
    let rules = parse_rules(text, &file).unwrap_or_else(|e| panic!("{e}"));
    Policy {
        rules,
        limits: Vec::new(),
        files: vec![file],
    }
}

/// A caller with a pid, a command line and a secret in it: none of which may become a label.
pub(super) fn identity(account: Option<&str>, unit: Option<&str>) -> Identity {
    Identity {
        pid: 31337,
        comm: "python3".into(),
        exe: Some("/usr/bin/python3".into()),
        cmdline: Some("python3 agent.py --api-key sk-live-secret".into()),
        uid: 1000,
        user: Some("alice".into()),
        gid: 1000,
        cgroup_id: 99,
        cgroup: Some("/system.slice/agent.service".into()),
        unit: unit.map(Into::into),
        container: None,
        account: account.map(Into::into),
        k8s_service_account: None,
        k8s_sa_verified: None,
        k8s_sa_selectable: true,
        process_exited: false,
    }
}

fn metrics() -> Metrics {
    Metrics::new(LiveReadings::zero())
}

fn exposition(metrics: &Metrics) -> String {
    metrics
        .encode()
        .expect("encoding never fails into a String")
}

/// The sample lines of `family` (its name followed by `{` or a space).
fn samples<'t>(text: &'t str, family: &str) -> Vec<&'t str> {
    text.lines()
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

fn ok_exchange<'a>(identity: &'a Identity, model: Option<&'a str>) -> ExchangeEnd<'a> {
    ExchangeEnd {
        identity,
        model,
        endpoint: EndpointKind::ChatCompletions,
        outcome: Outcome::Ok,
        duration: Duration::from_millis(120),
        ttfb: Some(Duration::from_millis(30)),
        usage: Some(Usage {
            input_tokens: 12,
            output_tokens: 5,
            total_tokens: 17,
        }),
    }
}

#[test]
fn every_family_is_exposed_with_help_and_type() {
    let live = LiveReadings {
        selected_cgroups: Box::new(|| 3),
        ebpf_redirects: Box::new(|| 42),
        audit_queue_depth: Box::new(|| 7),
        audit_store_refusing: Box::new(|| 1),
        audit_write_failures: Box::new(|| vec![("disk_full", 2), ("locked", 0)]),
    };
    let metrics = Metrics::new(live);
    // A labelled family shows once it has a series.
    let caller = identity(None, Some("agent.service"));
    metrics.exchange_ended(&ok_exchange(&caller, Some("gpt-4o-mini")));
    let policy = parse_policy_text("");
    metrics.policy_decided(&policy, &PolicyRecord::default());
    let masked: MaskedValues = [("r".to_string(), [("EMAIL".to_string(), 1)].into())].into();
    metrics.masked(MaskedIn::Request, &masked);
    let text = exposition(&metrics);
    for (family, kind) in [
        ("warden_connections_total", "counter"),
        ("warden_exchanges_total", "counter"),
        ("warden_tokens_total", "counter"),
        ("warden_request_duration_seconds", "histogram"),
        ("warden_time_to_first_byte_seconds", "histogram"),
        ("warden_policy_decisions_total", "counter"),
        ("warden_masked_values_total", "counter"),
        ("warden_audit_commit_seconds", "histogram"),
        ("warden_audit_queue_depth", "gauge"),
        ("warden_audit_store_refusing", "gauge"),
        ("warden_audit_write_failures_total", "counter"),
        ("warden_selected_cgroups", "gauge"),
        ("warden_ebpf_redirects_total", "counter"),
        ("warden_build_info", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "{family} {kind} missing:\n{text}"
        );
        assert!(text.contains(&format!("# HELP {family} ")), "{text}");
    }
    assert!(text.contains("\nwarden_selected_cgroups 3\n"), "{text}");
    assert!(
        text.contains("\nwarden_ebpf_redirects_total 42\n"),
        "{text}"
    );
    assert!(text.contains("\nwarden_audit_queue_depth 7\n"), "{text}");
    assert!(text.contains("\nwarden_audit_store_refusing 1\n"), "{text}");
    assert!(
        text.contains("\nwarden_audit_write_failures_total{cause=\"disk_full\"} 2\n"),
        "{text}"
    );
    let version = format!(
        "\nwarden_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&version), "{text}");
    // The three connection kinds exist from the start, at zero.
    for kind in ["intercepted", "tunneled", "rejected"] {
        let line = format!("\nwarden_connections_total{{kind=\"{kind}\"}} 0\n");
        assert!(text.contains(&line), "{line} missing:\n{text}");
    }
}

#[test]
fn connections_are_counted_by_kind() {
    let metrics = metrics();
    metrics.connection(Disposition::Intercepted);
    metrics.connection(Disposition::Intercepted);
    metrics.connection(Disposition::Rejected);
    let text = exposition(&metrics);
    let mut lines = samples(&text, "warden_connections_total");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "warden_connections_total{kind=\"intercepted\"} 2",
            "warden_connections_total{kind=\"rejected\"} 1",
            "warden_connections_total{kind=\"tunneled\"} 0",
        ]
    );
}

#[test]
fn an_exchange_counts_once_with_its_tokens_and_timings() {
    let metrics = metrics();
    let caller = identity(Some("billing-agent"), Some("agent.service"));
    metrics.exchange_ended(&ok_exchange(&caller, Some("gpt-4o-mini")));
    let text = exposition(&metrics);
    assert_eq!(
        samples(&text, "warden_exchanges_total"),
        ["warden_exchanges_total{account=\"billing-agent\",model=\"gpt-4o-mini\",endpoint=\"chat.completions\",outcome=\"ok\"} 1"]
    );
    let mut tokens = samples(&text, "warden_tokens_total");
    tokens.sort_unstable();
    assert_eq!(
        tokens,
        [
            "warden_tokens_total{account=\"billing-agent\",model=\"gpt-4o-mini\",kind=\"input\"} 12",
            "warden_tokens_total{account=\"billing-agent\",model=\"gpt-4o-mini\",kind=\"output\"} 5",
        ]
    );
    assert!(
        text.contains("warden_request_duration_seconds_count{endpoint=\"chat.completions\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "warden_request_duration_seconds_bucket{le=\"0.25\",endpoint=\"chat.completions\"} 1\n"
        ) || text.contains(
            "warden_request_duration_seconds_bucket{endpoint=\"chat.completions\",le=\"0.25\"} 1\n"
        ),
        "120 ms falls in the 0.25 s bucket:\n{text}"
    );
    assert!(
        text.contains("warden_time_to_first_byte_seconds_count{endpoint=\"chat.completions\"} 1\n"),
        "{text}"
    );
    // Nothing that identifies a process or carries what it sent.
    for secret in [
        "31337",
        "sk-live-secret",
        "alice",
        "python3",
        "/system.slice",
    ] {
        assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
    }
}

#[test]
fn an_exchange_without_a_response_has_no_ttfb_and_no_tokens() {
    let metrics = metrics();
    let caller = identity(None, None);
    let end = ExchangeEnd {
        outcome: Outcome::ClientAborted,
        ttfb: None,
        usage: None,
        ..ok_exchange(&caller, None)
    };
    metrics.exchange_ended(&end);
    let text = exposition(&metrics);
    assert_eq!(
        samples(&text, "warden_exchanges_total"),
        ["warden_exchanges_total{account=\"unattributed\",model=\"\",endpoint=\"chat.completions\",outcome=\"client_aborted\"} 1"]
    );
    assert!(samples(&text, "warden_tokens_total").is_empty(), "{text}");
    assert!(
        samples(&text, "warden_time_to_first_byte_seconds_count").is_empty(),
        "{text}"
    );
}

#[test]
fn models_past_the_bound_are_counted_as_other() {
    let metrics = metrics();
    let caller = identity(Some("billing-agent"), None);
    let models: Vec<String> = (0..MODEL_LIMIT + 5).map(|n| format!("model-{n}")).collect();
    for model in &models {
        metrics.exchange_ended(&ok_exchange(&caller, Some(model)));
    }
    // An agent-chosen value with characters that need escaping stays one valid label.
    metrics.exchange_ended(&ok_exchange(&caller, Some("a\"b\\c\nd")));
    let text = exposition(&metrics);
    let lines = samples(&text, "warden_exchanges_total");
    assert_eq!(lines.len(), MODEL_LIMIT + 1, "{text}");
    assert!(
        lines.contains(&"warden_exchanges_total{account=\"billing-agent\",model=\"other\",endpoint=\"chat.completions\",outcome=\"ok\"} 6"),
        "{lines:#?}"
    );
    assert!(!text.contains("model-52"), "{text}");
}

#[test]
fn policy_decisions_count_the_verdict_and_each_applied_mask_rule() {
    let policy = parse_policy_text(
        r#"
[[rule]]
name = "mask-pii"
action = "mask"
recognizers = ["email"]

[[rule]]
name = "no-gpt-4"
action = "deny"
message = "no"
"#,
    );
    let metrics = metrics();
    metrics.policy_decided(
        &policy,
        &PolicyRecord {
            verdict: "deny".into(),
            rule: Some("no-gpt-4".into()),
            matched: vec!["mask-pii".into(), "no-gpt-4".into()],
            masked: Default::default(),
            grant: None,
        },
    );
    metrics.policy_decided(
        &policy,
        &PolicyRecord {
            verdict: "allow".into(),
            rule: None,
            matched: vec!["mask-pii".into()],
            masked: Default::default(),
            grant: None,
        },
    );
    let text = exposition(&metrics);
    let mut lines = samples(&text, "warden_policy_decisions_total");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "warden_policy_decisions_total{rule=\"\",action=\"allow\"} 1",
            "warden_policy_decisions_total{rule=\"mask-pii\",action=\"mask\"} 2",
            "warden_policy_decisions_total{rule=\"no-gpt-4\",action=\"deny\"} 1",
        ]
    );
}

#[test]
fn masked_values_are_counted_by_recognizer_and_direction() {
    let metrics = metrics();
    let request: MaskedValues = [(
        "mask-pii".to_string(),
        [("EMAIL".to_string(), 2), ("CREDIT_CARD".to_string(), 1)].into(),
    )]
    .into();
    let response: MaskedValues =
        [("mask-out".to_string(), [("EMAIL".to_string(), 1)].into())].into();
    metrics.masked(MaskedIn::Request, &request);
    metrics.masked(MaskedIn::Response, &response);
    let text = exposition(&metrics);
    let mut lines = samples(&text, "warden_masked_values_total");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "warden_masked_values_total{recognizer=\"CREDIT_CARD\",direction=\"request\"} 1",
            "warden_masked_values_total{recognizer=\"EMAIL\",direction=\"request\"} 2",
            "warden_masked_values_total{recognizer=\"EMAIL\",direction=\"response\"} 1",
        ]
    );
}

#[test]
fn the_audit_commit_observer_feeds_the_histogram() {
    let metrics = metrics();
    let observe = metrics.audit_commit_observer();
    observe(Duration::from_micros(300));
    observe(Duration::from_millis(3));
    let text = exposition(&metrics);
    assert!(
        text.contains("\nwarden_audit_commit_seconds_count 2\n"),
        "{text}"
    );
    assert!(
        text.contains("\nwarden_audit_commit_seconds_bucket{le=\"0.0005\"} 1\n"),
        "{text}"
    );
}
