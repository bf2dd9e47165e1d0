//! Support for Warden's end-to-end tests: fake upstreams, guards for cgroups and daemons, real clients.
//!
//! Every guard here cleans up on `Drop`, also when the test panics. Every address a test uses is in
//! 127.0.0.0/8 or `::1`; `api.openai.com` only ever resolves to loopback, through a private hosts file.

pub mod agent_fixture;
pub mod approvals;
pub mod attribution;
pub mod audit;
pub mod background;
pub mod bpf;
pub mod bpffs;
pub mod browser;
pub mod cgroup;
pub mod client;
pub mod connect_proxy;
pub mod console;
pub mod curl;
pub mod custody;
pub mod daemon;
pub mod env;
pub mod fake_oidc;
pub mod fake_upstream;
pub mod handover;
pub mod hex;
pub mod hostile;
pub mod hostile_fixture;
pub mod hosts;
pub mod image_root;
pub mod installed;
pub mod logs;
pub mod memcg;
pub mod net;
pub mod nspawn;
pub mod otlp_receiver;
pub mod policy;
pub mod probe;
pub mod prometheus;
pub mod rsyslog;
pub mod sdk_scripts;
pub mod sinks;
pub mod tcp_echo;
pub mod tls_hello;
pub mod tmpfs;
pub mod unix_user;
pub mod wait;

pub use agent_fixture::AgentFixture;
pub use cgroup::CgroupGuard;
pub use client::{Client, ClientOutput};
pub use daemon::{Daemon, DaemonBuilder, Status};
pub use env::{
    require_go_client, require_kernel, require_node, require_nspawn, require_promtool,
    require_python, require_root, require_root_and_tools, E2e, NodeSdk,
};
pub use fake_upstream::{Behavior, FakeUpstream, Fault, RecordedRequest};
pub use hosts::HostsFile;
pub use image_root::ImageRoot;
pub use logs::{LogLine, Logs};
pub use tcp_echo::EchoOrigin;
