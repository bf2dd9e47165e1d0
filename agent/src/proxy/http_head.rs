//! Reads a plaintext HTTP/1 request head (a proxy CONNECT, a proxied or a direct request) and the hosts it names.

/// A head that does not end within this many bytes is not waited for further.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;

/// What the bytes so far are, as an HTTP/1 request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// A request line and headers so far, not ended yet.
    NeedMore,
    /// Not an HTTP/1 request.
    NotHttp,
    /// A head that starts like HTTP but breaks its grammar, or does not end within [`MAX_HEAD`].
    Malformed(&'static str),
    Request(RequestHead),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// `CONNECT host:port`: the authority to tunnel to, lowercase.
    pub connect: Option<Authority>,
    /// The hosts the request names, lowercase, port removed: the absolute-form target's host
    /// (a request through an HTTP proxy) and the `Host` header's. A proxy or server may go by
    /// either, so each is checked.
    pub hosts: Vec<String>,
    /// Length of the head, blank line included: the bytes after it are the body or, after a
    /// CONNECT, the tunnel.
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: u16,
}

/// Reads `buf`, the first bytes a client sent.
pub fn parse(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Head::Malformed("request head longer than 16 KiB")
        }
        Ok(httparse::Status::Partial) if looks_like_a_request_line(buf) => return Head::NeedMore,
        Ok(httparse::Status::Partial) => return Head::NotHttp,
        // A request line that parsed but whose headers break the grammar still asked something
        // of a proxy or server: it must not be tunneled as "not HTTP".
        Err(httparse::Error::TooManyHeaders) => return Head::Malformed("too many headers"),
        Err(_) if request.method.is_some() && request.path.is_some() => {
            return Head::Malformed("invalid request head")
        }
        Err(_) => return Head::NotHttp,
    };
    let method = request.method.unwrap_or_default().to_owned();
    let target = request.path.unwrap_or_default();
    let mut hosts = Vec::new();
    let mut connect = None;
    if method.eq_ignore_ascii_case("CONNECT") {
        match target.parse::<http::uri::Authority>() {
            Ok(authority) => {
                let host = bare_host(authority.host());
                hosts.push(host.clone());
                connect = Some(Authority {
                    host,
                    port: authority.port_u16().unwrap_or(443),
                });
            }
            Err(_) => return Head::Malformed("CONNECT target is not host:port"),
        }
    } else if !target.starts_with('/') && target != "*" {
        match target.parse::<http::Uri>() {
            Ok(uri) => hosts.extend(uri.host().map(bare_host)),
            Err(_) => return Head::Malformed("invalid request target"),
        }
    }
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("host") {
            let Ok(value) = std::str::from_utf8(header.value) else {
                return Head::Malformed("Host header is not text");
            };
            match value.trim().parse::<http::uri::Authority>() {
                Ok(authority) => hosts.push(bare_host(authority.host())),
                Err(_) => return Head::Malformed("Host header is not host[:port]"),
            }
        }
    }
    hosts.dedup();
    Head::Request(RequestHead {
        method,
        connect,
        hosts,
        len,
    })
}

/// A host as compared with the intercepted hosts: lowercase, without the trailing dot or the
/// brackets of an IPv6 literal.
fn bare_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Whether an unfinished head is worth waiting for: a method token, then a space, or only
/// method characters so far. Anything else (a binary protocol, a banner) is not HTTP.
fn looks_like_a_request_line(buf: &[u8]) -> bool {
    let method_len = buf
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || **b == b'-' || **b == b'_')
        .count();
    method_len > 0 && (method_len == buf.len() || buf[method_len] == b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> RequestHead {
        match parse(text.as_bytes()) {
            Head::Request(head) => head,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn a_connect_names_its_authority() {
        let head = request(
            "CONNECT API.OpenAI.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n\x16\x03",
        );
        assert_eq!(
            head.connect,
            Some(Authority {
                host: "api.openai.com".into(),
                port: 443
            })
        );
        assert_eq!(head.hosts, ["api.openai.com"]);
        assert_eq!(
            head.len, 65,
            "the head ends before the tunnel's first bytes"
        );
        let v6 = request("CONNECT [::1]:8443 HTTP/1.1\r\n\r\n");
        assert_eq!(v6.connect.unwrap().host, "::1");
    }

    #[test]
    fn a_proxied_request_names_the_target_host_and_the_host_header() {
        let head =
            request("GET http://api.openai.com/v1/models HTTP/1.1\r\nHost: other.test\r\n\r\n");
        assert_eq!(head.connect, None);
        assert_eq!(head.hosts, ["api.openai.com", "other.test"]);
        let direct =
            request("POST /v1/chat/completions HTTP/1.1\r\nHost: api.openai.com.:80\r\n\r\n");
        assert_eq!(direct.hosts, ["api.openai.com"]);
    }

    #[test]
    fn unfinished_heads_are_waited_for_and_other_protocols_are_not_http() {
        for partial in [
            "G",
            "GET",
            "GET /",
            "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: a",
        ] {
            assert_eq!(parse(partial.as_bytes()), Head::NeedMore, "{partial:?}");
        }
        for other in [
            &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
            b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
            b"*1\r\n$4\r\nPING\r\n",
            b"hello",
        ] {
            assert_eq!(parse(other), Head::NotHttp, "{other:?}");
        }
    }

    #[test]
    fn broken_heads_are_malformed_not_other_protocols() {
        assert!(matches!(
            parse(b"CONNECT /not/an/authority HTTP/1.1\r\n\r\n"),
            Head::Malformed(_)
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
            Head::Malformed(_)
        ));
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(long.as_bytes()), Head::Malformed(_)));
    }
}
