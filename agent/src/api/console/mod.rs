//! STUB (replaced by the console branch): the web console's static files.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

pub fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(Asset {
            content_type: "text/html; charset=utf-8",
            body: b"<!doctype html><title>Warden</title>",
        }),
        _ => None,
    }
}
