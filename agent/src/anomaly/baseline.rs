//! One identity's baseline: its hourly totals over the trailing window, and the models it used.
//!
//! Hours are UTC clock hours, by when each exchange started. The spread is taken over the
//! identity's *active span* within the window: from its first hour with traffic to the hour before
//! the one being judged, every hour counted, hours without traffic as zeros. So an identity that
//! appeared two days ago is judged against those two days, not against twelve empty ones, and a
//! quiet night lowers its mean like it should. The hour being judged is never part of its own
//! baseline.
use std::collections::{BTreeMap, HashSet};

pub const HOUR_US: i64 = 3_600_000_000;

/// The clock hour (hours since the epoch, UTC) an instant falls in.
pub fn hour_of(at_us: i64) -> i64 {
    at_us.div_euclid(HOUR_US)
}

/// What one hour held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HourTotals {
    pub tokens: u64,
    pub requests: u64,
}

/// Mean and standard deviation (population) of an hourly quantity.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub stddev: f64,
}

impl Spread {
    fn of(values: impl Iterator<Item = u64>, hours: u64) -> Spread {
        if hours == 0 {
            return Spread::default();
        }
        let (mut sum, mut squares) = (0f64, 0f64);
        for value in values {
            let value = value as f64;
            sum += value;
            squares += value * value;
        }
        let n = hours as f64;
        let mean = sum / n;
        // Rounding can take the variance of equal values a hair below zero.
        let variance = (squares / n - mean * mean).max(0.0);
        Spread {
            mean,
            stddev: variance.sqrt(),
        }
    }
}

/// The baseline as of one hour: everything before it, within the window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaselineStats {
    /// The hour these stats are for (its own traffic excluded).
    pub hour: i64,
    /// Hours in the active span (zeros included).
    pub span_hours: u64,
    /// Hours with traffic.
    pub active_hours: u64,
    /// Exchanges in the span.
    pub requests: u64,
    pub tokens: Spread,
    pub requests_per_hour: Spread,
    /// Active hours per hour of the day (UTC).
    pub hours_of_day: [u64; 24],
}

/// One identity's history within the window.
#[derive(Debug)]
pub struct IdentityBaseline {
    window_hours: i64,
    hours: BTreeMap<i64, HourTotals>,
    models: HashSet<String>,
    /// Recomputed when the hour judged moves on or an older hour changes.
    stats: Option<BaselineStats>,
}

/// What recording one exchange tells the detectors.
#[derive(Debug)]
pub struct Recorded<'a> {
    /// The exchange's hour so far, itself included.
    pub this_hour: HourTotals,
    pub stats: &'a BaselineStats,
    /// Its model was never used by this identity before (within what the baseline holds).
    pub new_model: bool,
}

impl IdentityBaseline {
    pub fn new(window_days: u32) -> Self {
        IdentityBaseline {
            window_hours: i64::from(window_days) * 24,
            hours: BTreeMap::new(),
            models: HashSet::new(),
            stats: None,
        }
    }

    /// Adds one exchange of the past (read from the store at start).
    pub fn learn(&mut self, started_us: i64, tokens: u64, model: Option<&str>) {
        self.add(hour_of(started_us), tokens);
        if let Some(model) = model {
            self.models.insert(model.to_owned());
        }
        self.stats = None;
    }

    /// Adds one exchange that just ended, and returns what the detectors judge it by.
    pub fn record(&mut self, started_us: i64, tokens: u64, model: Option<&str>) -> Recorded<'_> {
        let hour = hour_of(started_us);
        let this_hour = self.add(hour, tokens);
        let new_model = model.is_some_and(|m| self.models.insert(m.to_owned()));
        // Stats are for one hour; a late exchange of an earlier hour is judged by that hour's,
        // and the next exchange of the later hour recomputes its own (with the late one in).
        if self.stats.as_ref().is_none_or(|s| s.hour != hour) {
            self.prune(hour);
            self.stats = Some(self.stats_for(hour));
        }
        Recorded {
            this_hour,
            stats: self.stats.get_or_insert_with(BaselineStats::default),
            new_model,
        }
    }

    fn add(&mut self, hour: i64, tokens: u64) -> HourTotals {
        let totals = self.hours.entry(hour).or_default();
        totals.tokens = totals.tokens.saturating_add(tokens);
        totals.requests += 1;
        *totals
    }

    /// Drops the hours that left the window.
    fn prune(&mut self, hour: i64) {
        let first = hour - self.window_hours;
        self.hours = self.hours.split_off(&first);
    }

    /// The baseline for judging `hour`: the hours of the window before it.
    pub fn stats_for(&self, hour: i64) -> BaselineStats {
        let range = (hour - self.window_hours)..hour;
        let past: Vec<(i64, HourTotals)> = self
            .hours
            .range(range)
            .map(|(h, totals)| (*h, *totals))
            .collect();
        let Some(&(first, _)) = past.first() else {
            return BaselineStats {
                hour,
                ..BaselineStats::default()
            };
        };
        let span_hours = u64::try_from(hour - first).unwrap_or(0);
        let mut hours_of_day = [0u64; 24];
        for (h, _) in &past {
            hours_of_day[h.rem_euclid(24) as usize] += 1;
        }
        BaselineStats {
            hour,
            span_hours,
            active_hours: past.len() as u64,
            requests: past.iter().map(|(_, t)| t.requests).sum(),
            tokens: Spread::of(past.iter().map(|(_, t)| t.tokens), span_hours),
            requests_per_hour: Spread::of(past.iter().map(|(_, t)| t.requests), span_hours),
            hours_of_day,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_US;

    #[test]
    fn hours_without_traffic_in_the_active_span_count_as_zeros() {
        let mut baseline = IdentityBaseline::new(14);
        // Hour 0: 10 requests; hour 1: none; hour 2: 20 requests; judged: hour 3.
        for _ in 0..10 {
            baseline.learn(100 * H, 5, Some("gpt-4o"));
        }
        for _ in 0..20 {
            baseline.learn(102 * H + 1, 5, None);
        }
        let stats = baseline.stats_for(103);
        assert_eq!(stats.span_hours, 3);
        assert_eq!(stats.active_hours, 2);
        assert_eq!(stats.requests, 30);
        assert_eq!(stats.requests_per_hour.mean, 10.0);
        // Values 10, 0, 20 about a mean of 10.
        assert!((stats.requests_per_hour.stddev - (200f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!(stats.tokens.mean, 50.0);
        assert_eq!(stats.hours_of_day[100 % 24], 1);
        assert_eq!(stats.hours_of_day[102 % 24], 1);
    }

    #[test]
    fn the_window_trails_and_the_judged_hour_is_not_its_own_baseline() {
        let mut baseline = IdentityBaseline::new(1);
        baseline.learn(0, 1, None);
        baseline.learn(30 * H, 1, None);
        let stats = baseline.stats_for(30);
        // Hour 0 left the 24-hour window; hour 30 is the one judged.
        assert_eq!(stats.active_hours, 0);
        assert_eq!(stats.requests, 0);
        let recorded = baseline.record(31 * H, 4, Some("gpt-4o"));
        assert_eq!(recorded.this_hour.requests, 1);
        assert_eq!(recorded.stats.active_hours, 1);
        assert!(recorded.new_model);
        assert!(!baseline.record(31 * H, 4, Some("gpt-4o")).new_model);
    }
}
