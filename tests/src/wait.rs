//! Polling with a deadline: the only way these tests wait for anything.

use std::time::{Duration, Instant};

const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what` was awaited.
pub fn until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    match within(timeout, &mut check) {
        Some(value) => value,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes; `None` on timeout.
pub fn within<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_some() {
        let mut n = 0;
        let got = until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(got, 3);
    }

    #[test]
    fn gives_up_after_the_timeout() {
        assert_eq!(within(Duration::from_millis(60), || None::<()>), None);
    }
}
