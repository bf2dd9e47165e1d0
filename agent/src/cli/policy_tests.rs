use std::path::Path;

use clap::Parser;
use serde_json::json;

use super::*;
use crate::cli::Command;

const POLICY: &str = r#"
[[rule]]
name = "approved-models-only"
action = "deny"
message = "Only gpt-4o-mini"
[rule.match]
model_not_in = ["gpt-4o-mini"]

[[rule]]
name = "prod-needs-review"
action = "approve"
approvers = ["group:secops"]
[rule.match]
identity = ["account:prod-*", "uid:1001"]

[[rule]]
name = "mask-pii"
action = "mask"
recognizers = ["email"]
patterns = [{ name = "employee_id", regex = "EMP-\\d{6}" }]
"#;

fn compiled() -> CompiledPolicy {
    let rules = policy::load::parse_rules(POLICY, Path::new("test.toml")).unwrap();
    CompiledPolicy::compile(Policy {
        rules,
        limits: Vec::new(),
        files: Vec::new(),
    })
    .unwrap()
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn selectors(texts: &[&str]) -> Vec<IdentitySelector> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

fn test_args(argv: &[&str]) -> (Cli, TestArgs) {
    let cli = Cli::try_parse_from(argv).unwrap();
    let Command::Policy(PolicyArgs {
        command: PolicyCommand::Test(args),
    }) = Cli::try_parse_from(argv).unwrap().command
    else {
        panic!("not policy test")
    };
    (cli, args)
}

#[test]
fn identity_fields_describe_the_caller() {
    let caller = caller_identity(&selectors(&[
        "account:billing-agent",
        "unit:x.service",
        "uid:1001",
        "sa:prod/api",
        "exe:/usr/bin/python3",
    ]))
    .unwrap();
    assert_eq!(caller.account.as_deref(), Some("billing-agent"));
    assert_eq!(caller.unit.as_deref(), Some("x.service"));
    assert_eq!(caller.uid, 1001);
    assert_eq!(caller.k8s_sa.as_deref(), Some("prod/api"));
    assert_eq!(caller.exe.as_deref(), Some("/usr/bin/python3"));
    assert_eq!(caller.user, None);

    let nobody = caller_identity(&[]).unwrap();
    assert_eq!(nobody.uid, u32::MAX, "an unspecified uid must not be root");
}

#[test]
fn identity_fields_are_values_given_once() {
    let glob = caller_identity(&selectors(&["account:prod-*"])).unwrap_err();
    assert_eq!(
        glob.to_string(),
        "--identity account:prod-*: describes the caller, so it is a value, not a pattern: no * or ?"
    );
    let twice = caller_identity(&selectors(&["uid:1", "uid:2"])).unwrap_err();
    assert_eq!(
        twice.to_string(),
        "--identity uid:2: uid: is given more than once; a caller has one"
    );
}

#[test]
fn request_must_be_a_json_object() {
    let error = parse_request(b"{\"model\": ", "r.json", None).unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("--request r.json: not valid JSON: ") && text.contains("line 1 column"),
        "{text}"
    );
    let error = parse_request(b"[1]", "stdin", None).unwrap_err();
    assert_eq!(
        error.to_string(),
        "--request stdin: expected a JSON object (an OpenAI request body), found an array"
    );
    let body = parse_request(br#"{"model":"a","n":1}"#, "r.json", Some("b")).unwrap();
    assert_eq!(body, json!({"model": "b", "n": 1}));
}

#[test]
fn allowed_request_is_masked() {
    let body = chat("gpt-4o-mini", "mail jane@example.com about EMP-123456");
    let report = evaluate(
        &compiled(),
        &caller_identity(&[]).unwrap(),
        "api.openai.com",
        EndpointKind::ChatCompletions,
        body,
    );
    assert_eq!(report.decision, "allow");
    assert_eq!(report.rule, None);
    assert_eq!(report.message, None);
    assert_eq!(report.matched, ["mask-pii"]);
    let counts = &report.masked["mask-pii"];
    assert_eq!(counts["EMAIL"], 1);
    assert_eq!(counts["EMPLOYEE_ID"], 1);
    assert_eq!(
        report.body,
        chat("gpt-4o-mini", "mail [EMAIL] about [EMPLOYEE_ID]")
    );
    assert_eq!(
        report.render_text(),
        format!(
            "decision: allow\nmatched: mask-pii\nmasked:\n  mask-pii EMAIL: 1\n  mask-pii EMPLOYEE_ID: 1\nbody:\n{}\n",
            serde_json::to_string_pretty(&report.body).unwrap()
        )
    );
}

#[test]
fn deny_wins_and_carries_the_rule_message() {
    let caller = caller_identity(&selectors(&["account:prod-api"])).unwrap();
    let report = evaluate(
        &compiled(),
        &caller,
        "api.openai.com",
        EndpointKind::ChatCompletions,
        chat("gpt-4o", "hello"),
    );
    assert_eq!(report.decision, "deny");
    assert_eq!(report.rule.as_deref(), Some("approved-models-only"));
    assert_eq!(report.message.as_deref(), Some("Only gpt-4o-mini"));
    assert_eq!(
        report.matched,
        ["approved-models-only", "prod-needs-review", "mask-pii"]
    );
    assert!(report.masked.is_empty());
    let text = report.render_text();
    assert!(text.starts_with(
        "decision: deny by approved-models-only: Only gpt-4o-mini\nmatched: approved-models-only, prod-needs-review, mask-pii\nmasked: nothing\nbody:\n"
    ), "{text}");
}

#[test]
fn approve_matches_by_uid() {
    let caller = caller_identity(&selectors(&["uid:1001"])).unwrap();
    let report = evaluate(
        &compiled(),
        &caller,
        "api.openai.com",
        EndpointKind::ChatCompletions,
        chat("gpt-4o-mini", "hi"),
    );
    assert_eq!(report.decision, "approve");
    assert_eq!(report.rule.as_deref(), Some("prod-needs-review"));
    assert_eq!(
        report.message.as_deref(),
        Some("the request is held until one of group:secops approves it (timeout 2m)")
    );
    assert!(report
        .render_text()
        .starts_with("decision: approval required by prod-needs-review ("));
    let json = serde_json::to_value(&report).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["body", "decision", "masked", "matched", "message", "rule"]
    );
}

#[test]
fn test_command_parses_its_options() {
    let (_, args) = test_args(&[
        "warden",
        "policy",
        "test",
        "--request",
        "-",
        "--endpoint",
        "responses",
        "--identity",
        "account:billing-agent",
        "--identity",
        "uid:1001",
        "--model",
        "gpt-4o",
        "--json",
    ]);
    assert_eq!(args.request, Path::new("-"));
    assert_eq!(args.endpoint, EndpointKind::Responses);
    assert_eq!(
        args.identity,
        selectors(&["account:billing-agent", "uid:1001"])
    );
    assert_eq!(args.model.as_deref(), Some("gpt-4o"));
    assert_eq!(args.host, "api.openai.com");
    assert!(args.json && args.policy.is_none());

    let (_, args) = test_args(&["warden", "policy", "test", "--request", "r.json"]);
    assert_eq!(args.endpoint, EndpointKind::ChatCompletions);

    for bad in [
        ["--endpoint", "chat"],
        ["--identity", "nobody"],
        ["--identity", "uid:x"],
    ] {
        let argv = [
            &["warden", "policy", "test", "--request", "r.json"][..],
            &bad,
        ]
        .concat();
        let error = Cli::try_parse_from(argv).unwrap_err();
        assert_eq!(error.exit_code(), 2, "{bad:?}");
    }
}

#[test]
fn run_test_reads_files_and_reports_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("p.toml");
    std::fs::write(&policy_path, POLICY).unwrap();
    let request = dir.path().join("r.json");
    std::fs::write(&request, chat("gpt-4o-mini", "x@example.org").to_string()).unwrap();
    let argv = |request: &Path, policy: &Path| {
        let (request, policy) = (request.to_str().unwrap(), policy.to_str().unwrap());
        let argv = ["warden", "policy", "test", "--json", "--request", request];
        test_args(&[&argv[..], &["--policy", policy]].concat())
    };

    let (cli, args) = argv(&request, &policy_path);
    let output: Value = serde_json::from_str(&run_test(&cli, &args).unwrap()).unwrap();
    assert_eq!(output["decision"], "allow");
    assert_eq!(output["body"], chat("gpt-4o-mini", "[EMAIL]"));

    let (cli, args) = argv(&dir.path().join("missing.json"), &policy_path);
    let error = run_test(&cli, &args).unwrap_err().to_string();
    assert!(error.contains("missing.json: cannot read: "), "{error}");

    std::fs::write(&policy_path, "[[rule]]\nname = \"x\"\naction = \"block\"\n").unwrap();
    let (cli, args) = argv(&request, &policy_path);
    let error = run_test(&cli, &args).unwrap_err();
    assert!(matches!(&error, TestError::Policy { problems, .. } if problems.len() == 1));
    let text = error.to_string();
    assert!(
        text.ends_with(&format!("\n1 problem in {}", policy_path.display())),
        "{text}"
    );
}

#[test]
fn run_test_refuses_a_body_the_daemon_cannot_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("p.toml");
    std::fs::write(&policy_path, POLICY).unwrap();
    let request = dir.path().join("r.json");
    let (policy, request_arg) = (policy_path.to_str().unwrap(), request.to_str().unwrap());
    let argv = ["warden", "policy", "test", "--request", request_arg];
    let (cli, args) = test_args(&[&argv[..], &["--policy", policy]].concat());
    // A duplicated key: the policy would judge one copy and the upstream could read the other.
    let duplicated = r#"{"model":"gpt-4o-mini","temperature":0.1,"temperature":1.9}"#;
    // A mistyped field: the policy would judge it as absent.
    let mistyped = r#"{"model":"gpt-4o-mini","max_tokens":"lots"}"#;
    for body in [duplicated, mistyped] {
        std::fs::write(&request, body).unwrap();
        let error = run_test(&cli, &args).unwrap_err().to_string();
        assert!(
            error.contains("the daemon refuses this body with 400 invalid_body"),
            "{body}: {error}"
        );
    }
    std::fs::write(&request, r#"{"model":"gpt-4o-mini","max_tokens":5}"#).unwrap();
    assert!(run_test(&cli, &args)
        .unwrap()
        .starts_with("decision: allow\n"));
}
