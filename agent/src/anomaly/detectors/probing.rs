//! Probing: repeated policy denials (exchanges ended `denied`) within a short window.
use std::collections::VecDeque;

use super::{Detector, ExchangeFacts, Finding};
use crate::{audit::governance::AlertDetails, config::anomaly::ProbingConfig};

/// When the identity's recent denials started, oldest first; at most `denials` are kept.
#[derive(Debug, Default)]
pub struct DenialWindow(VecDeque<i64>);

pub fn judge(
    config: &ProbingConfig,
    window: &mut DenialWindow,
    facts: &ExchangeFacts,
) -> Option<Finding> {
    if !facts.denied {
        return None;
    }
    let window_us = i64::try_from(config.window_secs).unwrap_or(i64::MAX) * 1_000_000;
    let times = &mut window.0;
    times.push_back(facts.started_us);
    while times
        .front()
        .is_some_and(|&t| facts.started_us.saturating_sub(t) >= window_us)
    {
        times.pop_front();
    }
    let limit = usize::try_from(config.denials).unwrap_or(usize::MAX);
    while times.len() > limit {
        times.pop_front();
    }
    let count = times.len() as u64;
    if count < config.denials {
        return None;
    }
    Some(Finding {
        detector: Detector::Probing,
        action: config.action,
        summary: format!(
            "{count} requests denied within {} s (threshold {})",
            config.window_secs, config.denials
        ),
        details: AlertDetails {
            observed: count as f64,
            threshold: config.denials as f64,
            window_secs: Some(config.window_secs),
            ..AlertDetails::default()
        },
    })
}
