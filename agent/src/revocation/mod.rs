//! Revocation: the identities cut off from every intercepted host, and the signal that cuts their
//! exchanges still in flight.
//!
//! The list is read on every request, so it sits behind an `ArcSwap` (one atomic load, no lock);
//! changes are rare, serialized, persisted (`store`) and announced on a `watch` channel whose
//! value is a generation number. What waits on a request (a forward, a held approval, a response
//! body) waits on [`Revocations::until_revoked`], which wakes only when the list changes: nothing
//! polls, and nothing costs anything per chunk while no revocation happens.
mod cut;
pub mod store;

use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::{
    audit::{
        governance::{Actor, GovernanceEvent, GovernanceRecord},
        AuditError,
    },
    identity::{
        selector::{IdentitySelector, SelectorError},
        Identity,
    },
};
pub use cut::RevocationCut;
pub use store::StoredRevocation;

/// A reason longer than this is refused (it is shown in listings and every refusal's log line).
pub const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("revocation list {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("revocation list {}: {message}", path.display())]
    InvalidFile { path: PathBuf, message: String },
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error("the reason is {0} characters long; at most {MAX_REASON_CHARS} are allowed")]
    ReasonTooLong(usize),
    #[error("no revocation of {0} is in force (`warden revoke --list` shows those that are)")]
    NotInForce(String),
    #[error("{selector} is revoked and in force, but its `revoked` record could not be committed to the audit chain: {source}")]
    RevokedUnrecorded {
        selector: String,
        #[source]
        source: AuditError,
    },
    #[error("{selector} stays revoked: its `restored` record could not be committed to the audit chain: {source}")]
    RestoreUnrecorded {
        selector: String,
        #[source]
        source: AuditError,
    },
}

/// One revocation in force: its selector, parsed, and what is stored of it.
#[derive(Clone, Debug)]
pub struct Revocation {
    pub selector: IdentitySelector,
    pub stored: StoredRevocation,
}

/// What `revoke` did.
#[derive(Debug)]
pub enum Revoked {
    Now(Arc<Revocation>),
    /// The selector was revoked before; that revocation (its author and reason) stands.
    AlreadyInForce(Arc<Revocation>),
}

/// Resolves once an identity is revoked, with the revocation that covers it.
pub type UntilRevoked = Pin<Box<dyn Future<Output = Arc<Revocation>> + Send>>;

pub struct Revocations {
    path: PathBuf,
    in_force: ArcSwap<Vec<Arc<Revocation>>>,
    /// Bumped after every change of `in_force`, before `generation` announces it: what polls
    /// often (a response body, per frame) compares this atomic instead of polling the channel.
    changes: AtomicU64,
    /// Announces every change of `in_force`.
    generation: watch::Sender<u64>,
    /// Held through a whole change, so that the file, the list and the chain change in one order.
    changing: Mutex<()>,
}

impl Revocations {
    /// The revocations persisted in `state_dir` (none if there are none yet).
    pub fn load(state_dir: &Path) -> Result<Self, RevocationError> {
        let path = store::path_in(state_dir);
        let in_force: Vec<_> = store::load(&path)?.into_iter().map(Arc::new).collect();
        for revocation in &in_force {
            tracing::warn!(
                selector = %revocation.stored.selector,
                reason = revocation.stored.reason.as_deref(),
                "revocation in force: the identity's requests are refused"
            );
        }
        Ok(Revocations {
            path,
            in_force: ArcSwap::from_pointee(in_force),
            changes: AtomicU64::new(0),
            generation: watch::Sender::new(0),
            changing: Mutex::new(()),
        })
    }

    /// The revocation that covers `identity`, if one does. One atomic load when none is in force.
    pub fn revoked(&self, identity: &Identity) -> Option<Arc<Revocation>> {
        self.in_force
            .load()
            .iter()
            .find(|revocation| revocation.selector.matches(identity))
            .cloned()
    }

    /// The revocations in force, oldest first.
    pub fn list(&self) -> Arc<Vec<Arc<Revocation>>> {
        self.in_force.load_full()
    }

    /// A receiver that sees every later change of the list (its value is a generation number).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// How many changes the list has had; it moves before the change is announced.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// [`until_revoked`](Self::until_revoked) for something polled per frame: see [`RevocationCut`].
    pub fn cut(self: &Arc<Self>, identity: Arc<Identity>) -> RevocationCut {
        RevocationCut::new(self.clone(), identity)
    }

    /// Resolves as soon as `identity` is revoked (at once if it already is). It subscribes now, so
    /// a revocation made any time after this call is seen; it re-checks only when the list
    /// changes. Whatever waits on behalf of a request (a held approval, a forward, a response
    /// body) selects on it.
    pub fn until_revoked(self: &Arc<Self>, identity: Arc<Identity>) -> UntilRevoked {
        let mut changes = self.subscribe();
        let revocations = self.clone();
        Box::pin(async move {
            loop {
                if let Some(revocation) = revocations.revoked(&identity) {
                    return revocation;
                }
                // The sender lives in `revocations`, which this future holds: it is never closed.
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }

    /// Revokes `selector`: persisted, in force for new requests and announced to those in flight,
    /// then recorded in the chain through `record`. The revocation takes effect even if the
    /// record cannot be committed (that is reported as an error): an incident response must not
    /// wait on the audit store.
    pub fn revoke(
        &self,
        selector: &str,
        reason: Option<String>,
        by: Actor,
        record: impl FnOnce(GovernanceRecord) -> Result<(), AuditError>,
    ) -> Result<Revoked, RevocationError> {
        let selector = IdentitySelector::parse(selector)?;
        let reason = reason.filter(|r| !r.trim().is_empty());
        if let Some(reason) = &reason {
            let chars = reason.chars().count();
            if chars > MAX_REASON_CHARS {
                return Err(RevocationError::ReasonTooLong(chars));
            }
        }
        let text = selector.to_string();
        let _changing = self.lock();
        let current = self.in_force.load_full();
        if let Some(existing) = current.iter().find(|r| r.stored.selector == text) {
            return Ok(Revoked::AlreadyInForce(existing.clone()));
        }
        let at_us = now_us();
        let revocation = Arc::new(Revocation {
            selector,
            stored: StoredRevocation {
                selector: text.clone(),
                by: by.clone(),
                reason: reason.clone(),
                at_us,
            },
        });
        let mut next = current.as_ref().clone();
        next.push(revocation.clone());
        self.replace(next)?;
        let event = GovernanceEvent::Revoked {
            selector: text.clone(),
            by,
            reason,
        };
        record(governance(at_us, event)).map_err(|source| RevocationError::RevokedUnrecorded {
            selector: text,
            source,
        })?;
        Ok(Revoked::Now(revocation))
    }

    /// Lifts the revocation of exactly `selector` (as written to `revoke`; other revocations that
    /// cover the same identities stay). Recorded in the chain first: if that fails, the
    /// revocation stays in force.
    pub fn restore(
        &self,
        selector: &str,
        by: Actor,
        record: impl FnOnce(GovernanceRecord) -> Result<(), AuditError>,
    ) -> Result<Arc<Revocation>, RevocationError> {
        let text = IdentitySelector::parse(selector)?.to_string();
        let _changing = self.lock();
        let current = self.in_force.load_full();
        let Some(lifted) = current.iter().find(|r| r.stored.selector == text).cloned() else {
            return Err(RevocationError::NotInForce(text));
        };
        let event = GovernanceEvent::Restored {
            selector: text.clone(),
            by,
        };
        record(governance(now_us(), event)).map_err(|source| {
            RevocationError::RestoreUnrecorded {
                selector: text.clone(),
                source,
            }
        })?;
        let next = current
            .iter()
            .filter(|r| r.stored.selector != text)
            .cloned()
            .collect();
        self.replace(next)?;
        Ok(lifted)
    }

    /// Persists `next`, puts it in force and wakes everything waiting in `until_revoked`.
    fn replace(&self, next: Vec<Arc<Revocation>>) -> Result<(), RevocationError> {
        let owned: Vec<Revocation> = next.iter().map(|r| r.as_ref().clone()).collect();
        store::save(&self.path, &owned)?;
        self.in_force.store(Arc::new(next));
        let changes = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        self.generation.send_replace(changes);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is (); a panic while holding it leaves nothing half-changed in memory.
        self.changing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn governance(at_us: i64, event: GovernanceEvent) -> GovernanceRecord {
    GovernanceRecord {
        at_us,
        exchange_id: None,
        event,
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
