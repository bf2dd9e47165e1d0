//! Classifies the first bytes of a redirected connection: not TLS, an incomplete or malformed
//! ClientHello, or a ClientHello with its server name and ALPN list.
//!
//! A pure parser over the bytes the proxy peeked (and will replay): it never panics and never
//! indexes out of bounds, whatever the input.

/// Peek budget: one full TLS record. A ClientHello not complete within this many bytes is
/// treated as malformed rather than buffered further.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024 + 5;

const RECORD_HEADER_LEN: usize = 5;
const HANDSHAKE_HEADER_LEN: usize = 4;
/// TLSPlaintext.length may not exceed 2^14 (RFC 8446 §5.1).
const MAX_RECORD_PAYLOAD: usize = 16 * 1024;
const CONTENT_TYPE_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const SNI_HOST_NAME: u8 = 0;
const MAX_HOST_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// What the first bytes of a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Consistent so far; the ClientHello is not complete yet.
    NeedMore,
    /// Not a TLS handshake record: some other protocol.
    NotTls,
    /// A complete ClientHello. `server_name` is lowercase; `alpn` is in the client's order.
    ClientHello {
        server_name: Option<String>,
        alpn: Vec<String>,
    },
    /// Starts like TLS but is inconsistent, or no complete hello fits in [`MAX_CLIENT_HELLO`].
    Malformed(&'static str),
}

/// Classifies `buf`, the bytes received so far from the client.
pub fn classify(buf: &[u8]) -> Classified {
    match buf.first() {
        None => return Classified::NeedMore,
        Some(&CONTENT_TYPE_HANDSHAKE) => {}
        Some(_) => return Classified::NotTls,
    }
    if buf.get(1).is_some_and(|&major| major != 3) {
        return Classified::NotTls;
    }
    let window = buf.get(..MAX_CLIENT_HELLO).unwrap_or(buf);
    match reassemble(window) {
        Err(reason) => Classified::Malformed(reason),
        Ok(Some(body)) => match parse_client_hello(&body) {
            Ok((server_name, alpn)) => Classified::ClientHello { server_name, alpn },
            Err(reason) => Classified::Malformed(reason),
        },
        Ok(None) if buf.len() >= MAX_CLIENT_HELLO => {
            Classified::Malformed("no complete ClientHello within the peek budget")
        }
        Ok(None) => Classified::NeedMore,
    }
}

/// Concatenates handshake record payloads until the first handshake message is complete and
/// returns its body, `None` if more bytes are needed.
fn reassemble(buf: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    let mut handshake = Vec::new();
    let mut pos = 0usize;
    while let Some(header) = buf.get(pos..pos + RECORD_HEADER_LEN) {
        if header[0] != CONTENT_TYPE_HANDSHAKE {
            return Err("non-handshake record before the ClientHello ended");
        }
        if header[1] != 3 {
            return Err("record version is not TLS");
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 {
            return Err("empty handshake record");
        }
        if len > MAX_RECORD_PAYLOAD {
            return Err("record longer than 2^14 bytes");
        }
        let start = pos + RECORD_HEADER_LEN;
        let end = start + len;
        // A partial record still contributes its bytes so inconsistencies show up early.
        let available = buf.get(start..end.min(buf.len())).unwrap_or_default();
        handshake.extend_from_slice(available);
        if let Some(body) = complete_message(&handshake)? {
            return Ok(Some(body.to_vec()));
        }
        if available.len() < len {
            return Ok(None);
        }
        pos = end;
    }
    Ok(None)
}

/// The ClientHello body if `handshake` holds all of it; an error if it cannot be one.
fn complete_message(handshake: &[u8]) -> Result<Option<&[u8]>, &'static str> {
    match handshake.first() {
        None => return Ok(None),
        Some(&HANDSHAKE_CLIENT_HELLO) => {}
        Some(_) => return Err("first handshake message is not a ClientHello"),
    }
    let Some(&[_, a, b, c]) = handshake.get(..HANDSHAKE_HEADER_LEN) else {
        return Ok(None);
    };
    let body_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    if HANDSHAKE_HEADER_LEN + body_len > MAX_CLIENT_HELLO - RECORD_HEADER_LEN {
        return Err("ClientHello longer than the peek budget");
    }
    Ok(handshake.get(HANDSHAKE_HEADER_LEN..HANDSHAKE_HEADER_LEN + body_len))
}

/// A bounds-checked reader: every read returns `None` instead of running past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Self { rest }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(taken)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    /// A vector with a two-byte length prefix.
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

type Hello = (Option<String>, Vec<String>);

fn parse_client_hello(body: &[u8]) -> Result<Hello, &'static str> {
    let mut r = Reader::new(body);
    r.take(2 + 32).ok_or("truncated version or random")?;
    let session_id = r.vec8().ok_or("truncated session id")?;
    if session_id.len() > 32 {
        return Err("session id longer than 32 bytes");
    }
    let suites = r.vec16().ok_or("truncated cipher suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("bad cipher suite list length");
    }
    let compression = r.vec8().ok_or("truncated compression methods")?;
    if compression.is_empty() {
        return Err("empty compression method list");
    }
    if r.is_empty() {
        // Extensions are optional in a (pre-TLS-1.3) ClientHello.
        return Ok((None, Vec::new()));
    }
    let extensions = r.vec16().ok_or("truncated extensions")?;
    if !r.is_empty() {
        return Err("bytes after the extensions");
    }

    let mut server_name = None;
    let mut alpn = None;
    let mut exts = Reader::new(extensions);
    while !exts.is_empty() {
        let ext_type = exts.u16().ok_or("truncated extension header")?;
        let data = exts.vec16().ok_or("truncated extension")?;
        match ext_type {
            EXT_SERVER_NAME if server_name.is_some() => return Err("duplicate server_name"),
            EXT_SERVER_NAME => server_name = Some(parse_server_name(data)?),
            EXT_ALPN if alpn.is_some() => return Err("duplicate ALPN extension"),
            EXT_ALPN => alpn = Some(parse_alpn(data)?),
            _ => {}
        }
    }
    Ok((server_name, alpn.unwrap_or_default()))
}

fn parse_server_name(data: &[u8]) -> Result<String, &'static str> {
    let mut r = Reader::new(data);
    let list = r.vec16().ok_or("truncated server_name list")?;
    if !r.is_empty() {
        return Err("bytes after the server_name list");
    }
    let mut entries = Reader::new(list);
    let mut host = None;
    while !entries.is_empty() {
        let name_type = entries.u8().ok_or("truncated server_name entry")?;
        let name = entries.vec16().ok_or("truncated server name")?;
        if name_type != SNI_HOST_NAME {
            return Err("server_name entry is not a host_name");
        }
        if host.is_some() {
            return Err("more than one host_name in server_name");
        }
        host = Some(valid_host_name(name)?);
    }
    host.ok_or("empty server_name list")
}

/// A lowercase DNS host name (a trailing root dot removed), or why the bytes are not one.
fn valid_host_name(name: &[u8]) -> Result<String, &'static str> {
    let name = std::str::from_utf8(name).map_err(|_| "server name is not UTF-8")?;
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_NAME {
        return Err("server name length out of range");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > MAX_LABEL {
            return Err("server name label length out of range");
        }
        // Underscores are not legal in host names but appear in real ones; accept them.
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("invalid character in server name");
        }
    }
    Ok(name.to_ascii_lowercase())
}

fn parse_alpn(data: &[u8]) -> Result<Vec<String>, &'static str> {
    let mut r = Reader::new(data);
    let list = r.vec16().ok_or("truncated ALPN list")?;
    if !r.is_empty() {
        return Err("bytes after the ALPN list");
    }
    let mut protocols = Vec::new();
    let mut entries = Reader::new(list);
    while !entries.is_empty() {
        let protocol = entries.vec8().ok_or("truncated ALPN protocol")?;
        if protocol.is_empty() {
            return Err("empty ALPN protocol name");
        }
        // ALPN ids are opaque bytes (GREASE uses non-text values); keep them, lossily.
        protocols.push(String::from_utf8_lossy(protocol).into_owned());
    }
    if protocols.is_empty() {
        return Err("empty ALPN list");
    }
    Ok(protocols)
}

#[cfg(test)]
mod tests;
