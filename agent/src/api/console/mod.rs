//! The web console's static files, embedded in the binary and served as they are.
//!
//! Plain HTML, one ES2020 script and one stylesheet: no build step, no framework, nothing fetched
//! from elsewhere, so the whole client can be audited by reading three files, and the API can
//! serve it under a strict Content-Security-Policy (no inline script or style, no eval).

/// One file of the console, ready to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");
const FAVICON_SVG: &str = include_str!("favicon.svg");

/// The console file served at `path` (the request path, without query), if there is one.
pub fn asset(path: &str) -> Option<Asset> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "/assets/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/assets/app.css" => ("text/css; charset=utf-8", APP_CSS),
        "/assets/favicon.svg" => ("image/svg+xml", FAVICON_SVG),
        _ => return None,
    };
    Some(Asset {
        content_type,
        body: body.as_bytes(),
    })
}

#[cfg(test)]
mod tests;
