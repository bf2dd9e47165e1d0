//! What an agent over a limit gets, shaped like OpenAI's own answers so the SDKs react as they do
//! to OpenAI: a rate limit is a 429 `rate_limit_exceeded` with `retry-after(-ms)` (the SDKs wait
//! and retry by themselves); a spent budget is a 429 `insufficient_quota` that must not be retried.
use http::StatusCode;

use super::{
    admission::Refused,
    ledger::{Dimension, Exceeded},
};
use crate::openai::error::ApiError;

impl Dimension {
    /// The limit as `x-ratelimit-*` and error messages name it.
    pub fn describe(self) -> &'static str {
        match self {
            Dimension::RequestsPerMinute => "requests per minute",
            Dimension::TokensPerMinute => "tokens per minute",
            Dimension::TokensPerDay => "tokens per day",
            Dimension::CostPerDay => "cost per day (micro-USD)",
            Dimension::CostPerMonth => "cost per month (micro-USD)",
            Dimension::ConcurrentRequests => "concurrent requests",
        }
    }

    /// OpenAI's `type` for a rate limit: `tokens` when tokens ran out, else `requests`.
    fn rate_type(self) -> &'static str {
        match self {
            Dimension::TokensPerMinute => "tokens",
            _ => "requests",
        }
    }
}

/// What the agent gets for a request a limit refused, at `now_us`.
pub fn of(refused: &Refused, now_us: i64) -> ApiError {
    match refused {
        Refused::Over { limit, exceeded } => refusal(limit, exceeded, now_us),
        // Fail closed: a cost budget cannot be kept for a model Warden cannot price.
        Refused::Unpriced { limit, model } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            format!(
                "Warden limit {limit:?} has a cost budget, and Warden has no price for model {model:?}; add it to the price table ([policy] prices_file)."
            ),
        )
        .with_code("insufficient_quota")
        .with_should_retry(false),
    }
}

/// The refusal of a request over `limit_name`'s cap, at `now_us`.
pub fn refusal(limit_name: &str, exceeded: &Exceeded, now_us: i64) -> ApiError {
    let wait_us = (exceeded.resets_at_us - now_us).max(0);
    let what = exceeded.dimension.describe();
    if exceeded.dimension.is_budget() {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            format!(
                "Warden limit {limit_name:?}: the budget of {} {what} is spent ({} used); it renews in {}.",
                exceeded.limit,
                exceeded.used,
                humantime::format_duration(std::time::Duration::from_secs((wait_us as u64).div_ceil(1_000_000))),
            ),
        )
        .with_code("insufficient_quota")
        .with_should_retry(false);
    }
    // Concurrency frees when a request ends, not at a window's end: retry soon.
    let wait_ms = match exceeded.dimension {
        Dimension::ConcurrentRequests => 1_000,
        _ => (wait_us as u64).div_ceil(1_000),
    };
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        exceeded.dimension.rate_type(),
        format!(
            "Rate limit reached for Warden limit {limit_name:?} on {what}: Limit {}, Used {}. Please try again in {:.3}s.",
            exceeded.limit,
            exceeded.used,
            wait_ms as f64 / 1000.0
        ),
    )
    .with_code("rate_limit_exceeded")
    .with_header("retry-after-ms", wait_ms.to_string())
    .with_header("retry-after", wait_ms.div_ceil(1000).to_string())
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn answer(error: ApiError) -> (http::Response<()>, serde_json::Value) {
        let (parts, body) = error.into_response().into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            http::Response::from_parts(parts, ()),
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_rate_limit_is_a_429_the_sdks_wait_out() {
        let exceeded = Exceeded {
            dimension: Dimension::TokensPerMinute,
            limit: 1000,
            used: 990,
            resets_at_us: 12_500_000,
        };
        let (response, body) = answer(refusal("billing", &exceeded, 10_000_000)).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after-ms"], "2500");
        assert_eq!(response.headers()["retry-after"], "3");
        assert!(response.headers().get("x-should-retry").is_none());
        assert_eq!(body["error"]["type"], "tokens");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("Limit 1000, Used 990") && message.contains("2.500s"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_spent_budget_is_insufficient_quota_and_not_retried() {
        let exceeded = Exceeded {
            dimension: Dimension::CostPerDay,
            limit: 5_000_000,
            used: 4_999_000,
            resets_at_us: 3_600_000_000,
        };
        let (response, body) = answer(refusal("billing", &exceeded, 0)).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["x-should-retry"], "false");
        assert!(response.headers().get("retry-after").is_none());
        assert_eq!(body["error"]["type"], "insufficient_quota");
        assert_eq!(body["error"]["code"], "insufficient_quota");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("renews in 1h"));
    }
}
