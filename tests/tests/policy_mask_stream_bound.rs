//! Streaming masking never holds a whole stream: with `email` masking on, a long word (no
//! whitespace, each character of which could begin an address) reaches the client while the
//! upstream still holds the rest of the stream, at most 254 characters (the longest address)
//! behind what the upstream sent.

use serde_json::Value;
use warden_tests::audit;
use warden_tests::policy::{mask_rule, PolicyAgent};
use warden_tests::FakeUpstream;

/// The longest email address (RFC 5321): what the masker may hold back of a word.
const EMAIL_MAX_LEN: usize = 254;
const RUN: usize = 1_250;

/// The content of a `data:` line of a chat completion stream, if it has any.
fn content(line: &str) -> Option<String> {
    let data: Value = serde_json::from_str(line.strip_prefix("data: ")?).ok()?;
    Some(data["choices"][0]["delta"]["content"].as_str()?.to_owned())
}

#[test]
fn a_long_word_is_released_before_the_stream_ends_within_the_email_bound() {
    let xs = "x".repeat(RUN);
    let ys = "y".repeat(RUN);
    // Events: the role chunk, the two halves of the word, then (held at the gate) its end.
    let upstream = FakeUpstream::builder()
        .stream_deltas([xs.as_str(), ys.as_str(), " done."])
        .gate_after(3)
        .start();
    let Some(agent) = PolicyAgent::with_upstream("mask-stream-bound", upstream, |daemon, _| {
        daemon.policy_file(
            "mask.toml",
            &mask_rule("mask-email", "response", &["email"]),
        )
    }) else {
        return;
    };
    let fx = &agent.fx;
    let running = fx
        .client(audit::curl::stream_chat(
            "gpt-4o-mini",
            "Say a long word",
            30,
        ))
        .spawn();
    // While the upstream holds " done.", Warden has had 2,500 characters of one word: it may
    // hold back at most the last 254, so the event for the second half carries at least
    // 1,250 - 254 of its `y`s. A masker that held the word until it ended sends none.
    let out = fx.upstream.assert_first_line_before_gate(running, |line| {
        content(line).is_some_and(|text| text.matches('y').count() >= RUN - EMAIL_MAX_LEN)
    });
    out.assert_success();
    let received: String = out.stdout.lines().filter_map(content).collect();
    assert_eq!(
        received,
        format!("{xs}{ys} done."),
        "the whole reply, unmasked"
    );
    let pieces: Vec<String> = out.stdout.lines().filter_map(content).collect();
    assert!(
        pieces
            .iter()
            .all(|piece| piece.len() <= RUN + EMAIL_MAX_LEN),
        "no event carries more than a delta plus what was held: {:?}",
        pieces.iter().map(String::len).collect::<Vec<_>>()
    );
}
