//! Warden's Prometheus metrics: the families, and the methods the proxy records into.
//!
//! Labels are bounded (see [`labels`]): accounts are account or unit names (else `unattributed`),
//! models come from the agent's request body and are capped at the first [`MODEL_LIMIT`] distinct
//! values, rule and recognizer names come from the policy. Never a pid, a command line, a key or
//! prompt text.
pub mod anomaly;
pub mod api;
pub mod approvals;
pub mod budgets;
pub mod credentials;
pub mod labels;
pub mod limits;
pub mod live;
pub mod server;
pub mod sinks;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram, info::Info},
    registry::Registry,
};

use crate::{
    audit::{
        record::{Disposition, Outcome, PolicyRecord},
        AuditWriter,
    },
    ebpf::{selection::Selection, Redirector},
    identity::Identity,
    openai::{assemble::Usage, endpoint::EndpointKind},
    policy::{model::Action, Policy},
};
use labels::{account_name, BoundedValues, LabelValue};
pub use live::LiveReadings;

/// Distinct accounts (account or unit names) kept as labels; later ones are `other`. Accounts come
/// from the configuration, but unit names can be transient (`run-u42.service`).
pub const ACCOUNT_LIMIT: usize = 200;
/// Distinct models kept as labels; later ones are `other`. The model is whatever the agent put in
/// its request body, so without this bound an agent could create a series per request.
pub const MODEL_LIMIT: usize = 50;
/// Distinct rule and recognizer names kept as labels: both come from the policy, which reloads can
/// change over a long run.
pub const POLICY_NAME_LIMIT: usize = 500;

/// Request durations and times to first byte: LLM calls take from milliseconds to minutes.
const EXCHANGE_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Audit transactions: sub-millisecond without fsync, milliseconds with it.
const COMMIT_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    account: LabelValue,
    model: LabelValue,
    endpoint: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    account: LabelValue,
    model: LabelValue,
    /// `input` or `output`.
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    rule: LabelValue,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MaskLabels {
    recognizer: LabelValue,
    /// `request` or `response`.
    direction: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn exchange_histogram() -> Histogram {
    Histogram::new(EXCHANGE_BUCKETS)
}

/// Which side of an exchange a mask applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskedIn {
    Request,
    Response,
}

impl MaskedIn {
    fn as_str(self) -> &'static str {
        match self {
            MaskedIn::Request => "request",
            MaskedIn::Response => "response",
        }
    }
}

/// How an exchange ended, as the exchange log knows it when it ends.
#[derive(Debug)]
pub struct ExchangeEnd<'a> {
    pub identity: &'a Identity,
    pub model: Option<&'a str>,
    pub endpoint: EndpointKind,
    pub outcome: Outcome,
    pub duration: Duration,
    /// None when no response arrived.
    pub ttfb: Option<Duration>,
    pub usage: Option<Usage>,
}

/// Per mask rule, how many values of each recognizer were masked (as audit records keep them).
pub type MaskedValues = BTreeMap<String, BTreeMap<String, u64>>;

/// Every family Warden exposes, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// One handle per kind, created once: counting a connection is one atomic add.
    intercepted: Counter,
    tunneled: Counter,
    rejected: Counter,
    exchanges: Family<ExchangeLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    request_duration: HistogramFamily<EndpointLabels>,
    ttfb: HistogramFamily<EndpointLabels>,
    policy_decisions: Family<DecisionLabels, Counter>,
    masked: Family<MaskLabels, Counter>,
    audit_commit: Histogram,
    accounts: BoundedValues,
    models: BoundedValues,
    rules: BoundedValues,
    recognizers: BoundedValues,
    pub approvals: approvals::ApprovalMetrics,
    pub anomaly: anomaly::AnomalyMetrics,
    pub budgets: budgets::BudgetMetrics,
    pub api: api::ApiMetrics,
    pub credentials: credentials::CredentialMetrics,
    pub limits: limits::LimitMetrics,
    pub sinks: sinks::SinkMetrics,
}

impl Metrics {
    /// The families, plus `live`'s readings taken at each scrape.
    pub fn new(live: LiveReadings) -> Metrics {
        let mut registry = Registry::default();
        let connections = Family::<KindLabels, Counter>::default();
        registry.register(
            "warden_connections",
            "Redirected connections, by what Warden did with them",
            connections.clone(),
        );
        let kind = |kind: Disposition| {
            connections.get_or_create_owned(&KindLabels {
                kind: kind.as_str(),
            })
        };
        let (intercepted, tunneled, rejected) = (
            kind(Disposition::Intercepted),
            kind(Disposition::Tunneled),
            kind(Disposition::Rejected),
        );
        let exchanges = Family::default();
        registry.register(
            "warden_exchanges",
            "Intercepted HTTP exchanges, by account, model, endpoint and outcome",
            exchanges.clone(),
        );
        let tokens = Family::default();
        registry.register(
            "warden_tokens",
            "Tokens the upstream reported in its usage, by account, model and kind (input or output)",
            tokens.clone(),
        );
        let request_duration: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(exchange_histogram);
        registry.register(
            "warden_request_duration_seconds",
            "Time from an exchange's request to the end of its response, by endpoint",
            request_duration.clone(),
        );
        let ttfb: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(exchange_histogram);
        registry.register(
            "warden_time_to_first_byte_seconds",
            "Time from an exchange's request to its response headers, by endpoint",
            ttfb.clone(),
        );
        let policy_decisions = Family::default();
        registry.register(
            "warden_policy_decisions",
            "Policy decisions: each request's verdict (allow, deny, approve; rule empty when no rule decided) and each mask rule that applied",
            policy_decisions.clone(),
        );
        let masked = Family::default();
        registry.register(
            "warden_masked_values",
            "Values masked by policy, by recognizer and direction (request or response)",
            masked.clone(),
        );
        let audit_commit = Histogram::new(COMMIT_BUCKETS);
        registry.register(
            "warden_audit_commit_seconds",
            "Time of one audit store transaction (a batch of records)",
            audit_commit.clone(),
        );
        registry.register(
            "warden_build",
            "Warden's version",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(live));
        let approvals = approvals::ApprovalMetrics::register(&mut registry);
        let anomaly = anomaly::AnomalyMetrics::register(&mut registry);
        let budgets = budgets::BudgetMetrics::register(&mut registry);
        let api = api::ApiMetrics::register(&mut registry);
        let credentials = credentials::CredentialMetrics::register(&mut registry);
        let limits = limits::LimitMetrics::register(&mut registry);
        let sinks = sinks::SinkMetrics::register(&mut registry);
        Metrics {
            registry,
            intercepted,
            tunneled,
            rejected,
            exchanges,
            tokens,
            request_duration,
            ttfb,
            policy_decisions,
            masked,
            audit_commit,
            accounts: BoundedValues::new(ACCOUNT_LIMIT),
            models: BoundedValues::new(MODEL_LIMIT),
            rules: BoundedValues::new(POLICY_NAME_LIMIT),
            recognizers: BoundedValues::new(POLICY_NAME_LIMIT),
            approvals,
            anomaly,
            budgets,
            api,
            credentials,
            limits,
            sinks,
        }
    }

    /// The daemon's metrics: live readings of its selection, programs and audit writer, whose
    /// commits feed the commit histogram.
    pub fn for_daemon(
        selection: Arc<Selection>,
        redirector: Arc<Redirector>,
        audit: &AuditWriter,
    ) -> Arc<Metrics> {
        let live = LiveReadings::of(selection, redirector, audit.clone());
        let metrics = Arc::new(Metrics::new(live));
        audit.observe_commits(metrics.audit_commit_observer());
        metrics
    }

    /// The whole exposition, in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(8192);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    pub fn connection(&self, kind: Disposition) {
        match kind {
            Disposition::Intercepted => self.intercepted.inc(),
            Disposition::Tunneled => self.tunneled.inc(),
            Disposition::Rejected => self.rejected.inc(),
        };
    }

    /// One exchange ended: its count, tokens and timings. The label set is built once here.
    pub fn exchange_ended(&self, end: &ExchangeEnd) {
        let account = self.accounts.get(account_name(end.identity));
        let model = self.models.get(end.model.unwrap_or(""));
        let endpoint = end.endpoint.as_str();
        if let Some(usage) = end.usage {
            for (kind, count) in [
                ("input", usage.input_tokens),
                ("output", usage.output_tokens),
            ] {
                if count > 0 {
                    let labels = TokenLabels {
                        account: account.clone(),
                        model: model.clone(),
                        kind,
                    };
                    self.tokens.get_or_create(&labels).inc_by(count);
                }
            }
        }
        let labels = ExchangeLabels {
            account,
            model,
            endpoint,
            outcome: end.outcome.as_str(),
        };
        self.exchanges.get_or_create(&labels).inc();
        let endpoint = EndpointLabels { endpoint };
        self.request_duration
            .get_or_create(&endpoint)
            .observe(end.duration.as_secs_f64());
        if let Some(ttfb) = end.ttfb {
            self.ttfb
                .get_or_create(&endpoint)
                .observe(ttfb.as_secs_f64());
        }
    }

    /// The policy's decision on one request: its verdict, and each mask rule that applied.
    pub fn policy_decided(&self, policy: &Policy, record: &PolicyRecord) {
        let action = match record.verdict.as_str() {
            "deny" => "deny",
            "approve" => "approve",
            _ => "allow",
        };
        let rule = self.rules.get(record.rule.as_deref().unwrap_or(""));
        self.policy_decisions
            .get_or_create(&DecisionLabels { rule, action })
            .inc();
        for name in &record.matched {
            if matches!(policy.rule(name).map(|r| &r.action), Some(Action::Mask(_))) {
                let labels = DecisionLabels {
                    rule: self.rules.get(name),
                    action: "mask",
                };
                self.policy_decisions.get_or_create(&labels).inc();
            }
        }
    }

    /// Values masked in one request or response.
    pub fn masked(&self, direction: MaskedIn, masked: &MaskedValues) {
        for counts in masked.values() {
            for (recognizer, count) in counts {
                let labels = MaskLabels {
                    recognizer: self.recognizers.get(recognizer),
                    direction: direction.as_str(),
                };
                self.masked.get_or_create(&labels).inc_by(*count);
            }
        }
    }

    /// What the audit writer calls with each transaction's duration. It holds the histogram
    /// only, not the metrics, which hold the writer (through the live readings).
    pub fn audit_commit_observer(&self) -> crate::audit::CommitObserver {
        let histogram = self.audit_commit.clone();
        Box::new(move |took: Duration| histogram.observe(took.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests;
