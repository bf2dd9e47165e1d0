//! Root-only unix-socket API between the daemon and the CLI: status and `warden exec` registration.
//!
//! One JSON request per line, one JSON response per line (a watch answers with many). The socket
//! lives in `state_dir` (0700) and is itself 0600; with `[admin] group` the directory is 0710 and
//! the socket 0660, both of that group. The server checks each operation against the peer
//! (SO_PEERCRED): approval operations for the approvers, everything else for root.
pub mod client;
pub mod revocations;
pub mod server;

use serde::{Deserialize, Serialize};

use crate::{
    ebpf::{selection::SelectedCgroup, AttachedProgram, Attachment, KernelCounters},
    policy::active::PolicyStatus,
    proxy::counters::CountersSnapshot,
};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminRequest {
    Status,
    /// Select a cgroup `warden exec` created (path relative to the cgroup2 mount).
    SelectExec {
        path: String,
    },
    UnselectExec {
        path: String,
    },
    /// Approvals: list, show, decide, watch (see `approvals::admin`); open to `[admin] group`.
    Approvals {
        request: crate::approvals::admin::ApprovalsRequest,
    },
    /// Cut an identity selector off from every intercepted host (root only; see revocations.rs).
    Revoke {
        selector: String,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Lift the revocation of a selector (root only).
    Restore {
        selector: String,
    },
    /// The revocations in force.
    Revocations,
    /// Usage against each `[[limit]]` (root only), optionally for the identities a selector names.
    Limits {
        #[serde(default)]
        selector: Option<String>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AdminResponse {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// What `warden status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    pub pid: u32,
    pub listen_port: u16,
    pub listen: Vec<String>,
    pub intercept_ports: crate::config::InterceptPorts,
    pub tls_ports: Vec<u16>,
    pub intercept_hosts: Vec<String>,
    pub cgroup2_mount: String,
    pub programs: Vec<AttachedProgram>,
    /// Fail mode, and whether the programs are pinned (stay attached if the daemon dies).
    pub attachment: Attachment,
    pub selected: Vec<SelectedCgroup>,
    /// The policy directory and whether a policy is loaded from it.
    pub policy: PolicyStatus,
    /// Credential custody: names, hosts, sources and fingerprints; never a key.
    pub credentials: crate::credentials::CredentialsStatus,
    /// The console's URL when `[api] listen` is set.
    pub api: Option<String>,
    pub counters: StatusCounters,
}

#[derive(Debug, Serialize)]
pub struct StatusCounters {
    #[serde(flatten)]
    pub proxy: CountersSnapshot,
    #[serde(flatten)]
    pub kernel: KernelCounters,
}
