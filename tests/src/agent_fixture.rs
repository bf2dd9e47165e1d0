//! The usual end-to-end setup: an agent cgroup that a running Warden selects, whose api.openai.com
//! resolves (through a private hosts file) to a fake upstream that Warden forwards to.

use std::ffi::OsStr;
use std::time::Duration;

use crate::cgroup::CgroupGuard;
use crate::client::Client;
use crate::daemon::{Daemon, DaemonBuilder};
use crate::env::E2e;
use crate::fake_upstream::FakeUpstream;
use crate::hosts::HostsFile;

/// Fields drop in order: the daemon stops first, the upstream goes last.
#[derive(Debug)]
pub struct AgentFixture {
    pub daemon: Daemon,
    /// The selected cgroup the agent's clients run in.
    pub agent: CgroupGuard,
    /// Resolves api.openai.com to the upstream.
    pub hosts: HostsFile,
    pub upstream: FakeUpstream,
}

impl AgentFixture {
    /// A default fake upstream, and a daemon that selects the agent cgroup `name` and nothing else.
    pub fn start(e2e: &E2e, name: &str) -> Self {
        Self::start_with(e2e, name, |daemon, _| daemon)
    }

    /// Like [`AgentFixture::start`], with an upstream that streams one event per `chunk_delay`.
    pub fn with_chunk_delay(e2e: &E2e, name: &str, chunk_delay: Duration) -> Self {
        let upstream = FakeUpstream::builder().chunk_delay(chunk_delay).start();
        Self::assemble(e2e, name, upstream, |daemon, _| daemon)
    }

    /// Like [`AgentFixture::start`], with this upstream (e.g. one built with a gate).
    pub fn with_upstream(e2e: &E2e, name: &str, upstream: FakeUpstream) -> Self {
        Self::assemble(e2e, name, upstream, |daemon, _| daemon)
    }

    /// Like [`AgentFixture::with_upstream`]; `configure` adds to the daemon's config.
    pub fn with_upstream_and(
        e2e: &E2e,
        name: &str,
        upstream: FakeUpstream,
        configure: impl FnOnce(DaemonBuilder, &CgroupGuard) -> DaemonBuilder,
    ) -> Self {
        Self::assemble(e2e, name, upstream, configure)
    }

    /// Like [`AgentFixture::start`]; `configure` adds to the daemon's config (it gets the agent
    /// cgroup, already selected).
    pub fn start_with(
        e2e: &E2e,
        name: &str,
        configure: impl FnOnce(DaemonBuilder, &CgroupGuard) -> DaemonBuilder,
    ) -> Self {
        Self::assemble(e2e, name, FakeUpstream::start(), configure)
    }

    fn assemble(
        e2e: &E2e,
        name: &str,
        upstream: FakeUpstream,
        configure: impl FnOnce(DaemonBuilder, &CgroupGuard) -> DaemonBuilder,
    ) -> Self {
        let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
        let agent = CgroupGuard::new(name);
        let builder = Daemon::builder(e2e).select(&agent).upstream(&upstream);
        let daemon = configure(builder, &agent).start();
        Self {
            daemon,
            agent,
            hosts,
            upstream,
        }
    }

    /// `command` as the agent runs it: in the agent cgroup, seeing the hosts file, trusting the
    /// system CAs plus Warden's CA.
    pub fn client<I, S>(&self, command: I) -> Client
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Client::new(command)
            .in_cgroup(&self.agent)
            .hosts(&self.hosts)
            .trust(&self.daemon.trust_bundle())
    }
}
