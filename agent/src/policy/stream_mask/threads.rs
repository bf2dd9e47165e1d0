//! Follows possible matches through the prefix DFAs, and records the spans that dead ones covered.
//!
//! A possible match (a thread) is a start position, a recognizer and that recognizer's DFA
//! state. Threads of one recognizer in one state behave alike from then on, so they are kept as
//! one group that every byte moves once: in prose, each letter starts an e-mail thread, and a
//! word of n letters costs n steps rather than n²/2. A group dies all at once when its DFA dies;
//! only the `max_len` bound tells its members apart, and it retires them oldest first.
use std::collections::VecDeque;

use regex_automata::dfa::Automaton;
use regex_automata::util::primitives::StateID;

use super::prefixes::StreamPrefixes;

/// Where a dead thread forbids cutting: every position strictly between `start` and `end`.
/// `matched`: the thread passed a match, so this stretch needs the regexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) matched: bool,
}

/// The live threads of one stream channel.
#[derive(Debug, Default)]
pub(super) struct Threads {
    groups: Vec<Group>,
    /// Emptied start queues of dead groups, reused so that a word does not allocate.
    spare: Vec<VecDeque<usize>>,
}

/// Threads of one recognizer in one DFA state.
#[derive(Debug)]
struct Group {
    recognizer: usize,
    state: StateID,
    /// The recognizer's `max_len`.
    max_len: usize,
    /// Some member passed a match. Shared by all members: a member that did not is then
    /// treated as if it had, which only makes the regexes run where they find nothing.
    matched: bool,
    /// The members' start positions (in the held buffer), oldest first.
    starts: VecDeque<usize>,
}

impl Threads {
    /// Moves every thread over `bytes[at]`, then starts the threads a match beginning with
    /// that byte would need. Dead threads' spans go to `spans`.
    pub(super) fn step(
        &mut self,
        prefixes: &StreamPrefixes,
        bytes: &[u8],
        at: usize,
        spans: &mut Vec<Span>,
    ) {
        let byte = bytes[at];
        let mut index = 0;
        while index < self.groups.len() {
            let group = &mut self.groups[index];
            let dfa = &prefixes.automata[group.recognizer].dfa;
            let next = dfa.next_state(group.state, byte);
            // Matches are reported one byte late, so the byte that kills a thread ends no
            // match: every match ended before `at`. All members die; the oldest spans them all.
            let alive = !dfa.is_dead_state(next);
            if alive {
                group.state = next;
                group.matched |= dfa.is_match_state(next);
                group.retire_overgrown(at + 1, spans, bytes);
            } else {
                add_span(spans, group.span_to(at), bytes);
            }
            if alive && !group.starts.is_empty() {
                index += 1;
            } else {
                let dead = self.groups.swap_remove(index);
                self.recycle(dead);
            }
        }
        for step in &prefixes.first[usize::from(byte)] {
            let joined = self
                .groups
                .iter_mut()
                .find(|group| group.state == step.state && group.recognizer == step.recognizer);
            if let Some(group) = joined {
                group.matched |= step.matched;
                group.starts.push_back(at);
                continue;
            }
            let mut starts = self.spare.pop().unwrap_or_default();
            starts.push_back(at);
            let mut group = Group {
                recognizer: step.recognizer,
                state: step.state,
                max_len: step.max_len,
                matched: step.matched,
                starts,
            };
            group.retire_overgrown(at + 1, spans, bytes);
            if group.starts.is_empty() {
                self.recycle(group);
            } else {
                self.groups.push(group);
            }
        }
    }

    fn recycle(&mut self, mut dead: Group) {
        dead.starts.clear();
        self.spare.push(dead.starts);
    }

    /// Ends the threads that can only have matched already (every byte kills them): they
    /// hold nothing back, and their spans reach `end`.
    pub(super) fn end_spent(
        &mut self,
        prefixes: &StreamPrefixes,
        end: usize,
        spans: &mut Vec<Span>,
        bytes: &[u8],
    ) {
        let mut index = 0;
        while index < self.groups.len() {
            let group = &self.groups[index];
            if prefixes.automata[group.recognizer].is_spent(group.state) {
                let span = Span {
                    matched: true,
                    ..group.span_to(end)
                };
                add_span(spans, span, bytes);
                let dead = self.groups.swap_remove(index);
                self.recycle(dead);
            } else {
                index += 1;
            }
        }
    }

    /// Where the earliest live thread began.
    pub(super) fn earliest_start(&self) -> Option<usize> {
        self.groups
            .iter()
            .filter_map(|group| group.starts.front().copied())
            .min()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The most a live thread's match can span.
    pub(super) fn live_bound(&self, prefixes: &StreamPrefixes) -> usize {
        self.groups
            .iter()
            .map(|group| prefixes.automata[group.recognizer].max_len)
            .max()
            .unwrap_or(0)
    }

    /// Drops the threads that began before `cut`.
    pub(super) fn drop_before(&mut self, cut: usize) {
        for group in &mut self.groups {
            while group.starts.front().is_some_and(|&start| start < cut) {
                group.starts.pop_front();
            }
        }
        self.groups.retain(|group| !group.starts.is_empty());
    }

    /// The held buffer lost its first `by` bytes.
    pub(super) fn shift_back(&mut self, by: usize) {
        for group in &mut self.groups {
            for start in &mut group.starts {
                *start -= by;
            }
        }
    }

    pub(super) fn clear(&mut self) {
        while let Some(group) = self.groups.pop() {
            self.recycle(group);
        }
    }
}

impl Group {
    /// From the oldest member to `end`: it covers every member's span.
    fn span_to(&self, end: usize) -> Span {
        Span {
            start: self.starts.front().copied().unwrap_or(end),
            end,
            matched: self.matched,
        }
    }

    /// A match of at most `max_len` bytes that began at `start` ends by `start + max_len`;
    /// members older than that die here, and cutting after their spans is safe.
    fn retire_overgrown(&mut self, end: usize, spans: &mut Vec<Span>, bytes: &[u8]) {
        while let Some(&start) = self.starts.front() {
            if end - start <= self.max_len {
                break;
            }
            add_span(
                spans,
                Span {
                    start,
                    end,
                    matched: self.matched,
                },
                bytes,
            );
            self.starts.pop_front();
        }
    }
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
