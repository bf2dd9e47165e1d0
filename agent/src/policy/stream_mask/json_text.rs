//! Where a JSON channel's held text stands in the JSON grammar: inside a string or inside a bare token (number, literal).
//!
//! A match outside a string (a card number sent as a JSON number) must be replaced by a whole
//! JSON value, so the channel keeps whole bare tokens together: it never releases part of one,
//! and a match that starts in one replaces all of it with the quoted replacement.

/// The grammar state before some byte of the text: the state at the start of the held buffer
/// is carried across releases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct JsonState {
    in_string: bool,
    escaped: bool,
}

/// Walks a text forwards from a known state, remembering where the current bare token began.
#[derive(Debug)]
pub(super) struct JsonCursor {
    at: usize,
    state: JsonState,
    bare_from: Option<usize>,
}

/// Bytes of a JSON number or literal (`-12.5e+3`, `true`, `null`).
fn is_bare(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'+' | b'-')
}

impl JsonCursor {
    pub(super) fn new(state: JsonState) -> JsonCursor {
        JsonCursor {
            at: 0,
            state,
            bare_from: None,
        }
    }

    /// Moves to `to` (at or after the current position) over `bytes`.
    pub(super) fn advance_to(&mut self, bytes: &[u8], to: usize) {
        for &byte in &bytes[self.at..to] {
            let state = &mut self.state;
            if state.in_string {
                if state.escaped {
                    state.escaped = false;
                } else if byte == b'\\' {
                    state.escaped = true;
                } else if byte == b'"' {
                    state.in_string = false;
                }
            } else if byte == b'"' {
                state.in_string = true;
                self.bare_from = None;
            } else if is_bare(byte) {
                self.bare_from.get_or_insert(self.at);
            } else {
                self.bare_from = None;
            }
            self.at += 1;
        }
        self.at = self.at.max(to);
    }

    /// The state before the current position.
    pub(super) fn state(&self) -> JsonState {
        self.state
    }

    /// Where the bare token that `bytes[at]` belongs to begins (at the current position
    /// `at`), or None when that byte is in a string or not part of a bare token.
    pub(super) fn bare_token_start(&self, bytes: &[u8]) -> Option<usize> {
        let byte = *bytes.get(self.at)?;
        if self.state.in_string || !is_bare(byte) {
            return None;
        }
        Some(self.bare_from.unwrap_or(self.at))
    }

    /// Where to cut at the current position `at` without splitting a bare token: the token's
    /// start if one runs through `at` or may still grow past the end of `bytes`, else `at`.
    pub(super) fn cut_outside_token(&self, bytes: &[u8]) -> usize {
        match self.bare_from {
            Some(from)
                if !self.state.in_string
                    && bytes.get(self.at).is_none_or(|&byte| is_bare(byte)) =>
            {
                from
            }
            _ => self.at,
        }
    }
}

/// Where a match ending at `at` ends once widened to the end of the bare token it ends in
/// (`at` when `bytes[at - 1]` is not part of one).
pub(super) fn bare_token_end(bytes: &[u8], at: usize) -> usize {
    if at == 0 || !is_bare(bytes[at - 1]) {
        return at;
    }
    at + bytes[at..]
        .iter()
        .take_while(|&&byte| is_bare(byte))
        .count()
}
