//! Admission: a request against every `[[limit]]` that covers it, reserved all together or not at
//! all, and settled with the call's actual usage and cost when the exchange ends.
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use http::{HeaderMap, HeaderValue};

use super::{
    estimate::PromptTokens,
    ledger::{Dimension, Estimate, Exceeded, Ledger, Reservation, Usage},
    prices::PriceTable,
};
use crate::{
    identity::selector::{IdentitySelector, SelectorSubject},
    openai::assemble,
    policy::limit_rules::LimitRule,
};

/// The ledger, the prices and how much output a request without a cap reserves.
pub struct Limits {
    ledger: Ledger,
    prices: Arc<PriceTable>,
    default_output_tokens: u64,
    ledger_path: PathBuf,
}

/// The ledger's file in the state directory.
pub fn ledger_path(state_dir: &Path) -> PathBuf {
    state_dir.join("limits.json")
}

/// What a request is about to cost, before it goes.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub model: Option<&'a str>,
    /// `max_tokens` (or its newer names); None reserves the default.
    pub max_output_tokens: Option<u64>,
    /// Whether the endpoint answers with generated tokens (chat, responses, completions).
    pub generates: bool,
}

/// Why a request is not admitted: the limit, and the cap it would pass (or the model it cannot
/// price against a cost cap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    Over { limit: String, exceeded: Exceeded },
    Unpriced { limit: String, model: String },
}

/// A request's reservations, one per limit that covers it.
pub struct Admission {
    held: Vec<Held>,
    model: Option<String>,
    prices: Arc<PriceTable>,
    /// The tightest per-minute caps, for `x-ratelimit-*`.
    headers: RateHeaders,
}

struct Held {
    reservation: Reservation,
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` as Warden's limits see them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Remaining>,
    pub tokens: Option<Remaining>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remaining {
    pub limit: u64,
    pub remaining: u64,
    pub resets_at_us: i64,
}

impl Limits {
    /// The ledger left in `state_dir` (an absent one is empty).
    pub fn load(
        state_dir: &Path,
        prices: PriceTable,
        default_output_tokens: u64,
    ) -> std::io::Result<Limits> {
        let ledger_path = ledger_path(state_dir);
        Ok(Limits {
            ledger: Ledger::load(&ledger_path)?,
            prices: Arc::new(prices),
            default_output_tokens,
            ledger_path,
        })
    }

    /// Persists the ledger (0600, replaced atomically): on an interval and at shutdown.
    pub fn save(&self) -> std::io::Result<()> {
        self.ledger.save(&self.ledger_path)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// Reserves `ask` under every limit of `rules` that covers `identity` and the model, or
    /// refuses at the first limit it would pass (taking back what it reserved before it).
    /// None when no limit covers the request. Where a cap counts tokens or dollars the prompt is
    /// reserved at its bound (`prompt.at_most`, read only then), and tokenized (`prompt.count`) only when the
    /// bound would not fit: near a cap the exact count decides, and a request held at its bound
    /// is settled with its actual usage all the same.
    pub fn admit(
        &self,
        rules: &[LimitRule],
        identity: &(impl SelectorSubject + ?Sized),
        ask: Ask<'_>,
        prompt: PromptTokens<impl FnOnce() -> u64, impl FnOnce() -> u64>,
        now_us: i64,
    ) -> Result<Option<Admission>, Refused> {
        let covering: Vec<(&LimitRule, String)> = rules
            .iter()
            .filter_map(|rule| {
                let model_matches = match (&rule.model, ask.model) {
                    (None, _) => true,
                    (Some(glob), Some(model)) => glob.matches(model),
                    (Some(_), None) => false,
                };
                model_matches
                    .then(|| ledger_key(rule, identity))
                    .flatten()
                    .map(|key| (rule, key))
            })
            .collect();
        if covering.is_empty() {
            return Ok(None);
        }
        if !covering.iter().any(|(rule, _)| rule.caps.counts_tokens()) {
            return self.reserve(&covering, ask, 0, now_us).map(Some);
        }
        match self.reserve(&covering, ask, (prompt.at_most)(), now_us) {
            Err(Refused::Over { exceeded, .. }) if exceeded.dimension.counts_tokens() => {
                let counted = (prompt.count)();
                self.reserve(&covering, ask, counted, now_us).map(Some)
            }
            admitted => admitted.map(Some),
        }
    }

    /// Reserves `ask`, its prompt taken as `input_tokens`, under every covering limit, or none.
    fn reserve(
        &self,
        covering: &[(&LimitRule, String)],
        ask: Ask<'_>,
        input_tokens: u64,
        now_us: i64,
    ) -> Result<Admission, Refused> {
        let output = match ask.generates {
            true => ask.max_output_tokens.unwrap_or(self.default_output_tokens),
            false => 0,
        };
        let tokens = input_tokens.saturating_add(output);
        let cost = ask
            .model
            .and_then(|model| self.prices.cost(model, input_tokens, output));
        let mut admission = Admission {
            held: Vec::new(),
            model: ask.model.map(str::to_string),
            prices: self.prices.clone(),
            headers: RateHeaders::default(),
        };
        for (rule, key) in covering {
            let prices_cost =
                rule.caps.cost_per_day.is_some() || rule.caps.cost_per_month.is_some();
            if prices_cost && cost.is_none() {
                admission.cancel();
                return Err(Refused::Unpriced {
                    limit: rule.name.clone(),
                    model: ask.model.unwrap_or("(none)").to_string(),
                });
            }
            let estimate = Estimate {
                tokens,
                cost: cost.unwrap_or(0),
            };
            match self.ledger.reserve(key, &rule.caps, estimate, now_us) {
                Ok(reservation) => {
                    admission.headers.tighten(rule, &reservation);
                    admission.held.push(Held { reservation });
                }
                Err(exceeded) => {
                    admission.cancel();
                    return Err(Refused::Over {
                        limit: rule.name.clone(),
                        exceeded,
                    });
                }
            }
        }
        Ok(admission)
    }

    /// What `identity` has used under `rule` (for `warden limits`); None when it does not cover it.
    pub fn usage(
        &self,
        rule: &LimitRule,
        identity: &(impl SelectorSubject + ?Sized),
        now_us: i64,
    ) -> Option<Usage> {
        let key = ledger_key(rule, identity)?;
        Some(self.ledger.usage(&key, now_us))
    }
}

/// How an exchange ended, for its settlement.
#[derive(Clone, Copy, Debug)]
pub enum Settlement {
    /// The call's usage as the upstream reported it.
    Used(assemble::Usage),
    /// Warden refused before anything reached the model: nothing but the request is charged.
    NothingSent,
    /// Unknown (a stream cut short, an upstream error): the estimate stays charged.
    Unknown,
}

impl Admission {
    pub fn rate_headers(&self) -> RateHeaders {
        self.headers
    }

    pub fn settle(self, how: Settlement) {
        for held in self.held {
            match how {
                Settlement::Used(usage) => {
                    let tokens = usage
                        .total_tokens
                        .max(usage.input_tokens + usage.output_tokens);
                    let cost = self.model.as_deref().and_then(|model| {
                        self.prices
                            .cost(model, usage.input_tokens, usage.output_tokens)
                    });
                    held.reservation.settle(Estimate {
                        tokens,
                        cost: cost.unwrap_or(0),
                    });
                }
                Settlement::NothingSent => held.reservation.settle(Estimate::default()),
                Settlement::Unknown => drop(held.reservation),
            }
        }
    }

    fn cancel(&mut self) {
        for held in self.held.drain(..) {
            held.reservation.cancel();
        }
    }
}

/// Between a limit's name and the identity in a ledger key (a newline: no name holds one).
pub const KEY_SEPARATOR: char = '\n';

/// The ledger key of `identity` under `rule`: the limit's name and the identity's own value of
/// the first selector that matches it (a glob counts each identity it matches on its own).
fn ledger_key(rule: &LimitRule, identity: &(impl SelectorSubject + ?Sized)) -> Option<String> {
    let selector = rule.identity.iter().find(|s| s.matches(identity))?;
    let value = match selector {
        IdentitySelector::Account(_) => identity.account()?.to_string(),
        IdentitySelector::Unit(_) => identity.unit()?.to_string(),
        IdentitySelector::User(_) => identity.user()?.to_string(),
        IdentitySelector::Uid(_) => identity.uid().to_string(),
        IdentitySelector::Cgroup(_) => identity.cgroup()?.to_string(),
        IdentitySelector::Exe(_) => identity.exe()?.to_string(),
        IdentitySelector::Pid(_) => identity.pid().to_string(),
        IdentitySelector::ServiceAccount(_) => identity.service_account()?.to_string(),
    };
    Some(format!(
        "{}{KEY_SEPARATOR}{}:{value}",
        rule.name,
        selector.prefix()
    ))
}

impl RateHeaders {
    fn tighten(&mut self, rule: &LimitRule, reservation: &Reservation) {
        let minute = reservation.minute_used();
        let candidates = [
            (
                &mut self.requests,
                rule.caps.requests_per_minute,
                minute.requests,
            ),
            (&mut self.tokens, rule.caps.tokens_per_minute, minute.tokens),
        ];
        for (slot, cap, used) in candidates {
            let Some(limit) = cap else { continue };
            let candidate = Remaining {
                limit,
                remaining: limit.saturating_sub(used),
                resets_at_us: minute.resets_at_us,
            };
            if slot.is_none_or(|current| candidate.remaining < current.remaining) {
                *slot = Some(candidate);
            }
        }
    }

    /// Sets Warden's figures where they are tighter than the upstream's (or it gave none).
    pub fn apply(&self, headers: &mut HeaderMap, now_us: i64) {
        for (kind, remaining) in [("requests", self.requests), ("tokens", self.tokens)] {
            let Some(ours) = remaining else { continue };
            let theirs = headers
                .get(format!("x-ratelimit-remaining-{kind}"))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if theirs.is_some_and(|theirs| theirs <= ours.remaining) {
                continue;
            }
            let reset = reset_text(ours.resets_at_us - now_us);
            for (name, value) in [
                ("limit", ours.limit.to_string()),
                ("remaining", ours.remaining.to_string()),
                ("reset", reset),
            ] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(
                        http::HeaderName::try_from(format!("x-ratelimit-{name}-{kind}"))
                            .expect("a valid header name"),
                        value,
                    );
                }
            }
        }
    }
}

/// A wait as OpenAI writes it in `x-ratelimit-reset-*`: `250ms`, `1.5s`, `1m30s`.
fn reset_text(wait_us: i64) -> String {
    let ms = (wait_us.max(0) as u64).div_ceil(1_000);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => {
            let text = format!("{:.3}", ms as f64 / 1000.0);
            format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => format!("{}m{}s", ms / 60_000, (ms % 60_000).div_ceil(1_000)),
    }
}

impl Refused {
    /// For the log line and the audit record.
    pub fn reason(&self) -> String {
        match self {
            Refused::Over { limit, exceeded } => format!(
                "limit {limit}: {} {} (limit {}, used {})",
                exceeded.dimension.describe(),
                match exceeded.dimension.is_budget() {
                    true => "spent",
                    false => "exceeded",
                },
                exceeded.limit,
                exceeded.used
            ),
            Refused::Unpriced { limit, model } => {
                format!("limit {limit}: no price for model {model} to count a cost budget against")
            }
        }
    }

    pub fn dimension(&self) -> Option<Dimension> {
        match self {
            Refused::Over { exceeded, .. } => Some(exceeded.dimension),
            Refused::Unpriced { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests;
