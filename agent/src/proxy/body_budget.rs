//! The memory budget that request bodies read whole share (`[limits] body_memory_budget_bytes`):
//! many concurrent large uploads get a retryable 503 instead of taking the daemon's memory.
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};

/// The budget, and what is reserved from it now.
pub struct BodyBudget {
    limit: u64,
    used: AtomicU64,
    /// `warden_body_budget_used_bytes`.
    gauge: Gauge,
    /// `warden_body_budget_refusals`.
    refusals: Counter,
}

impl BodyBudget {
    pub fn new(limit: u64, gauge: Gauge, refusals: Counter) -> Arc<Self> {
        Arc::new(BodyBudget {
            limit,
            used: AtomicU64::new(0),
            gauge,
            refusals,
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// An empty reservation, grown as a body arrives.
    pub fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }

    fn take(&self, bytes: u64) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|&after| after <= self.limit)
            })
            .is_ok();
        if taken {
            self.gauge.inc_by(bytes as i64);
        } else {
            self.refusals.inc();
        }
        taken
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
        self.gauge.dec_by(bytes as i64);
    }
}

/// Bytes held against the budget until dropped.
pub struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl Reservation {
    /// Reserves `more` bytes too; false (nothing more reserved) when the budget cannot hold them.
    pub fn grow(&mut self, more: usize) -> bool {
        let more = more as u64;
        let grown = self.budget.take(more);
        if grown {
            self.bytes += more;
        }
        grown
    }

    /// `buffer` as `Bytes` that keep this reservation until their last clone is dropped (the
    /// body goes on to the policy, the upstream and the audit writer's queue).
    pub fn hold(self, buffer: BytesMut) -> Bytes {
        Bytes::from_owner(Held {
            buffer,
            _reservation: self,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.bytes);
        }
    }
}

struct Held {
    buffer: BytesMut,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Held {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_past_the_budget_is_refused_and_everything_returns_when_the_bytes_go() {
        let budget = BodyBudget::new(100, Gauge::default(), Counter::default());
        let mut first = budget.reservation();
        assert!(first.grow(60));
        let mut second = budget.reservation();
        assert!(!second.grow(50), "60 + 50 is over 100");
        assert!(second.grow(40));
        assert_eq!(budget.used(), 100);

        let held = first.hold(BytesMut::from(&[7u8; 60][..]));
        let clone = held.clone();
        drop(held);
        assert_eq!(budget.used(), 100, "a clone still holds the body");
        assert_eq!(&clone[..3], &[7, 7, 7]);
        drop(clone);
        assert_eq!(budget.used(), 40);
        drop(second);
        assert_eq!(budget.used(), 0);
    }
}
