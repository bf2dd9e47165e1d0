//! `/api/v1/identities` (who has been calling, from the audit store's recent exchanges) and
//! `/api/v1/revocations` (the revocations in force; revoke and restore, as `warden revoke`).
use std::collections::HashMap;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::{blocking, body_as};
use crate::{
    admin::{revocations, AdminResponse},
    api::{
        auth::Caller,
        problem::Problem,
        response::{json, ApiResponse},
        Api,
    },
    audit::{AuditReader, ExchangeFilter, ExchangeSummary},
};

/// How many recent exchanges the identities page is drawn from.
const RECENT_EXCHANGES: usize = 2_000;

/// One identity seen calling, with the selector that would revoke it.
#[derive(Serialize)]
struct SeenIdentity {
    selector: String,
    user: Option<String>,
    uid: u32,
    unit: Option<String>,
    container: Option<String>,
    account: Option<String>,
    exe: Option<String>,
    exchanges: u64,
    last_seen_us: i64,
}

pub async fn identities(api: &Api) -> Result<ApiResponse, Problem> {
    let db = crate::audit::audit_db_path(&api.context.config.state_dir);
    let recent = blocking(move || {
        let filter = ExchangeFilter {
            limit: Some(RECENT_EXCHANGES),
            ..ExchangeFilter::default()
        };
        Ok(AuditReader::open(&db)?.list(&filter)?)
    })
    .await?;
    Ok(json(&serde_json::json!({ "identities": group(recent) })))
}

/// The most specific selector an exchange names: its account, unit, or uid.
fn selector(summary: &ExchangeSummary) -> String {
    if let Some(account) = &summary.account {
        return format!("account:{account}");
    }
    if let Some(unit) = &summary.unit {
        return format!("unit:{unit}");
    }
    format!("uid:{}", summary.uid)
}

/// Newest first in, so the first exchange of a selector is its last seen.
fn group(recent: Vec<ExchangeSummary>) -> Vec<SeenIdentity> {
    let mut seen: Vec<SeenIdentity> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for summary in recent {
        let selector = selector(&summary);
        match index.get(&selector) {
            Some(&i) => seen[i].exchanges += 1,
            None => {
                index.insert(selector.clone(), seen.len());
                seen.push(SeenIdentity {
                    selector,
                    user: summary.user,
                    uid: summary.uid,
                    unit: summary.unit,
                    container: summary.container,
                    account: summary.account,
                    exe: summary.exe,
                    exchanges: 1,
                    last_seen_us: summary.started_us,
                });
            }
        }
    }
    seen
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    selector: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    selector: String,
}

pub async fn revocations(
    api: &Api,
    caller: &Caller,
    method: &Method,
    rest: &[&str],
    body: Bytes,
) -> Result<ApiResponse, Problem> {
    let context = api.context.clone();
    let actor = caller.principal.actor();
    // Revoking commits and waits for the chain (commit_blocking): off the async workers.
    let answer = match (method, rest) {
        (&Method::GET, [] | [""]) => revocations::list(&context),
        (&Method::POST, [] | [""]) => {
            let request: RevokeBody = body_as(&body)?;
            blocking(move || {
                Ok(revocations::revoke(
                    &context,
                    &actor,
                    &request.selector,
                    request.reason,
                ))
            })
            .await?
        }
        (&Method::POST, ["restore"]) => {
            let request: RestoreBody = body_as(&body)?;
            blocking(move || Ok(revocations::restore(&context, &actor, &request.selector))).await?
        }
        _ => return Err(Problem::not_found("no such revocations endpoint")),
    };
    match answer {
        AdminResponse {
            ok: true, status, ..
        } => Ok(json(&status.unwrap_or_default())),
        AdminResponse { error, .. } => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            error.unwrap_or_default(),
        )),
    }
}
