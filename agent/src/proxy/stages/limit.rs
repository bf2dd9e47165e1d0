//! Limit: a request against the `[[limit]]`s that cover its identity and model. Admitted, it
//! holds a reservation of its estimate (its prompt's tokens, bounded by its body's bytes or, near
//! a cap, counted with the model's tokenizer; plus its `max_tokens` or the default) until the
//! exchange ends and its actual usage settles it; over a rate it is refused 429
//! `rate_limit_exceeded` with the wait, over a budget 429 `insufficient_quota`. Like decide's
//! refusals, a refusal takes effect once the request is on record (`record`).
use http::header;

use super::{decide::Decided, whole_body, ConnectionInfo, Refusal};
use crate::{
    audit::record::Outcome,
    identity_limits::{
        estimate::{self, PromptTokens},
        refusal, Ask,
    },
    openai::endpoint::EndpointKind,
    proxy::{exchange_log::ExchangeLog, injected_usage, recording::now_us},
};

pub async fn limit(
    connection: &ConnectionInfo,
    log: &mut ExchangeLog,
    mut decided: Decided,
) -> Result<Decided, Refusal> {
    let rules = &decided.policy.policy.limits;
    // A request refused already (or whose body cannot go) is refused for that reason, and
    // charges no limit.
    if rules.is_empty() || decided.refusal.is_some() || decided.body.is_err() {
        return Ok(decided);
    }
    let endpoint = decided.endpoint;
    let generates = matches!(
        endpoint,
        EndpointKind::ChatCompletions | EndpointKind::Responses | EndpointKind::Completions
    );
    let params = &decided.fields.params;
    let model = decided.fields.model.as_deref();
    let ask = Ask {
        model,
        max_output_tokens: params.max_tokens.or(params.max_output_tokens),
        generates,
    };
    let whole = decided.whole.as_deref();
    let parsed = decided.parsed.as_ref();
    let prompt = PromptTokens {
        at_most: || whole.map_or(0, estimate::input_tokens_at_most),
        count: || match parsed {
            Some(body) => estimate::input_tokens(model, body),
            // No rule reads bodies, so intake did not parse it.
            None => whole
                .and_then(|body| serde_json::from_slice(body).ok())
                .map_or(0, |body| estimate::input_tokens(model, &body)),
        },
    };
    let now = now_us();
    let limits = &connection.context.limits;
    let admission = match limits.admit(rules, connection.identity.as_ref(), ask, prompt, now) {
        Ok(Some(admission)) => admission,
        Ok(None) => return Ok(decided),
        Err(refused) => {
            connection.context.metrics.budgets.refused(&refused);
            let error = refusal::of(&refused, now);
            decided.refusal = Some(Refusal::new(error, refused.reason(), Outcome::Limited));
            return Ok(decided);
        }
    };
    log.settle_limits(admission);
    let streamed = decided.fields.params.stream == Some(true);
    if endpoint == EndpointKind::ChatCompletions && streamed && !decided.fields.include_usage {
        ask_for_usage(log, &mut decided);
    }
    Ok(decided)
}

/// A streamed chat completion's usage is only known with `include_usage`: ask for it upstream
/// (that is what is recorded and forwarded) and give the agent the stream without it.
fn ask_for_usage(log: &mut ExchangeLog, decided: &mut Decided) {
    // The value intake parsed when a rule reads bodies; otherwise the body parsed now.
    let parsed = decided.parsed.take().or_else(|| {
        let whole = decided.whole.as_deref()?;
        serde_json::from_slice(whole).ok()
    });
    let Some(mut value) = parsed else {
        return;
    };
    let asked = injected_usage::request_usage(&mut value);
    let body = asked.then(|| serde_json::to_vec(&value).ok()).flatten();
    decided.parsed = Some(value);
    let Some(body) = body else {
        return;
    };
    let body = bytes::Bytes::from(body);
    log.summary.set_request_bytes(body.len() as u64);
    decided.parts.headers.remove(header::CONTENT_LENGTH);
    decided.body = Ok(whole_body(body.clone()));
    decided.whole = Some(body);
    log.strip_injected_usage();
}
