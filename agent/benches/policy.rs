//! Criterion benchmarks of the policy on the request path: 10 rules applied to a 4 KiB chat prompt.
//!
//! Benchmarks, not tests: nothing here asserts on time (the target is < 50 µs per request). A
//! policy or prompt that does not behave as described aborts the run, hence the `expect`s and
//! `assert`s, checked once before measuring.
use std::{hint::black_box, path::Path};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};
use warden::{
    audit::record::IdentitySnapshot,
    openai::{
        endpoint::EndpointKind,
        request::{request_fields, RequestFields},
    },
    policy::{
        active::CompiledPolicy,
        check::check_request,
        load::parse_rules,
        mask::MaskCounts,
        prompt::{mask_request, prompt_texts},
        Policy, RequestFacts, Verdict,
    },
};

/// Ten rules of every kind, the policy `cargo xtask bench` runs Warden with; the benchmark's request
/// is allowed, so every rule is evaluated in full and the mask rules applied.
const POLICY: &str = include_str!("../../bench/policy.toml");

const PROMPT_BYTES: usize = 4096;

/// Business prose without anything a recognizer or `text_matches` takes.
const FILLER: &str = "The quarterly reconciliation compares invoices against the ledger and flags \
    any line whose amount, currency or due date disagrees with the purchase order. Summarise the \
    differences by vendor, oldest first, and suggest which ones need a follow-up call this week. ";

/// One of each recognizer's kind, spread through the prompt.
const PII: [&str; 8] = [
    "Contact jane.doe@example.com about the refund.",
    "The card on file is 4111 1111 1111 1111.",
    "Her SSN is 123-45-6789 per the form.",
    "Call back on +1 415-555-0132 after lunch.",
    "Wire to DE89 3704 0044 0532 0130 00 today.",
    "The export came from 10.20.30.40 overnight.",
    "Employee EMP-123456 approved it under TCK-04217.",
    "Logs are on build-7.corp.example.com.",
];

/// A chat request whose prompt text (system + user messages) totals `PROMPT_BYTES`.
fn chat_request(with_pii: bool) -> Value {
    let system = "You are a careful accounts-payable assistant. Answer in short bullet points.";
    let mut user = String::with_capacity(PROMPT_BYTES);
    let mut pii = with_pii.then_some(PII.iter()).into_iter().flatten();
    while user.len() + system.len() < PROMPT_BYTES {
        user.push_str(FILLER);
        if let Some(sentence) = pii.next() {
            user.push_str(sentence);
            user.push(' ');
        }
    }
    user.truncate(PROMPT_BYTES - system.len());
    json!({
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "max_tokens": 1024,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ],
    })
}

fn caller() -> IdentitySnapshot {
    IdentitySnapshot {
        pid: 4242,
        uid: 1001,
        user: Some("billing".into()),
        exe: Some("/usr/bin/python3.12".into()),
        cgroup: Some("/system.slice/billing.service".into()),
        unit: Some("billing.service".into()),
        account: Some("billing-agent".into()),
        ..IdentitySnapshot::default()
    }
}

fn compiled_policy() -> CompiledPolicy {
    let rules = parse_rules(POLICY, Path::new("bench.toml")).expect("the bench policy parses");
    assert_eq!(rules.len(), 10);
    CompiledPolicy::compile(Policy {
        rules,
        limits: Vec::new(),
        files: Vec::new(),
    })
    .expect("the bench policy compiles")
}

/// What the daemon does with a parsed body: decide, then apply every request mask in place.
/// Returns the verdict's rule (none for allow) and the mask counts. `fields` (model, parameters)
/// are read for the audit record whether or not a policy applies, so they are not timed.
fn evaluate_and_mask(
    policy: &CompiledPolicy,
    caller: &IdentitySnapshot,
    fields: &RequestFields,
    body: &mut Value,
) -> (Option<String>, MaskCounts) {
    let texts = prompt_texts(body);
    let facts = RequestFacts {
        identity: caller,
        host: "api.openai.com",
        endpoint: EndpointKind::ChatCompletions,
        model: fields.model.as_deref(),
        params: &fields.params,
        prompt_texts: &texts,
        body_inspected: true,
    };
    let decision = policy.policy.decide(&facts);
    drop(texts);
    let refused_by = match decision.verdict {
        Verdict::Allow => None,
        Verdict::Deny { rule, .. } | Verdict::Approve { rule, .. } => Some(rule.to_string()),
    };
    let mut counts = MaskCounts::default();
    for mask in decision
        .masks
        .iter()
        .filter(|m| m.direction.covers_request())
    {
        if let Some(compiled) = policy.mask(&mask.rule) {
            mask_request(body, &compiled.masker, &mut counts);
        }
    }
    (refused_by, counts)
}

fn bench_policy(c: &mut Criterion) {
    let policy = compiled_policy();
    let caller = caller();
    let with_pii = chat_request(true);
    let without_pii = chat_request(false);
    let fields = request_fields(&serde_json::to_vec(&with_pii).expect("a Value serializes"));

    // The prompts are what they claim to be: allowed, every recognizer hit once (or nothing).
    let (refused, counts) = evaluate_and_mask(&policy, &caller, &fields, &mut with_pii.clone());
    assert_eq!(refused, None, "the bench request must be allowed");
    let labels: Vec<&str> = counts.0.keys().map(String::as_str).collect();
    assert_eq!(
        labels,
        [
            "CREDIT_CARD",
            "EMAIL",
            "EMPLOYEE_ID",
            "IBAN",
            "INTERNAL_HOST",
            "IP_ADDRESS",
            "PHONE",
            "TICKET",
            "US_SSN"
        ],
        "counts: {counts:?}"
    );
    let (refused, counts) = evaluate_and_mask(&policy, &caller, &fields, &mut without_pii.clone());
    assert!(refused.is_none() && counts.is_empty(), "{counts:?}");

    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Bytes(PROMPT_BYTES as u64));
    for (name, body) in [
        ("evaluate_and_mask_4k", &with_pii),
        ("evaluate_and_mask_4k_no_pii", &without_pii),
    ] {
        group.bench_function(name, |b| {
            // Masking rewrites the body, so each iteration gets a fresh copy, made untimed.
            b.iter_batched(
                || body.clone(),
                |mut body| {
                    let outcome = evaluate_and_mask(&policy, &caller, &fields, &mut body);
                    black_box((outcome, body))
                },
                BatchSize::SmallInput,
            )
        });
    }

    // The whole request check as the daemon runs it on the wire bytes: parse, decide, mask,
    // serialize the masked body.
    for (name, body) in [
        ("check_request_4k", &with_pii),
        ("check_request_4k_no_pii", &without_pii),
    ] {
        let bytes = serde_json::to_vec(body).expect("a Value serializes");
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(check_request(
                    &policy,
                    &caller,
                    "api.openai.com",
                    EndpointKind::ChatCompletions,
                    &fields,
                    Some(black_box(&bytes)),
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_policy);
criterion_main!(benches);
