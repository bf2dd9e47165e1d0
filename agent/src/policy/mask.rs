//! Replaces every recognized sensitive span of a text with its label, counting per label.
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use regex_automata::{meta, Anchored, Input, PatternID};
use serde::{Deserialize, Serialize};

use super::recognizers::Recognizer;

/// How many spans were masked, per recognizer label.
#[derive(Default, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskCounts(pub BTreeMap<String, u64>);

impl MaskCounts {
    pub fn add(&mut self, label: &str, count: u64) {
        match self.0.get_mut(label) {
            Some(total) => *total += count,
            None => {
                self.0.insert(label.to_string(), count);
            }
        }
    }

    pub fn merge(&mut self, other: &MaskCounts) {
        for (label, count) in &other.0 {
            self.add(label, *count);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

/// A compiled set of recognizers and the replacement template (`[{NAME}]`).
#[derive(Clone, Debug)]
pub struct Masker {
    recognizers: Vec<Recognizer>,
    /// The template with `{NAME}` filled in, per recognizer (same index).
    replacements: Vec<String>,
    /// All patterns in one automaton (pattern id = recognizer index): one scan finds the next
    /// position where any recognizer matches, and anchored searches there give each one's match.
    /// A text without candidates thus costs one pass instead of one per recognizer. `None` if the
    /// combined automaton exceeds the size limits; each recognizer is then searched on its own.
    combined: Option<meta::Regex>,
}

/// A recognizer's accepted match: byte range and recognizer index.
type Found = (Range<usize>, usize);

impl Masker {
    pub fn new(recognizers: Vec<Recognizer>, replacement: &str) -> Masker {
        let replacements = recognizers
            .iter()
            .map(|recognizer| replacement.replace("{NAME}", &recognizer.name))
            .collect();
        let patterns: Vec<&str> = recognizers.iter().map(|r| r.pattern.as_str()).collect();
        let combined = meta::Regex::new_many(&patterns).ok();
        Masker {
            recognizers,
            replacements,
            combined,
        }
    }

    /// `text` with every match replaced, choosing at each point the leftmost match of any
    /// recognizer, the longest one on ties (the earlier recognizer on equal length).
    pub fn mask<'a>(&self, text: &'a str, counts: &mut MaskCounts) -> Cow<'a, str> {
        if self.recognizers.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut masked: Option<String> = None;
        let mut cursor = 0;
        let mut emit = |(found, index): Found, cursor: &mut usize| {
            let out = masked.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[*cursor..found.start]);
            out.push_str(&self.replacements[index]);
            counts.add(&self.recognizers[index].name, 1);
            *cursor = found.end;
        };
        match &self.combined {
            Some(combined) => {
                while let Some(found) = self.next_combined(combined, text, cursor) {
                    emit(found, &mut cursor);
                }
            }
            None => {
                let mut pending: Vec<Option<Range<usize>>> = (0..self.recognizers.len())
                    .map(|index| self.find_valid(index, text, 0))
                    .collect();
                while let Some(found) = self.next_pending(&mut pending, text, cursor) {
                    emit(found, &mut cursor);
                }
            }
        }
        match masked {
            Some(mut out) => {
                out.push_str(&text[cursor..]);
                Cow::Owned(out)
            }
            None => Cow::Borrowed(text),
        }
    }

    pub fn recognizers(&self) -> &[Recognizer] {
        &self.recognizers
    }

    /// The replacement text written for the recognizer at `index` (`[EMAIL]`).
    pub fn replacement(&self, index: usize) -> Option<&str> {
        self.replacements.get(index).map(String::as_str)
    }

    /// The leftmost-longest accepted match at or after `from`, via the combined automaton.
    fn next_combined(&self, combined: &meta::Regex, text: &str, from: usize) -> Option<Found> {
        let mut at = from;
        while at <= text.len() {
            let first = combined.search(&Input::new(text).range(at..))?;
            let start = first.start();
            let mut best: Option<Found> = None;
            for (index, recognizer) in self.recognizers.iter().enumerate() {
                let end = if index == first.pattern().as_usize() {
                    first.end()
                } else {
                    let Ok(pattern) = PatternID::new(index) else {
                        continue;
                    };
                    let anchored = Input::new(text)
                        .range(start..)
                        .anchored(Anchored::Pattern(pattern));
                    match combined.search(&anchored) {
                        Some(found) => found.end(),
                        None => continue,
                    }
                };
                let longer = best.as_ref().is_none_or(|(range, _)| end > range.end);
                if end > start && longer && passes_check(recognizer, &text[start..end]) {
                    best = Some((start..end, index));
                }
            }
            if best.is_some() {
                return best;
            }
            at = next_char_boundary(text, start);
        }
        None
    }

    /// The leftmost-longest accepted match at or after `cursor` from per-recognizer searches.
    fn next_pending(
        &self,
        pending: &mut [Option<Range<usize>>],
        text: &str,
        cursor: usize,
    ) -> Option<Found> {
        let mut best: Option<Found> = None;
        for (index, slot) in pending.iter_mut().enumerate() {
            // A candidate starting inside the previous replacement is stale: search again from
            // the cursor, since a valid match may start later within its span.
            if matches!(slot, Some(found) if found.start < cursor) {
                *slot = self.find_valid(index, text, cursor);
            }
            if let Some(found) = slot {
                let better = best.as_ref().is_none_or(|(current, _)| {
                    found.start < current.start
                        || (found.start == current.start && found.end > current.end)
                });
                if better {
                    best = Some((found.clone(), index));
                }
            }
        }
        best
    }

    fn find_valid(&self, index: usize, text: &str, from: usize) -> Option<Range<usize>> {
        find_valid(&self.recognizers[index], text, from)
    }
}

/// The first non-empty match of `recognizer` at or after `from` that passes its check (the
/// streaming masker searches the same way).
pub(super) fn find_valid(recognizer: &Recognizer, text: &str, from: usize) -> Option<Range<usize>> {
    let mut at = from;
    while at <= text.len() {
        let found = recognizer.regex.find_at(text, at)?;
        if !found.is_empty() && passes_check(recognizer, found.as_str()) {
            return Some(found.range());
        }
        at = next_char_boundary(text, found.start());
    }
    None
}

fn passes_check(recognizer: &Recognizer, candidate: &str) -> bool {
    recognizer.check.is_none_or(|check| check(candidate))
}

fn next_char_boundary(text: &str, at: usize) -> usize {
    text[at..]
        .chars()
        .next()
        .map_or(at + 1, |next| at + next.len_utf8())
}

#[cfg(test)]
#[path = "mask_tests.rs"]
mod tests;
