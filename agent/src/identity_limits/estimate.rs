//! What a request reserves before it goes: its prompt's tokens (a bound read off the body's bytes,
//! or the count by the model's own tokenizer, tiktoken's tables embedded), plus the most it may
//! answer.
use serde_json::Value;

use crate::policy::prompt::prompt_texts;

/// Tokens OpenAI adds per message and to prime the reply (its published counting recipe); an
/// estimate that is a few tokens high only makes a budget stricter by as much.
const PER_TEXT_OVERHEAD: u64 = 4;
const REPLY_PRIMING: u64 = 3;

/// The prompt tokens of a request body for `model` (o200k_base when the model is unknown).
pub fn input_tokens(model: Option<&str>, body: &Value) -> u64 {
    let bpe = model
        .and_then(|model| tiktoken_rs::bpe_for_model(model).ok())
        .unwrap_or_else(tiktoken_rs::o200k_base_singleton);
    let texts = prompt_texts(body);
    let counted: u64 = texts
        .iter()
        .map(|text| bpe.encode_ordinary(text).len() as u64 + PER_TEXT_OVERHEAD)
        .sum();
    counted + REPLY_PRIMING
}

/// The prompt's tokens as admission takes them: first a bound that costs next to nothing, and
/// the exact count (tokenizing: tens of microseconds per KiB) only when the bound would not fit
/// under a cap.
/// Both are called only when a covering limit caps tokens or dollars.
pub struct PromptTokens<Bound: FnOnce() -> u64, Count: FnOnce() -> u64> {
    /// Never less than what `count` returns.
    pub at_most: Bound,
    pub count: Count,
}

/// A bound on `input_tokens` of a body, in one pass over its bytes. Tokenizers of OpenAI's models
/// are byte-level BPE, so a text has no more tokens than bytes; a prompt text is a JSON string of
/// the body, no longer unescaped than escaped and with two quotes, so the texts' bytes plus their
/// per-text overhead are at most the body's bytes plus twice its quotes.
pub fn input_tokens_at_most(body: &[u8]) -> u64 {
    let quotes = body.iter().filter(|&&byte| byte == b'"').count() as u64;
    let per_quote = PER_TEXT_OVERHEAD / 2;
    (body.len() as u64)
        .saturating_add(quotes.saturating_mul(per_quote))
        .saturating_add(REPLY_PRIMING)
}

/// The reservation: the prompt, plus `max_tokens` (or `max_output_tokens`), else `default_output`.
pub fn reservation(input_tokens: u64, max_output: Option<u64>, default_output: u64) -> u64 {
    input_tokens.saturating_add(max_output.unwrap_or(default_output))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_prompt_is_counted_with_the_models_tokenizer() {
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hello world"}
        ]});
        // "You are terse." is 4 o200k tokens, "hello world" 2; plus 4 per text and 3 to prime.
        assert_eq!(input_tokens(Some("gpt-4o"), &body), 4 + 2 + 2 * 4 + 3);
        // An unknown model is counted with o200k_base rather than refused.
        assert_eq!(
            input_tokens(Some("my-local-llm"), &body),
            input_tokens(Some("gpt-4o"), &body)
        );
        let longer = json!({"messages": [{"role": "user", "content": "word ".repeat(1000)}]});
        assert!(input_tokens(None, &longer) >= 1000);
    }

    #[test]
    fn the_bound_is_never_below_the_count() {
        let bodies = [
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}]}),
            // Texts that are nearly all overhead: many empty strings.
            json!({"model": "gpt-3.5-turbo-instruct", "prompt": ["", "", "", "", "", "", "", ""]}),
            json!({"prompt": [""]}),
            // Escapes that unescape to multi-byte characters, and text without word boundaries.
            json!({"messages": [{"role": "user", "content": "é\u{1F600}\n\t\"x\" ".repeat(50)}]}),
            json!({"messages": [{"role": "user", "content": "0123456789abcdef".repeat(64)}]}),
            json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "日本語のテキスト"}]}],
                   "instructions": "Answer in one word."}),
        ];
        for body in bodies {
            let bytes = serde_json::to_vec(&body).expect("serialize");
            for model in ["gpt-4o", "gpt-4", "gpt-3.5-turbo-instruct"] {
                let counted = input_tokens(Some(model), &body);
                let at_most = input_tokens_at_most(&bytes);
                assert!(
                    counted <= at_most,
                    "{model}: {counted} > {at_most} for {body}"
                );
            }
        }
        // Escaped in the body, the same text only raises the bound.
        let escaped = br#"{"messages":[{"role":"user","content":"\u00e9\u00e9"}]}"#;
        let body: Value = serde_json::from_slice(escaped).expect("parse");
        assert!(input_tokens(None, &body) <= input_tokens_at_most(escaped));
    }

    #[test]
    fn the_reservation_adds_the_most_the_model_may_answer() {
        assert_eq!(reservation(100, Some(256), 4096), 356);
        assert_eq!(reservation(100, None, 4096), 4196);
    }
}
