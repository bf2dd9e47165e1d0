//! Tests for the SSE parser: framing, splits at every offset, limits.
use super::*;

fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut out);
    }
    out
}

fn parse(stream: &[u8]) -> Vec<SseEvent> {
    parse_chunks(&[stream])
}

fn data(data: &str) -> SseEvent {
    SseEvent {
        data: data.into(),
        ..SseEvent::default()
    }
}

fn typed(event: &str, data: &str) -> SseEvent {
    SseEvent {
        event: Some(event.into()),
        data: data.into(),
        id: None,
    }
}

/// A chat stream with everything the parser must survive: a BOM, CRLF, a comment, keep-alive
/// blank lines, multi-byte characters, a typed event and a multi-line event.
const MIXED: &[u8] = "\u{FEFF}: keep-alive\r\n\r\n\
    data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\u{e9}llo \u{1F600}\"}}]}\r\n\r\n\
    \r\n\
    event: response.output_text.delta\n\
    data:{\"delta\":\"\u{65E5}\u{672C}\"}\n\n\
    data: first\r\
    data: second\r\r\
    data: [DONE]\n\n"
    .as_bytes();

fn mixed_expected() -> Vec<SseEvent> {
    vec![
        data("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\u{e9}llo \u{1F600}\"}}]}"),
        typed(
            "response.output_text.delta",
            "{\"delta\":\"\u{65E5}\u{672C}\"}",
        ),
        data("first\nsecond"),
        data("[DONE]"),
    ]
}

#[test]
fn whole_stream_parses() {
    assert_eq!(parse(MIXED), mixed_expected());
}

#[test]
fn split_at_every_byte_offset_gives_the_same_events() {
    for split in 0..=MIXED.len() {
        let (a, b) = MIXED.split_at(split);
        assert_eq!(parse_chunks(&[a, b]), mixed_expected(), "split at {split}");
    }
}

#[test]
fn split_into_three_at_every_pair_of_offsets() {
    for first in 0..=MIXED.len() {
        for second in first..=MIXED.len() {
            let chunks = [&MIXED[..first], &MIXED[first..second], &MIXED[second..]];
            assert_eq!(parse_chunks(&chunks), mixed_expected(), "{first}/{second}");
        }
    }
}

#[test]
fn byte_at_a_time_gives_the_same_events() {
    let chunks: Vec<&[u8]> = MIXED.chunks(1).collect();
    assert_eq!(parse_chunks(&chunks), mixed_expected());
}

#[test]
fn multibyte_character_split_across_reads() {
    let text = "data: caf\u{e9} \u{1F980}\n\n".as_bytes();
    let crab = text.len() - 4; // inside the 4-byte crab
    assert_eq!(
        parse_chunks(&[&text[..crab], &text[crab..crab + 1], &text[crab + 1..]]),
        [data("caf\u{e9} \u{1F980}")]
    );
    let e_acute = "data: caf".len() + 1; // between the two bytes of é
    assert_eq!(
        parse_chunks(&[&text[..e_acute], &text[e_acute..]]),
        [data("caf\u{e9} \u{1F980}")]
    );
}

#[test]
fn line_endings_crlf_cr_and_lf() {
    assert_eq!(parse(b"data: a\r\n\r\n"), [data("a")]);
    assert_eq!(parse(b"data: a\r\r"), [data("a")]);
    assert_eq!(parse(b"data: a\n\n"), [data("a")]);
    assert_eq!(parse(b"data: a\r\ndata: b\rdata: c\n\n"), [data("a\nb\nc")]);
}

#[test]
fn cr_ending_one_chunk_and_lf_starting_the_next_is_one_line_ending() {
    // Were the `\n` a second line ending, it would dispatch "a" early, then "b" alone.
    assert_eq!(
        parse_chunks(&[b"data: a\r", b"\ndata: b\r\n\r\n"]),
        [data("a\nb")]
    );
    assert_eq!(
        parse_chunks(&[b"data: a\r", b"\n", b"\r", b"\n"]),
        [data("a")]
    );
    // A lone `\r` chunk, then an empty chunk, then the `\n`.
    assert_eq!(
        parse_chunks(&[b"data: a", b"\r", b"", b"\n\n"]),
        [data("a")]
    );
}

#[test]
fn comments_and_keep_alives_dispatch_nothing() {
    assert_eq!(parse(b": ping\n\n:\n\n\n\n\r\n"), []);
    assert_eq!(
        parse(b"data: a\n: comment inside an event\ndata: b\n\n"),
        [data("a\nb")]
    );
}

#[test]
fn only_one_leading_space_is_removed() {
    assert_eq!(parse(b"data:x\n\n"), [data("x")]);
    assert_eq!(parse(b"data: x\n\n"), [data("x")]);
    assert_eq!(parse(b"data:  x \n\n"), [data(" x ")]);
    assert_eq!(parse(b"data: a: b\n\n"), [data("a: b")]);
}

#[test]
fn empty_data_lines_count() {
    assert_eq!(parse(b"data\n\n"), [data("")]);
    assert_eq!(parse(b"data:\ndata:\n\n"), [data("\n")]);
}

#[test]
fn an_event_without_data_is_not_dispatched() {
    assert_eq!(parse(b"event: ping\n\ndata: x\n\n"), [data("x")]);
    // The type does not leak into the next event either.
    assert_eq!(
        parse(b"event: a\n\nevent: b\ndata: y\n\n"),
        [typed("b", "y")]
    );
}

#[test]
fn ids_persist_and_nul_ids_are_ignored() {
    let events = parse(b"id: 7\ndata: a\n\ndata: b\n\nid: 8\0\ndata: c\n\nid\ndata: d\n\n");
    let ids: Vec<_> = events.iter().map(|event| event.id.as_deref()).collect();
    assert_eq!(ids, [Some("7"), Some("7"), Some("7"), None]);
}

#[test]
fn unknown_fields_and_retry_are_ignored() {
    assert_eq!(parse(b"retry: 1000\nfoo: bar\ndata: x\n\n"), [data("x")]);
}

#[test]
fn bom_is_stripped_only_at_stream_start_even_when_split() {
    let stream = b"\xEF\xBB\xBFdata: x\n\n";
    for split in 0..=3 {
        assert_eq!(
            parse_chunks(&[&stream[..split], &stream[split..]]),
            [data("x")]
        );
    }
    // Later in the stream it is part of the line (an unknown field name).
    assert_eq!(parse(b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"), [data("a")]);
}

#[test]
fn invalid_utf8_becomes_replacement_characters() {
    assert_eq!(parse(b"data: a\xffb\n\n"), [data("a\u{FFFD}b")]);
}

#[test]
fn incomplete_event_waits_for_its_blank_line() {
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    parser.feed(b"data: a\n", &mut out);
    assert_eq!(out, []);
    parser.feed(b"\n", &mut out);
    assert_eq!(out, [data("a")]);
}

#[test]
fn finish_keeps_an_unterminated_tail() {
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    parser.feed(b"data: a\n\ndata: partial", &mut out);
    parser.finish(&mut out);
    assert_eq!(out, [data("a"), data("partial")]);

    let mut parser = SseParser::default();
    let mut out = Vec::new();
    parser.feed(b"data: [DONE]\n", &mut out);
    parser.finish(&mut out);
    assert_eq!(out, [data("[DONE]")]);

    let mut parser = SseParser::default();
    let mut out = Vec::new();
    parser.feed(b": only a comment", &mut out);
    parser.finish(&mut out);
    assert_eq!(out, []);
}

#[test]
fn an_overlong_line_is_dropped_and_counted() {
    let mut parser = SseParser::with_max_line(16);
    let mut out = Vec::new();
    parser.feed(b"data: 0123456789abcdef0123\n\ndata: ok\n\n", &mut out);
    assert_eq!(out, [data("ok")]);
    assert_eq!(parser.overflowed(), 1);
}

#[test]
fn an_overlong_line_across_chunks_is_not_buffered() {
    let mut parser = SseParser::with_max_line(16);
    let mut out = Vec::new();
    parser.feed(b"data: 0123", &mut out);
    for _ in 0..1000 {
        parser.feed(b"0123456789", &mut out);
        assert!(parser.line.len() <= 16);
    }
    parser.feed(b"\r", &mut out);
    parser.feed(b"\n\ndata: ok\n\n", &mut out);
    assert_eq!(out, [data("ok")]);
    assert_eq!(parser.overflowed(), 1);
}

#[test]
fn buffered_start_plus_long_tail_is_dropped() {
    let mut parser = SseParser::with_max_line(16);
    let mut out = Vec::new();
    parser.feed(b"data: 01234", &mut out);
    parser.feed(b"56789abcdef\n\ndata: ok\n\n", &mut out);
    assert_eq!(out, [data("ok")]);
    assert_eq!(parser.overflowed(), 1);
}

#[test]
fn an_event_whose_data_outgrows_the_limit_is_dropped() {
    let mut parser = SseParser::with_max_line(16);
    let mut out = Vec::new();
    parser.feed(
        b"data: 01234\ndata: 56789\ndata: abcdef\n\ndata: ok\n\n",
        &mut out,
    );
    assert_eq!(out, [data("ok")]);
    assert_eq!(parser.overflowed(), 1);
}

#[test]
fn buffers_are_reused_between_events() {
    let mut parser = SseParser::default();
    let mut out = Vec::new();
    parser.feed(b"data: some longer payload", &mut out);
    parser.feed(b"\n\n", &mut out);
    let (line_capacity, data_capacity) = (parser.line.capacity(), parser.fields.data.capacity());
    parser.feed(b"data: again", &mut out);
    parser.feed(b"\n\n", &mut out);
    assert_eq!(parser.line.capacity(), line_capacity);
    assert_eq!(parser.fields.data.capacity(), data_capacity);
    assert_eq!(out, [data("some longer payload"), data("again")]);
}

#[test]
fn an_overlong_line_within_one_chunk_is_dropped() {
    let mut parser = SseParser::with_max_line(16);
    let mut out = Vec::new();
    parser.feed(b"event: 0123456789abcdef0123\ndata: ok\n\n", &mut out);
    assert_eq!(out, [data("ok")]);
    assert_eq!(parser.overflowed(), 1);
}
