//! `[[limit]]` in policy files: who it covers (identity selectors, an optional model glob) and its
//! caps, compiled into the ledger's vocabulary (costs in micro-dollars).
use serde::Deserialize;

use super::{compile::Problems, locate::KeyPath};
use crate::{
    config::Location,
    identity::selector::{Glob, IdentitySelector},
};

/// Costs are kept in micro-dollars (integers), so budgets add up exactly.
pub type MicroUsd = u64;

/// What a limit caps. Any absent cap is not checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub cost_per_day: Option<MicroUsd>,
    pub cost_per_month: Option<MicroUsd>,
    pub concurrent_requests: Option<u64>,
}

impl Caps {
    /// Whether any cap counts tokens or their cost (the others count requests alone).
    pub fn counts_tokens(&self) -> bool {
        self.tokens_per_minute.is_some()
            || self.tokens_per_day.is_some()
            || self.cost_per_day.is_some()
            || self.cost_per_month.is_some()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimit {
    name: String,
    /// Selectors; the limit counts each identity they match on its own.
    identity: Vec<String>,
    model: Option<String>,
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
    tokens_per_day: Option<u64>,
    cost_per_day_usd: Option<f64>,
    cost_per_month_usd: Option<f64>,
    concurrent_requests: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct LimitRule {
    pub name: String,
    pub source: Location,
    pub identity: Vec<IdentitySelector>,
    pub model: Option<Glob>,
    pub caps: Caps,
}

/// The limit at `at`, or None after adding every problem in it to `problems`.
pub(super) fn compile_limit(
    raw: RawLimit,
    at: &KeyPath,
    source: Location,
    problems: &mut Problems,
) -> Option<LimitRule> {
    let before = problems.len();
    if raw.name.trim().is_empty() {
        problems.push((at.key("name"), "must not be empty".into()));
    }
    if raw.name.chars().any(char::is_control) {
        problems.push((at.key("name"), "must not hold control characters".into()));
    }
    if raw.identity.is_empty() {
        let reason = "a limit needs at least one identity selector (\"*\" is not one: name them)";
        problems.push((at.key("identity"), reason.into()));
    }
    let mut identity = Vec::new();
    for (i, text) in raw.identity.iter().enumerate() {
        match IdentitySelector::parse(text) {
            Ok(selector) => identity.push(selector),
            Err(error) => problems.push((at.key("identity").index(i), error.to_string())),
        }
    }
    let model = match raw.model.as_deref() {
        Some("") => {
            problems.push((at.key("model"), "must not be empty".into()));
            None
        }
        other => other.map(Glob::new),
    };
    let mut dollars = |key: &str, value: Option<f64>| -> Option<MicroUsd> {
        let usd = value?;
        if !(usd.is_finite() && usd > 0.0) {
            problems.push((
                at.key(key),
                "must be a positive amount of US dollars".into(),
            ));
            return None;
        }
        Some((usd * 1_000_000.0).round() as MicroUsd)
    };
    let caps = Caps {
        requests_per_minute: raw.requests_per_minute,
        tokens_per_minute: raw.tokens_per_minute,
        tokens_per_day: raw.tokens_per_day,
        cost_per_day: dollars("cost_per_day_usd", raw.cost_per_day_usd),
        cost_per_month: dollars("cost_per_month_usd", raw.cost_per_month_usd),
        concurrent_requests: raw.concurrent_requests,
    };
    let counts = [
        ("requests_per_minute", raw.requests_per_minute),
        ("tokens_per_minute", raw.tokens_per_minute),
        ("tokens_per_day", raw.tokens_per_day),
        ("concurrent_requests", raw.concurrent_requests),
    ];
    for (key, value) in counts {
        if value == Some(0) {
            let reason = "must be at least 1 (revoke the identity to stop it altogether)";
            problems.push((at.key(key), reason.into()));
        }
    }
    if caps == Caps::default() && problems.len() == before {
        let reason = "a limit needs at least one of requests_per_minute, tokens_per_minute, tokens_per_day, cost_per_day_usd, cost_per_month_usd, concurrent_requests";
        problems.push((at.clone(), reason.into()));
    }
    (problems.len() == before).then_some(LimitRule {
        name: raw.name,
        source,
        identity,
        model,
        caps,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn compile(toml_text: &str) -> Result<LimitRule, Vec<String>> {
        let raw: RawLimit = toml::from_str(toml_text).map_err(|e| vec![e.message().to_string()])?;
        let mut problems = Problems::new();
        let source = Location {
            file: PathBuf::from("limits.toml"),
            line: Some(1),
        };
        let at = KeyPath::root().key("limit").index(0);
        compile_limit(raw, &at, source, &mut problems).ok_or_else(|| {
            problems
                .into_iter()
                .map(|(key, reason)| format!("{key}: {reason}"))
                .collect()
        })
    }

    #[test]
    fn a_limit_compiles_to_caps_in_micro_dollars() {
        let limit = compile(
            "name = \"billing\"\nidentity = [\"unit:billing-*.service\"]\nmodel = \"gpt-4o*\"\n\
             requests_per_minute = 60\ncost_per_day_usd = 12.5\nconcurrent_requests = 4\n",
        )
        .unwrap();
        assert_eq!(limit.caps.requests_per_minute, Some(60));
        assert_eq!(limit.caps.cost_per_day, Some(12_500_000));
        assert_eq!(limit.caps.concurrent_requests, Some(4));
        assert_eq!(limit.model.as_ref().map(Glob::as_str), Some("gpt-4o*"));
        assert_eq!(limit.identity.len(), 1);
    }

    #[test]
    fn every_problem_is_named_by_key() {
        let problems = compile(
            "name = \"\"\nidentity = [\"nope\"]\nrequests_per_minute = 0\ncost_per_month_usd = -3.0\n",
        )
        .unwrap_err()
        .join("\n");
        for key in [
            "limit[0].name",
            "limit[0].identity[0]",
            "limit[0].requests_per_minute",
            "limit[0].cost_per_month_usd",
        ] {
            assert!(problems.contains(key), "{key} missing from:\n{problems}");
        }
        let none = compile("name = \"n\"\nidentity = [\"uid:1\"]\n")
            .unwrap_err()
            .join("\n");
        assert!(none.contains("at least one of"), "{none}");
        let typo = compile("name = \"n\"\nidentity = [\"uid:1\"]\nrequests_per_hour = 3\n")
            .unwrap_err()
            .join("\n");
        assert!(typo.contains("requests_per_hour"), "{typo}");
    }
}
