//! One log event shape for everything the proxy reports about a connection: identity fields first.

/// Emits a tracing event carrying every identity field flattened, then the caller's fields and
/// message. `$identity` is an `&Identity`.
#[macro_export]
macro_rules! identity_event {
    ($level:expr, $identity:expr, $($rest:tt)+) => {{
        let identity: &$crate::identity::Identity = $identity;
        tracing::event!(
            $level,
            pid = identity.pid,
            comm = %identity.comm,
            exe = identity.exe.as_deref(),
            cmdline = identity.cmdline.as_deref(),
            uid = identity.uid,
            user = identity.user.as_deref(),
            gid = identity.gid,
            cgroup = identity.cgroup.as_deref(),
            cgroup_id = identity.cgroup_id,
            unit = identity.unit.as_deref(),
            container = identity.container.as_ref().map(tracing::field::display),
            account = identity.account.as_deref(),
            k8s_sa = identity.k8s_service_account.as_deref(),
            k8s_sa_verified = identity.k8s_sa_verified,
            process_exited = identity.process_exited,
            $($rest)+
        )
    }};
}
