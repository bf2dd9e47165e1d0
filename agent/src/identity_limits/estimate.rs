//! What a request reserves before it goes: its prompt's tokens, counted with the model's own
//! tokenizer (tiktoken's tables, embedded), plus the most it may answer.
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
    fn the_reservation_adds_the_most_the_model_may_answer() {
        assert_eq!(reservation(100, Some(256), 4096), 356);
        assert_eq!(reservation(100, None, 4096), 4196);
    }
}
