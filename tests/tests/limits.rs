//! `[[limit]]`s end to end, with the official openai Python SDK (and curl) in a selected cgroup:
//! a rate limit is a 429 the SDK waits out and then succeeds; a budget is exact under 64
//! concurrent requests and refused with `insufficient_quota`, which the SDK does not retry; a
//! streamed call without `include_usage` is counted while the client's stream stays byte for byte
//! what the upstream sends without it; a daily budget survives a daemon restart; `warden limits`
//! shows the usage.
//!
//! The fake upstream reports the same usage for every call (whatever `max_tokens` says):
//! [`Agent::tokens_per_call`]. "Say hello" as one user message is estimated at 9 prompt tokens
//! (2 + 4 per text + 3 to prime the reply).

use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::sdk_client;
use warden_tests::daemon::Account;
use warden_tests::fake_upstream::openai::{chat_completion, chat_completion_events};
use warden_tests::{curl, require_kernel, require_python, AgentFixture, FakeUpstream};

const ACCOUNT: &str = "billing-agent";

/// One chat completion; `MAX_RETRIES` (default 0) and `MAX_TOKENS` from the environment. Prints
/// the answer with Warden's `x-ratelimit-*` headers, or the SDK's error with what it carried.
const CHAT: &str = r#"
import json, os
import openai
from openai import OpenAI

client = OpenAI(max_retries=int(os.environ.get("MAX_RETRIES", "0")))
out = {"pid": os.getpid()}
extra = {"max_tokens": int(os.environ["MAX_TOKENS"])} if "MAX_TOKENS" in os.environ else {}
try:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], **extra)
    r = raw.parse()
    out.update(ok=True, content=r.choices[0].message.content,
               headers={k: v for k, v in raw.headers.items() if k.startswith("x-ratelimit-")})
except openai.APIStatusError as e:
    out.update(ok=False, error=type(e).__name__, status=e.status_code, code=e.code, type=e.type,
               message=e.message, headers=dict(e.response.headers))
print(json.dumps(out))
"#;

/// 64 chat completions at once (asyncio), each with max_tokens 20; prints every outcome.
const SIXTY_FOUR_AT_ONCE: &str = r#"
import asyncio, json, os
import openai
from openai import AsyncOpenAI

async def one(client):
    try:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}], max_tokens=20)
        return {"ok": True}
    except openai.APIStatusError as e:
        return {"ok": False, "error": type(e).__name__, "status": e.status_code, "code": e.code,
                "should_retry": e.response.headers.get("x-should-retry")}

async def main():
    client = AsyncOpenAI(max_retries=0)
    results = await asyncio.gather(*(one(client) for _ in range(64)))
    print(json.dumps({"pid": os.getpid(), "results": results}))

asyncio.run(main())
"#;

struct Agent {
    fx: AgentFixture,
    python: std::path::PathBuf,
}

impl Agent {
    /// The agent cgroup is the account `billing-agent`, under the limit `policy`.
    fn start(name: &str, policy: &str) -> Option<Agent> {
        let e2e = require_kernel()?;
        let python = require_python()?;
        let upstream = FakeUpstream::start();
        let fx = warden_tests::audit::fixture(&e2e, name, upstream, |daemon, agent| {
            daemon
                .account(Account::cgroup(ACCOUNT, agent.path()))
                .policy_file("limits.toml", policy)
        });
        Some(Agent { fx, python })
    }

    /// What the fake upstream reports one call used.
    fn tokens_per_call(&self) -> u64 {
        let answer = chat_completion("gpt-4o-mini", self.fx.upstream.reply());
        answer["usage"]["total_tokens"].as_u64().unwrap()
    }

    fn chat(&self, env: &[(&str, &str)]) -> Value {
        let mut client = sdk_client(&self.fx, &self.python, CHAT).timeout(Duration::from_secs(120));
        for (key, value) in env {
            client = client.env(key, value);
        }
        let out = client.run();
        out.assert_success();
        out.json()
    }

    /// `warden limits --json` for the account: each cap's row by name.
    fn usage(&self) -> Vec<Value> {
        let out = self
            .fx
            .daemon
            .cli("limits", &[&format!("account:{ACCOUNT}"), "--json"]);
        assert!(out.status.success(), "warden limits failed\n{out}");
        serde_json::from_str(&out.stdout).expect("warden limits --json prints JSON")
    }

    fn used(&self, cap: &str) -> f64 {
        let rows = self.usage();
        let row = rows
            .iter()
            .find(|row| row["cap"] == cap)
            .unwrap_or_else(|| panic!("no {cap} row in {rows:#?}"));
        assert_eq!(row["identity"], format!("account:{ACCOUNT}"), "{row}");
        row["used"].as_f64().expect("a number")
    }

    /// The HTTP statuses of `pid`'s recorded exchanges, oldest first.
    fn statuses_of(&self, pid: u64) -> Vec<u64> {
        let out = self.fx.daemon.cli(
            "sessions",
            &["list", "--identity", &format!("pid:{pid}"), "--json"],
        );
        assert!(out.status.success(), "sessions list failed\n{out}");
        let mut rows: Vec<Value> = serde_json::from_str(&out.stdout).expect("JSON");
        rows.sort_by_key(|row| row["started_at"].as_str().unwrap_or_default().to_string());
        rows.iter()
            .map(|row| row["status"].as_u64().unwrap_or(0))
            .collect()
    }
}

/// Waits, if need be, until the current minute has at least 20 s left: the calls that must share
/// one rate window then do.
fn early_in_a_minute() {
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second > 40 {
        std::thread::sleep(Duration::from_secs(61 - second));
    }
}

#[test]
fn a_rate_limit_is_a_429_the_sdk_waits_out_and_then_succeeds() {
    let policy = format!(
        "[[limit]]\nname = \"billing-rpm\"\nidentity = [\"account:{ACCOUNT}\"]\nrequests_per_minute = 1\n"
    );
    let Some(agent) = Agent::start("limit-rpm", &policy) else {
        return;
    };
    early_in_a_minute();
    let first = agent.chat(&[]);
    assert_eq!(first["ok"], true, "{first}");
    // Warden's limit is the only one: its figures are the answer's.
    let headers = &first["headers"];
    assert_eq!(headers["x-ratelimit-limit-requests"], "1", "{first}");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0", "{first}");
    assert!(headers["x-ratelimit-reset-requests"].is_string(), "{first}");

    let refused = agent.chat(&[]);
    assert_eq!(refused["error"], "RateLimitError", "{refused}");
    assert_eq!(refused["status"], 429, "{refused}");
    assert_eq!(refused["code"], "rate_limit_exceeded", "{refused}");
    assert_eq!(refused["type"], "requests", "{refused}");
    let headers = &refused["headers"];
    let wait_ms: u64 = headers["retry-after-ms"].as_str().unwrap().parse().unwrap();
    assert!((1..=60_000).contains(&wait_ms), "{refused}");
    assert!(headers["retry-after"].is_string(), "{refused}");
    assert!(
        headers.get("x-should-retry").is_none(),
        "a rate limit is retried: {refused}"
    );
    assert!(
        refused["message"].as_str().unwrap().contains("billing-rpm"),
        "{refused}"
    );

    // With its default retries the SDK waits the window out, as told, and succeeds.
    let retried = agent.chat(&[("MAX_RETRIES", "2")]);
    assert_eq!(retried["ok"], true, "{retried}");
    let pid = retried["pid"].as_u64().unwrap();
    assert_eq!(
        agent.statuses_of(pid),
        [429, 200],
        "refused, then served after the window"
    );
}

#[test]
fn a_budget_is_exact_under_64_concurrent_requests() {
    const BUDGET: u64 = 1000;
    // 9 prompt tokens estimated + max_tokens 20.
    const RESERVATION: u64 = 29;
    let policy = format!(
        "[[limit]]\nname = \"billing-daily\"\nidentity = [\"account:{ACCOUNT}\"]\ntokens_per_day = {BUDGET}\n"
    );
    let Some(agent) = Agent::start("limit-64", &policy) else {
        return;
    };
    let out = sdk_client(&agent.fx, &agent.python, SIXTY_FOUR_AT_ONCE)
        .timeout(Duration::from_secs(120))
        .run();
    out.assert_success();
    let printed = out.json();
    let results = printed["results"].as_array().unwrap();
    let served = results.iter().filter(|r| r["ok"] == true).count() as u64;
    let refused: Vec<&Value> = results.iter().filter(|r| r["ok"] == false).collect();
    assert_eq!(served + refused.len() as u64, 64);
    assert!(
        !refused.is_empty(),
        "64 calls do not fit in {BUDGET} tokens"
    );
    for refusal in &refused {
        assert_eq!(refusal["status"], 429, "{refusal}");
        assert_eq!(refusal["code"], "insufficient_quota", "{refusal}");
        assert_eq!(refusal["should_retry"], "false", "{refusal}");
    }
    // The ledger holds exactly what the served calls used, within the budget.
    let used = agent.used("tokens_per_day") as u64;
    assert_eq!(
        used,
        served * agent.tokens_per_call(),
        "every served call, settled exactly"
    );
    assert!(used <= BUDGET, "{used} tokens used of {BUDGET}");

    // One at a time now: served while one more reservation fits, and refused only then (the limit
    // does not trip early).
    loop {
        let answer = agent.chat(&[("MAX_TOKENS", "20")]);
        if answer["ok"] == false {
            assert_eq!(answer["code"], "insufficient_quota", "{answer}");
            break;
        }
    }
    let used = agent.used("tokens_per_day") as u64;
    assert!(used <= BUDGET, "{used} tokens used of {BUDGET}");
    assert!(
        used + RESERVATION > BUDGET,
        "refused with {used} of {BUDGET} used: another {RESERVATION} would have fitted"
    );
}

#[test]
fn a_streamed_call_without_include_usage_is_counted_and_its_stream_is_unchanged() {
    let policy = format!(
        "[[limit]]\nname = \"billing-daily\"\nidentity = [\"account:{ACCOUNT}\"]\ntokens_per_day = 100000\n"
    );
    let Some(agent) = Agent::start("limit-stream", &policy) else {
        return;
    };
    let out = agent.fx.client(curl::stream_chat()).run();
    out.assert_success();
    let expected: String =
        chat_completion_events("gpt-4o-mini", agent.fx.upstream.reply(), false).concat();
    assert_eq!(
        out.stdout, expected,
        "the stream curl asked for, byte for byte"
    );

    // Upstream, Warden asked for the usage...
    let requests = agent
        .fx
        .upstream
        .wait_for_requests(1, Duration::from_secs(5));
    assert_eq!(
        requests[0].json()["stream_options"]["include_usage"],
        true,
        "the request as forwarded"
    );
    // ...and counted it.
    assert_eq!(agent.used("tokens_per_day") as u64, agent.tokens_per_call());
    let line = agent.fx.daemon.wait_for_exchange(out.pid());
    assert_eq!(line.bool("streamed"), Some(true), "{line}");
}

#[test]
fn a_daily_budget_survives_a_restart_and_is_not_retried() {
    let policy = format!(
        "[[limit]]\nname = \"billing-daily\"\nidentity = [\"account:{ACCOUNT}\"]\ntokens_per_day = 20\n"
    );
    let Some(mut agent) = Agent::start("limit-restart", &policy) else {
        return;
    };
    // 9 + 5 reserved (it fits in 20), then charged what the call used.
    let first = agent.chat(&[("MAX_TOKENS", "5")]);
    assert_eq!(first["ok"], true, "{first}");
    let refused = agent.chat(&[("MAX_TOKENS", "5")]);
    assert_eq!(refused["code"], "insufficient_quota", "{refused}");

    let text = agent.fx.daemon.cli("limits", &[]);
    assert!(text.status.success(), "{text}");
    let used = agent.tokens_per_call().to_string();
    for expected in [
        "billing-daily",
        "account:billing-agent",
        "tokens_per_day",
        &used,
        "20",
    ] {
        assert!(text.stdout.contains(expected), "{expected} missing\n{text}");
    }

    let stopped = agent.fx.daemon.stop(libc::SIGTERM);
    assert!(stopped.success(), "warden stops cleanly: {stopped}");
    agent.fx.daemon.restart();
    assert_eq!(agent.used("tokens_per_day") as u64, agent.tokens_per_call());
    // Spent is spent: with its default retries the SDK still asks once.
    let after = agent.chat(&[("MAX_TOKENS", "5"), ("MAX_RETRIES", "2")]);
    assert_eq!(after["error"], "RateLimitError", "{after}");
    assert_eq!(after["code"], "insufficient_quota", "{after}");
    assert_eq!(after["headers"]["x-should-retry"], "false", "{after}");
    let pid = after["pid"].as_u64().unwrap();
    assert_eq!(agent.statuses_of(pid), [429], "not retried");
}
