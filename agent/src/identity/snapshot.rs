//! The identity as a record keeps it: a plain, serializable copy taken when the record is written.
use serde::{Deserialize, Serialize};

use super::Identity;

/// The identity as it was when the record was written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySnapshot {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    pub uid: u32,
    pub user: Option<String>,
    pub gid: u32,
    pub cgroup_id: u64,
    pub cgroup: Option<String>,
    pub unit: Option<String>,
    /// `runtime:id`.
    pub container: Option<String>,
    pub account: Option<String>,
    pub k8s_sa: Option<String>,
    /// Absent (not `null`) when unknown, so records written before it keep their canonical bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_sa_verified: Option<bool>,
    pub process_exited: bool,
}

impl From<&Identity> for IdentitySnapshot {
    fn from(identity: &Identity) -> Self {
        IdentitySnapshot {
            pid: identity.pid,
            comm: identity.comm.clone(),
            exe: identity.exe.clone(),
            cmdline: identity.cmdline.clone(),
            uid: identity.uid,
            user: identity.user.clone(),
            gid: identity.gid,
            cgroup_id: identity.cgroup_id,
            cgroup: identity.cgroup.clone(),
            unit: identity.unit.clone(),
            container: identity.container.as_ref().map(ToString::to_string),
            account: identity.account.clone(),
            k8s_sa: identity.k8s_service_account.clone(),
            k8s_sa_verified: identity.k8s_sa_verified,
            process_exited: identity.process_exited,
        }
    }
}
