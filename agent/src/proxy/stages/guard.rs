//! Guard: what Warden refuses to forward on an intercepted connection whatever the policy says:
//! a request for another host, a path an upstream could read differently, a protocol upgrade, a
//! target with no upstream URI. On success the request is addressed to its upstream.
use http::{header, Method, StatusCode};

use super::{ConnectionInfo, Outbound, Refusal};
use crate::{audit::record::Outcome, openai::error::ApiError};

/// The port the upstream URI leaves implicit.
const HTTPS_PORT: u16 = 443;

pub async fn guard(
    connection: &ConnectionInfo,
    mut request: Outbound,
) -> Result<Outbound, Refusal> {
    let parts = &request.parts;
    if let Some(authority) = request_authority(parts) {
        if !authority.eq_ignore_ascii_case(&connection.server_name) {
            let error = ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "invalid_request_error",
                format!(
                    "This connection is for {}; a request for {authority} cannot be sent on it",
                    connection.server_name
                ),
            )
            .with_code("misdirected_request");
            let reason = "host does not match the TLS server name";
            return Err(request.refuse(Refusal::new(error, reason, Outcome::Denied)));
        }
    }

    if ambiguous_path(parts.uri.path()) {
        let error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Warden refuses request paths with dot segments, percent-escapes or backslashes",
        )
        .with_code("invalid_path");
        let refusal = Refusal::new(error, "ambiguous request path", Outcome::Denied);
        return Err(request.refuse(refusal));
    }

    if let Some(protocol) = requested_upgrade(parts) {
        let error = crate::openai::error::upgrade_not_supported(&connection.server_name);
        let reason = format!("protocol upgrade ({protocol}) not supported");
        return Err(request.refuse(Refusal::new(error, reason, Outcome::Denied)));
    }

    let Some(uri) = upstream_uri(
        &connection.server_name,
        connection.destination_port,
        &parts.uri,
    ) else {
        let error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Invalid request target",
        )
        .with_code("invalid_request_target");
        let refusal = Refusal::new(error, "invalid request target", Outcome::Denied);
        return Err(request.refuse(refusal));
    };
    request.parts.uri = uri;
    Ok(request)
}

/// Paths an upstream or CDN could read differently than Warden: dot segments, escapes,
/// backslashes. Refused on intercepted hosts, so that endpoint rules and masking cannot be dodged.
pub fn ambiguous_path(path: &str) -> bool {
    path.contains('%')
        || path.contains('\\')
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

/// The protocol a request asks to switch to (an HTTP/1.1 `Upgrade`, a CONNECT or an h2 extended
/// CONNECT such as WebSocket over h2), which Warden cannot forward yet. `h2c` is not reported: a
/// server may ignore it and answer over HTTP/1.1, and it is meaningless over TLS anyway.
pub fn requested_upgrade(parts: &http::request::Parts) -> Option<String> {
    if parts.method == Method::CONNECT {
        let protocol = parts.extensions.get::<hyper::ext::Protocol>();
        return Some(protocol.map_or("CONNECT", |p| p.as_str()).to_string());
    }
    let protocols: Vec<&str> = parts
        .headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("h2c"))
        .collect();
    (!protocols.is_empty()).then(|| protocols.join(", "))
}

fn request_authority(parts: &http::request::Parts) -> Option<String> {
    let authority = match parts.uri.authority() {
        Some(authority) => authority.host().to_string(),
        None => {
            let host = parts.headers.get(header::HOST)?.to_str().ok()?;
            // Strip a port; IPv6 literals are never intercepted server names.
            host.rsplit_once(':').map_or(host, |(h, _)| h).to_string()
        }
    };
    Some(authority)
}

pub fn upstream_uri(server_name: &str, port: u16, uri: &http::Uri) -> Option<http::Uri> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = if port == HTTPS_PORT {
        server_name.to_string()
    } else {
        format!("{server_name}:{port}")
    };
    http::Uri::builder()
        .scheme("https")
        .authority(authority)
        .path_and_query(path)
        .build()
        .ok()
}
