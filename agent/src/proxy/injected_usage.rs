//! A streamed chat completion a limit must count is sent upstream with
//! `stream_options.include_usage`, so its usage is known; this gives the agent the stream it
//! would have had without it: the extra usage chunk removed and the `"usage":null` that option
//! adds to every other chunk taken out, every other byte as the upstream sent it.
use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;

/// Sets `stream_options.include_usage` in a chat completion request's parsed body; false when it
/// is not a JSON object whose `stream_options` is one (nothing is changed then).
pub fn request_usage(body: &mut Value) -> bool {
    let Some(object) = body.as_object_mut() else {
        return false;
    };
    let options = object
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(options) = options.as_object_mut() else {
        return false;
    };
    options.insert("include_usage".into(), Value::Bool(true));
    true
}

/// The upstream's event stream, minus what `include_usage` added.
pub struct WithoutInjectedUsage<B> {
    inner: B,
    pending: BytesMut,
    ready: VecDeque<Bytes>,
    ended: bool,
}

impl<B> WithoutInjectedUsage<B> {
    pub fn new(inner: B) -> Self {
        WithoutInjectedUsage {
            inner,
            pending: BytesMut::new(),
            ready: VecDeque::new(),
            ended: false,
        }
    }

    /// Moves every complete event out of `pending`, rewritten.
    fn take_events(&mut self) {
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.pending) {
            let event = self.pending.split_to(end);
            rewrite_event(&event, &mut out);
        }
        if !out.is_empty() {
            self.ready.push_back(out.freeze());
        }
    }
}

impl<B> Body for WithoutInjectedUsage<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        loop {
            if let Some(bytes) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.pending.extend_from_slice(&data);
                        self.take_events();
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => {
                    self.ended = true;
                    // An unterminated last event goes as it came.
                    let rest = self.pending.split().freeze();
                    if !rest.is_empty() {
                        self.ready.push_back(rest);
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.ready.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Where the first complete event of `buffer` ends (after its blank line).
fn event_end(buffer: &[u8]) -> Option<usize> {
    let lf = find(buffer, b"\n\n").map(|at| at + 2);
    let crlf = find(buffer, b"\r\n\r\n").map(|at| at + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Appends `event` to `out` unless it is the usage chunk; a `"usage":null` member is cut out.
fn rewrite_event(event: &[u8], out: &mut BytesMut) {
    let Some(data_at) = find(event, b"data:") else {
        out.extend_from_slice(event);
        return;
    };
    let json_start = data_at + 5 + usize::from(event.get(data_at + 5) == Some(&b' '));
    let json_end = event[json_start..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map_or(event.len(), |at| json_start + at);
    let json = &event[json_start..json_end];
    if is_usage_chunk(json) {
        return;
    }
    match null_usage_member(json) {
        Some((from, to)) => {
            out.extend_from_slice(&event[..json_start + from]);
            out.extend_from_slice(&event[json_start + to..]);
        }
        None => out.extend_from_slice(event),
    }
}

/// The chunk `include_usage` adds: no choices, a usage object.
fn is_usage_chunk(json: &[u8]) -> bool {
    if !json.starts_with(b"{") || find(json, b"\"usage\"").is_none() {
        return false;
    }
    let Ok(value) = serde_json::from_slice::<Value>(json) else {
        return false;
    };
    value["usage"].is_object() && value["choices"].as_array().is_some_and(Vec::is_empty)
}

/// The byte range of a top-level `"usage":null` member with one of its commas, if there is one.
fn null_usage_member(json: &[u8]) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < json.len() {
        let byte = json[i];
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match byte {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' if depth == 1 && json[i..].starts_with(b"\"usage\"") => {
                if let Some(end) = null_value_end(json, i + 7) {
                    return Some(with_comma(json, i, end));
                }
                in_string = true;
            }
            b'"' => in_string = true,
            _ => {}
        }
        i += 1;
    }
    None
}

/// After a key: `: null`, returning where the value ends.
fn null_value_end(json: &[u8], mut at: usize) -> Option<usize> {
    let skip = |at: &mut usize| {
        while json.get(*at).is_some_and(u8::is_ascii_whitespace) {
            *at += 1;
        }
    };
    skip(&mut at);
    (json.get(at) == Some(&b':')).then_some(())?;
    at += 1;
    skip(&mut at);
    json[at..].starts_with(b"null").then_some(at + 4)
}

/// Widens a member's range by the comma that separates it from its neighbour.
fn with_comma(json: &[u8], start: usize, end: usize) -> (usize, usize) {
    let before = json[..start]
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .filter(|&at| json[at] == b',');
    if let Some(comma) = before {
        return (comma, end);
    }
    let after = json[end..]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|at| end + at)
        .filter(|&at| json[at] == b',');
    match after {
        Some(comma) => (start, comma + 1),
        None => (start, end),
    }
}

#[cfg(test)]
mod tests;
