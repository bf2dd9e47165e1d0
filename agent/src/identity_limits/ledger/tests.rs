use std::{sync::Arc, thread};

use super::*;

/// 2026-12-07T14:30:15Z.
const NOW: i64 = 1_796_653_815_000_000;

fn tokens(n: u64) -> Estimate {
    Estimate { tokens: n, cost: 0 }
}

#[test]
fn requests_per_minute_refuse_until_the_minute_turns() {
    let ledger = Ledger::default();
    let caps = Caps {
        requests_per_minute: Some(3),
        ..Caps::default()
    };
    for _ in 0..3 {
        ledger
            .reserve("k", &caps, tokens(1), NOW)
            .unwrap()
            .settle(tokens(1));
    }
    let refused = ledger.reserve("k", &caps, tokens(1), NOW).err().unwrap();
    assert_eq!(refused.dimension, Dimension::RequestsPerMinute);
    assert_eq!((refused.limit, refused.used), (3, 3));
    assert_eq!(refused.resets_at_us, Windows::at(NOW).minute_end());
    assert!(!refused.dimension.is_budget());
    // Another key has its own headroom; the next minute starts afresh.
    assert!(ledger.reserve("other", &caps, tokens(1), NOW).is_ok());
    assert!(ledger
        .reserve("k", &caps, tokens(1), refused.resets_at_us)
        .is_ok());
}

#[test]
fn the_actual_usage_replaces_the_estimate() {
    let ledger = Ledger::default();
    let caps = Caps {
        tokens_per_day: Some(1000),
        ..Caps::default()
    };
    ledger
        .reserve("k", &caps, tokens(800), NOW)
        .unwrap()
        .settle(tokens(100));
    assert_eq!(ledger.usage("k", NOW).tokens_today, 100);
    let held = ledger.reserve("k", &caps, tokens(800), NOW).unwrap();
    let refused = ledger.reserve("k", &caps, tokens(200), NOW).err().unwrap();
    assert_eq!(refused.dimension, Dimension::TokensPerDay);
    assert!(refused.dimension.is_budget());
    // Dropped unsettled (no usage known): the estimate stays charged.
    drop(held);
    assert_eq!(ledger.usage("k", NOW).tokens_today, 900);
    assert_eq!(ledger.usage("k", NOW).in_flight, 0);
}

#[test]
fn a_settlement_after_the_window_turned_leaves_the_new_window_alone() {
    let ledger = Ledger::default();
    let caps = Caps::default();
    let reservation = ledger.reserve("k", &caps, tokens(50), NOW).unwrap();
    let next_minute = Windows::at(NOW).minute_end();
    assert_eq!(ledger.usage("k", next_minute).tokens_this_minute, 0);
    reservation.settle(tokens(10));
    let usage = ledger.usage("k", next_minute);
    assert_eq!(usage.tokens_this_minute, 0);
    assert_eq!(usage.tokens_today, 10);
}

#[test]
fn concurrent_requests_hold_a_slot_until_they_end() {
    let ledger = Ledger::default();
    let caps = Caps {
        concurrent_requests: Some(2),
        ..Caps::default()
    };
    let a = ledger.reserve("k", &caps, tokens(1), NOW).unwrap();
    let _b = ledger.reserve("k", &caps, tokens(1), NOW).unwrap();
    let refused = ledger.reserve("k", &caps, tokens(1), NOW).err().unwrap();
    assert_eq!(refused.dimension, Dimension::ConcurrentRequests);
    a.settle(tokens(1));
    assert!(ledger.reserve("k", &caps, tokens(1), NOW).is_ok());
}

#[test]
fn a_budget_is_exact_under_64_concurrent_requests() {
    let ledger = Arc::new(Ledger::default());
    let caps = Caps {
        cost_per_day: Some(1_000),
        tokens_per_minute: Some(100_000),
        ..Caps::default()
    };
    let estimate = Estimate {
        tokens: 10,
        cost: 30,
    };
    let admitted: usize = (0..64)
        .map(|_| {
            let ledger = ledger.clone();
            thread::spawn(move || {
                (0..4)
                    .filter(|_| match ledger.reserve("k", &caps, estimate, NOW) {
                        Ok(reservation) => {
                            reservation.settle(estimate);
                            true
                        }
                        Err(_) => false,
                    })
                    .count()
            })
        })
        .map(|worker| worker.join().unwrap())
        .sum();
    // 1000 / 30 = 33 calls fit; never one more.
    assert_eq!(admitted, 33);
    assert_eq!(ledger.usage("k", NOW).cost_today, 990);
}

#[test]
fn a_daily_budget_survives_a_restart_but_not_the_day() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.json");
    let caps = Caps {
        tokens_per_day: Some(1000),
        ..Caps::default()
    };
    let ledger = Ledger::default();
    ledger
        .reserve("k", &caps, tokens(900), NOW)
        .unwrap()
        .settle(tokens(900));
    let _in_flight = ledger.reserve("k", &caps, tokens(50), NOW).unwrap();
    ledger.save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let restarted = Ledger::load(&path).unwrap();
    let usage = restarted.usage("k", NOW);
    assert_eq!((usage.tokens_today, usage.in_flight), (950, 0));
    let refused = restarted
        .reserve("k", &caps, tokens(100), NOW)
        .err()
        .unwrap();
    assert_eq!(refused.dimension, Dimension::TokensPerDay);
    // Tomorrow renews it; an absent file is an empty ledger.
    let tomorrow = Windows::at(NOW).day_end();
    assert!(restarted.reserve("k", &caps, tokens(100), tomorrow).is_ok());
    assert!(Ledger::load(&dir.path().join("none.json"))
        .unwrap()
        .keys
        .lock()
        .unwrap()
        .is_empty());
}
