//! Masks streamed text deltas exactly as the whole text would be, holding back only what could start a match.
//!
//! Every recognizer's regex, with its look-around assertions dropped (so that it accepts a
//! superset of what the regex can match), is compiled once per policy into an anchored DFA.
//! Each character that can begin a match starts a thread that follows the text through that
//! DFA; a thread dies when no continuation can match any more or when it outgrows the
//! recognizer's `max_len`. Text is released up to the earliest live thread, never cutting
//! through the span a dead thread covered, and masked with the real regexes, looking back into
//! already released text for word boundaries. Cutting only where no possible match crosses
//! makes the concatenated output equal to `Masker::mask` of the whole text. Dead spans that
//! chain (a long word, with `email` on) would hold everything, so what is held is bounded by
//! the longest match a live thread's recognizer can produce (`Recognizer::max_len`): past it,
//! the text before the earliest live thread is released, masked by the regexes over all the
//! held text (a match there is shorter than the bound, so it is already whole).

mod channels;
mod chat;
mod json_text;
mod prefixes;
mod responses;
mod threads;

use std::ops::Range;
use std::sync::Arc;

use super::mask::{find_valid, MaskCounts};

pub use channels::ChunkMaskers;
pub use chat::mask_chat_chunk;
use json_text::{bare_token_end, JsonCursor, JsonState};
pub use prefixes::{StreamMaskError, StreamPrefixes};
pub use responses::mask_responses_event;
use threads::{Span, Threads};

/// Masks one text channel of a stream (one choice's content, one tool call's arguments, one
/// Responses output text, …). Create one per channel with `StreamMasker::new`.
#[derive(Debug)]
pub struct StreamMasker {
    prefixes: Arc<StreamPrefixes>,
    /// The channel carries JSON text (tool-call arguments): keep it valid JSON.
    json: bool,
    /// `buf[..context]` is the last released character, kept as look-behind; the rest is held.
    buf: String,
    context: usize,
    /// JSON channels: `buf` is preceded by an odd run of backslashes (its first byte is escaped).
    escaped_start: bool,
    /// JSON channels: where `buf` starts in the JSON grammar.
    json_start: JsonState,
    threads: Threads,
    /// Sorted by start, disjoint.
    spans: Vec<Span>,
    /// Scratch for masking: each recognizer's next accepted match.
    candidates: Vec<Option<Range<usize>>>,
}

impl StreamMasker {
    pub fn new(prefixes: Arc<StreamPrefixes>) -> StreamMasker {
        StreamMasker {
            prefixes,
            json: false,
            buf: String::new(),
            context: 0,
            escaped_start: false,
            json_start: JsonState::default(),
            threads: Threads::default(),
            spans: Vec::new(),
            candidates: Vec::new(),
        }
    }

    /// For JSON-encoded text (tool-call arguments): a replacement that would follow an escaping
    /// backslash (`\nbob@example.com` matches from the `n`) gets that backslash escaped, and a
    /// match outside a string (`{"card": 4111111111111111}`) replaces its whole number or
    /// literal with the replacement as a JSON string, so the arguments stay valid JSON. Bare
    /// tokens are never split across releases. Otherwise identical to `new`.
    pub fn new_json(prefixes: Arc<StreamPrefixes>) -> StreamMasker {
        StreamMasker {
            json: true,
            ..StreamMasker::new(prefixes)
        }
    }

    /// Takes the next delta; returns the text that can be released now (masked), holding back
    /// only the shortest suffix that could still start a match.
    pub fn push(&mut self, delta: &str, counts: &mut MaskCounts) -> String {
        let mut out = String::new();
        if delta.is_empty() {
            return out;
        }
        self.follow(delta);
        self.release(false, &mut out, counts);
        out
    }

    /// The stream (or this channel) ended: release everything held, masked.
    pub fn finish(&mut self, counts: &mut MaskCounts) -> String {
        let mut out = String::new();
        self.release(true, &mut out, counts);
        self.buf.clear();
        self.context = 0;
        self.escaped_start = false;
        self.json_start = JsonState::default();
        self.threads.clear();
        self.spans.clear();
        out
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.buf.len() - self.context
    }

    /// Appends `delta` and moves every thread over it, starting new ones where a match can begin.
    fn follow(&mut self, delta: &str) {
        let from = self.buf.len();
        self.buf.push_str(delta);
        let prefixes = &*self.prefixes;
        let bytes = self.buf.as_bytes();
        for at in from..bytes.len() {
            self.threads.step(prefixes, bytes, at, &mut self.spans);
        }
        self.threads
            .end_spent(prefixes, bytes.len(), &mut self.spans, bytes);
    }

    /// Masks and appends to `out` everything up to the earliest position a live thread began
    /// (all of it at `end_of_stream`), backing off so as not to cut through a dead thread's span.
    /// When backing off would hold more than the longest match a live thread can still grow
    /// into, releases up to that thread instead (`release_bounded`): a long run that could be
    /// part of a match (a 2,500-character word with `email` on) never holds the stream back.
    fn release(&mut self, end_of_stream: bool, out: &mut String, counts: &mut MaskCounts) {
        let end = self.buf.len();
        let live_cut = if end_of_stream {
            end
        } else {
            self.threads.earliest_start().unwrap_or(end)
        };
        let mut cut = live_cut;
        // Spans are disjoint, so moving to the start of the one containing `cut` suffices.
        if let Some(span) = self.spans.iter().find(|s| s.start < cut && cut < s.end) {
            cut = span.start;
        }
        if !end_of_stream {
            // Backing off a bare token may land in a span, and backing off that in a token.
            loop {
                let outside_token = self.cut_outside_token(cut);
                if outside_token == cut {
                    break;
                }
                cut = outside_token;
                if let Some(span) = self.spans.iter().find(|s| s.start < cut && cut < s.end) {
                    cut = span.start;
                }
            }
        }
        if cut < live_cut && end - cut.max(self.context) > self.live_bound() {
            self.release_bounded(live_cut, out, counts);
            return;
        }
        if cut <= self.context {
            return;
        }
        let needs_regexes = (end_of_stream && !self.threads.is_empty())
            || self
                .spans
                .iter()
                .take_while(|span| span.start < cut)
                .any(|span| span.matched);
        if needs_regexes {
            self.mask_held(cut, cut, !end_of_stream, out, counts);
        } else {
            out.push_str(&self.buf[self.context..cut]);
        }
        if end_of_stream {
            return; // `finish` resets everything.
        }
        self.forget_released(cut);
    }

    /// JSON channels: `cut`, or the start of the bare token it would split (one that runs
    /// through `cut` or may still grow past the held text). A token that began in released
    /// text is split already; it does not hold the channel.
    fn cut_outside_token(&self, cut: usize) -> usize {
        if !self.json {
            return cut;
        }
        let mut json = JsonCursor::new(self.json_start);
        json.advance_to(self.buf.as_bytes(), cut);
        let token_start = json.cut_outside_token(self.buf.as_bytes());
        if token_start >= self.context {
            token_start
        } else {
            cut
        }
    }

    /// The most a live thread's match can span: the bound on what must stay held.
    fn live_bound(&self) -> usize {
        self.threads.live_bound(&self.prefixes)
    }

    /// Releases everything before `limit` (the earliest live thread's start), masked. Every
    /// match that starts before it belongs to a dead thread, so it ends inside the held text
    /// (its recognizer's `max_len` bounds it): the regexes search all of the held text, and a
    /// match that crosses `limit` is released whole, masked.
    fn release_bounded(&mut self, limit: usize, out: &mut String, counts: &mut MaskCounts) {
        let end = self.buf.len();
        let limit = self.cut_outside_token(limit);
        let cut = self.mask_held(end, limit, true, out, counts);
        // Threads that began inside a released match can no longer start one.
        self.threads.drop_before(cut);
        self.forget_released(cut);
    }

    /// Drops the released text before `cut`, keeping its last character as look-behind.
    fn forget_released(&mut self, cut: usize) {
        // A bounded release may cut through a span (a JSON channel's cut backs off to a token's
        // start); what is left of it still holds a dead thread's match.
        self.spans.retain_mut(|span| {
            span.start = span.start.max(cut);
            span.end > cut
        });
        let keep_from = self.buf[..cut]
            .char_indices()
            .next_back()
            .map_or(cut, |(at, _)| at);
        self.escaped_start = odd_backslashes_before(&self.buf, keep_from, self.escaped_start);
        if self.json {
            let mut json = JsonCursor::new(self.json_start);
            json.advance_to(self.buf.as_bytes(), keep_from);
            self.json_start = json.state();
        }
        self.buf.drain(..keep_from);
        self.context = cut - keep_from;
        self.threads.shift_back(keep_from);
        for span in &mut self.spans {
            span.start -= keep_from;
            span.end -= keep_from;
        }
    }

    /// `Masker::mask` of `buf[context..searched]`, searching `buf[..searched]` so that
    /// assertions see the released character before it, and releasing only the matches that
    /// start before `limit` and the text before `limit`; returns where the release ended
    /// (`limit`, or the end of a match that crosses it; or, when `more_may_come`, the start of a
    /// JSON bare token that a match widens to and that runs to the end of the held text, since
    /// the next delta may extend it). Mirrors `Masker::mask` choice for
    /// choice: the leftmost match of any recognizer, the longest on ties, the earlier
    /// recognizer on equal length.
    fn mask_held(
        &mut self,
        searched: usize,
        limit: usize,
        more_may_come: bool,
        out: &mut String,
        counts: &mut MaskCounts,
    ) -> usize {
        let masker = &**self.prefixes.masker();
        let recognizers = masker.recognizers();
        let text = &self.buf[..searched];
        let candidates = &mut self.candidates;
        candidates.clear();
        candidates.extend(
            recognizers
                .iter()
                .map(|recognizer| find_valid(recognizer, text, self.context)),
        );
        let mut cursor = self.context;
        let mut json = JsonCursor::new(self.json_start);
        loop {
            let mut best: Option<(Range<usize>, usize)> = None;
            for (index, candidate) in candidates.iter_mut().enumerate() {
                if matches!(candidate, Some(found) if found.start < cursor) {
                    *candidate = find_valid(&recognizers[index], text, cursor);
                }
                if let Some(found) = candidate {
                    let better = best.as_ref().is_none_or(|(current, _)| {
                        found.start < current.start
                            || (found.start == current.start && found.end > current.end)
                    });
                    if better {
                        best = Some((found.clone(), index));
                    }
                }
            }
            let Some((found, index)) = best else { break };
            if found.start >= limit {
                break;
            }
            let replacement = masker.replacement(index).unwrap_or_default();
            if self.json {
                json.advance_to(text.as_bytes(), found.start);
            }
            match self.json.then(|| json.bare_token_start(text.as_bytes())) {
                Some(Some(token_start)) => {
                    // A JSON number or literal: the whole token becomes a string.
                    let token_end = bare_token_end(text.as_bytes(), found.end);
                    out.push_str(&text[cursor..token_start.max(cursor)]);
                    if more_may_come && token_end == self.buf.len() {
                        // Found by fuzzing: released now, the token's rest in the next delta
                        // would come out after the replacement.
                        return token_start.max(cursor);
                    }
                    counts.add(&recognizers[index].name, 1);
                    out.push('"');
                    out.push_str(replacement);
                    out.push('"');
                    cursor = token_end;
                    json.advance_to(text.as_bytes(), cursor);
                }
                _ => {
                    counts.add(&recognizers[index].name, 1);
                    out.push_str(&text[cursor..found.start]);
                    if self.json && odd_backslashes_before(text, found.start, self.escaped_start) {
                        out.push('\\');
                    }
                    out.push_str(replacement);
                    cursor = found.end;
                }
            }
        }
        let released = cursor.max(limit);
        out.push_str(&text[cursor..released]);
        released
    }
}

/// Whether `text[..at]` ends with an odd run of backslashes; `escaped_start` carries the
/// parity of the run before `text` when the run reaches its beginning.
fn odd_backslashes_before(text: &str, at: usize, escaped_start: bool) -> bool {
    let run = text.as_bytes()[..at]
        .iter()
        .rev()
        .take_while(|&&byte| byte == b'\\')
        .count();
    let odd = run % 2 == 1;
    if run == at {
        odd != escaped_start
    } else {
        odd
    }
}

#[cfg(test)]
#[path = "stream_mask/tests.rs"]
mod tests;

#[cfg(test)]
#[path = "stream_mask/hold_tests.rs"]
mod hold_tests;

#[cfg(test)]
#[path = "stream_mask/events_tests.rs"]
mod events_tests;
