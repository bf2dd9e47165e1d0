//! Warden: a host agent that makes AI agents' calls to LLM APIs visible, governed and accountable.
pub mod accept;
pub mod admin;
pub mod anomaly;
pub mod api;
pub mod approvals;
pub mod audit;
pub mod cgroupfs;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod ebpf;
#[cfg(feature = "fault-hooks")]
pub mod fault_hooks;
#[doc(hidden)]
pub mod fuzzing;
pub mod http_post;
pub mod identity;
pub mod identity_limits;
pub mod ids;
pub mod install;
mod json_scalars;
pub mod metrics;
pub mod oidc;
pub mod openai;
pub mod policy;
pub mod private_file;
pub mod proxy;
pub mod revocation;
pub mod sinks;
pub mod supervisor;
pub mod tls;
