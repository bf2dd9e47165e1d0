//! Compiles a masker's recognizers into the prefix DFAs that tell a stream what it must hold back.
use std::sync::Arc;

use regex_automata::dfa::{dense, Automaton, StartError, StartKind};
use regex_automata::nfa::thompson::{self, WhichCaptures};
use regex_automata::util::{primitives::StateID, start};
use regex_automata::{Anchored, MatchKind};
use regex_syntax::hir::{Hir, HirKind, Repetition};

use crate::policy::mask::Masker;
use crate::policy::recognizers::Recognizer;

/// Largest DFA one recognizer may compile to; a pattern needing more is refused at policy load
/// rather than making every stream slow.
const DFA_SIZE_LIMIT: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StreamMaskError {
    #[error("recognizer {recognizer}: pattern does not parse: {source}")]
    Syntax {
        recognizer: String,
        #[source]
        source: Box<regex_syntax::Error>,
    },
    #[error("recognizer {recognizer}: pattern is too complex to mask in streams: {source}")]
    Nfa {
        recognizer: String,
        #[source]
        source: Box<thompson::BuildError>,
    },
    #[error("recognizer {recognizer}: pattern is too complex to mask in streams: {source}")]
    Dfa {
        recognizer: String,
        #[source]
        source: Box<dense::BuildError>,
    },
    #[error("recognizer {recognizer}: no anchored start state: {source}")]
    Start {
        recognizer: String,
        #[source]
        source: StartError,
    },
}

/// The per-policy part of stream masking: the masker and one prefix DFA per recognizer.
/// Build it once when the policy loads and share it (`Arc`) between all streams.
#[derive(Debug)]
pub struct StreamPrefixes {
    masker: Arc<Masker>,
    pub(super) automata: Vec<PrefixAutomaton>,
    /// Per byte, the recognizers a match can begin with it, and each one's state after it.
    /// Empty for UTF-8 continuation bytes: matches begin on character boundaries.
    pub(super) first: Vec<Vec<FirstStep>>,
}

#[derive(Debug)]
pub(super) struct PrefixAutomaton {
    pub(super) dfa: dense::DFA<Vec<u32>>,
    /// The anchored start state (the DFA has no look-behind, so it is the same everywhere).
    start: StateID,
    pub(super) max_len: usize,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct FirstStep {
    pub(super) recognizer: usize,
    pub(super) state: StateID,
    /// `state` is a match state.
    pub(super) matched: bool,
    /// The recognizer's `max_len`, copied here so that starting a thread reads one place.
    pub(super) max_len: usize,
}

impl StreamPrefixes {
    pub fn new(masker: Arc<Masker>) -> Result<StreamPrefixes, StreamMaskError> {
        let automata = masker
            .recognizers()
            .iter()
            .map(PrefixAutomaton::new)
            .collect::<Result<Vec<_>, _>>()?;
        let mut first = vec![Vec::new(); 256];
        for (byte, steps) in (0..=u8::MAX).zip(first.iter_mut()) {
            if is_continuation(byte) {
                continue;
            }
            for (recognizer, automaton) in automata.iter().enumerate() {
                let state = automaton.dfa.next_state(automaton.start, byte);
                if !automaton.dfa.is_dead_state(state) {
                    steps.push(FirstStep {
                        recognizer,
                        state,
                        matched: automaton.dfa.is_match_state(state),
                        max_len: automaton.max_len,
                    });
                }
            }
        }
        Ok(StreamPrefixes {
            masker,
            automata,
            first,
        })
    }

    pub fn masker(&self) -> &Arc<Masker> {
        &self.masker
    }
}

impl PrefixAutomaton {
    fn new(recognizer: &Recognizer) -> Result<PrefixAutomaton, StreamMaskError> {
        let name = || recognizer.name.clone();
        let hir = regex_automata::util::syntax::parse(&recognizer.pattern).map_err(|source| {
            StreamMaskError::Syntax {
                recognizer: name(),
                source: Box::new(source),
            }
        })?;
        let nfa = thompson::Compiler::new()
            .configure(thompson::Config::new().which_captures(WhichCaptures::None))
            .build_from_hir(&without_assertions(&hir))
            .map_err(|source| StreamMaskError::Nfa {
                recognizer: name(),
                source: Box::new(source),
            })?;
        // `All`: a state is dead only when no continuation matches at all, whatever the
        // regex's leftmost-first preference would pick.
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(DFA_SIZE_LIMIT))
                    .determinize_size_limit(Some(DFA_SIZE_LIMIT)),
            )
            .build_from_nfa(&nfa)
            .map_err(|source| StreamMaskError::Dfa {
                recognizer: name(),
                source: Box::new(source),
            })?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|source| StreamMaskError::Start {
                recognizer: name(),
                source,
            })?;
        Ok(PrefixAutomaton {
            dfa,
            start,
            max_len: recognizer.max_len,
        })
    }

    /// A match state from which every byte leads to the dead state: the thread can only have
    /// matched already, so it holds nothing back.
    pub(super) fn is_spent(&self, state: StateID) -> bool {
        self.dfa.is_match_state(state)
            && self
                .dfa
                .byte_classes()
                .representatives(..)
                .filter_map(|unit| unit.as_u8())
                .all(|byte| self.dfa.is_dead_state(self.dfa.next_state(state, byte)))
    }
}

/// The regex with every look-around assertion removed: it matches everything the regex
/// matches (and more), and decides with no look-behind, so one start state fits every position.
fn without_assertions(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Look(_) => Hir::empty(),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) => hir.clone(),
        HirKind::Capture(capture) => without_assertions(&capture.sub),
        HirKind::Repetition(repetition) => Hir::repetition(Repetition {
            sub: Box::new(without_assertions(&repetition.sub)),
            ..repetition.clone()
        }),
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(without_assertions).collect()),
        HirKind::Alternation(subs) => {
            Hir::alternation(subs.iter().map(without_assertions).collect())
        }
    }
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}
