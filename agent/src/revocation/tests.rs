use std::sync::Arc;

use super::*;

pub(super) fn identity(account: &str, uid: u32) -> Arc<Identity> {
    Arc::new(Identity {
        pid: 4242,
        comm: "python3".into(),
        exe: Some("/usr/bin/python3".into()),
        cmdline: None,
        uid,
        user: None,
        gid: uid,
        cgroup_id: 9,
        cgroup: Some("/agents/billing".into()),
        unit: None,
        container: None,
        account: Some(account.into()),
        k8s_service_account: None,
        k8s_sa_verified: None,
        k8s_sa_selectable: true,
        process_exited: false,
    })
}

fn root() -> Actor {
    Actor {
        uid: 0,
        user: Some("root".into()),
        pid: Some(1),
        oidc: None,
    }
}

/// Records into `chain` what the chain would get.
fn into(
    chain: &Mutex<Vec<GovernanceRecord>>,
) -> impl FnOnce(GovernanceRecord) -> Result<(), AuditError> + '_ {
    |record| {
        chain.lock().unwrap().push(record);
        Ok(())
    }
}

fn failing(_: GovernanceRecord) -> Result<(), AuditError> {
    Err(AuditError::WriterClosed)
}

#[test]
fn revoke_covers_matching_identities_persists_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let revocations = Revocations::load(dir.path()).unwrap();
    let chain = Mutex::new(Vec::new());
    let billing = identity("billing-agent", 1000);
    let research = identity("research-agent", 1001);
    assert!(revocations.revoked(&billing).is_none());

    let revoked = revocations
        .revoke(
            " account:billing-* ",
            Some("incident 42".into()),
            root(),
            into(&chain),
        )
        .unwrap();
    assert!(matches!(revoked, Revoked::Now(ref r) if r.stored.selector == "account:billing-*"));
    assert_eq!(
        revocations
            .revoked(&billing)
            .unwrap()
            .stored
            .reason
            .as_deref(),
        Some("incident 42")
    );
    assert!(
        revocations.revoked(&research).is_none(),
        "another identity is not cut off"
    );
    let chain = chain.into_inner().unwrap();
    assert_eq!(chain.len(), 1);
    assert_eq!(
        chain[0].event,
        GovernanceEvent::Revoked {
            selector: "account:billing-*".into(),
            by: root(),
            reason: Some("incident 42".into()),
        }
    );
    assert_eq!(chain[0].exchange_id, None);

    let reloaded = Revocations::load(dir.path()).unwrap();
    assert!(
        reloaded.revoked(&billing).is_some(),
        "the revocation survives a restart"
    );
}

#[test]
fn revoking_twice_keeps_the_first_and_records_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    let revocations = Revocations::load(dir.path()).unwrap();
    let chain = Mutex::new(Vec::new());
    revocations
        .revoke("uid:1000", Some("first".into()), root(), into(&chain))
        .unwrap();
    let again = revocations
        .revoke("uid:1000", Some("second".into()), root(), into(&chain))
        .unwrap();
    let Revoked::AlreadyInForce(existing) = again else {
        panic!("a second revoke is not a new one")
    };
    assert_eq!(existing.stored.reason.as_deref(), Some("first"));
    assert_eq!(chain.lock().unwrap().len(), 1);
    assert_eq!(revocations.list().len(), 1);
}

#[test]
fn restore_lifts_exactly_that_selector_and_refuses_one_not_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let revocations = Revocations::load(dir.path()).unwrap();
    let chain = Mutex::new(Vec::new());
    let billing = identity("billing-agent", 1000);
    revocations
        .revoke("account:billing-agent", None, root(), into(&chain))
        .unwrap();
    revocations
        .revoke("uid:1000", None, root(), into(&chain))
        .unwrap();
    revocations
        .restore("account:billing-agent", root(), into(&chain))
        .unwrap();
    assert_eq!(
        revocations.revoked(&billing).unwrap().stored.selector,
        "uid:1000",
        "the other revocation still covers it"
    );
    revocations
        .restore("uid:1000", root(), into(&chain))
        .unwrap();
    assert!(revocations.revoked(&billing).is_none());
    assert!(Revocations::load(dir.path()).unwrap().list().is_empty());
    let error = revocations
        .restore("uid:1000", root(), into(&chain))
        .unwrap_err();
    assert!(
        matches!(error, RevocationError::NotInForce(ref s) if s == "uid:1000"),
        "{error}"
    );
    let events: Vec<_> = chain
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.event.name())
        .collect();
    assert_eq!(events, ["revoked", "revoked", "restored", "restored"]);
}

#[test]
fn bad_selectors_and_reasons_are_refused_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let revocations = Revocations::load(dir.path()).unwrap();
    let chain = Mutex::new(Vec::new());
    let error = revocations
        .revoke("billing", None, root(), into(&chain))
        .unwrap_err();
    assert!(error.to_string().contains("has no prefix"), "{error}");
    let error = revocations
        .revoke("uid:alice", None, root(), into(&chain))
        .unwrap_err();
    assert!(error.to_string().contains("takes a number"), "{error}");
    let error = revocations
        .revoke("team:x", None, root(), into(&chain))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown identity selector prefix"),
        "{error}"
    );
    let long = "x".repeat(MAX_REASON_CHARS + 1);
    let error = revocations
        .revoke("uid:1", Some(long), root(), into(&chain))
        .unwrap_err();
    assert!(
        matches!(error, RevocationError::ReasonTooLong(_)),
        "{error}"
    );
    assert!(chain.lock().unwrap().is_empty());
    assert!(revocations.list().is_empty());
}

#[test]
fn a_revocation_the_chain_cannot_record_is_still_in_force_and_a_restore_is_not_made() {
    let dir = tempfile::tempdir().unwrap();
    let revocations = Revocations::load(dir.path()).unwrap();
    let billing = identity("billing-agent", 1000);
    let error = revocations
        .revoke("uid:1000", None, root(), failing)
        .unwrap_err();
    assert!(
        matches!(error, RevocationError::RevokedUnrecorded { .. }),
        "{error}"
    );
    assert!(revocations.revoked(&billing).is_some(), "fails closed");
    let error = revocations
        .restore("uid:1000", root(), failing)
        .unwrap_err();
    assert!(
        matches!(error, RevocationError::RestoreUnrecorded { .. }),
        "{error}"
    );
    assert!(revocations.revoked(&billing).is_some(), "fails closed");
}

#[tokio::test]
async fn until_revoked_wakes_on_the_revocation_only_for_covered_identities() {
    let dir = tempfile::tempdir().unwrap();
    let revocations = Arc::new(Revocations::load(dir.path()).unwrap());
    let chain = Mutex::new(Vec::new());
    let mut billing = revocations.until_revoked(identity("billing-agent", 1000));
    let mut research = revocations.until_revoked(identity("research-agent", 1001));
    let pending = |future: &mut UntilRevoked| {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        future.as_mut().poll(&mut cx).is_pending()
    };
    assert!(pending(&mut billing) && pending(&mut research));
    revocations
        .revoke(
            "account:billing-agent",
            Some("incident".into()),
            root(),
            into(&chain),
        )
        .unwrap();
    let revocation = tokio::time::timeout(std::time::Duration::from_secs(5), billing)
        .await
        .expect("the revocation wakes the waiting exchange");
    assert_eq!(revocation.stored.selector, "account:billing-agent");
    assert!(
        pending(&mut research),
        "an identity not covered keeps going"
    );
    // Already revoked: resolves on its first poll.
    let mut again = revocations.until_revoked(identity("billing-agent", 1000));
    assert!(!pending(&mut again));
}
