//! A real-looking provider key presented by an agent on a host where Warden holds the keys: a key
//! leaked onto the agent's host (credential custody).
use super::{Detector, ExchangeFacts, Finding};
use crate::{audit::governance::AlertDetails, config::anomaly::RealKeyConfig};

pub fn judge(config: &RealKeyConfig, facts: &ExchangeFacts) -> Option<Finding> {
    if !facts.presented_real_key {
        return None;
    }
    Some(Finding {
        detector: Detector::RealKey,
        action: config.action,
        // The key itself is never repeated here; the exchange's record holds its fingerprint.
        summary: "presented a real-looking provider key on a host where Warden holds the keys (a leaked key)".into(),
        details: AlertDetails {
            observed: 1.0,
            threshold: 0.0,
            ..AlertDetails::default()
        },
    })
}
