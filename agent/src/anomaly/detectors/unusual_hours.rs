//! A call in an hour of the day (UTC) the identity has rarely or never been active in, once its
//! baseline holds enough active hours to have usual ones.
use super::{Detector, Finding};
use crate::{
    anomaly::baseline::Recorded, audit::governance::AlertDetails,
    config::anomaly::UnusualHoursConfig,
};

pub fn judge(config: &UnusualHoursConfig, recorded: &Recorded<'_>) -> Option<Finding> {
    let stats = recorded.stats;
    if stats.active_hours < config.min_baseline_hours {
        return None;
    }
    let hour = stats.hour.rem_euclid(24) as usize;
    let seen = stats.hours_of_day[hour];
    if seen >= config.min_seen {
        return None;
    }
    Some(Finding {
        detector: Detector::UnusualHours,
        action: config.action,
        summary: format!(
            "active at {hour:02}:00 UTC, an hour it was active in {seen} time(s) of its {} active hours on record (usual: {} or more)",
            stats.active_hours, config.min_seen
        ),
        details: AlertDetails {
            observed: seen as f64,
            threshold: config.min_seen as f64,
            baseline_hours: Some(stats.span_hours),
            hour_utc: u8::try_from(hour).ok(),
            ..AlertDetails::default()
        },
    })
}
