//! The setup the hostile-client tests share: an [`AgentFixture`] with metrics and a `[limits]`
//! table, the address an attacker dials, metric polling, and the well-behaved call that must
//! succeed throughout each attack.

use std::net::SocketAddr;
use std::time::Duration;

use crate::agent_fixture::AgentFixture;
use crate::curl::{self, assert_chat_reply};
use crate::env::E2e;
use crate::prometheus::Exposition;
use crate::wait;

/// Deadlines of the hostile tests: generous, the machine is loaded.
pub const GENEROUS: Duration = Duration::from_secs(180);

/// An agent fixture whose daemon serves metrics and has `limits` (a whole `[limits]` table).
pub fn start(e2e: &E2e, name: &str, limits: &str) -> AgentFixture {
    let limits = limits.to_owned();
    AgentFixture::start_with(e2e, name, move |daemon, _| {
        daemon.metrics().extra_config(&limits)
    })
}

/// api.openai.com as the agent dials it: the upstream's loopback address, port 443, redirected.
pub fn api_address(fx: &AgentFixture) -> SocketAddr {
    SocketAddr::new(fx.upstream.ip(), 443)
}

/// The value of a metric series now (0 when it is absent).
pub fn metric(fx: &AgentFixture, name: &str, labels: &[(&str, &str)]) -> f64 {
    Exposition::scrape(&fx.daemon.metrics_url())
        .value(name, labels)
        .unwrap_or(0.0)
}

/// Waits until a metric series has exactly `wanted`.
pub fn wait_for_metric(fx: &AgentFixture, name: &str, labels: &[(&str, &str)], wanted: f64) {
    wait::within(GENEROUS, || {
        (metric(fx, name, labels) == wanted).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{name}{labels:?} never reached {wanted} (now {}):\n{}",
            metric(fx, name, labels),
            fx.daemon.log_text()
        )
    });
}

/// A well-behaved agent call (curl, in the agent cgroup) succeeds now.
pub fn assert_served(fx: &mut AgentFixture) {
    assert!(fx.daemon.is_running(), "{}", fx.daemon.log_text());
    let out = fx.client(curl::chat()).run();
    assert_chat_reply(&out, fx.upstream.reply());
}
