//! `/api/v1/sessions`: list (the CLI's filters), show, replay and export — the audit store's
//! queries and the CLI's replay timeline, answered as JSON.
use http::{request::Parts, StatusCode};

use super::{blocking, BlockingError};
use crate::api::login::query_pairs;
use crate::{
    api::{
        problem::Problem,
        response::{json, with_type, ApiResponse},
        Api,
    },
    audit::{AuditReader, ExchangeFilter},
    cli::{
        sessions::{outcomes, timeline, ENDPOINTS},
        time_arg::parse_time_arg_now,
    },
    identity::selector::IdentitySelector,
};

/// `list` answers at most this many by default (the CLI's default too).
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 10_000;

pub async fn answer(api: &Api, parts: &Parts, rest: &[&str]) -> Result<ApiResponse, Problem> {
    let db = crate::audit::audit_db_path(&api.context.config.state_dir);
    match rest {
        [] | [""] => {
            let filter = filter(parts, Some(DEFAULT_LIMIT))?;
            let list = blocking(move || Ok(AuditReader::open(&db)?.list(&filter)?)).await?;
            Ok(json(&list))
        }
        ["export"] => {
            let filter = filter(parts, None)?;
            let lines = blocking(move || {
                let mut lines = Vec::new();
                AuditReader::open(&db)?.for_each_exchange(&filter, |detail| {
                    // A detail always serializes; a failure would be a bug, not the store's.
                    lines.extend(serde_json::to_vec(&detail).unwrap_or_default());
                    lines.push(b'\n');
                    Ok(())
                })?;
                Ok(lines)
            })
            .await?;
            Ok(with_type(StatusCode::OK, "application/x-ndjson", lines))
        }
        [id] => {
            let id = id.to_string();
            let detail = blocking(move || {
                AuditReader::open(&db)?
                    .exchange(&id)?
                    .ok_or_else(|| BlockingError::NotFound(format!("no exchange {id}")))
            })
            .await?;
            Ok(json(&detail))
        }
        [id, "replay"] => {
            let id = id.to_string();
            let replay = blocking(move || {
                let detail = AuditReader::open(&db)?
                    .exchange(&id)?
                    .ok_or_else(|| BlockingError::NotFound(format!("no exchange {id}")))?;
                let lines = timeline::lines(&detail.request, detail.response.as_ref());
                Ok(serde_json::json!({ "id": id, "lines": lines }))
            })
            .await?;
            Ok(json(&replay))
        }
        _ => Err(Problem::not_found("no such sessions endpoint")),
    }
}

/// The CLI's filters (`warden sessions list --since … --identity …`) from the query string.
fn filter(parts: &Parts, default_limit: Option<usize>) -> Result<ExchangeFilter, Problem> {
    let mut filter = ExchangeFilter {
        limit: default_limit,
        ..ExchangeFilter::default()
    };
    for (key, value) in query_pairs(parts) {
        if value.is_empty() {
            continue;
        }
        let bad = |why: String| Problem::bad_request(format!("{key}={value:?}: {why}"));
        match key.as_str() {
            "since" => {
                filter.since_us = Some(parse_time_arg_now(&value).map_err(|e| bad(e.to_string()))?)
            }
            "until" => {
                filter.until_us = Some(parse_time_arg_now(&value).map_err(|e| bad(e.to_string()))?)
            }
            "identity" => {
                filter.identity =
                    Some(IdentitySelector::parse(&value).map_err(|e| bad(e.to_string()))?)
            }
            "model" => filter.model = Some(value.clone()),
            "endpoint" if ENDPOINTS.contains(&value.as_str()) => {
                filter.endpoint = Some(value.clone())
            }
            "endpoint" => return Err(bad(format!("one of {}", ENDPOINTS.join(", ")))),
            "outcome" if outcomes().contains(&value.as_str()) => {
                filter.outcome = Some(value.clone())
            }
            "outcome" => return Err(bad(format!("one of {}", outcomes().join(", ")))),
            "limit" => {
                let limit: usize = value.parse().map_err(|_| bad("not a number".into()))?;
                filter.limit = Some(limit.clamp(1, MAX_LIMIT));
            }
            _ => return Err(Problem::bad_request(format!("unknown filter {key:?}"))),
        }
    }
    Ok(filter)
}
