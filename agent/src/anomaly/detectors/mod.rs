//! The detectors, one per file, and the engine that runs them on each exchange of an identity and
//! suppresses their repeats.
mod new_model;
mod pii_burst;
mod probing;
mod real_key;
mod spike;
mod unusual_hours;

use std::collections::HashMap;

use super::baseline::{IdentityBaseline, Recorded};
use crate::{
    audit::governance::AlertDetails,
    config::anomaly::{AnomalyConfig, DetectorAction},
};
use pii_burst::MaskedWindow;
use probing::DenialWindow;

/// Which detector fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Detector {
    TokenSpike,
    RequestSpike,
    NewModel,
    UnusualHours,
    Probing,
    RealKey,
    PiiBurst,
}

impl Detector {
    pub const ALL: [Detector; 7] = [
        Detector::TokenSpike,
        Detector::RequestSpike,
        Detector::NewModel,
        Detector::UnusualHours,
        Detector::Probing,
        Detector::RealKey,
        Detector::PiiBurst,
    ];

    /// Its name in config tables, records, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::TokenSpike => "token_spike",
            Detector::RequestSpike => "request_spike",
            Detector::NewModel => "new_model",
            Detector::UnusualHours => "unusual_hours",
            Detector::Probing => "probing",
            Detector::RealKey => "real_key",
            Detector::PiiBurst => "pii_burst",
        }
    }
}

/// What the detectors know of one exchange that ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExchangeFacts {
    pub exchange_id: String,
    /// Unix µs; the exchange counts in the hour it started in.
    pub started_us: i64,
    pub model: Option<String>,
    /// Input and output tokens together (0 when the response reported no usage).
    pub tokens: u64,
    /// Ended `denied`: a policy denial or a custody refusal.
    pub denied: bool,
    /// Values masked, request and response together.
    pub masked: u64,
    /// A real-looking provider key was presented on a host where Warden holds the keys.
    pub presented_real_key: bool,
}

/// One detector's verdict on an exchange.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub detector: Detector,
    pub action: DetectorAction,
    pub summary: String,
    pub details: AlertDetails,
}

/// What the engine concluded about one exchange.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Fired(Finding),
    /// The detector fired within `suppress_secs` of its last alert for this identity.
    Suppressed(Detector),
}

/// What each detector keeps of one identity.
struct IdentityState {
    baseline: IdentityBaseline,
    denials: DenialWindow,
    masked: MaskedWindow,
}

/// The detectors and every identity's state; owned by the anomaly task alone.
pub struct Detectors {
    config: AnomalyConfig,
    identities: HashMap<String, IdentityState>,
    /// When each (detector, identity) last fired, unix µs.
    last_fired: HashMap<(Detector, String), i64>,
}

impl Detectors {
    pub fn new(config: AnomalyConfig) -> Self {
        Detectors {
            config,
            identities: HashMap::new(),
            last_fired: HashMap::new(),
        }
    }

    /// Identities with a baseline.
    pub fn identities(&self) -> usize {
        self.identities.len()
    }

    fn state(&mut self, identity: &str) -> &mut IdentityState {
        let days = self.config.baseline_days;
        self.identities
            .entry(identity.to_owned())
            .or_insert_with(|| IdentityState {
                baseline: IdentityBaseline::new(days),
                denials: DenialWindow::default(),
                masked: MaskedWindow::default(),
            })
    }

    /// Adds an exchange of the past to `identity`'s baseline, judging nothing.
    pub fn learn(&mut self, identity: &str, started_us: i64, tokens: u64, model: Option<&str>) {
        self.state(identity)
            .baseline
            .learn(started_us, tokens, model);
    }

    /// Adds an exchange that just ended to `identity`'s baseline and runs every enabled detector
    /// on it; `now_us` is when (for suppression).
    pub fn observe(&mut self, identity: &str, facts: &ExchangeFacts, now_us: i64) -> Vec<Verdict> {
        let config = self.config.clone();
        let state = self.state(identity);
        let recorded =
            state
                .baseline
                .record(facts.started_us, facts.tokens, facts.model.as_deref());
        let mut findings = judge_baseline(&config, &recorded, facts);
        if config.probing.enabled {
            findings.extend(probing::judge(&config.probing, &mut state.denials, facts));
        }
        if config.pii_burst.enabled {
            findings.extend(pii_burst::judge(
                &config.pii_burst,
                &mut state.masked,
                facts,
            ));
        }
        if config.real_key.enabled {
            findings.extend(real_key::judge(&config.real_key, facts));
        }
        findings
            .into_iter()
            .map(|finding| self.suppress(identity, finding, now_us))
            .collect()
    }

    fn suppress(&mut self, identity: &str, finding: Finding, now_us: i64) -> Verdict {
        let window_us = i64::try_from(self.config.suppress_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        let key = (finding.detector, identity.to_owned());
        match self.last_fired.get(&key) {
            Some(&last) if now_us.saturating_sub(last) < window_us => {
                Verdict::Suppressed(finding.detector)
            }
            _ => {
                self.last_fired.insert(key, now_us);
                Verdict::Fired(finding)
            }
        }
    }
}

/// The detectors that compare the exchange with the identity's baseline.
fn judge_baseline(
    config: &AnomalyConfig,
    recorded: &Recorded<'_>,
    facts: &ExchangeFacts,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if config.token_spike.enabled {
        findings.extend(spike::judge_tokens(&config.token_spike, recorded));
    }
    if config.request_spike.enabled {
        findings.extend(spike::judge_requests(&config.request_spike, recorded));
    }
    if config.new_model.enabled {
        findings.extend(new_model::judge(&config.new_model, recorded, facts));
    }
    if config.unusual_hours.enabled {
        findings.extend(unusual_hours::judge(&config.unusual_hours, recorded));
    }
    findings
}

#[cfg(test)]
pub(super) mod tests;
