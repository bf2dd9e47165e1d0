//! The registry with a real audit store: whoever closes an approval first writes its one closing
//! record, and a dropped hold is recorded as cancelled.
use std::{sync::Arc, time::Duration};

use super::{authority::Peer, Approvals, DecideError, HoldRequest, Resolution};
use crate::{
    audit::{
        governance::{Actor, Decision, GovernanceEvent},
        record::IdentitySnapshot,
        AuditReader, AuditWriter,
    },
    config::Config,
    metrics::{LiveReadings, Metrics},
    policy::model::Approver,
};

const WAIT: Duration = Duration::from_secs(10);

fn registry(dir: &std::path::Path) -> Arc<Approvals> {
    let config = Config {
        state_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let db = crate::audit::audit_db_path(dir);
    let audit = AuditWriter::start(&db, config.audit.writer_options()).unwrap();
    Approvals::new(&config, audit, Arc::new(Metrics::new(LiveReadings::zero())))
}

fn hold_request() -> HoldRequest {
    HoldRequest {
        exchange_id: "ex-1".into(),
        identity: IdentitySnapshot {
            uid: 0,
            ..IdentitySnapshot::default()
        },
        rule: "review".into(),
        approvers: vec![Approver::User("alice".into())],
        timeout: Duration::from_secs(600),
        model: None,
        endpoint: "chat.completions".into(),
        excerpt: String::new(),
    }
}

fn alice() -> Peer {
    Peer {
        actor: Actor {
            uid: 1000,
            user: Some("alice".into()),
            pid: None,
            oidc: None,
        },
        gids: vec![1000],
        oidc_groups: Vec::new(),
        oidc_usernames: Vec::new(),
        reads_all: false,
    }
}

/// Waits (with a deadline) until the registry holds one approval; its id.
async fn pending_id(approvals: &Approvals) -> String {
    let root = Peer {
        actor: Actor::default(),
        gids: vec![0],
        oidc_groups: Vec::new(),
        oidc_usernames: Vec::new(),
        reads_all: false,
    };
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(view) = approvals.pending_for(&root).pop() {
                return view.id;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the hold registers its approval")
}

fn events(dir: &std::path::Path) -> Vec<&'static str> {
    let reader = AuditReader::open(&crate::audit::audit_db_path(dir)).unwrap();
    reader
        .governance_since(0)
        .unwrap()
        .iter()
        .map(|r| r.event.name())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_resolves_the_hold_once() {
    let dir = tempfile::tempdir().unwrap();
    let approvals = registry(dir.path());
    let held = tokio::spawn({
        let approvals = approvals.clone();
        async move { approvals.hold(hold_request()).await }
    });
    let id = pending_id(&approvals).await;
    let view = approvals
        .decide(
            &alice(),
            &id,
            Decision::Approve,
            None,
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let grant = view.grant.expect("a duration approval opens a grant");
    assert!(matches!(
        held.await.unwrap().unwrap(),
        Resolution::Approved { grant: Some(ref g) } if g.grant_id == grant.grant_id
    ));
    assert!(matches!(
        approvals
            .decide(&alice(), &id, Decision::Deny, Some("late".into()), None)
            .await,
        Err(DecideError::NotPending(_))
    ));
    let requester = hold_request().identity;
    assert_eq!(
        approvals.grant_for(&requester, "review"),
        Some(grant.grant_id)
    );
    assert_eq!(approvals.grant_for(&requester, "other"), None);
    assert_eq!(
        events(dir.path()),
        ["approval_requested", "approval_decided"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_hold_is_recorded_as_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let approvals = registry(dir.path());
    let held = tokio::spawn({
        let approvals = approvals.clone();
        async move { approvals.hold(hold_request()).await }
    });
    let id = pending_id(&approvals).await;
    held.abort();
    assert!(held.await.unwrap_err().is_cancelled());
    assert!(matches!(
        approvals
            .decide(&alice(), &id, Decision::Approve, None, None)
            .await,
        Err(DecideError::NotPending(_))
    ));
    approvals.audit.shutdown();
    let closing = AuditReader::open(&crate::audit::audit_db_path(dir.path()))
        .unwrap()
        .governance_since(0)
        .unwrap()
        .pop()
        .unwrap();
    assert!(
        matches!(closing.event, GovernanceEvent::ApprovalCancelled { approval_id } if approval_id == id)
    );
}
