//! Rule matching per key and the precedence of decisions, on policies written as TOML.
use std::path::{Path, PathBuf};

use super::*;
use crate::{audit::record::IdentitySnapshot, policy::load::parse_rules};

pub(super) fn policy(text: &str) -> Policy {
    let file = PathBuf::from("/etc/warden/policies/test.toml");
    let rules = parse_rules(text, &file).unwrap_or_else(|e| panic!("{e}"));
    Policy {
        rules,
        limits: Vec::new(),
        files: vec![file],
    }
}

/// The request every test starts from; each test changes the fields it is about.
pub(super) struct Sample {
    pub identity: IdentitySnapshot,
    pub host: String,
    pub endpoint: EndpointKind,
    pub model: Option<String>,
    pub params: RequestParams,
    pub texts: Vec<String>,
}

impl Default for Sample {
    fn default() -> Self {
        Sample {
            identity: IdentitySnapshot {
                pid: 42,
                uid: 1001,
                user: Some("svc-billing".into()),
                account: Some("billing-agent".into()),
                unit: Some("billing-agent.service".into()),
                cgroup: Some("/system.slice/billing-agent.service".into()),
                exe: Some("/usr/bin/python3.12".into()),
                ..IdentitySnapshot::default()
            },
            host: "api.openai.com".into(),
            endpoint: EndpointKind::ChatCompletions,
            model: Some("gpt-4o-mini".into()),
            params: RequestParams::default(),
            texts: vec!["Hello there".into()],
        }
    }
}

impl Sample {
    pub fn with<R>(&self, f: impl FnOnce(&RequestFacts) -> R) -> R {
        let texts: Vec<&str> = self.texts.iter().map(String::as_str).collect();
        let facts = RequestFacts {
            identity: &self.identity,
            host: &self.host,
            endpoint: self.endpoint,
            model: self.model.as_deref(),
            params: &self.params,
            prompt_texts: &texts,
            body_inspected: true,
        };
        f(&facts)
    }

    pub fn matched(&self, policy: &Policy) -> Vec<String> {
        self.with(|facts| {
            let decision = policy.decide(facts);
            decision.matched.iter().map(|s| s.to_string()).collect()
        })
    }
}

/// Whether a single allow rule with `[rule.match]` body `conditions` matches `sample`.
fn holds(conditions: &str, sample: &Sample) -> bool {
    let policy = policy(&format!(
        "[[rule]]\nname = \"r\"\naction = \"allow\"\n[rule.match]\n{conditions}\n"
    ));
    !sample.matched(&policy).is_empty()
}

#[test]
fn a_rule_without_match_applies_to_everything() {
    let p = policy("[[rule]]\nname = \"all\"\naction = \"allow\"\n");
    assert_eq!(Sample::default().matched(&p), ["all"]);
    let other = Sample {
        endpoint: EndpointKind::Files,
        model: None,
        texts: vec![],
        ..Sample::default()
    };
    assert_eq!(other.matched(&p), ["all"]);
}

#[test]
fn identity_holds_if_any_selector_matches() {
    let s = Sample::default();
    assert!(holds(r#"identity = ["account:billing-*"]"#, &s));
    assert!(holds(r#"identity = ["account:ops", "uid:1001"]"#, &s));
    assert!(holds(r#"identity = ["unit:*.service"]"#, &s));
    assert!(holds(r#"identity = ["user:svc-*"]"#, &s));
    assert!(holds(r#"identity = ["cgroup:/system.slice/*"]"#, &s));
    assert!(holds(r#"identity = ["exe:/usr/bin/python3*"]"#, &s));
    assert!(!holds(r#"identity = ["account:prod-*", "uid:0"]"#, &s));
    assert!(!holds(r#"identity = ["sa:prod/*"]"#, &s));
    let k8s = Sample {
        identity: IdentitySnapshot {
            k8s_sa: Some("prod/runner".into()),
            ..IdentitySnapshot::default()
        },
        ..Sample::default()
    };
    assert!(holds(r#"identity = ["sa:prod/*"]"#, &k8s));
    assert!(!holds(r#"identity = ["account:*"]"#, &k8s));
}

#[test]
fn host_globs_ignore_case_and_trailing_dot() {
    let s = Sample {
        host: "API.OpenAI.com.".into(),
        ..Sample::default()
    };
    assert!(holds(r#"host = ["api.openai.com"]"#, &s));
    assert!(holds(r#"host = ["*.OPENAI.com"]"#, &s));
    assert!(!holds(r#"host = ["openai.com", "*.example.com"]"#, &s));
}

#[test]
fn endpoint_lists_and_star() {
    let s = Sample::default();
    assert!(holds(r#"endpoint = ["responses", "chat.completions"]"#, &s));
    assert!(!holds(r#"endpoint = ["embeddings"]"#, &s));
    assert!(holds(r#"endpoint = ["*"]"#, &s));
    let files = Sample {
        endpoint: EndpointKind::Files,
        ..Sample::default()
    };
    assert!(holds(r#"endpoint = ["embeddings", "*"]"#, &files));
}

#[test]
fn model_in_and_not_in() {
    let s = Sample::default();
    assert!(holds(r#"model_in = ["gpt-4o*"]"#, &s));
    assert!(!holds(r#"model_in = ["gpt-4.1*"]"#, &s));
    assert!(!holds(r#"model_not_in = ["gpt-4o-mini", "gpt-4.1*"]"#, &s));
    assert!(holds(r#"model_not_in = ["gpt-4.1*"]"#, &s));
    assert!(
        !holds(r#"model_in = ["GPT-4O-MINI"]"#, &s),
        "case-sensitive"
    );
    let none = Sample {
        model: None,
        ..Sample::default()
    };
    assert!(!holds(r#"model_in = ["*"]"#, &none));
    assert!(
        holds(r#"model_not_in = ["*"]"#, &none),
        "no model is not in the list"
    );
}

#[test]
fn param_above_holds_if_any_present_parameter_is_above_its_cap() {
    let caps = "param_above = { temperature = 1.0, max_tokens = 4096, max_output_tokens = 4096 }";
    let with = |temperature, max_tokens, max_output_tokens| Sample {
        params: RequestParams {
            temperature,
            max_tokens,
            max_output_tokens,
            ..RequestParams::default()
        },
        ..Sample::default()
    };
    assert!(!holds(caps, &with(None, None, None)));
    assert!(!holds(caps, &with(Some(1.0), Some(4096), Some(4096))));
    assert!(holds(caps, &with(Some(1.01), None, None)));
    assert!(holds(caps, &with(None, Some(4097), None)));
    assert!(holds(caps, &with(Some(0.2), None, Some(10_000))));
    assert!(!holds(
        "param_above = { temperature = 1 }",
        &with(None, Some(100_000), None)
    ));
    assert!(holds(
        "param_above = { max_tokens = 0 }",
        &with(None, Some(1), None)
    ));
}

#[test]
fn text_matches_any_regex_in_any_prompt_text() {
    let s = Sample {
        texts: vec!["first".into(), "my Credit Card is".into()],
        ..Sample::default()
    };
    assert!(holds(r#"text_matches = ["(?i)credit[- ]card"]"#, &s));
    assert!(holds(r#"text_matches = ["nothing", "^first$"]"#, &s));
    assert!(!holds(r#"text_matches = ["credit card"]"#, &s));
    let empty = Sample {
        texts: vec![],
        ..Sample::default()
    };
    assert!(!holds(r#"text_matches = [".*"]"#, &empty));
}

#[test]
fn every_present_key_must_hold() {
    let conditions = r#"identity = ["account:billing-*"]
host = ["api.openai.com"]
endpoint = ["chat.completions"]
model_not_in = ["gpt-4.1*"]
param_above = { temperature = 0.5 }
text_matches = ["secret"]"#;
    let all = Sample {
        params: RequestParams {
            temperature: Some(0.7),
            ..RequestParams::default()
        },
        texts: vec!["a secret".into()],
        ..Sample::default()
    };
    assert!(holds(conditions, &all));
    let spoil: [fn(&mut Sample); 6] = [
        |s| s.identity.account = Some("ops".into()),
        |s| s.host = "example.com".into(),
        |s| s.endpoint = EndpointKind::Responses,
        |s| s.model = Some("gpt-4.1".into()),
        |s| s.params.temperature = Some(0.5),
        |s| s.texts = vec!["public".into()],
    ];
    for (i, change) in spoil.iter().enumerate() {
        let mut sample = Sample {
            params: all.params.clone(),
            texts: all.texts.clone(),
            ..Sample::default()
        };
        change(&mut sample);
        assert!(
            !holds(conditions, &sample),
            "change {i} should stop the match"
        );
    }
}

const PRECEDENCE: &str = r#"
[[rule]]
name = "allow-all"
action = "allow"

[[rule]]
name = "mask-email"
action = "mask"
recognizers = ["email"]

[[rule]]
name = "review-billing"
action = "approve"
approvers = ["group:secops", "user:alice"]
timeout = "90s"
[rule.match]
identity = ["account:billing-*"]

[[rule]]
name = "no-hot"
action = "deny"
message = "too hot"
[rule.match]
param_above = { temperature = 1.0 }

[[rule]]
name = "no-very-hot"
action = "deny"
message = "far too hot"
[rule.match]
param_above = { temperature = 1.5 }

[[rule]]
name = "mask-ssn-out"
action = "mask"
direction = "response"
recognizers = ["us_ssn"]
"#;

#[test]
fn deny_beats_approve_beats_allow_and_masks_combine() {
    let p = policy(PRECEDENCE);
    let hot = Sample {
        params: RequestParams {
            temperature: Some(1.8),
            ..RequestParams::default()
        },
        ..Sample::default()
    };
    hot.with(|facts| {
        let d = p.decide(facts);
        assert_eq!(
            d.verdict,
            Verdict::Deny {
                rule: "no-hot",
                message: "too hot"
            },
            "the first matching deny is reported"
        );
        assert_eq!(
            d.matched,
            [
                "allow-all",
                "mask-email",
                "review-billing",
                "no-hot",
                "no-very-hot",
                "mask-ssn-out"
            ]
        );
        let masks: Vec<&str> = d.masks.iter().map(|m| m.rule.as_str()).collect();
        assert_eq!(masks, ["mask-email", "mask-ssn-out"]);
        assert!(d.masks[0].direction.covers_request() && d.masks[0].direction.covers_response());
        assert!(!d.masks[1].direction.covers_request());
    });
    Sample::default().with(|facts| {
        let d = p.decide(facts);
        let Verdict::Approve {
            rule,
            approvers,
            timeout,
        } = d.verdict
        else {
            panic!("expected approve, got {:?}", d.verdict)
        };
        assert_eq!(rule, "review-billing");
        assert_eq!(
            approvers,
            [
                Approver::Group("secops".into()),
                Approver::User("alice".into())
            ]
        );
        assert_eq!(approvers[0].to_string(), "group:secops");
        assert_eq!(timeout, Duration::from_secs(90));
        assert_eq!(d.masks.len(), 2);
    });
    let ops = Sample {
        identity: IdentitySnapshot::default(),
        ..Sample::default()
    };
    ops.with(|facts| {
        let d = p.decide(facts);
        assert_eq!(d.verdict, Verdict::Allow);
        assert_eq!(d.matched, ["allow-all", "mask-email", "mask-ssn-out"]);
    });
}

#[test]
fn an_empty_policy_allows_everything() {
    let p = Policy::default();
    assert!(p.is_empty());
    Sample::default().with(|facts| {
        let d = p.decide(facts);
        assert_eq!(d.verdict, Verdict::Allow);
        assert!(d.masks.is_empty() && d.matched.is_empty());
    });
}

#[test]
fn rules_keep_their_source_and_compiled_parts() {
    let p = policy(PRECEDENCE);
    let rule = p.rule("no-hot").unwrap();
    assert_eq!(rule.action.name(), "deny");
    assert_eq!(rule.source.line, Some(20));
    assert_eq!(
        rule.source.file,
        Path::new("/etc/warden/policies/test.toml")
    );
    assert!(rule.conditions.read_body());
    assert!(!p.rule("review-billing").unwrap().conditions.read_body());
    let Action::Mask(mask) = &p.rule("mask-email").unwrap().action else {
        panic!("not a mask")
    };
    assert_eq!(mask.replacement, DEFAULT_REPLACEMENT);
    assert_eq!(mask.direction, Direction::Both);
}

#[test]
fn rules_about_the_body_do_not_match_a_body_that_was_not_inspected() {
    let policy = crate::policy::load::parse_rules(
        "[[rule]]\nname = \"models\"\naction = \"deny\"\nmessage = \"m\"\n[rule.match]\nmodel_not_in = [\"gpt-4o-mini\"]\n\n[[rule]]\nname = \"host\"\naction = \"deny\"\nmessage = \"h\"\n[rule.match]\nhost = [\"api.openai.com\"]\n",
        std::path::Path::new("/p.toml"),
    )
    .unwrap();
    let identity = crate::audit::record::IdentitySnapshot::default();
    let params = crate::audit::record::RequestParams::default();
    let facts = RequestFacts {
        identity: &identity,
        host: "api.openai.com",
        endpoint: crate::openai::endpoint::EndpointKind::Files,
        model: None,
        params: &params,
        prompt_texts: &[],
        body_inspected: false,
    };
    let rules: Vec<&Rule> = policy.iter().filter(|rule| rule.matches(&facts)).collect();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].name, "host");
}
