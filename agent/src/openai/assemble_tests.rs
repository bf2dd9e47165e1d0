//! Tests for stream assembly (chat chunks, Responses events, through the SSE parser) and JSON bodies.
use super::*;
use crate::openai::sse::SseParser;

/// Runs a raw SSE body through the parser (in the given chunks) and the assembler.
fn assemble_stream(kind: EndpointKind, chunks: &[&[u8]]) -> (Assembled, Vec<String>, bool) {
    let mut parser = SseParser::default();
    let mut assembler = StreamAssembler::new(kind);
    let mut events = Vec::new();
    let mut deltas = Vec::new();
    for chunk in chunks {
        parser.feed(chunk, &mut events);
        for event in events.drain(..) {
            deltas.extend(assembler.on_event(&event));
        }
    }
    let complete = assembler.is_complete();
    (assembler.finish(), deltas, complete)
}

fn chat(stream: &str) -> (Assembled, Vec<String>, bool) {
    assemble_stream(EndpointKind::ChatCompletions, &[stream.as_bytes()])
}

fn responses(stream: &str) -> (Assembled, Vec<String>, bool) {
    assemble_stream(EndpointKind::Responses, &[stream.as_bytes()])
}

fn usage(input_tokens: u64, output_tokens: u64, total_tokens: u64) -> Option<Usage> {
    Some(Usage {
        input_tokens,
        output_tokens,
        total_tokens,
    })
}

const CHAT_TEXT: &str = concat!(
    "data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_f9f4fb6dbf\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Bonjour\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    ": keep-alive\n\n",
    "data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" \u{e0} vous \u{1F44B}\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-B9\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":5,\"total_tokens\":24,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n",
    "data: [DONE]\n\n",
);

fn chat_text_expected() -> Assembled {
    Assembled {
        text: "Bonjour \u{e0} vous \u{1F44B}".into(),
        finish_reason: Some("stop".into()),
        usage: usage(19, 5, 24),
        ..Assembled::default()
    }
}

#[test]
fn chat_content_finish_reason_and_usage_chunk() {
    let (assembled, deltas, complete) = chat(CHAT_TEXT);
    assert_eq!(assembled, chat_text_expected());
    assert_eq!(deltas, ["Bonjour", " \u{e0} vous \u{1F44B}"]);
    assert!(complete);
}

#[test]
fn chat_stream_split_at_every_offset_with_crlf_assembles_the_same() {
    let crlf = CHAT_TEXT.replace('\n', "\r\n");
    for stream in [CHAT_TEXT.as_bytes(), crlf.as_bytes()] {
        for split in 0..=stream.len() {
            let (a, b) = stream.split_at(split);
            let (assembled, _, complete) = assemble_stream(EndpointKind::ChatCompletions, &[a, b]);
            assert_eq!(assembled, chat_text_expected(), "split at {split}");
            assert!(complete);
        }
    }
}

#[test]
fn chat_stream_byte_at_a_time() {
    let chunks: Vec<&[u8]> = CHAT_TEXT.as_bytes().chunks(1).collect();
    let (assembled, deltas, _) = assemble_stream(EndpointKind::ChatCompletions, &chunks);
    assert_eq!(assembled, chat_text_expected());
    assert_eq!(deltas.concat(), "Bonjour \u{e0} vous \u{1F44B}");
}

#[test]
fn chat_without_include_usage_has_no_usage() {
    let (assembled, _, _) = chat(concat!(
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        "data: [DONE]\n\n",
    ));
    assert_eq!(assembled.text, "hi");
    assert_eq!(assembled.finish_reason.as_deref(), Some("length"));
    assert_eq!(assembled.usage, None);
}

#[test]
fn chat_refusal_is_joined() {
    let (assembled, deltas, _) = chat(concat!(
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"refusal\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"I'm sorry, \"},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"I can't help with that.\"},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    ));
    assert_eq!(
        assembled.refusal.as_deref(),
        Some("I'm sorry, I can't help with that.")
    );
    assert_eq!(assembled.text, "");
    assert_eq!(deltas, ["I'm sorry, ", "I can't help with that."]);
}

#[test]
fn chat_tool_calls_are_joined_by_index() {
    let (assembled, deltas, _) = chat(concat!(
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_paris\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\": \"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_rome\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{\\\"city\\\": \\\"Rome\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
        "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    ));
    assert_eq!(
        assembled.tool_calls,
        [
            ToolCall {
                index: 0,
                id: Some("call_paris".into()),
                name: Some("get_weather".into()),
                arguments: "{\"city\": \"Paris\"}".into(),
            },
            ToolCall {
                index: 1,
                id: Some("call_rome".into()),
                name: Some("get_weather".into()),
                arguments: "{\"city\": \"Rome\"}".into(),
            },
        ]
    );
    assert_eq!(assembled.finish_reason.as_deref(), Some("tool_calls"));
    assert_eq!(assembled.text, "");
    assert_eq!(
        deltas,
        ["{\"city\": ", "{\"city\": \"Rome\"}", "\"Paris\"}"]
    );
}

#[test]
fn chat_only_choice_zero_is_assembled() {
    let (assembled, deltas, _) = chat(concat!(
        "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"other\"},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first\"},\"finish_reason\":null}]}\n\n",
        "data: {\"choices\":[{\"index\":1,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
    ));
    assert_eq!(assembled.text, "first");
    assert_eq!(assembled.finish_reason, None);
    assert_eq!(deltas, ["first"]);
}

#[test]
fn chat_error_chunk_and_garbage_events() {
    let (assembled, _, complete) = chat(concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"}}]}\n\n",
        "data: not json\n\n",
        "data: {\"choices\":\"weird\"}\n\n",
        "data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n",
    ));
    assert_eq!(assembled.text, "par");
    assert_eq!(
        assembled.error.as_deref(),
        Some("server_error: The server had an error while processing your request.")
    );
    assert!(!complete);
}

#[test]
fn aborted_chat_stream_snapshot_has_partial_text() {
    let mut parser = SseParser::default();
    let mut assembler = StreamAssembler::new(EndpointKind::ChatCompletions);
    let mut events = Vec::new();
    let cut = CHAT_TEXT.find(": keep-alive").unwrap() + 5;
    parser.feed(&CHAT_TEXT.as_bytes()[..cut], &mut events);
    for event in &events {
        assembler.on_event(event);
    }
    let partial = assembler.snapshot();
    assert_eq!(partial.text, "Bonjour");
    assert_eq!(partial.finish_reason, None);
    assert!(!assembler.is_complete());
}

#[test]
fn legacy_completions_stream_text() {
    let (assembled, deltas, _) = assemble_stream(
        EndpointKind::Completions,
        &[concat!(
            "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"Hello\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
            "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"text\":\" world\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],\"model\":\"gpt-3.5-turbo-instruct\"}\n\n",
            "data: [DONE]\n\n",
        )
        .as_bytes()],
    );
    assert_eq!(assembled.text, "Hello world");
    assert_eq!(assembled.finish_reason.as_deref(), Some("stop"));
    assert_eq!(deltas, ["Hello", " world"]);
}

#[path = "assemble_responses_tests.rs"]
mod responses_api;

#[path = "assemble_json_tests.rs"]
mod json_bodies;
