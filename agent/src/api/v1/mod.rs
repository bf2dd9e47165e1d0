//! `/api/v1/`: each endpoint, the role it needs, and the shared function that answers it.
mod approvals;
mod identities;
mod sessions;

use bytes::Bytes;
use http::{request::Parts, Method};
use serde::de::DeserializeOwned;

use super::{
    auth::Caller,
    principal::Role,
    problem::Problem,
    response::{json, ApiResponse},
    router::me,
    Api,
};
use crate::audit::{AuditError, AuditReader};

pub async fn answer(
    api: &Api,
    caller: &Caller,
    parts: &Parts,
    body: Bytes,
) -> Result<ApiResponse, Problem> {
    let path = parts.uri.path().trim_start_matches("/api/v1/");
    let segments: Vec<&str> = path.split('/').collect();
    let method = &parts.method;
    if segments != ["me"] {
        require(caller, needed_role(method, &segments))?;
    }
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["me"]) => Ok(json(&me(caller))),
        (Method::GET, ["status"]) => {
            let admin = api.admin.clone();
            let status = blocking(move || Ok(serde_json::to_value(admin.status())?)).await?;
            Ok(json(&status))
        }
        (Method::GET, ["audit", "verify"]) => verify(api).await,
        (Method::GET, ["sessions", ..]) => sessions::answer(api, parts, &segments[1..]).await,
        (_, ["approvals", ..]) => approvals::answer(api, caller, parts, &segments[1..], body).await,
        (Method::GET, ["identities"]) => identities::identities(api).await,
        (_, ["revocations", ..]) => {
            identities::revocations(api, caller, method, &segments[1..], body).await
        }
        _ => Err(Problem::not_found(format!(
            "no endpoint {method} /api/v1/{path}"
        ))),
    }
}

/// Reads need an auditor; deciding approvals an approver; revoking and restoring an admin.
fn needed_role(method: &Method, segments: &[&str]) -> Role {
    match (method, segments.first()) {
        (&Method::GET, _) => Role::Auditor,
        (_, Some(&"approvals")) => Role::Approver,
        _ => Role::Admin,
    }
}

fn require(caller: &Caller, role: Role) -> Result<(), Problem> {
    match caller.principal.has(role) {
        true => Ok(()),
        false => Err(Problem::forbidden(format!(
            "{} lacks the {} role (held: {}); [api.roles] maps the identity provider's groups to roles",
            caller.principal.describe(),
            role.as_str(),
            match caller.principal.role {
                Some(held) => held.as_str(),
                None => "none",
            },
        ))),
    }
}

/// `audit verify`: the report, or where the chain breaks.
async fn verify(api: &Api) -> Result<ApiResponse, Problem> {
    let db = crate::audit::audit_db_path(&api.context.config.state_dir);
    let result = blocking(move || {
        let reader = AuditReader::open(&db)?;
        Ok(match reader.verify() {
            Ok(report) => {
                let mut answer = serde_json::to_value(report)?;
                answer["ok"] = true.into();
                answer
            }
            Err(AuditError::ChainBroken { what, .. }) => {
                serde_json::json!({ "ok": false, "problem": format!("audit chain broken: {what}") })
            }
            Err(error) => return Err(error.into()),
        })
    })
    .await?;
    Ok(json(&result))
}

/// Runs store reads (SQLite, blocking) off the async workers.
pub async fn blocking<T, F>(work: F) -> Result<T, Problem>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BlockingError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.into()),
        Err(error) => Err(Problem::internal(format!("internal error: {error}"))),
    }
}

/// What a blocking answer may fail with.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    NotFound(String),
}

impl From<BlockingError> for Problem {
    fn from(error: BlockingError) -> Problem {
        match error {
            BlockingError::NotFound(what) => Problem::not_found(what),
            other => Problem::internal(other),
        }
    }
}

/// A JSON request body as `T`, or 400 naming what is wrong.
pub fn body_as<T: DeserializeOwned>(body: &Bytes) -> Result<T, Problem> {
    serde_json::from_slice(body)
        .map_err(|error| Problem::bad_request(format!("request body: {error}")))
}
