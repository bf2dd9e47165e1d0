use std::path::PathBuf;

use super::*;
use crate::{
    audit::IdentitySnapshot, config::Location, identity::selector::Glob, policy::limit_rules::Caps,
};

fn rule(name: &str, selector: &str, model: Option<&str>, caps: Caps) -> LimitRule {
    LimitRule {
        name: name.to_string(),
        source: Location {
            file: PathBuf::from("limits.toml"),
            line: Some(1),
        },
        identity: vec![IdentitySelector::parse(selector).unwrap()],
        model: model.map(Glob::new),
        caps,
    }
}

fn agent(unit: &str) -> IdentitySnapshot {
    IdentitySnapshot {
        uid: 1000,
        user: Some("bot".into()),
        unit: Some(unit.into()),
        ..Default::default()
    }
}

fn limits() -> (tempfile::TempDir, Limits) {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::load(dir.path(), PriceTable::shipped(), 1000).unwrap();
    (dir, limits)
}

fn ask(model: &str, max_output_tokens: Option<u64>) -> Ask<'_> {
    Ask {
        model: Some(model),
        max_output_tokens,
        generates: true,
    }
}

/// Admits a request with this many prompt tokens.
fn admit(
    limits: &Limits,
    rules: &[LimitRule],
    identity: &IdentitySnapshot,
    ask: Ask<'_>,
    input_tokens: u64,
) -> Result<Option<Admission>, Refused> {
    limits.admit(
        rules,
        identity,
        ask,
        PromptTokens {
            at_most: || input_tokens,
            count: || input_tokens,
        },
        NOW,
    )
}

const NOW: i64 = 1_800_000_000_000_000;

#[test]
fn a_glob_counts_each_identity_it_matches_on_its_own() {
    let (_dir, limits) = limits();
    let caps = Caps {
        requests_per_minute: Some(1),
        ..Default::default()
    };
    let rules = [rule("per-bot", "unit:bot-*.service", None, caps)];
    let a = agent("bot-a.service");
    let b = agent("bot-b.service");
    let held_a = admit(&limits, &rules, &a, ask("gpt-4o", Some(10)), 10).unwrap();
    assert!(held_a.is_some());
    // bot-b has its own minute; bot-a's second request is over.
    let held_b = admit(&limits, &rules, &b, ask("gpt-4o", Some(10)), 10).unwrap();
    assert!(held_b.is_some());
    let refused = admit(&limits, &rules, &a, ask("gpt-4o", Some(10)), 10)
        .err()
        .unwrap();
    assert!(matches!(refused, Refused::Over { ref limit, .. } if limit == "per-bot"));
    // Outside the selector or the model glob, a limit does not apply at all.
    let other = agent("cron.service");
    assert!(admit(&limits, &rules, &other, ask("gpt-4o", None), 10)
        .unwrap()
        .is_none());
    let mini_only = [rule("mini", "unit:*", Some("gpt-4o-mini*"), caps)];
    assert!(admit(&limits, &mini_only, &a, ask("gpt-4o", None), 10)
        .unwrap()
        .is_none());
}

#[test]
fn a_refusal_by_one_limit_takes_back_the_others_reservations() {
    let (_dir, limits) = limits();
    let generous = rule(
        "generous",
        "unit:*",
        None,
        Caps {
            tokens_per_minute: Some(1_000_000),
            requests_per_minute: Some(100),
            ..Default::default()
        },
    );
    let strict = rule(
        "strict",
        "unit:*",
        None,
        Caps {
            tokens_per_minute: Some(100),
            ..Default::default()
        },
    );
    let rules = [generous.clone(), strict];
    let bot = agent("bot.service");
    let refused = admit(&limits, &rules, &bot, ask("gpt-4o", Some(10)), 500);
    assert!(matches!(refused, Err(Refused::Over { ref limit, .. }) if limit == "strict"));
    let used = limits.usage(&generous, &bot, NOW).unwrap();
    assert_eq!((used.requests_this_minute, used.tokens_this_minute), (0, 0));
    assert_eq!(used.in_flight, 0);
}

#[test]
fn settling_charges_the_actual_usage_at_the_models_price() {
    let (_dir, limits) = limits();
    let budget = rule(
        "budget",
        "user:bot",
        None,
        Caps {
            cost_per_day: Some(1_000_000),
            ..Default::default()
        },
    );
    let bot = agent("bot.service");
    let admission = admit(
        &limits,
        std::slice::from_ref(&budget),
        &bot,
        ask("gpt-4o", Some(1000)),
        1000,
    )
    .unwrap()
    .unwrap();
    // Reserved: 1000 in at 2.50 + 1000 out at 10.00 per million.
    assert_eq!(limits.usage(&budget, &bot, NOW).unwrap().cost_today, 12_500);
    admission.settle(Settlement::Used(assemble::Usage {
        input_tokens: 1000,
        output_tokens: 100,
        total_tokens: 1100,
    }));
    let used = limits.usage(&budget, &bot, NOW).unwrap();
    assert_eq!(
        (used.cost_today, used.tokens_today, used.in_flight),
        (3_500, 1100, 0)
    );
    // Refused before it went: only the request itself counts.
    let admission = admit(
        &limits,
        std::slice::from_ref(&budget),
        &bot,
        ask("gpt-4o", None),
        1000,
    )
    .unwrap()
    .unwrap();
    admission.settle(Settlement::NothingSent);
    assert_eq!(limits.usage(&budget, &bot, NOW).unwrap().cost_today, 3_500);
}

#[test]
fn a_cost_budget_refuses_a_model_it_cannot_price() {
    let (_dir, limits) = limits();
    let budget = rule(
        "budget",
        "user:bot",
        None,
        Caps {
            cost_per_month: Some(1_000_000),
            ..Default::default()
        },
    );
    let refused = admit(&limits, &[budget], &agent("x"), ask("my-llama", None), 10);
    assert!(matches!(refused, Err(Refused::Unpriced { ref model, .. }) if model == "my-llama"));
}

#[test]
fn rate_headers_are_the_tightest_and_yield_to_a_tighter_upstream() {
    let (_dir, limits) = limits();
    let rules = [
        rule(
            "wide",
            "unit:*",
            None,
            Caps {
                requests_per_minute: Some(100),
                ..Default::default()
            },
        ),
        rule(
            "narrow",
            "user:bot",
            None,
            Caps {
                requests_per_minute: Some(10),
                tokens_per_minute: Some(5000),
                ..Default::default()
            },
        ),
    ];
    let admission = admit(
        &limits,
        &rules,
        &agent("bot.service"),
        ask("gpt-4o", Some(100)),
        100,
    )
    .unwrap()
    .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-ratelimit-remaining-tokens",
        HeaderValue::from_static("12"),
    );
    headers.insert(
        "x-ratelimit-limit-tokens",
        HeaderValue::from_static("30000"),
    );
    admission
        .rate_headers()
        .apply(&mut headers, NOW + 59_500_000);
    assert_eq!(headers["x-ratelimit-limit-requests"], "10");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "9");
    assert_eq!(headers["x-ratelimit-reset-requests"], "500ms");
    // The upstream has 12 tokens left, fewer than Warden's 4800: its figures stand.
    assert_eq!(headers["x-ratelimit-remaining-tokens"], "12");
    assert_eq!(headers["x-ratelimit-limit-tokens"], "30000");
}

#[test]
fn resets_are_written_as_openai_writes_them() {
    assert_eq!(reset_text(250_000), "250ms");
    assert_eq!(reset_text(1_500_000), "1.5s");
    assert_eq!(reset_text(59_000_000), "59s");
    assert_eq!(reset_text(90_000_000), "1m30s");
    assert_eq!(reset_text(-5), "0ms");
}

/// A prompt whose bound is `at_most`, counting `counted` tokens; `tokenized` says if it was counted.
fn prompt(
    at_most: u64,
    counted: u64,
    tokenized: &std::cell::Cell<bool>,
) -> PromptTokens<impl FnOnce() -> u64, impl FnOnce() -> u64 + '_> {
    PromptTokens {
        at_most: move || at_most,
        count: move || {
            tokenized.set(true);
            counted
        },
    }
}

#[test]
fn a_limit_on_requests_alone_never_tokenizes_the_prompt() {
    let (_dir, limits) = limits();
    let requests_only = rule(
        "rpm",
        "user:bot",
        None,
        Caps {
            requests_per_minute: Some(10),
            concurrent_requests: Some(2),
            ..Default::default()
        },
    );
    let tokenized = std::cell::Cell::new(false);
    let admitted = limits.admit(
        &[requests_only],
        &agent("bot.service"),
        ask("gpt-4o", None),
        // Neither the bound nor the count is looked at.
        PromptTokens {
            at_most: || {
                tokenized.set(true);
                u64::MAX
            },
            count: || {
                tokenized.set(true);
                10
            },
        },
        NOW,
    );
    assert!(admitted.unwrap().is_some());
    assert!(!tokenized.get());
}

#[test]
fn the_prompt_is_tokenized_only_when_its_bound_would_not_fit() {
    let (_dir, limits) = limits();
    let tpm = rule(
        "tpm",
        "user:bot",
        None,
        Caps {
            tokens_per_minute: Some(1_000),
            ..Default::default()
        },
    );
    let bot = agent("bot.service");
    let tokenized = std::cell::Cell::new(false);
    // Far from the cap, the bound is reserved as it is.
    let far = limits
        .admit(
            std::slice::from_ref(&tpm),
            &bot,
            ask("gpt-4o", Some(100)),
            prompt(400, 50, &tokenized),
            NOW,
        )
        .unwrap()
        .expect("covered");
    assert!(!tokenized.get());
    assert_eq!(
        limits.usage(&tpm, &bot, NOW).unwrap().tokens_this_minute,
        500
    );
    far.settle(Settlement::NothingSent);
    // Near it, the bound would not fit (900 + 200 > 1000) and the count decides: admitted.
    let near = limits
        .admit(
            std::slice::from_ref(&tpm),
            &bot,
            ask("gpt-4o", Some(200)),
            prompt(900, 50, &tokenized),
            NOW,
        )
        .unwrap()
        .expect("covered");
    assert!(tokenized.get());
    assert_eq!(
        limits.usage(&tpm, &bot, NOW).unwrap().tokens_this_minute,
        250
    );
    // And refused when even the count does not fit, with what was left as it was.
    tokenized.set(false);
    let refused = limits.admit(
        std::slice::from_ref(&tpm),
        &bot,
        ask("gpt-4o", Some(200)),
        prompt(900, 800, &tokenized),
        NOW,
    );
    assert!(tokenized.get());
    assert!(matches!(refused, Err(Refused::Over { .. })));
    assert_eq!(
        limits.usage(&tpm, &bot, NOW).unwrap().tokens_this_minute,
        250
    );
    near.settle(Settlement::NothingSent);
}
