//! Incremental `text/event-stream` parser following the WHATWG server-sent events rules.
//!
//! Bytes are buffered until a line is complete and only whole lines are decoded, so events and
//! multi-byte UTF-8 characters split across reads come out whole. Invalid UTF-8 becomes U+FFFD, as
//! the spec's decoder does.

/// Lines (and an event's data) longer than this are dropped rather than buffered without bound.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` for the default type (`message`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last event id seen on the stream (ids persist across events, per the spec).
    pub id: Option<String>,
}

/// Feed it the body's chunks in order; it appends each completed event to `out`.
#[derive(Debug)]
pub struct SseParser {
    max_line: usize,
    /// The incomplete line carried over from earlier chunks.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` starting the next chunk belongs to it.
    after_cr: bool,
    /// Skipping the rest of an over-long line.
    discarding_line: bool,
    at_stream_start: bool,
    fields: EventFields,
    overflowed: u64,
}

/// The event being built, from the lines seen since the last blank line.
#[derive(Debug, Default)]
struct EventFields {
    /// Each data line's value followed by `\n`, so empty only when there was no data line.
    data: String,
    /// This event's data passed the limit; it will be dropped at its blank line.
    data_overflowed: bool,
    event_type: String,
    last_id: String,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::with_max_line(DEFAULT_MAX_LINE)
    }
}

impl SseParser {
    /// A parser that drops lines, and events' data, longer than `max_line` bytes.
    pub fn with_max_line(max_line: usize) -> Self {
        SseParser {
            max_line,
            line: Vec::new(),
            after_cr: false,
            discarding_line: false,
            at_stream_start: true,
            fields: EventFields::default(),
            overflowed: 0,
        }
    }

    /// How many over-long lines or events were dropped.
    pub fn overflowed(&self) -> u64 {
        self.overflowed
    }

    /// Parses the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n' || byte == b'\r') {
            let (head, tail) = rest.split_at(end);
            self.complete_line(head, out);
            rest = match tail {
                [b'\r', b'\n', after @ ..] => after,
                [b'\r'] => {
                    self.after_cr = true;
                    &[]
                }
                [_, after @ ..] => after,
                [] => &[],
            };
        }
        self.buffer_partial(rest);
    }

    /// End of stream. Browsers discard an unterminated event; an audit keeps what arrived, so a
    /// final line without its newline is taken as a line and a pending event is dispatched.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.line.is_empty() || self.discarding_line {
            self.complete_line(&[], out);
        }
        self.after_cr = false;
        self.fields.dispatch(out, &mut self.overflowed);
    }

    fn buffer_partial(&mut self, bytes: &[u8]) {
        if self.discarding_line || bytes.is_empty() {
            return;
        }
        if self.line.len() + bytes.len() > self.max_line {
            self.overflowed += 1;
            self.discarding_line = true;
            self.line.clear();
            // Release an over-grown buffer instead of keeping up to `max_line` bytes forever.
            self.line.shrink_to(64 * 1024);
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    /// `tail` ends a line whose beginning may be buffered in `self.line`.
    fn complete_line(&mut self, tail: &[u8], out: &mut Vec<SseEvent>) {
        if self.discarding_line {
            self.discarding_line = false;
            self.line.clear();
            return;
        }
        if self.line.len() + tail.len() > self.max_line {
            self.overflowed += 1;
            self.line.clear();
        } else if self.line.is_empty() {
            self.process_line(tail, out);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(tail);
            self.process_line(&line, out);
            line.clear();
            self.line = line;
        }
    }

    fn process_line(&mut self, mut line: &[u8], out: &mut Vec<SseEvent>) {
        if self.at_stream_start {
            self.at_stream_start = false;
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.is_empty() {
            self.fields.dispatch(out, &mut self.overflowed);
            return;
        }
        let (name, value) = match line.iter().position(|&byte| byte == b':') {
            Some(0) => return, // a comment, e.g. `: keep-alive`
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let fields = &mut self.fields;
        match name {
            b"data" => {
                if fields.data_overflowed {
                    return;
                }
                if fields.data.len() + value.len() >= self.max_line {
                    fields.data_overflowed = true;
                    fields.data.clear();
                    return;
                }
                push_utf8(&mut fields.data, value);
                fields.data.push('\n');
            }
            b"event" => {
                fields.event_type.clear();
                push_utf8(&mut fields.event_type, value);
            }
            b"id" if !value.contains(&0) => {
                fields.last_id.clear();
                push_utf8(&mut fields.last_id, value);
            }
            // `retry` only matters to a reconnecting client; unknown fields are ignored.
            _ => {}
        }
    }
}

impl EventFields {
    fn dispatch(&mut self, out: &mut Vec<SseEvent>, overflowed: &mut u64) {
        if self.data_overflowed {
            *overflowed += 1;
        } else if let Some(data) = self.data.strip_suffix('\n') {
            // Every data line added a `\n`; the spec drops the last one.
            out.push(SseEvent {
                event: (!self.event_type.is_empty()).then(|| self.event_type.clone()),
                data: data.to_owned(),
                id: (!self.last_id.is_empty()).then(|| self.last_id.clone()),
            });
        }
        self.data.clear();
        self.data_overflowed = false;
        self.event_type.clear();
    }
}

fn push_utf8(into: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => into.push_str(text),
        Err(_) => into.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
#[path = "sse_tests.rs"]
mod tests;
