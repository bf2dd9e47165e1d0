//! Fuzz target: the SSE parser and the stream assembler over a response body in fuzzer-chosen reads.
use super::cuts::{pieces, split_cuts};
use crate::openai::assemble::{assemble_json, StreamAssembler};
use crate::openai::endpoint::EndpointKind;
use crate::openai::sse::{SseEvent, SseParser, DEFAULT_MAX_LINE};

/// A line limit small enough for the fuzzer to reach the over-long line and event paths.
const SMALL_MAX_LINE: usize = 64;

/// Byte 0: bit 0 reads the body as a Responses API stream (else chat completions), bit 1 uses a
/// 64-byte line limit. Then the cuts ([`split_cuts`]) and the body. The events must not depend on
/// where the reads were cut; the assembler must take whatever they carry.
pub fn sse(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let kind = if flags & 1 == 0 {
        EndpointKind::ChatCompletions
    } else {
        EndpointKind::Responses
    };
    let max_line = if flags & 2 == 0 {
        DEFAULT_MAX_LINE
    } else {
        SMALL_MAX_LINE
    };
    let (cuts, body) = split_cuts(rest);

    let (whole, whole_overflowed) = parse(max_line, &[body]);
    let (chunked, chunked_overflowed) = parse(max_line, &pieces(body, &cuts));
    assert_eq!(whole, chunked, "events depend on how the body was cut");
    assert_eq!(
        whole_overflowed, chunked_overflowed,
        "overflow count depends on the cuts"
    );

    let mut assembler = StreamAssembler::new(kind);
    for event in &chunked {
        assembler.on_event(event);
        if let Some(json) = assemble_json(kind, event.data.as_bytes()) {
            serialize(&json);
        }
    }
    serialize(&assembler.snapshot());
    let complete = assembler.is_complete();
    let assembled = assembler.finish();
    serialize(&assembled);
    let done = chunked.iter().any(|event| event.data.trim() == "[DONE]");
    assert!(
        complete || !done,
        "a [DONE] event did not complete the stream"
    );
    if let Some(json) = assemble_json(kind, body) {
        serialize(&json);
    }
}

/// The events and overflow count of `reads` fed in order, then the end of the stream.
fn parse(max_line: usize, reads: &[&[u8]]) -> (Vec<SseEvent>, u64) {
    let mut parser = SseParser::with_max_line(max_line);
    let mut events = Vec::new();
    for read in reads {
        parser.feed(read, &mut events);
    }
    parser.finish(&mut events);
    (events, parser.overflowed())
}

/// Assembled results go into audit records as JSON; that must always work.
fn serialize(assembled: &crate::openai::assemble::Assembled) {
    serde_json::to_string(assembled).expect("an assembled response serializes");
}
