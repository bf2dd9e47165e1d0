//! The revocation check of a response body, polled on every frame for nothing but an atomic load.
//!
//! Polling the watch channel itself on every frame would take the channel's waiter lock each
//! time, one lock shared by every stream in flight. [`RevocationCut`] polls it only when it must:
//! the first time, when the list has changed since, or when a different task polls the body
//! (its waker must be the one the channel wakes).
use std::{
    sync::Arc,
    task::{Context, Poll, Waker},
};

use super::{Revocation, Revocations, UntilRevoked};
use crate::identity::Identity;

pub struct RevocationCut {
    revocations: Arc<Revocations>,
    /// Registered with the channel, with `waker`, at its last poll.
    until_revoked: UntilRevoked,
    waker: Option<Waker>,
    /// `Revocations::changes` when `until_revoked` was last polled.
    seen: u64,
}

impl RevocationCut {
    pub(super) fn new(revocations: Arc<Revocations>, identity: Arc<Identity>) -> Self {
        // Subscribed now: any revocation from here on is seen.
        let until_revoked = revocations.until_revoked(identity);
        RevocationCut {
            seen: revocations.changes(),
            revocations,
            until_revoked,
            waker: None,
        }
    }

    /// Ready with the revocation once the identity is revoked. Until the list changes, a poll
    /// from the task already registered costs one atomic load and a waker comparison.
    pub fn poll_revoked(&mut self, cx: &mut Context<'_>) -> Poll<Arc<Revocation>> {
        let changes = self.revocations.changes();
        let registered = self
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if registered && changes == self.seen {
            return Poll::Pending;
        }
        self.seen = changes;
        self.waker = Some(cx.waker().clone());
        self.until_revoked.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::task::Wake;

    use super::*;
    use crate::audit::governance::Actor;

    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_cut_sleeps_until_a_revocation_wakes_it_and_then_fires_for_its_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let revocations = Arc::new(Revocations::load(dir.path()).unwrap());
        let identity = |uid| crate::revocation::tests::identity("agent", uid);
        let mut billing = revocations.cut(identity(1000));
        let mut research = revocations.cut(identity(1001));
        let woken = Arc::new(CountingWaker(0.into()));
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(billing.poll_revoked(&mut cx).is_pending());
        assert!(research.poll_revoked(&mut cx).is_pending());
        assert!(
            billing.poll_revoked(&mut cx).is_pending(),
            "polled again: still nothing"
        );
        assert_eq!(woken.0.load(std::sync::atomic::Ordering::SeqCst), 0);

        let by = Actor::default();
        revocations
            .revoke("uid:1000", None, by, |_| Ok(()))
            .unwrap();
        assert!(
            woken.0.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "the revocation wakes the waiting bodies"
        );
        match billing.poll_revoked(&mut cx) {
            Poll::Ready(revocation) => assert_eq!(revocation.stored.selector, "uid:1000"),
            Poll::Pending => panic!("the revoked identity's body is not cut"),
        }
        assert!(
            research.poll_revoked(&mut cx).is_pending(),
            "uid 1001 goes on"
        );
    }
}
