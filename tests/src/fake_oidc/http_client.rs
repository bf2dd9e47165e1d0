//! A blocking HTTP/1.1 client for the fake provider's endpoints, as a relying party calls them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use url::Url;

/// An answer: status, headers (lower-case names), body.
#[derive(Clone)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for HttpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpReply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON (panics if it isn't).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// GET `url` (http, loopback only); redirects are not followed.
pub fn get(url: &str) -> HttpReply {
    request("GET", url, &[], b"")
}

/// POST `form` urlencoded to `url`, with extra `headers` (e.g. Basic authorization).
pub fn post_form(url: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> HttpReply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request("POST", url, &all, body.as_bytes())
}

fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpReply {
    let parsed = Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(parsed.scheme(), "http", "{url}: plain http only");
    let addrs = parsed
        .socket_addrs(|| Some(80))
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let addr = addrs.first().unwrap_or_else(|| panic!("{url}: no address"));
    assert!(
        addr.ip().is_loopback(),
        "{url}: tests only connect to loopback"
    );
    let mut stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("setting a read timeout");
    let target = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\ncontent-length: {}\r\n",
        parsed.host_str().unwrap_or("localhost"),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .unwrap_or_else(|e| panic!("sending {method} {url}: {e}"));
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading the answer to {method} {url}: {e}"));
    parse(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {url}: not an HTTP answer: {}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// A `Connection: close` answer with a Content-Length body (what hyper sends for full bodies).
fn parse(raw: &[u8]) -> Option<HttpReply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some(HttpReply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}
