//! How long a sink waits before retrying a batch: exponential from 500 ms, capped, with jitter.
use std::time::Duration;

const FIRST: Duration = Duration::from_millis(500);

/// The retry schedule of one failing batch; `reset` once it went through.
#[derive(Debug)]
pub struct Backoff {
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            max: max.max(FIRST),
            failures: 0,
        }
    }

    /// The wait before the next attempt, after one more failure. `jitter` in [0, 1) picks a point
    /// in the upper half of the step ("equal jitter"), so sinks that failed together spread out
    /// without ever retrying at once.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let step = FIRST
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        step / 2 + step.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// The wait after a rejection: retrying the same batch cannot help soon, so the longest.
    pub fn longest(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.max
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A jitter in [0, 1) from the clock: good enough to spread retries, not for anything secret.
pub fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(4));
        let full: Vec<Duration> = (0..6).map(|_| backoff.next_delay(0.999_999)).collect();
        let ms: Vec<u128> = full.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![499, 999, 1999, 3999, 3999, 3999]);
        assert_eq!(backoff.failures(), 6);
        backoff.reset();
        assert_eq!(backoff.next_delay(0.0), Duration::from_millis(250));
        assert_eq!(backoff.longest(), Duration::from_secs(4));
    }

    #[test]
    fn jitter_stays_in_the_upper_half_of_the_step() {
        for j in [0.0, 0.3, 0.7, 0.99] {
            let delay = Backoff::new(Duration::from_secs(60)).next_delay(j);
            assert!(delay >= Duration::from_millis(250) && delay < Duration::from_millis(500));
        }
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
