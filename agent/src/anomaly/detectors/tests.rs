//! Each detector on a synthetic baseline: it fires where it should, and not where it should not.
use super::*;
use crate::anomaly::baseline::HOUR_US;

const ID: &str = "account:billing";
/// A Monday, 00:00 UTC, well after the epoch.
const DAY0: i64 = 20_000 * 24;

fn config() -> AnomalyConfig {
    let mut config = AnomalyConfig::default();
    config.request_spike.k = 3.0;
    config.request_spike.min_per_hour = 20;
    config.token_spike.k = 3.0;
    config.token_spike.min_per_hour = 1000;
    config.suppress_secs = 3600;
    config
}

fn at(hour: i64) -> i64 {
    hour * HOUR_US + 1
}

fn facts(hour: i64) -> ExchangeFacts {
    ExchangeFacts {
        exchange_id: "ex-1".into(),
        started_us: at(hour),
        model: Some("gpt-4o-mini".into()),
        tokens: 10,
        ..ExchangeFacts::default()
    }
}

/// Three days of `per_hour` exchanges every hour, 10 tokens each, model gpt-4o-mini.
fn with_baseline(config: AnomalyConfig, per_hour: u64) -> Detectors {
    let mut detectors = Detectors::new(config);
    for hour in DAY0..DAY0 + 72 {
        // A little spread: alternate hours one busier.
        let n = per_hour + (hour % 2) as u64;
        for _ in 0..n {
            detectors.learn(ID, at(hour), 10, Some("gpt-4o-mini"));
        }
    }
    detectors
}

fn fired(verdicts: &[Verdict]) -> Vec<Detector> {
    verdicts
        .iter()
        .filter_map(|v| match v {
            Verdict::Fired(f) => Some(f.detector),
            Verdict::Suppressed(_) => None,
        })
        .collect()
}

/// Runs `n` exchanges in `hour`; the detectors that fired, in order.
fn run(
    detectors: &mut Detectors,
    hour: i64,
    n: u64,
    make: impl Fn() -> ExchangeFacts,
) -> Vec<Detector> {
    let mut all = Vec::new();
    for _ in 0..n {
        let f = make();
        all.extend(fired(&detectors.observe(ID, &f, f.started_us)));
    }
    let _ = hour;
    all
}

#[test]
fn a_request_spike_fires_above_k_sigma_and_the_floor_and_not_at_the_baseline_rate() {
    let hour = DAY0 + 72;
    let mut detectors = with_baseline(config(), 5);
    // The baseline rate (5–6 an hour): nothing.
    assert_eq!(run(&mut detectors, hour, 6, || facts(hour)), vec![]);
    // Up to the floor (20) it is not a spike yet, though far above mean + 3σ (≈ 7).
    assert_eq!(run(&mut detectors, hour, 13, || facts(hour)), vec![]);
    let verdicts = detectors.observe(ID, &facts(hour), at(hour));
    let Some(Verdict::Fired(finding)) = verdicts.first() else {
        panic!("the 20th request of the hour is a spike: {verdicts:?}");
    };
    assert_eq!(finding.detector, Detector::RequestSpike);
    assert_eq!(finding.details.observed, 20.0);
    assert_eq!(finding.details.mean, Some(5.5));
    assert_eq!(finding.details.stddev, Some(0.5));
    assert_eq!(finding.details.baseline_hours, Some(72));
    assert!(
        finding.summary.contains("20 requests this hour"),
        "{}",
        finding.summary
    );
}

#[test]
fn k_sigma_governs_when_it_is_above_the_floor() {
    let mut config = config();
    config.request_spike.min_per_hour = 1;
    let hour = DAY0 + 72;
    let mut detectors = with_baseline(config, 5);
    // mean 5.5, σ 0.5, k 3: the threshold is 7; the 8th request exceeds it.
    assert_eq!(run(&mut detectors, hour, 7, || facts(hour)), vec![]);
    assert_eq!(
        run(&mut detectors, hour, 1, || facts(hour)),
        vec![Detector::RequestSpike]
    );
}

#[test]
fn the_floor_prevents_firing_on_a_tiny_baseline() {
    let mut detectors = Detectors::new(config());
    // One exchange ever, an hour ago: mean ~1, σ 0; 19 this hour is far above k·σ, under the floor.
    detectors.learn(ID, at(DAY0), 10, Some("gpt-4o-mini"));
    assert_eq!(
        run(&mut detectors, DAY0 + 1, 19, || facts(DAY0 + 1)),
        vec![]
    );
}

#[test]
fn a_token_spike_fires_on_tokens_alone() {
    let hour = DAY0 + 72;
    let mut detectors = with_baseline(config(), 5);
    let heavy = || ExchangeFacts {
        tokens: 600,
        ..facts(hour)
    };
    assert_eq!(run(&mut detectors, hour, 1, heavy), vec![]);
    assert_eq!(
        run(&mut detectors, hour, 1, heavy),
        vec![Detector::TokenSpike]
    );
}

#[test]
fn a_new_model_fires_once_and_only_with_a_baseline() {
    let hour = DAY0 + 72;
    let other = || ExchangeFacts {
        model: Some("o1-preview".into()),
        ..facts(hour)
    };
    let mut detectors = with_baseline(config(), 5);
    assert_eq!(
        run(&mut detectors, hour, 1, other),
        vec![Detector::NewModel]
    );
    // Known from now on: not new again, suppressed or not.
    let again = detectors.observe(ID, &other(), at(hour) + 4 * 3600 * 1_000_000);
    assert!(again.is_empty(), "{again:?}");
    // A newcomer's models are not new: it has no baseline to know them by.
    let mut newcomer = Detectors::new(config());
    newcomer.learn(ID, at(DAY0), 10, Some("gpt-4o-mini"));
    assert_eq!(run(&mut newcomer, DAY0 + 1, 1, other), vec![]);
}

#[test]
fn repeats_are_suppressed_for_suppress_secs() {
    let hour = DAY0 + 72;
    let other = |model: &str| ExchangeFacts {
        model: Some(model.into()),
        ..facts(hour)
    };
    let mut detectors = with_baseline(config(), 5);
    assert_eq!(
        fired(&detectors.observe(ID, &other("a"), at(hour))),
        vec![Detector::NewModel]
    );
    let within = detectors.observe(ID, &other("b"), at(hour) + 10);
    assert_eq!(within, vec![Verdict::Suppressed(Detector::NewModel)]);
    // Another identity is not suppressed by this one's alert.
    for h in DAY0..DAY0 + 72 {
        detectors.learn("account:other", at(h), 1, Some("gpt-4o-mini"));
    }
    let f = other("c");
    assert_eq!(
        fired(&detectors.observe("account:other", &f, at(hour) + 20)),
        vec![Detector::NewModel]
    );
    // After suppress_secs it fires again.
    let later = at(hour) + 3600 * 1_000_000;
    assert_eq!(
        fired(&detectors.observe(ID, &other("d"), later)),
        vec![Detector::NewModel]
    );
}

#[test]
fn probing_fires_on_repeated_denials_within_the_window_only() {
    let mut config = config();
    config.probing.denials = 3;
    config.probing.window_secs = 60;
    let mut detectors = with_baseline(config, 5);
    let hour = DAY0 + 72;
    let denied = |offset_s: i64| ExchangeFacts {
        denied: true,
        started_us: at(hour) + offset_s * 1_000_000,
        ..facts(hour)
    };
    let mut observe = |f: ExchangeFacts| fired(&detectors.observe(ID, &f, f.started_us));
    // Denials 100 s apart never make 3 within 60 s.
    assert_eq!(observe(denied(0)), vec![]);
    assert_eq!(observe(denied(100)), vec![]);
    assert_eq!(observe(denied(200)), vec![]);
    // An allowed exchange does not count.
    assert_eq!(observe(facts(hour)), vec![]);
    assert_eq!(observe(denied(210)), vec![]);
    assert_eq!(observe(denied(220)), vec![Detector::Probing]);
}

#[test]
fn a_pii_burst_fires_when_masked_values_add_up_within_the_window() {
    let mut config = config();
    config.pii_burst.masked = 10;
    config.pii_burst.window_secs = 60;
    let mut detectors = with_baseline(config, 5);
    let hour = DAY0 + 72;
    let masked = |offset_s: i64, n: u64| ExchangeFacts {
        masked: n,
        started_us: at(hour) + offset_s * 1_000_000,
        ..facts(hour)
    };
    let mut observe = |f: ExchangeFacts| fired(&detectors.observe(ID, &f, f.started_us));
    assert_eq!(observe(masked(0, 6)), vec![]);
    // 6 + 6, but the first left the window.
    assert_eq!(observe(masked(61, 6)), vec![]);
    assert_eq!(observe(masked(70, 3)), vec![]);
    assert_eq!(observe(masked(80, 1)), vec![Detector::PiiBurst]);
}

#[test]
fn unusual_hours_fire_only_for_hours_never_seen_once_the_baseline_is_big_enough() {
    let mut config = config();
    config.unusual_hours.min_baseline_hours = 20;
    let mut detectors = Detectors::new(config);
    // Office hours: 09:00–16:59 UTC, for three days (24 active hours).
    for day in 0..3 {
        for h in 9..17 {
            detectors.learn(ID, at(DAY0 + day * 24 + h), 10, Some("gpt-4o-mini"));
        }
    }
    let day3 = DAY0 + 3 * 24;
    assert_eq!(
        run(&mut detectors, day3 + 10, 1, || facts(day3 + 10)),
        vec![]
    );
    let night = run(&mut detectors, day3 + 3, 1, || facts(day3 + 3));
    assert_eq!(night, vec![Detector::UnusualHours]);

    // With fewer active hours than min_baseline_hours, no hour is unusual.
    let mut config = self::config();
    config.unusual_hours.min_baseline_hours = 100;
    let mut young = Detectors::new(config);
    for h in 9..17 {
        young.learn(ID, at(DAY0 + h), 10, Some("gpt-4o-mini"));
    }
    assert_eq!(run(&mut young, DAY0 + 27, 1, || facts(DAY0 + 27)), vec![]);
}

#[test]
fn a_presented_real_key_fires_and_disabled_detectors_do_not() {
    let mut detectors = with_baseline(config(), 5);
    let hour = DAY0 + 72;
    let leaked = || ExchangeFacts {
        presented_real_key: true,
        ..facts(hour)
    };
    assert_eq!(
        run(&mut detectors, hour, 1, leaked),
        vec![Detector::RealKey]
    );

    let mut config = config();
    config.real_key.enabled = false;
    config.new_model.enabled = false;
    let mut detectors = with_baseline(config, 5);
    let both = || ExchangeFacts {
        presented_real_key: true,
        model: Some("o1".into()),
        ..facts(hour)
    };
    assert_eq!(run(&mut detectors, hour, 1, both), vec![]);
}
