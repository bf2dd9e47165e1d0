//! Criterion benchmarks of a `[[limit]]` check on the request path: admission (reserve under
//! every covering limit, the prompt at its byte bound) and settlement; the prompt's bound; and the
//! exact count that a request near a cap pays on top.
//!
//! Benchmarks, not tests: nothing here asserts on time (the target is < 5 µs per request for the
//! check). A limit that does not admit as described aborts the run.
use std::{hint::black_box, path::PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use warden::{
    audit::record::IdentitySnapshot,
    config::Location,
    identity::selector::IdentitySelector,
    identity_limits::{
        estimate::{self, PromptTokens},
        prices::PriceTable,
        Ask, Limits, Settlement,
    },
    openai::assemble::Usage,
    policy::limit_rules::{Caps, LimitRule},
};

/// A minute's cap no benchmark run reaches, so every iteration is admitted.
const GENEROUS: u64 = u64::MAX / 4;

fn rule(name: &str, selector: &str) -> LimitRule {
    LimitRule {
        name: name.to_string(),
        source: Location {
            file: PathBuf::from("bench.toml"),
            line: Some(1),
        },
        identity: vec![IdentitySelector::parse(selector).expect("a selector")],
        model: None,
        caps: Caps {
            requests_per_minute: Some(GENEROUS),
            tokens_per_minute: Some(GENEROUS),
            tokens_per_day: Some(GENEROUS),
            cost_per_day: Some(GENEROUS),
            cost_per_month: Some(GENEROUS),
            concurrent_requests: Some(GENEROUS),
        },
    }
}

fn bench_limits(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let limits = Limits::load(dir.path(), PriceTable::shipped(), 4096).expect("an empty ledger");
    let identity = IdentitySnapshot {
        uid: 1000,
        user: Some("bot".into()),
        unit: Some("billing-agent.service".into()),
        account: Some("billing-agent".into()),
        ..Default::default()
    };
    // Ten limits, two of which cover the identity (the others name other units).
    let mut rules: Vec<LimitRule> = (0..8)
        .map(|i| rule(&format!("other-{i}"), &format!("unit:other-{i}.service")))
        .collect();
    rules.push(rule("per-account", "account:billing-*"));
    rules.push(rule("per-user", "user:bot"));
    let ask = Ask {
        model: Some("gpt-4o-mini"),
        max_output_tokens: Some(256),
        generates: true,
    };
    let usage = Usage {
        input_tokens: 120,
        output_tokens: 80,
        total_tokens: 200,
    };
    let body = json!({"model": "gpt-4o-mini", "messages": [
        {"role": "system", "content": "You are a careful assistant for the billing team."},
        {"role": "user", "content": "Summarise the differences between these invoices and the ledger, oldest first. ".repeat(12)}
    ]});
    let body = serde_json::to_vec(&body).expect("serialize");
    let prompt = || PromptTokens {
        at_most: || estimate::input_tokens_at_most(black_box(&body)),
        count: || panic!("a generous cap never needs the exact count"),
    };
    let now = warden::ids::now_us();
    let admitted = limits.admit(&rules, &identity, ask, prompt(), now);
    assert!(
        matches!(admitted, Ok(Some(_))),
        "the bench identity is covered"
    );

    let mut group = c.benchmark_group("limits");
    group.bench_function("admit_and_settle_10_limits_2_covering", |b| {
        b.iter(|| {
            let admission = limits
                .admit(black_box(&rules), &identity, ask, prompt(), now)
                .expect("admitted")
                .expect("covered");
            admission.settle(Settlement::Used(usage));
        })
    });
    group.bench_function("prompt_bound_1kib", |b| {
        b.iter(|| estimate::input_tokens_at_most(black_box(&body)))
    });
    // What a request near a cap adds: parsing its body and tokenizing its prompt.
    group.bench_function("count_prompt_tokens_1kib", |b| {
        b.iter(|| {
            let parsed: serde_json::Value = serde_json::from_slice(black_box(&body)).expect("json");
            estimate::input_tokens(Some("gpt-4o-mini"), &parsed)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_limits);
criterion_main!(benches);
