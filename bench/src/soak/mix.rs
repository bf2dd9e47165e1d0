//! The soak's mix of requests: which kind the i-th request is, the body it sends, and what Warden
//! must record for it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::payload;

/// One kind of request in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A chat completion, answered whole.
    Plain,
    /// A streamed chat completion, read to `data: [DONE]`.
    Streamed,
    /// A chat completion whose prompt carries an e-mail address and an employee id: masked before
    /// it goes upstream.
    Masked,
    /// A model the policy refuses: 403 from Warden, never forwarded.
    Denied,
    /// A streamed chat completion the client walks away from after the first event (the upstream
    /// holds the rest until then).
    Aborted,
}

/// Ten requests in a row, in this order, over and over: 4 plain, 2 streamed, 2 masked, 1 denied,
/// 1 aborted.
const CYCLE: [Kind; 10] = [
    Kind::Plain,
    Kind::Streamed,
    Kind::Masked,
    Kind::Plain,
    Kind::Denied,
    Kind::Plain,
    Kind::Streamed,
    Kind::Masked,
    Kind::Plain,
    Kind::Aborted,
];

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Plain,
        Kind::Streamed,
        Kind::Masked,
        Kind::Denied,
        Kind::Aborted,
    ];

    /// The kind of the request numbered `index` (from 0) in the whole soak.
    pub fn of(index: u64) -> Kind {
        CYCLE[(index % CYCLE.len() as u64) as usize]
    }

    /// How many of the requests numbered `first..first + count` are of this kind.
    pub fn count_in(self, first: u64, count: u64) -> u64 {
        (first..first + count)
            .filter(|&index| Kind::of(index) == self)
            .count() as u64
    }

    /// Its position in [`Kind::ALL`].
    pub fn position(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Plain => "plain",
            Kind::Streamed => "streamed",
            Kind::Masked => "masked",
            Kind::Denied => "denied",
            Kind::Aborted => "aborted",
        }
    }

    /// The request body, 1 KiB like the bench's.
    pub fn body(self) -> Bytes {
        match self {
            Kind::Plain => payload::chat_request(false),
            Kind::Streamed => payload::chat_request(true),
            Kind::Masked => {
                let lead = format!(
                    "Write to {} about the badge of EMP-123456. ",
                    payload::UNMASKED_EMAIL
                );
                payload::chat_request_of(payload::MODEL, &lead, false)
            }
            Kind::Denied => payload::chat_request_of(payload::DENIED_MODEL, "", false),
            Kind::Aborted => payload::chat_request_of(payload::MODEL, payload::HOLD_MARKER, true),
        }
    }

    /// The outcome Warden's audit store must give it.
    pub fn recorded_outcome(self) -> &'static str {
        match self {
            Kind::Plain | Kind::Streamed | Kind::Masked => "ok",
            Kind::Denied => "denied",
            Kind::Aborted => "client_aborted",
        }
    }

    /// Whether it reaches the upstream.
    pub fn forwarded(self) -> bool {
        self != Kind::Denied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cycle_holds_every_kind_in_its_share() {
        let counts = Kind::ALL.map(|kind| kind.count_in(0, 100_000));
        assert_eq!(counts, [40_000, 20_000, 20_000, 10_000, 10_000]);
        assert_eq!(counts.iter().sum::<u64>(), 100_000);
    }

    #[test]
    fn split_ranges_add_up_to_the_whole() {
        for kind in Kind::ALL {
            assert_eq!(
                kind.count_in(0, 1_234) + kind.count_in(1_234, 5_000),
                kind.count_in(0, 6_234),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn positions_follow_all() {
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(kind.position(), i);
        }
    }

    #[test]
    fn bodies_ask_for_what_their_kind_needs() {
        let has = |kind: Kind, needle: &str| payload::contains(&kind.body(), needle.as_bytes());
        assert!(has(Kind::Masked, payload::UNMASKED_EMAIL));
        assert!(has(Kind::Denied, payload::DENIED_MODEL));
        assert!(has(Kind::Aborted, payload::HOLD_MARKER));
        assert!(payload::asks_for_stream(&Kind::Aborted.body()));
        assert!(payload::asks_for_stream(&Kind::Streamed.body()));
        assert!(!payload::asks_for_stream(&Kind::Plain.body()));
        for kind in [Kind::Plain, Kind::Streamed, Kind::Denied] {
            assert!(!has(kind, payload::HOLD_MARKER), "{kind:?}");
        }
    }
}
