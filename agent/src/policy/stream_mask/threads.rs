//! Follows possible matches through the prefix DFAs, and records the spans that dead ones covered.
use regex_automata::dfa::Automaton;
use regex_automata::util::primitives::StateID;

use super::prefixes::StreamPrefixes;

/// One possible match being followed: it began at `start` (in the held buffer).
#[derive(Clone, Copy, Debug)]
pub(super) struct Thread {
    pub(super) start: usize,
    pub(super) recognizer: usize,
    pub(super) state: StateID,
    pub(super) matched: bool,
}

/// Where a dead thread forbids cutting: every position strictly between `start` and `end`.
/// `matched`: the thread passed a match, so this stretch needs the regexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) matched: bool,
}

/// Moves `thread` over `bytes[from..]`: the thread, still live, or the span it covered.
pub(super) fn advance(
    prefixes: &StreamPrefixes,
    mut thread: Thread,
    bytes: &[u8],
    from: usize,
) -> Result<Thread, Span> {
    let automaton = &prefixes.automata[thread.recognizer];
    let dfa = &automaton.dfa;
    let died = |end: usize, matched: bool| Span {
        start: thread.start,
        end,
        matched,
    };
    // A match of at most `max_len` bytes ends by `start + max_len`; cutting after it is safe.
    if from - thread.start > automaton.max_len {
        return Err(died(from, thread.matched));
    }
    for (at, &byte) in bytes.iter().enumerate().skip(from) {
        let next = dfa.next_state(thread.state, byte);
        // Matches are reported one byte late, so the byte that kills a thread ends no match:
        // every match ended before `at`.
        if dfa.is_dead_state(next) {
            return Err(died(at, thread.matched));
        }
        thread.state = next;
        thread.matched |= dfa.is_match_state(next);
        if at + 1 - thread.start > automaton.max_len {
            return Err(died(at + 1, thread.matched));
        }
    }
    Ok(thread)
}

/// Records a dead thread's span, merging it with the spans it overlaps. A span with no
/// character boundary inside forbids no cut; it is kept only if it needs the regexes.
pub(super) fn add_span(spans: &mut Vec<Span>, span: Span, bytes: &[u8]) {
    let first_char_end = span.start + utf8_len(bytes[span.start]);
    if span.end <= first_char_end && !span.matched {
        return;
    }
    let mut merged = span;
    let mut at = spans.partition_point(|s| s.start <= merged.start);
    while at > 0 && spans[at - 1].end > merged.start {
        at -= 1;
        merged = union(spans.remove(at), merged);
    }
    while at < spans.len() && spans[at].start < merged.end {
        merged = union(spans.remove(at), merged);
    }
    spans.insert(at, merged);
}

fn union(a: Span, b: Span) -> Span {
    Span {
        start: a.start.min(b.start),
        end: a.end.max(b.end),
        matched: a.matched || b.matched,
    }
}

pub(super) fn utf8_len(first_byte: u8) -> usize {
    match first_byte {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}
