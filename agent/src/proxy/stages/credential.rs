//! Credential: the last edit of the request's headers before it goes upstream. On a host with
//! `[[credential]]` entries, whatever key the agent presented is removed and the custodied one
//! injected; an identity no credential serves, or (under `presented = "require-placeholder"`) an
//! agent presenting a real-looking provider key, is refused 401 `invalid_api_key`.
//!
//! The refusals happen here, after `record`: the request is already on record (its
//! `authorization` as the agent's fingerprint, never the injected key), and the refusal is
//! recorded as its response. Nothing of a refused request goes upstream.
use std::sync::Arc;

use http::{header, HeaderMap, StatusCode};

use super::{ConnectionInfo, Outbound, Refusal};
use crate::{
    audit::record::Outcome,
    credentials::{
        presented::{looks_like_provider_key, presented_key},
        Credential, Custody, Presented,
    },
    openai::error::ApiError,
    proxy::recording::fingerprint,
};

pub async fn credential(
    connection: &ConnectionInfo,
    mut request: Outbound,
) -> Result<Outbound, Refusal> {
    let credential = match custodian(connection, &request.parts.headers) {
        Ok(None) => return Ok(request),
        Ok(Some(credential)) => credential,
        Err(refusal) => return Err(request.refuse(refusal)),
    };
    let metrics = &connection.context.metrics.credentials;
    let Some(value) = credential.header_value() else {
        // Loading checked the value once; a key that stopped being one is an internal fault.
        let error = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Warden could not use its credential for this host",
        )
        .with_code("credential_unusable");
        let refusal = Refusal::new(error, "credential unusable", Outcome::Denied);
        return Err(request.refuse(refusal));
    };
    let headers = &mut request.parts.headers;
    headers.remove(header::AUTHORIZATION);
    headers.remove(&credential.header.name);
    headers.insert(credential.header.name.clone(), value);
    metrics.injected(&credential.name);
    Ok(request)
}

/// Custody's refusal of `request`, if it has one: asked before a request is held for approval, so
/// that nobody is asked to approve a request custody would refuse anyway.
pub fn refusal_before_hold(connection: &ConnectionInfo, request: &Outbound) -> Option<Refusal> {
    custodian(connection, &request.parts.headers).err()
}

/// The credential that serves this connection's identity (None: the host has none, the request
/// goes as it is), or custody's refusal: an identity no credential serves, or (under
/// require-placeholder) a real-looking key presented in `headers`.
fn custodian(
    connection: &ConnectionInfo,
    headers: &HeaderMap,
) -> Result<Option<Arc<Credential>>, Refusal> {
    let store = &connection.context.credentials;
    let served = match store.custody(&connection.server_name, connection.identity.as_ref()) {
        Custody::NotCustodied => return Ok(None),
        Custody::Serve(credential) => Some(credential),
        Custody::Unserved => None,
    };
    let metrics = &connection.context.metrics.credentials;
    let name = served.as_ref().map_or("", |c| c.name.as_str());
    let header = served.as_ref().map(|c| &c.header.name);
    if store.presented() == Presented::RequirePlaceholder {
        if let Some((presented_in, value)) = leaked_key(headers, header) {
            let leaked = fingerprint(presented_in, &value);
            tracing::warn!(
                host = %connection.server_name,
                pid = connection.identity.pid,
                account = connection.identity.account.as_deref().unwrap_or(""),
                header = presented_in,
                presented = %leaked,
                "an agent presented a real-looking provider key: it is on the agent's host (a leak); refused under require-placeholder"
            );
            metrics.refused(name, "presented_key");
            let error = invalid_api_key(
                "Warden refused this request: it carried what looks like a real API key. Agents on this host must present a placeholder; Warden adds the key.",
            );
            let reason = format!(
                "presented a real-looking provider key ({leaked}) under require-placeholder"
            );
            return Err(Refusal::new(error, reason, Outcome::Denied));
        }
    }
    let Some(credential) = served else {
        metrics.refused("", "unserved");
        let error = invalid_api_key(&format!(
            "Warden holds no API key for this workload on {}; ask the host's operator for a [[credential]] that serves it.",
            connection.server_name
        ));
        let reason = format!(
            "no credential serves this identity on {}",
            connection.server_name
        );
        return Err(Refusal::new(error, reason, Outcome::Denied));
    };
    Ok(Some(credential))
}

/// Whether the agent presented a real-looking provider key on a host where Warden holds the keys,
/// whatever custody then does with it: what the anomaly detectors' `real_key` looks at.
pub fn presents_real_key(connection: &ConnectionInfo, headers: &HeaderMap) -> bool {
    let store = &connection.context.credentials;
    let header = match store.custody(&connection.server_name, connection.identity.as_ref()) {
        Custody::NotCustodied => return false,
        Custody::Serve(credential) => Some(credential.header.name.clone()),
        Custody::Unserved => None,
    };
    leaked_key(headers, header.as_ref()).is_some()
}

/// A presented value (in `authorization` or the credential's own header) that looks like a real
/// provider key: the header it was in, and the value (to fingerprint; never logged as is).
fn leaked_key(
    headers: &HeaderMap,
    header: Option<&header::HeaderName>,
) -> Option<(&'static str, String)> {
    let names = [Some(&header::AUTHORIZATION), header];
    names.into_iter().flatten().find_map(|name| {
        headers.get_all(name).iter().find_map(|value| {
            let text = value.to_str().ok()?;
            looks_like_provider_key(presented_key(text)).then(|| {
                let name: &'static str = if name == header::AUTHORIZATION {
                    "authorization"
                } else {
                    "credential header"
                };
                (name, text.to_string())
            })
        })
    })
}

/// OpenAI's answer to a bad key: 401, `invalid_request_error`, code `invalid_api_key`; retrying
/// cannot help.
fn invalid_api_key(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
        .with_code("invalid_api_key")
        .with_should_retry(false)
}
