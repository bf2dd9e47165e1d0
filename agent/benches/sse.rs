//! Criterion benchmarks of streamed responses: SSE parsing and assembly of a 200-delta stream.
//!
//! Benchmarks, not tests: nothing here asserts on time. A stream that does not parse or assemble
//! to the text it was built from aborts the run, hence the `assert`s, checked once before
//! measuring. The stream is fed in network-sized pieces (1–4 KiB) cut mid-line, as the proxy
//! receives it from the upstream.
use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use warden::openai::{
    assemble::{Assembled, StreamAssembler, Usage},
    endpoint::EndpointKind,
    sse::{SseEvent, SseParser},
};

const DELTAS: usize = 200;

/// Read sizes cycled through when cutting the stream; none is a multiple of an event's length,
/// so most pieces end mid-line.
const PIECE_SIZES: [usize; 5] = [1448, 4096, 2896, 1024, 3571];

const WORDS: [&str; 12] = [
    "The ",
    "ledger ",
    "shows ",
    "three ",
    "unpaid ",
    "invoices ",
    "from ",
    "Acme, ",
    "oldest ",
    "first; ",
    "follow ",
    "up. ",
];

/// The text the stream's deltas add up to.
fn expected_text() -> String {
    WORDS.iter().cycle().take(DELTAS).copied().collect()
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a str serializes")
}

/// A chat.completions stream as the API sends it with `stream_options.include_usage`: a role
/// chunk, one chunk per word, a finish chunk, a usage chunk and `[DONE]`.
fn chat_stream() -> String {
    let head = r#"{"id":"chatcmpl-BJp2fQ8Zk3nW1xYqLr7TsVuA9cDe","object":"chat.completion.chunk","created":1743811234,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_b376dfbbd5","choices":"#;
    let mut stream = format!(
        "data: {head}[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
    );
    for word in WORDS.iter().cycle().take(DELTAS) {
        let content = json_string(word);
        stream.push_str(&format!(
            "data: {head}[{{\"index\":0,\"delta\":{{\"content\":{content}}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        ));
    }
    stream.push_str(&format!(
        "data: {head}[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n"
    ));
    stream.push_str(&format!(
        "data: {head}[],\"usage\":{{\"prompt_tokens\":1024,\"completion_tokens\":200,\"total_tokens\":1224,\"prompt_tokens_details\":{{\"cached_tokens\":0,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}\n\n"
    ));
    stream.push_str("data: [DONE]\n\n");
    stream
}

fn sse(event_type: &str, data: &str) -> String {
    format!("event: {event_type}\ndata: {data}\n\n")
}

/// A Responses API stream: created, in progress, the message item opened, one
/// `response.output_text.delta` per word, the item closed and `response.completed` with usage.
fn responses_stream() -> String {
    let text = json_string(&expected_text());
    let response = |kind: &str, status: &str, output: &str, usage: &str| {
        format!(
            r#"{{"type":"{kind}","sequence_number":SEQ,"response":{{"id":"resp_68a1f3c2d4e5","object":"response","created_at":1743811234,"status":"{status}","error":null,"incomplete_details":null,"instructions":"You are a careful accounts-payable assistant.","max_output_tokens":null,"model":"gpt-4.1-2025-04-14","output":[{output}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{{"effort":null,"summary":null}},"store":true,"temperature":1.0,"text":{{"format":{{"type":"text"}}}},"tool_choice":"auto","tools":[],"top_p":1.0,"truncation":"disabled","usage":{usage},"user":null,"metadata":{{}}}}}}"#
        )
    };
    let message = |status: &str, text: &str| {
        format!(
            r#"{{"id":"msg_68a1f3c2d4e5","type":"message","status":"{status}","role":"assistant","content":[{{"type":"output_text","text":{text},"annotations":[]}}]}}"#
        )
    };
    let mut events = vec![
        sse(
            "response.created",
            &response("response.created", "in_progress", "", "null"),
        ),
        sse(
            "response.in_progress",
            &response("response.in_progress", "in_progress", "", "null"),
        ),
        sse(
            "response.output_item.added",
            r#"{"type":"response.output_item.added","sequence_number":SEQ,"output_index":0,"item":{"id":"msg_68a1f3c2d4e5","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
        ),
        sse(
            "response.content_part.added",
            r#"{"type":"response.content_part.added","sequence_number":SEQ,"item_id":"msg_68a1f3c2d4e5","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}"#,
        ),
    ];
    for word in WORDS.iter().cycle().take(DELTAS) {
        let delta = json_string(word);
        events.push(sse(
            "response.output_text.delta",
            &format!(
                r#"{{"type":"response.output_text.delta","sequence_number":SEQ,"item_id":"msg_68a1f3c2d4e5","output_index":0,"content_index":0,"delta":{delta},"logprobs":[]}}"#
            ),
        ));
    }
    events.push(sse(
        "response.output_text.done",
        &format!(
            r#"{{"type":"response.output_text.done","sequence_number":SEQ,"item_id":"msg_68a1f3c2d4e5","output_index":0,"content_index":0,"text":{text},"logprobs":[]}}"#
        ),
    ));
    events.push(sse(
        "response.output_item.done",
        &format!(
            r#"{{"type":"response.output_item.done","sequence_number":SEQ,"output_index":0,"item":{}}}"#,
            message("completed", &text)
        ),
    ));
    events.push(sse(
        "response.completed",
        &response(
            "response.completed",
            "completed",
            &message("completed", &text),
            r#"{"input_tokens":1024,"input_tokens_details":{"cached_tokens":0},"output_tokens":200,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":1224}"#,
        ),
    ));
    events
        .iter()
        .enumerate()
        .map(|(sequence, event)| event.replace("SEQ", &sequence.to_string()))
        .collect()
}

/// `stream` cut into the pieces successive socket reads would return.
fn network_pieces(stream: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut rest = stream;
    for size in PIECE_SIZES.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at((*size).min(rest.len()));
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

fn parse(pieces: &[&[u8]]) -> Vec<SseEvent> {
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    for piece in pieces {
        parser.feed(piece, &mut events);
    }
    parser.finish(&mut events);
    events
}

/// Assembles as the proxy does, keeping each event's added text (what it would forward masked).
fn assemble(kind: EndpointKind, events: &[SseEvent]) -> Assembled {
    let mut assembler = StreamAssembler::new(kind);
    for event in events {
        black_box(assembler.on_event(event));
    }
    assembler.finish()
}

fn parse_and_assemble(kind: EndpointKind, pieces: &[&[u8]]) -> Assembled {
    let mut parser = SseParser::default();
    let mut assembler = StreamAssembler::new(kind);
    let mut events = Vec::new();
    for piece in pieces {
        parser.feed(piece, &mut events);
        for event in events.drain(..) {
            black_box(assembler.on_event(&event));
        }
    }
    parser.finish(&mut events);
    for event in events.drain(..) {
        black_box(assembler.on_event(&event));
    }
    assembler.finish()
}

fn bench_stream(c: &mut Criterion, name: &str, kind: EndpointKind, stream: &str) {
    let pieces = network_pieces(stream.as_bytes());
    let events = parse(&pieces);

    // The stream is what it claims to be: every event parsed, the text and usage assembled.
    let expected_events = match kind {
        EndpointKind::Responses => DELTAS + 7,
        _ => DELTAS + 4,
    };
    assert_eq!(events.len(), expected_events, "{name}: events parsed");
    assert!(
        pieces.len() > 1,
        "{name}: the stream must span several reads"
    );
    for assembled in [assemble(kind, &events), parse_and_assemble(kind, &pieces)] {
        assert_eq!(assembled.text, expected_text(), "{name}: assembled text");
        assert_eq!(
            assembled.usage,
            Some(Usage {
                input_tokens: 1024,
                output_tokens: 200,
                total_tokens: 1224,
            }),
            "{name}: usage"
        );
        assert!(assembled.error.is_none(), "{name}: {:?}", assembled.error);
    }

    let mut group = c.benchmark_group(format!("sse/{name}"));
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("parse", |b| b.iter(|| parse(black_box(&pieces))));
    group.bench_function("parse_and_assemble", |b| {
        b.iter(|| parse_and_assemble(kind, black_box(&pieces)))
    });
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("assemble", |b| {
        b.iter(|| assemble(kind, black_box(&events)))
    });
    group.finish();
}

fn bench_sse(c: &mut Criterion) {
    bench_stream(
        c,
        "chat_200_deltas",
        EndpointKind::ChatCompletions,
        &chat_stream(),
    );
    bench_stream(
        c,
        "responses_200_deltas",
        EndpointKind::Responses,
        &responses_stream(),
    );
}

criterion_group! {
    name = benches;
    // Short enough that all the micro-benchmarks together run in well under a minute on two
    // cores; the confidence intervals stay within about 1%.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench_sse
}
criterion_main!(benches);
