//! Every example policy in the repository's `policies/` loads, and decides a sample request as its
//! comments say.
use std::{fs, path::Path};

use super::*;
use crate::{
    audit::record::RequestParams,
    identity::selector::SelectorSubject,
    openai::endpoint::EndpointKind,
    policy::model::{Action, Approver, Direction, RequestFacts, Verdict, RECOGNIZERS},
};

struct Identity {
    account: Option<&'static str>,
}

impl SelectorSubject for Identity {
    fn account(&self) -> Option<&str> {
        self.account
    }
    fn unit(&self) -> Option<&str> {
        None
    }
    fn user(&self) -> Option<&str> {
        None
    }
    fn uid(&self) -> u32 {
        1000
    }
    fn cgroup(&self) -> Option<&str> {
        None
    }
    fn exe(&self) -> Option<&str> {
        None
    }
    fn pid(&self) -> u32 {
        1
    }
    fn service_account(&self) -> Option<&str> {
        None
    }
}

fn decide<'p>(
    policy: &'p Policy,
    account: Option<&'static str>,
    model: Option<&str>,
    params: RequestParams,
) -> (Verdict<'p>, Vec<String>) {
    let identity = Identity { account };
    let facts = RequestFacts {
        identity: &identity,
        host: "api.openai.com",
        endpoint: EndpointKind::ChatCompletions,
        model,
        params: &params,
        prompt_texts: &["mail jane@example.com about EMP-123456"],
        body_inspected: true,
    };
    let decision = policy.decide(&facts);
    let masks = decision.masks.iter().map(|m| m.rule.clone()).collect();
    (decision.verdict, masks)
}

#[test]
fn every_example_policy_loads_and_decides() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let all = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "approved-models.toml",
            "budgets.toml",
            "mask-pii.toml",
            "parameter-caps.toml",
            "prod-review.toml"
        ]
    );
    assert_eq!(all.files.len(), names.len());
    let load = |name: &str| load_file(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
    let plain = RequestParams::default();

    let models = load("approved-models.toml");
    assert_eq!(
        decide(&models, None, Some("gpt-4o-mini"), plain.clone()).0,
        Verdict::Allow
    );
    assert_eq!(
        decide(&models, None, Some("gpt-4.1-nano"), plain.clone()).0,
        Verdict::Allow
    );
    let Verdict::Deny { rule, message } = decide(&models, None, Some("gpt-4o"), plain.clone()).0
    else {
        panic!("gpt-4o should be denied")
    };
    assert_eq!(rule, "approved-models-only");
    assert!(message.starts_with("Only approved models"), "{message}");
    assert!(matches!(
        decide(&models, None, None, plain.clone()).0,
        Verdict::Deny { .. }
    ));

    let budgets = load("budgets.toml");
    let names: Vec<&str> = budgets.limits.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["agents-rate", "agents-budget", "big-models"]);
    assert_eq!(budgets.limits[1].caps.cost_per_month, Some(800_000_000));
    assert!(budgets.rules.is_empty());

    let caps = load("parameter-caps.toml");
    let params = |temperature, max_tokens| RequestParams {
        temperature,
        max_tokens,
        ..RequestParams::default()
    };
    assert_eq!(
        decide(&caps, None, Some("gpt-4o"), params(Some(1.0), Some(4096))).0,
        Verdict::Allow
    );
    let hot = decide(&caps, None, Some("gpt-4o"), params(Some(1.2), None)).0;
    assert!(
        matches!(
            hot,
            Verdict::Deny {
                rule: "temperature-cap",
                ..
            }
        ),
        "{hot:?}"
    );
    let long = decide(&caps, None, Some("gpt-4o"), params(None, Some(8000))).0;
    assert!(
        matches!(
            long,
            Verdict::Deny {
                rule: "max-tokens-cap",
                ..
            }
        ),
        "{long:?}"
    );

    let pii = load("mask-pii.toml");
    let (verdict, masks) = decide(&pii, None, None, plain.clone());
    assert_eq!(
        (verdict, masks),
        (Verdict::Allow, vec!["mask-pii".to_string()])
    );
    let Action::Mask(mask) = &pii.rules[0].action else {
        panic!("mask-pii is not a mask rule")
    };
    assert_eq!(mask.recognizers, RECOGNIZERS);
    assert_eq!(mask.direction, Direction::Both);
    assert!(mask.patterns[0].regex.is_match("EMP-123456"));

    let review = load("prod-review.toml");
    assert_eq!(
        decide(&review, Some("billing-agent"), None, plain.clone()).0,
        Verdict::Allow
    );
    let Verdict::Approve {
        rule,
        approvers,
        timeout,
    } = decide(&review, Some("prod-billing"), None, plain.clone()).0
    else {
        panic!("prod accounts need approval")
    };
    assert_eq!((rule, timeout.as_secs()), ("prod-needs-review", 600));
    assert_eq!(approvers, [Approver::Group("secops".into())]);

    // All together: a deny of another file wins over the approval.
    let verdict = decide(&all, Some("prod-billing"), Some("gpt-4o"), plain).0;
    assert!(
        matches!(
            verdict,
            Verdict::Deny {
                rule: "approved-models-only",
                ..
            }
        ),
        "{verdict:?}"
    );
}
