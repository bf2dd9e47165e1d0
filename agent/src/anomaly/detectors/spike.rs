//! Token and request spikes: this hour's total over the baseline's mean + k·stddev, and over an
//! absolute floor (a quiet identity's tiny spread alone would make every busy hour a spike).
use super::{Detector, Finding};
use crate::{
    anomaly::baseline::{Recorded, Spread},
    audit::governance::AlertDetails,
    config::anomaly::SpikeConfig,
};

pub fn judge_tokens(config: &SpikeConfig, recorded: &Recorded<'_>) -> Option<Finding> {
    let observed = recorded.this_hour.tokens;
    judge(
        config,
        Detector::TokenSpike,
        "tokens",
        observed,
        recorded.stats.tokens,
        recorded.stats.span_hours,
    )
}

pub fn judge_requests(config: &SpikeConfig, recorded: &Recorded<'_>) -> Option<Finding> {
    let observed = recorded.this_hour.requests;
    judge(
        config,
        Detector::RequestSpike,
        "requests",
        observed,
        recorded.stats.requests_per_hour,
        recorded.stats.span_hours,
    )
}

fn judge(
    config: &SpikeConfig,
    detector: Detector,
    what: &str,
    observed: u64,
    spread: Spread,
    span_hours: u64,
) -> Option<Finding> {
    let threshold = spread.mean + config.k * spread.stddev;
    let value = observed as f64;
    if value <= threshold || observed < config.min_per_hour {
        return None;
    }
    Some(Finding {
        detector,
        action: config.action,
        summary: format!(
            "{observed} {what} this hour; baseline {:.1} ± {:.1} per hour over {span_hours} h (threshold {:.1}, floor {})",
            spread.mean, spread.stddev, threshold, config.min_per_hour
        ),
        details: AlertDetails {
            observed: value,
            threshold: threshold.max(config.min_per_hour as f64),
            mean: Some(spread.mean),
            stddev: Some(spread.stddev),
            baseline_hours: Some(span_hours),
            ..AlertDetails::default()
        },
    })
}
