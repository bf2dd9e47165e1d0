//! The approval operations of the admin socket: list, show, decide, and watch (which answers with
//! one line per new pending approval for as long as the client stays connected).
use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{authority::Peer, ApprovalView, Approvals};
use crate::{audit::governance::Decision, policy::model::Approver};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ApprovalsRequest {
    /// Pending approvals; with `all`, the closed ones on record too.
    List {
        all: bool,
    },
    Show {
        id: String,
    },
    Decide {
        id: String,
        decision: Decision,
        reason: Option<String>,
        /// Approve for this long: a grant for the requester's identity and the rule.
        for_secs: Option<u64>,
    },
    /// Keep the connection open and receive each new pending approval.
    Watch,
}

/// One answer line.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ApprovalsResponse {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub approvals: Vec<ApprovalView>,
}

impl ApprovalsResponse {
    fn ok(approvals: Vec<ApprovalView>) -> Self {
        ApprovalsResponse {
            ok: true,
            error: None,
            approvals,
        }
    }

    fn refused(error: impl ToString) -> Self {
        ApprovalsResponse {
            ok: false,
            error: Some(error.to_string()),
            approvals: Vec::new(),
        }
    }
}

/// Answers `request` from `peer` on `write`; `read` is the rest of the connection (its end
/// ends a watch).
pub async fn serve<R, W>(
    approvals: Arc<Approvals>,
    request: ApprovalsRequest,
    peer: Peer,
    mut read: R,
    mut write: W,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let answer = match request {
        ApprovalsRequest::List { all: false } => {
            ApprovalsResponse::ok(approvals.pending_for(&peer))
        }
        ApprovalsRequest::List { all: true } => all_for(&approvals, &peer).await,
        ApprovalsRequest::Show { id } => show(&approvals, &peer, &id).await,
        ApprovalsRequest::Decide {
            id,
            decision,
            reason,
            for_secs,
        } => match approvals
            .decide(
                &peer,
                &id,
                decision,
                reason,
                for_secs.map(Duration::from_secs),
            )
            .await
        {
            Ok(view) => ApprovalsResponse::ok(vec![view]),
            Err(error) => {
                tracing::warn!(%error, approval_id = id, by_uid = peer.actor.uid, "approval decision refused");
                ApprovalsResponse::refused(error)
            }
        },
        ApprovalsRequest::Watch => return watch(&approvals, &peer, &mut read, &mut write).await,
    };
    let _ = send(&mut write, &answer).await;
}

async fn all_for(approvals: &Arc<Approvals>, peer: &Peer) -> ApprovalsResponse {
    let (approvals, peer) = (approvals.clone(), peer.clone());
    match tokio::task::spawn_blocking(move || approvals.all_for(&peer)).await {
        Ok(Ok(list)) => ApprovalsResponse::ok(list),
        Ok(Err(error)) => ApprovalsResponse::refused(error),
        Err(error) => ApprovalsResponse::refused(format!("internal error: {error}")),
    }
}

async fn show(approvals: &Arc<Approvals>, peer: &Peer, id: &str) -> ApprovalsResponse {
    if let Some(view) = approvals.pending_for(peer).into_iter().find(|v| v.id == id) {
        return ApprovalsResponse::ok(vec![view]);
    }
    let all = all_for(approvals, peer).await;
    if !all.ok {
        return all;
    }
    match all.approvals.into_iter().find(|v| v.id == id) {
        Some(view) => ApprovalsResponse::ok(vec![view]),
        None => ApprovalsResponse::refused(format!("no approval {id} that you may see")),
    }
}

/// The pending approvals now, then each new one as it arrives, until the client hangs up.
async fn watch<R, W>(approvals: &Arc<Approvals>, peer: &Peer, read: &mut R, write: &mut W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut announced = approvals.subscribe();
    if send(write, &ApprovalsResponse::ok(approvals.pending_for(peer)))
        .await
        .is_err()
    {
        return;
    }
    let mut scratch = [0u8; 64];
    loop {
        tokio::select! {
            // EOF or an error: the watcher left.
            _ = read.read(&mut scratch) => return,
            next = announced.recv() => {
                let view = match next {
                    Ok(view) => view,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "approvals watcher fell behind");
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if !(peer.sees_everything() || peer.is_named(&parse_approvers(&view.approvers))) {
                    continue;
                }
                if send(write, &ApprovalsResponse::ok(vec![view])).await.is_err() {
                    return;
                }
            }
        }
    }
}

pub fn parse_approvers(names: &[String]) -> Vec<Approver> {
    names
        .iter()
        .filter_map(|name| Approver::parse(name))
        .collect()
}

async fn send<W: AsyncWrite + Unpin>(
    write: &mut W,
    answer: &ApprovalsResponse,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(answer).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await
}
