//! Streamed SDK calls against an upstream that holds all events after the first piece of text at
//! its gate until the client has reported that text, and the check that the audit record puts
//! every event on the side of the gate's opening where it really arrived (no timing involved).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::scripts::FIRST_TEXT_LINE;
use crate::agent_fixture::AgentFixture;
use crate::client::ClientOutput;
use crate::fake_upstream::GATE_SAFETY_TIMEOUT;
use crate::wait;

/// How long a gated client may take to report its first text. Shorter than the upstream's
/// [`GATE_SAFETY_TIMEOUT`], so that a stream the safety timeout released can't pass for one that
/// the test released.
const FIRST_TEXT_TIMEOUT: Duration = GATE_SAFETY_TIMEOUT.saturating_sub(Duration::from_secs(5));

/// How much earlier than the test's reading of the clock at the gate's opening the daemon's record
/// may place an event that came after it. The record gives an event's time as the exchange's start
/// (`started_at_us`, a wall-clock reading) plus its offset (a monotonic-clock duration since a start
/// instant the daemon sampled separately), and the test reads the wall clock in another process:
/// the three readings are not one clock, so they may disagree by a little — never by 5 ms.
const CLOCK_TOLERANCE_US: f64 = 5_000.0;

/// Where the upstream's gate goes in `events` (what it streams, in order): right after the first
/// event that contains `first_text`, so the client can report that text while the rest is held.
pub fn after_first_text(events: &[String], first_text: &str) -> usize {
    let index = events
        .iter()
        .position(|event| event.contains(first_text))
        .unwrap_or_else(|| panic!("no event carries {first_text:?}: {events:#?}"));
    index + 1
}

/// Now, as unix time in microseconds (what `started_at_us` in the audit record is).
pub fn unix_micros_now() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("test clocks are after 1970");
    i64::try_from(now.as_micros()).expect("a plausible time")
}

/// Runs `python -c script` (a streaming script of [`super::scripts`]) as `fx`'s agent, whose
/// upstream was built with `gate_after`, and opens the gate only once the script has printed
/// [`FIRST_TEXT_LINE`] and the upstream holds the rest of the stream. Returns the finished,
/// successful client and the wall-clock time (unix µs) read right before the gate opened: the
/// events before the gate reached Warden before that time, all the others after it.
pub fn run(fx: &AgentFixture, python: &Path, script: &str) -> (ClientOutput, i64) {
    let upstream = &fx.upstream;
    let mut client = super::sdk_client(fx, python, script).spawn();
    let first_text =
        client.wait_for_stdout_line(FIRST_TEXT_TIMEOUT, |line| line == FIRST_TEXT_LINE);
    // The upstream pauses for its chunk delay before it reaches the gate.
    let held = first_text.is_some()
        && wait::within(FIRST_TEXT_TIMEOUT, || {
            (upstream.held_at_gate() > 0).then_some(())
        })
        .is_some();
    let gate_open_us = unix_micros_now();
    // Opened whatever happened, so the client finishes and its output can be shown.
    upstream.open_gate();
    let out = client.wait();
    assert!(
        first_text.is_some(),
        "the first text did not reach the client while the upstream held the rest\n{out}"
    );
    assert!(
        held,
        "the upstream never held the stream at its gate\n{out}"
    );
    out.assert_success();
    (out, gate_open_us)
}

/// Asserts that the stream events recorded in `detail` (a `sessions show` object) are in order,
/// those before index `gate` recorded before the gate opened at `gate_open_us` (unix µs), and
/// those the gate held back recorded after it.
pub fn assert_events_around_gate(detail: &Value, gate: usize, gate_open_us: i64) {
    let events = detail["response"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events recorded: {detail:#}"));
    assert!(
        events.len() > gate,
        "{} events recorded, none of them after the gate at {gate}: {detail:#}",
        events.len()
    );
    let offsets: Vec<f64> = events
        .iter()
        .map(|e| {
            e["offset_ms"]
                .as_f64()
                .unwrap_or_else(|| panic!("an event without a numeric offset_ms: {e}"))
        })
        .collect();
    // The daemon notes one offset per chunk it reads: events that came in one read share it.
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]),
        "event offsets go back in time: {offsets:?}"
    );
    let started_at_us = detail["request"]["started_at_us"]
        .as_i64()
        .unwrap_or_else(|| panic!("no request.started_at_us: {detail:#}"));
    let gate_open = gate_open_us as f64;
    for (i, offset) in offsets.iter().enumerate() {
        let at_us = started_at_us as f64 + offset * 1000.0;
        if i < gate {
            assert!(
                at_us < gate_open,
                "event {i} reached the client before the gate opened at {gate_open_us} µs, but \
                 is recorded at {at_us} µs (start {started_at_us} µs, offsets {offsets:?} ms)"
            );
        } else {
            assert!(
                at_us >= gate_open - CLOCK_TOLERANCE_US,
                "event {i} was sent after the gate opened at {gate_open_us} µs, but is recorded \
                 at {at_us} µs (start {started_at_us} µs, offsets {offsets:?} ms)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(started_at_us: i64, offsets_ms: &[f64]) -> Value {
        let events: Vec<Value> = offsets_ms
            .iter()
            .map(|offset| serde_json::json!({"offset_ms": offset, "data": "{}"}))
            .collect();
        serde_json::json!({
            "request": {"started_at_us": started_at_us},
            "response": {"events": events},
        })
    }

    #[test]
    fn the_gate_goes_after_the_first_event_with_text() {
        let events = ["role", "Alpha", "Bravo"].map(str::to_owned);
        assert_eq!(after_first_text(&events, "Alpha"), 2);
    }

    #[test]
    fn events_on_the_right_side_of_the_gate_pass() {
        // Started at 1 s; the gate opened at 1.050 s; two events came in one read after it, one
        // within the clock tolerance.
        let at = detail(1_000_000, &[10.0, 20.0, 47.0, 60.0, 60.0]);
        assert_events_around_gate(&at, 2, 1_050_000);
    }

    #[test]
    #[should_panic(expected = "was sent after the gate opened")]
    fn a_held_back_event_recorded_before_the_gate_fails() {
        assert_events_around_gate(&detail(1_000_000, &[10.0, 20.0, 30.0]), 2, 1_050_000);
    }

    #[test]
    #[should_panic(expected = "reached the client before the gate opened")]
    fn a_first_event_recorded_after_the_gate_fails() {
        assert_events_around_gate(&detail(1_000_000, &[60.0, 70.0]), 1, 1_050_000);
    }

    #[test]
    #[should_panic(expected = "go back in time")]
    fn offsets_going_back_fail() {
        assert_events_around_gate(&detail(1_000_000, &[10.0, 70.0, 60.0]), 1, 1_050_000);
    }
}
