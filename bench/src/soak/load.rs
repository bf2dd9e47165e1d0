//! The soak's load generator (`warden-bench soak-load`, run in the selected cgroup): a fixed
//! number of requests of the mix, `concurrency` at a time, each answer checked, tallied by kind.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::mix::Kind;
use crate::loadgen::{
    raise_fd_limit, runtime, LoadResult, LoadSpec, Protocol, Sender, Tally, Target,
};

/// How long one request may take to be answered in full (or, aborted, to its first event).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// What one soak load generator sends: requests `first..first + count` of the mix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakSpec {
    /// Where and how to connect; its timing fields are unused.
    pub target: LoadSpec,
    pub first: u64,
    pub count: u64,
}

/// What one soak load generator saw, by kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakLoadResult {
    pub protocol: Protocol,
    pub secs: f64,
    pub kinds: BTreeMap<Kind, LoadResult>,
}

impl SoakLoadResult {
    pub fn sent(&self) -> u64 {
        self.kinds.values().map(|r| r.total_ok + r.errors).sum()
    }
}

/// Sends the spec's requests and returns what came back.
pub fn run(spec: SoakSpec) -> Result<SoakLoadResult> {
    raise_fd_limit();
    let protocol = spec.target.protocol;
    let runtime = runtime(spec.target.concurrency)?;
    runtime.block_on(async move {
        let target = Arc::new(Target::new(&spec.target).await?);
        let bodies: Arc<[Bytes; 5]> = Arc::new(Kind::ALL.map(Kind::body));
        let next = Arc::new(AtomicU64::new(spec.first));
        let end = spec.first + spec.count;
        // Over h2 every worker shares one connection, as an SDK's client does.
        let shared = match protocol {
            Protocol::H2 => Some(target.connect().await?),
            Protocol::H1 => None,
        };
        let started = Instant::now();
        let mut workers = Vec::with_capacity(spec.target.concurrency);
        for _ in 0..spec.target.concurrency {
            let worker = Worker {
                target: Arc::clone(&target),
                bodies: Arc::clone(&bodies),
                next: Arc::clone(&next),
                end,
                protocol,
            };
            let sender = shared.as_ref().and_then(Sender::share);
            workers.push(tokio::spawn(worker.run(sender)));
        }
        let mut tallies = Kind::ALL.map(|_| Tally::new());
        for worker in workers {
            let done = worker.await.context("a soak worker panicked")?;
            for (tally, other) in tallies.iter_mut().zip(done) {
                tally.merge(other);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let kinds = Kind::ALL
            .into_iter()
            .zip(tallies)
            .map(|(kind, tally)| (kind, tally.into_summary(kind == Kind::Streamed, secs)))
            .collect();
        Ok(SoakLoadResult {
            protocol,
            secs,
            kinds,
        })
    })
}

struct Worker {
    target: Arc<Target>,
    bodies: Arc<[Bytes; 5]>,
    next: Arc<AtomicU64>,
    end: u64,
    protocol: Protocol,
}

impl Worker {
    async fn run(self, mut sender: Option<Sender>) -> [Tally; 5] {
        let mut tallies = Kind::ALL.map(|_| Tally::new());
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            if index >= self.end {
                return tallies;
            }
            let kind = Kind::of(index);
            let started = Instant::now();
            let exchange = async {
                let active = match &mut sender {
                    Some(active) => active,
                    None => sender.insert(self.target.connect().await?),
                };
                let body = self.bodies[kind.position()].clone();
                let response = active.send(self.target.request_with(body)).await?;
                check_answer(kind, response, started).await
            };
            let outcome = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
                .await
                .unwrap_or_else(|_| Err(anyhow!("no answer within {ANSWER_TIMEOUT:?}")));
            let tally = &mut tallies[kind.position()];
            match outcome {
                Ok(first_byte) => tally.record_ok(started.elapsed(), first_byte, true),
                Err(err) => {
                    tally.record_error(&err.context(format!("a {} request", kind.label())));
                    sender = None;
                }
            }
            // An h1 connection whose response was left unread is closed (h2 resets the stream).
            if kind == Kind::Aborted && self.protocol == Protocol::H1 {
                sender = None;
            }
        }
    }
}

/// Reads the answer as its kind expects it; returns the time to the first body byte. An aborted
/// request returns at its first event, and dropping the body walks away from the stream.
async fn check_answer(
    kind: Kind,
    response: http::Response<hyper::body::Incoming>,
    started: Instant,
) -> Result<Option<Duration>> {
    let status = response.status();
    let expected = match kind {
        Kind::Denied => StatusCode::FORBIDDEN,
        _ => StatusCode::OK,
    };
    if status != expected {
        let body = response.into_body().collect().await?.to_bytes();
        let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        bail!("HTTP {status} where {expected} was expected: {shown}");
    }
    if kind == Kind::Denied {
        let retry = response.headers().get("x-should-retry");
        if retry.is_none_or(|v| v != "false") {
            bail!("a policy denial without `x-should-retry: false` ({retry:?})");
        }
    }
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut received = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) else {
            continue;
        };
        first_byte.get_or_insert_with(|| started.elapsed());
        if kind == Kind::Aborted {
            return Ok(first_byte);
        }
        received.extend_from_slice(data);
    }
    match kind {
        Kind::Aborted => bail!("the held stream ended before its first event"),
        Kind::Streamed if !received.ends_with(b"data: [DONE]\n\n") => {
            bail!("the stream did not end with `data: [DONE]`")
        }
        Kind::Streamed => {}
        Kind::Denied => {
            let error: serde_json::Value =
                serde_json::from_slice(&received).context("the denial is not JSON")?;
            if !error["error"]["message"].is_string() {
                bail!("the denial is not an OpenAI-shaped error: {error}");
            }
        }
        Kind::Plain | Kind::Masked => {
            let answer: serde_json::Value =
                serde_json::from_slice(&received).context("the chat answer is not JSON")?;
            if answer["object"] != "chat.completion" {
                bail!("not a chat.completion: {answer}");
            }
        }
    }
    Ok(first_byte)
}
