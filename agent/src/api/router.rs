//! One API request: the console's files, sign-in and sign-out, or an `/api/v1/` call
//! (authenticated, answered, then put on record with the person's name; fail closed).
use std::sync::Arc;

use bytes::Bytes;
use http::{header, request::Parts, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::{
    auth::{is_safe, Caller},
    login,
    problem::Problem,
    response::{full, secure_headers, see_other, ApiResponse},
    Api, Ready,
};
use crate::{
    audit::{
        governance::{GovernanceEvent, GovernanceRecord},
        record::AuditRecord,
    },
    ids::now_us,
};

/// Request bodies are small JSON objects (a reason, a selector).
const MAX_BODY_BYTES: usize = 64 * 1024;

pub async fn handle(api: Arc<Api>, request: Request<Incoming>) -> ApiResponse {
    let (parts, body) = request.into_parts();
    let mut response = match route(&api, &parts, body).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    };
    secure_headers(response.headers_mut());
    api.context.metrics.api.answered(response.status().as_u16());
    response
}

async fn route(api: &Api, parts: &Parts, body: Incoming) -> Result<ApiResponse, Problem> {
    let path = parts.uri.path();
    if let Some(asset) = path
        .starts_with("/assets/")
        .then(|| super::console::asset(path))
        .flatten()
    {
        return Ok(asset_response(asset));
    }
    let ready = api.ready.get().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the identity provider has not been reached yet; Warden keeps trying (see its log)",
        )
    })?;
    match (parts.method.clone(), path) {
        (Method::GET, "/" | "/index.html") => match ready.auth.session_of(parts) {
            Some(_) => super::console::asset("/")
                .map(asset_response)
                .ok_or_else(|| Problem::not_found("the console is not built in")),
            None => Ok(see_other("/login")),
        },
        (Method::GET, "/login") => ready.login.start(&ready.auth, parts),
        (Method::GET, "/oidc/callback") => {
            let (principal, response) = ready.login.finish(&ready.auth, parts).await?;
            record(
                api,
                GovernanceEvent::SignedIn {
                    by: principal.actor(),
                },
            )
            .await?;
            tracing::info!(who = principal.describe(), role = ?principal.role, "console sign-in");
            Ok(response)
        }
        (Method::POST, "/logout") => {
            let (id, session) = ready
                .auth
                .session_of(parts)
                .ok_or_else(|| Problem::unauthorized("not signed in"))?;
            ready.auth.check_csrf(parts, &session)?;
            Ok(login::logout(&ready.auth, &id))
        }
        (_, path) if path.starts_with("/api/v1/") => api_call(api, ready, parts, body).await,
        _ => Err(Problem::not_found(format!("no such page: {path}"))),
    }
}

async fn api_call(
    api: &Api,
    ready: &Ready,
    parts: &Parts,
    body: Incoming,
) -> Result<ApiResponse, Problem> {
    let caller = ready.auth.authenticate(parts).await?;
    let body = match is_safe(&parts.method) {
        true => Bytes::new(),
        false => read_body(body).await?,
    };
    let answered = super::v1::answer(api, &caller, parts, body).await;
    let status = match &answered {
        Ok(response) => response.status(),
        Err(problem) => problem.status,
    };
    if status == StatusCode::FORBIDDEN {
        tracing::warn!(
            who = caller.principal.describe(),
            method = %parts.method,
            path = parts.uri.path(),
            "API request refused"
        );
    }
    let event = GovernanceEvent::ApiRequest {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default(),
        status: status.as_u16(),
        by: caller.principal.actor(),
    };
    record(api, event).await?;
    answered
}

/// Commits `event` to the chain; when it cannot be, the request is not answered.
async fn record(api: &Api, event: GovernanceEvent) -> Result<(), Problem> {
    let record = GovernanceRecord {
        at_us: now_us(),
        exchange_id: None,
        event,
    };
    api.context
        .audit
        .commit(AuditRecord::Governance(record))
        .await
        .map(drop)
        .map_err(|error| {
            tracing::error!(%error, "API request not recorded; not answered");
            Problem::unrecorded(error)
        })
}

async fn read_body(body: Incoming) -> Result<Bytes, Problem> {
    Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|error| {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body unreadable or over {MAX_BODY_BYTES} bytes: {error}"),
            )
        })
}

fn asset_response(asset: super::console::Asset) -> ApiResponse {
    let mut response = http::Response::new(full(Bytes::from_static(asset.body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    response
}

/// Who the caller is, for the caller (the console's header and its buttons).
pub fn me(caller: &Caller) -> serde_json::Value {
    let principal = &caller.principal;
    serde_json::json!({
        "subject": principal.person.subject,
        "email": principal.person.email,
        "name": principal.name,
        "roles": principal.roles(),
        "csrf_token": caller.csrf_token(),
    })
}
