//! The ledger: what each (limit, identity) has used in its current windows, and admission that is
//! exact under concurrency — a request reserves its estimate before it goes, and its actual usage
//! settles the reservation when the response ends.
//!
//! Windows are fixed and aligned to UTC (the minute, the day, the month), so a window's end is the
//! moment to retry. Each key has its own lock: admission for one identity never waits on another.
use std::{
    collections::{BTreeMap, HashMap},
    io,
    path::Path,
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

pub use super::windows::Windows;
use crate::policy::limit_rules::{Caps, MicroUsd};

/// Which cap refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dimension {
    RequestsPerMinute,
    TokensPerMinute,
    TokensPerDay,
    CostPerDay,
    CostPerMonth,
    ConcurrentRequests,
}

impl Dimension {
    /// Whether the prompt's size moves this dimension (tokens, or their cost).
    pub fn counts_tokens(self) -> bool {
        !matches!(
            self,
            Dimension::RequestsPerMinute | Dimension::ConcurrentRequests
        )
    }

    /// A spent budget is not a rate: the SDKs must not retry it (`insufficient_quota`).
    pub fn is_budget(self) -> bool {
        matches!(
            self,
            Dimension::TokensPerDay | Dimension::CostPerDay | Dimension::CostPerMonth
        )
    }
}

/// A refusal: the cap, its value, what was used, and when the window turns (unix µs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub dimension: Dimension,
    pub limit: u64,
    pub used: u64,
    pub resets_at_us: i64,
}

/// The estimate a request reserves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimate {
    pub tokens: u64,
    pub cost: MicroUsd,
}

/// What one key has used in its current windows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub minute_start: i64,
    pub requests_this_minute: u64,
    pub tokens_this_minute: u64,
    pub day_start: i64,
    pub tokens_today: u64,
    pub cost_today: MicroUsd,
    pub month_start: i64,
    pub cost_this_month: MicroUsd,
    /// Requests under way; not persisted (they ended with the daemon that held them).
    #[serde(skip)]
    pub in_flight: u64,
}

impl Usage {
    /// Starts the windows that have turned.
    fn roll(&mut self, windows: Windows) {
        if self.minute_start != windows.minute {
            self.minute_start = windows.minute;
            self.requests_this_minute = 0;
            self.tokens_this_minute = 0;
        }
        if self.day_start != windows.day {
            self.day_start = windows.day;
            self.tokens_today = 0;
            self.cost_today = 0;
        }
        if self.month_start != windows.month {
            self.month_start = windows.month;
            self.cost_this_month = 0;
        }
    }

    /// The first cap `estimate` would pass, or None.
    fn over(&self, caps: &Caps, estimate: Estimate, windows: Windows) -> Option<Exceeded> {
        let checks = [
            (
                Dimension::ConcurrentRequests,
                caps.concurrent_requests,
                self.in_flight,
                1,
                0,
            ),
            (
                Dimension::RequestsPerMinute,
                caps.requests_per_minute,
                self.requests_this_minute,
                1,
                windows.minute_end(),
            ),
            (
                Dimension::TokensPerMinute,
                caps.tokens_per_minute,
                self.tokens_this_minute,
                estimate.tokens,
                windows.minute_end(),
            ),
            (
                Dimension::TokensPerDay,
                caps.tokens_per_day,
                self.tokens_today,
                estimate.tokens,
                windows.day_end(),
            ),
            (
                Dimension::CostPerDay,
                caps.cost_per_day,
                self.cost_today,
                estimate.cost,
                windows.day_end(),
            ),
            (
                Dimension::CostPerMonth,
                caps.cost_per_month,
                self.cost_this_month,
                estimate.cost,
                windows.month_end(),
            ),
        ];
        checks
            .into_iter()
            .find_map(|(dimension, cap, used, adding, resets_at_us)| {
                let limit = cap?;
                (used.saturating_add(adding) > limit).then_some(Exceeded {
                    dimension,
                    limit,
                    used,
                    resets_at_us,
                })
            })
    }
}

const LEDGER_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct LedgerFile {
    version: u32,
    usage: BTreeMap<String, Usage>,
}

/// The usage of every key, each behind its own lock.
#[derive(Default)]
pub struct Ledger {
    keys: Mutex<HashMap<String, Arc<Mutex<Usage>>>>,
}

/// A request's reservation; settle it with the actual usage (or drop it to keep the estimate).
#[must_use = "a reservation is settled when the response ends"]
pub struct Reservation {
    usage: Arc<Mutex<Usage>>,
    estimate: Estimate,
    windows: Windows,
    minute_used: MinuteUsed,
    settled: bool,
}

/// A key's per-minute counts right after a reservation, with when the minute turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinuteUsed {
    pub requests: u64,
    pub tokens: u64,
    pub resets_at_us: i64,
}

impl Ledger {
    fn entry(&self, key: &str) -> Arc<Mutex<Usage>> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.entry(key.to_string()).or_default().clone()
    }

    /// Admits a request of `key` under `caps` at `now_us`, reserving `estimate`; or says which cap
    /// it would pass. Check and reservation happen under one lock: concurrent requests cannot both
    /// pass on the same headroom.
    pub fn reserve(
        &self,
        key: &str,
        caps: &Caps,
        estimate: Estimate,
        now_us: i64,
    ) -> Result<Reservation, Exceeded> {
        let usage = self.entry(key);
        let windows = Windows::at(now_us);
        let minute_used = {
            let mut used = usage.lock().unwrap_or_else(|p| p.into_inner());
            used.roll(windows);
            if let Some(exceeded) = used.over(caps, estimate, windows) {
                return Err(exceeded);
            }
            used.in_flight += 1;
            used.requests_this_minute += 1;
            used.tokens_this_minute += estimate.tokens;
            used.tokens_today += estimate.tokens;
            used.cost_today += estimate.cost;
            used.cost_this_month += estimate.cost;
            MinuteUsed {
                requests: used.requests_this_minute,
                tokens: used.tokens_this_minute,
                resets_at_us: windows.minute_end(),
            }
        };
        Ok(Reservation {
            usage,
            estimate,
            windows,
            minute_used,
            settled: false,
        })
    }

    /// Every key's usage, so a restart does not renew a daily budget: the file is 0600 and
    /// replaced atomically (call it on an interval and at shutdown).
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let keys: Vec<(String, Arc<Mutex<Usage>>)> = {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let file = LedgerFile {
            version: LEDGER_VERSION,
            usage: keys
                .into_iter()
                .map(|(key, usage)| {
                    let usage = usage.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    (key, usage)
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&file).map_err(io::Error::other)?;
        crate::private_file::replace(path, &bytes)
    }

    /// The ledger `save` left at `path`; an absent file is an empty ledger.
    pub fn load(path: &Path) -> io::Result<Ledger> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Ledger::default()),
            Err(error) => return Err(error),
        };
        let file: LedgerFile = serde_json::from_str(&text)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        if file.version != LEDGER_VERSION {
            let message = format!("version {} is not {LEDGER_VERSION}", file.version);
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        let keys = file
            .usage
            .into_iter()
            .map(|(key, usage)| (key, Arc::new(Mutex::new(usage))))
            .collect();
        Ok(Ledger {
            keys: Mutex::new(keys),
        })
    }

    /// Every key's usage at `now_us` (windows that have turned read as empty), sorted by key.
    pub fn entries(&self, now_us: i64) -> Vec<(String, Usage)> {
        let keys: Vec<(String, Arc<Mutex<Usage>>)> = {
            let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
            keys.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let windows = Windows::at(now_us);
        let mut entries: Vec<(String, Usage)> = keys
            .into_iter()
            .map(|(key, usage)| {
                let mut usage = usage.lock().unwrap_or_else(|p| p.into_inner()).clone();
                usage.roll(windows);
                (key, usage)
            })
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    /// A copy of what `key` has used (for `warden limits` and persistence).
    pub fn usage(&self, key: &str, now_us: i64) -> Usage {
        let usage = self.entry(key);
        let mut used = usage.lock().unwrap_or_else(|p| p.into_inner());
        used.roll(Windows::at(now_us));
        used.clone()
    }
}

impl Reservation {
    pub fn minute_used(&self) -> MinuteUsed {
        self.minute_used
    }

    /// Replaces the estimate by what the call used, in the windows it was reserved in (a window
    /// that has turned since keeps nothing of it).
    pub fn settle(mut self, actual: Estimate) {
        self.release(Some(actual));
    }

    /// Takes the request back as if it had never been admitted (another limit refused it).
    pub fn cancel(mut self) {
        self.settled = true;
        let mut used = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        used.in_flight = used.in_flight.saturating_sub(1);
        if used.minute_start == self.windows.minute {
            used.requests_this_minute = used.requests_this_minute.saturating_sub(1);
            used.tokens_this_minute = used.tokens_this_minute.saturating_sub(self.estimate.tokens);
        }
        if used.day_start == self.windows.day {
            used.tokens_today = used.tokens_today.saturating_sub(self.estimate.tokens);
            used.cost_today = used.cost_today.saturating_sub(self.estimate.cost);
        }
        if used.month_start == self.windows.month {
            used.cost_this_month = used.cost_this_month.saturating_sub(self.estimate.cost);
        }
    }

    fn release(&mut self, actual: Option<Estimate>) {
        if self.settled {
            return;
        }
        self.settled = true;
        let mut used = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        used.in_flight = used.in_flight.saturating_sub(1);
        let Some(actual) = actual else { return };
        let adjust = |total: &mut u64, reserved: u64, actual: u64| {
            *total = total.saturating_sub(reserved).saturating_add(actual);
        };
        if used.minute_start == self.windows.minute {
            adjust(
                &mut used.tokens_this_minute,
                self.estimate.tokens,
                actual.tokens,
            );
        }
        if used.day_start == self.windows.day {
            adjust(&mut used.tokens_today, self.estimate.tokens, actual.tokens);
            adjust(&mut used.cost_today, self.estimate.cost, actual.cost);
        }
        if used.month_start == self.windows.month {
            adjust(&mut used.cost_this_month, self.estimate.cost, actual.cost);
        }
    }
}

impl Drop for Reservation {
    /// Unsettled (the exchange ended without usage): the estimate stays charged, the slot frees.
    fn drop(&mut self) {
        self.release(None);
    }
}

#[cfg(test)]
mod tests;
