//! A burst of masked PII: many values masked (request and response together) in a short window.
use std::collections::VecDeque;

use super::{Detector, ExchangeFacts, Finding};
use crate::{audit::governance::AlertDetails, config::anomaly::PiiBurstConfig};

/// The identity's recent exchanges that masked something: (started, values masked), oldest first,
/// and their sum.
#[derive(Debug, Default)]
pub struct MaskedWindow {
    exchanges: VecDeque<(i64, u64)>,
    total: u64,
}

pub fn judge(
    config: &PiiBurstConfig,
    window: &mut MaskedWindow,
    facts: &ExchangeFacts,
) -> Option<Finding> {
    if facts.masked == 0 {
        return None;
    }
    let window_us = i64::try_from(config.window_secs).unwrap_or(i64::MAX) * 1_000_000;
    window.exchanges.push_back((facts.started_us, facts.masked));
    window.total = window.total.saturating_add(facts.masked);
    while let Some(&(at, masked)) = window.exchanges.front() {
        if facts.started_us.saturating_sub(at) < window_us {
            break;
        }
        window.exchanges.pop_front();
        window.total -= masked;
    }
    if window.total < config.masked {
        return None;
    }
    Some(Finding {
        detector: Detector::PiiBurst,
        action: config.action,
        summary: format!(
            "{} values masked within {} s (threshold {})",
            window.total, config.window_secs, config.masked
        ),
        details: AlertDetails {
            observed: window.total as f64,
            threshold: config.masked as f64,
            window_secs: Some(config.window_secs),
            ..AlertDetails::default()
        },
    })
}
