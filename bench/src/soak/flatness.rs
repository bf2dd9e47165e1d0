//! Whether a figure stayed flat over the soak: its median over the last quarter of the requests
//! against its median just after the warm-up, within 10%.
//!
//! Samples are placed by the exchanges the daemon had finished when each was taken, not by time,
//! so a slower machine moves the windows with it. The first 10% of the requests warm up (TLS
//! leaf, pools, allocator arenas, SQLite's page cache) and are left out; the baseline is the
//! median of the samples taken while requests 10% to 25% finished, the end figure the median of
//! those taken while requests 75% to 100% finished (the load still running). A figure is flat when
//! end ≤ baseline × 1.10 + slack; a figure that drops is flat too (nothing is leaking).

use serde::Serialize;

use super::sampler::Sample;

/// The share of requests that warm up.
pub const WARMUP: f64 = 0.10;
/// The baseline window ends here (a share of the requests).
pub const BASELINE_END: f64 = 0.25;
/// The end window starts here.
pub const END_FROM: f64 = 0.75;
/// How much the end figure may exceed the baseline.
pub const TOLERANCE: f64 = 0.10;

/// One figure's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Flatness {
    pub figure: &'static str,
    pub unit: &'static str,
    /// Median over the baseline window; None without samples there.
    pub baseline: Option<f64>,
    /// Median over the end window.
    pub end: Option<f64>,
    pub baseline_samples: usize,
    pub end_samples: usize,
    /// Added to the 10%, for figures that may sit at or near zero (see [`judge`]'s callers).
    pub slack: f64,
    /// baseline × 1.10 + slack.
    pub limit: Option<f64>,
    /// (end − baseline) / baseline, in percent.
    pub change_pct: Option<f64>,
    pub flat: bool,
}

/// Judges the figure `value` reads off each sample, for a soak of `requests` requests.
pub fn judge(
    figure: &'static str,
    unit: &'static str,
    samples: &[Sample],
    requests: u64,
    slack: f64,
    value: impl Fn(&Sample) -> f64,
) -> Flatness {
    let window = |from: f64, to: f64| -> Vec<f64> {
        let (from, to) = (from * requests as f64, to * requests as f64);
        samples
            .iter()
            .filter(|s| (s.exchanges as f64) >= from && (s.exchanges as f64) < to)
            .map(&value)
            .collect()
    };
    let baseline_values = window(WARMUP, BASELINE_END);
    let end_values = window(END_FROM, 1.0);
    let baseline = median(&baseline_values);
    let end = median(&end_values);
    let limit = baseline.map(|b| b * (1.0 + TOLERANCE) + slack);
    let change_pct = match (baseline, end) {
        (Some(b), Some(e)) if b > 0.0 => Some((e - b) / b * 100.0),
        _ => None,
    };
    Flatness {
        figure,
        unit,
        baseline,
        end,
        baseline_samples: baseline_values.len(),
        end_samples: end_values.len(),
        slack,
        limit,
        change_pct,
        flat: matches!((end, limit), (Some(e), Some(l)) if e <= l),
    }
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 samples over 1,000 requests, the figure given by `rss(i)` at sample i.
    fn run(rss: impl Fn(usize) -> f64) -> Vec<Sample> {
        (0..100)
            .map(|i| Sample {
                at_secs: i as f64,
                exchanges: i as u64 * 10,
                rss_mib: rss(i),
                fds: 50,
                audit_queue: 0,
                load_1m: 1.0,
            })
            .collect()
    }

    fn rss(samples: &[Sample], slack: f64) -> Flatness {
        judge("RSS", "MiB", samples, 1_000, slack, |s| s.rss_mib)
    }

    #[test]
    fn a_steady_figure_is_flat() {
        let verdict = rss(&run(|i| 40.0 + (i % 3) as f64 * 0.5), 0.0);
        assert!(verdict.flat, "{verdict:?}");
        assert_eq!(verdict.baseline_samples, 15);
        assert_eq!(verdict.end_samples, 25);
    }

    #[test]
    fn a_figure_that_grows_past_ten_percent_is_not() {
        // A leak: 40 MiB growing 0.1 MiB per sample ends ~19% over its baseline.
        let verdict = rss(&run(|i| 40.0 + i as f64 * 0.1), 0.0);
        assert!(!verdict.flat, "{verdict:?}");
        assert!(verdict.change_pct.unwrap() > 10.0, "{verdict:?}");
    }

    #[test]
    fn warm_up_growth_does_not_count() {
        let verdict = rss(&run(|i| if i < 10 { 10.0 } else { 40.0 }), 0.0);
        assert!(verdict.flat, "{verdict:?}");
        assert_eq!(verdict.baseline, Some(40.0));
    }

    #[test]
    fn a_drop_is_flat() {
        let verdict = rss(&run(|i| if i < 50 { 40.0 } else { 30.0 }), 0.0);
        assert!(verdict.flat, "{verdict:?}");
    }

    #[test]
    fn slack_covers_a_figure_near_zero_and_no_more() {
        let queue = |samples: &[Sample], slack| {
            judge("queue", "records", samples, 1_000, slack, |s| s.rss_mib)
        };
        let wobbling = run(|i| if i < 50 { 0.0 } else { 12.0 });
        assert!(!queue(&wobbling, 0.0).flat);
        assert!(queue(&wobbling, 32.0).flat);
        let backlog = run(|i| if i < 50 { 0.0 } else { 500.0 });
        assert!(!queue(&backlog, 32.0).flat);
    }

    #[test]
    fn a_window_without_samples_is_not_flat() {
        let verdict = judge("RSS", "MiB", &run(|_| 40.0), 100_000, 0.0, |s| s.rss_mib);
        assert_eq!(verdict.baseline, None);
        assert!(!verdict.flat, "{verdict:?}");
    }
}
