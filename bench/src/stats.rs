//! Latency summaries read off HDR histograms of nanoseconds, in microseconds for the report.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest latency a histogram holds (2 minutes); longer ones are recorded as this.
pub const NANOS_HISTOGRAM_MAX: u64 = 120_000_000_000;

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    pub fn of(nanos: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1_000.0;
        Self {
            count: nanos.len(),
            mean_us: nanos.mean() / 1_000.0,
            p50_us: us(nanos.value_at_quantile(0.50)),
            p90_us: us(nanos.value_at_quantile(0.90)),
            p99_us: us(nanos.value_at_quantile(0.99)),
            p999_us: us(nanos.value_at_quantile(0.999)),
            max_us: us(nanos.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_in_microseconds() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, NANOS_HISTOGRAM_MAX, 3).unwrap();
        for micros in 1..=100u64 {
            histogram.record(micros * 1_000).unwrap();
        }
        let summary = LatencySummary::of(&histogram);
        assert_eq!(summary.count, 100);
        assert!((summary.p50_us - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.p99_us - 99.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_us - 100.0).abs() < 0.1, "{summary:?}");
    }
}
