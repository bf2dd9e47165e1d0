//! What `warden limits` shows: per limit and identity, each cap with what is used of it now and
//! when its window turns.
use serde::{Deserialize, Serialize};

use super::{
    admission::KEY_SEPARATOR,
    ledger::{Usage, Windows},
    Limits,
};
use crate::{
    audit::format_timestamp_us,
    identity::selector::IdentitySelector,
    policy::limit_rules::{LimitRule, MicroUsd},
};

/// One cap of one limit for one identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CapUsage {
    pub limit: String,
    /// `prefix:value`: the identity as the limit's selector counts it.
    pub identity: String,
    /// The cap's key in the policy file (`requests_per_minute`, `cost_per_day_usd`, …).
    pub cap: String,
    /// Costs in USD, the rest in requests or tokens.
    pub used: f64,
    pub allowed: f64,
    /// RFC 3339 UTC: when the window turns (None for concurrent requests).
    pub resets_at: Option<String>,
}

/// Every cap of every limit with usage on record, optionally only for identities `selector`
/// names (its prefix and pattern against the counted identity).
pub fn usage(
    limits: &Limits,
    rules: &[LimitRule],
    selector: Option<&IdentitySelector>,
    now_us: i64,
) -> Vec<CapUsage> {
    let windows = Windows::at(now_us);
    let mut rows = Vec::new();
    for (key, used) in limits.ledger().entries(now_us) {
        let Some((name, identity)) = key.split_once(KEY_SEPARATOR) else {
            continue;
        };
        let Some(rule) = rules.iter().find(|rule| rule.name == name) else {
            continue; // a limit since removed from the policy
        };
        if selector.is_some_and(|selector| !names(selector, identity)) {
            continue;
        }
        rows.extend(caps_of(rule, identity, &used, windows));
    }
    rows
}

fn caps_of(rule: &LimitRule, identity: &str, used: &Usage, windows: Windows) -> Vec<CapUsage> {
    let usd = |micro: MicroUsd| micro as f64 / 1_000_000.0;
    let caps = &rule.caps;
    let candidates = [
        (
            "requests_per_minute",
            caps.requests_per_minute.map(|c| c as f64),
            used.requests_this_minute as f64,
            Some(windows.minute_end()),
        ),
        (
            "tokens_per_minute",
            caps.tokens_per_minute.map(|c| c as f64),
            used.tokens_this_minute as f64,
            Some(windows.minute_end()),
        ),
        (
            "tokens_per_day",
            caps.tokens_per_day.map(|c| c as f64),
            used.tokens_today as f64,
            Some(windows.day_end()),
        ),
        (
            "cost_per_day_usd",
            caps.cost_per_day.map(usd),
            usd(used.cost_today),
            Some(windows.day_end()),
        ),
        (
            "cost_per_month_usd",
            caps.cost_per_month.map(usd),
            usd(used.cost_this_month),
            Some(windows.month_end()),
        ),
        (
            "concurrent_requests",
            caps.concurrent_requests.map(|c| c as f64),
            used.in_flight as f64,
            None,
        ),
    ];
    candidates
        .into_iter()
        .filter_map(|(cap, allowed, used, resets)| {
            Some(CapUsage {
                limit: rule.name.clone(),
                identity: identity.to_string(),
                cap: cap.to_string(),
                used,
                allowed: allowed?,
                resets_at: resets.map(format_timestamp_us),
            })
        })
        .collect()
}

/// Whether `selector` names the counted identity `prefix:value`.
fn names(selector: &IdentitySelector, identity: &str) -> bool {
    let Some((prefix, value)) = identity.split_once(':') else {
        return false;
    };
    if selector.prefix() != prefix {
        return false;
    }
    // The selector's own text after its prefix is its pattern (a glob, or a number).
    let text = selector.to_string();
    let pattern = text.split_once(':').map_or("", |(_, p)| p);
    crate::identity::selector::Glob::new(pattern).matches(value)
}
