//! Tests of the resolver against this test process, a pid that does not exist, and a fake cgroup tree.
use super::*;

fn origin(tgid: u32) -> ConnectionOrigin {
    ConnectionOrigin {
        original_dst: "127.0.0.1:443".parse().unwrap(),
        tgid,
        // SAFETY: getuid/getgid cannot fail.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        cgroup_id: 0,
        comm: "connector".to_string(),
    }
}

fn account(name: &str) -> AccountConfig {
    AccountConfig {
        name: name.to_string(),
        unit: None,
        cgroup: None,
        uid: None,
        exe: None,
    }
}

/// Above any possible pid_max (2^22), so never a live process.
const ABSENT_PID: u32 = (1 << 22) + 1;

#[test]
fn resolves_this_process() {
    let cgroupfs = CgroupFs::discover().ok();
    let mut origin = origin(std::process::id());
    let own_path = Process::myself()
        .and_then(|p| p.cgroups())
        .ok()
        .and_then(|cgs| {
            cgs.0
                .into_iter()
                .find(|cg| cg.hierarchy == 0)
                .map(|cg| cg.pathname)
        });
    if let (Some(fs), Some(path)) = (&cgroupfs, &own_path) {
        origin.cgroup_id = fs.id_of(path).unwrap_or(0);
    }
    let resolver = IdentityResolver::new(Vec::new(), cgroupfs);
    let identity = resolver.resolve(&origin);
    assert!(!identity.process_exited);
    assert_eq!(identity.pid, std::process::id());
    let exe = std::env::current_exe().unwrap();
    assert_eq!(identity.exe.as_deref(), Some(exe.to_str().unwrap()));
    let args: Vec<String> = std::env::args().collect();
    assert_eq!(
        identity.cmdline.as_deref(),
        Some(redact_command_line(&args).as_str())
    );
    assert_eq!(identity.uid, origin.uid);
    if origin.uid == 0 {
        assert_eq!(identity.user.as_deref(), Some("root"));
    }
    assert_eq!(identity.cgroup, own_path);
    assert!(!identity.comm.is_empty());
    // Cached per (pid, start time) while the captured credentials match.
    assert!(Arc::ptr_eq(&identity, &resolver.resolve(&origin)));
    let mut other_uid = origin.clone();
    other_uid.uid = origin.uid.wrapping_add(1);
    let changed = resolver.resolve(&other_uid);
    assert_eq!(changed.uid, other_uid.uid);
    assert!(!Arc::ptr_eq(&identity, &changed));
}

#[test]
fn the_cached_identity_is_found_without_resolving_only_while_it_still_fits() {
    let own = origin(std::process::id());
    let resolver = IdentityResolver::new(Vec::new(), None);
    assert!(resolver.cached(&own).is_none(), "nothing resolved yet");
    let identity = resolver.resolve(&own);
    let cached = resolver.cached(&own).expect("resolved once, then cached");
    assert!(Arc::ptr_eq(&identity, &cached));
    // Changed credentials, or a process that is gone: resolve again.
    let mut other_uid = own.clone();
    other_uid.uid = own.uid.wrapping_add(1);
    assert!(resolver.cached(&other_uid).is_none());
    resolver.resolve(&origin(ABSENT_PID));
    assert!(resolver.cached(&origin(ABSENT_PID)).is_none());
}

#[test]
fn exited_process_keeps_the_kernel_capture() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("system.slice/billing-agent.service")).unwrap();
    let cgroupfs = CgroupFs::at(tree.path());
    let mut origin = origin(ABSENT_PID);
    origin.uid = 4242;
    origin.cgroup_id = cgroupfs
        .id_of("/system.slice/billing-agent.service")
        .unwrap();
    let mut billing = account("billing");
    billing.unit = Some("billing-agent.service".into());
    let resolver = IdentityResolver::new(vec![billing], Some(cgroupfs));
    let identity = resolver.resolve(&origin);
    assert!(identity.process_exited);
    assert_eq!(identity.pid, ABSENT_PID);
    assert_eq!(identity.comm, "connector");
    assert_eq!(identity.uid, 4242);
    assert_eq!(
        (identity.exe.as_deref(), identity.cmdline.as_deref()),
        (None, None)
    );
    assert_eq!(
        identity.cgroup.as_deref(),
        Some("/system.slice/billing-agent.service")
    );
    assert_eq!(identity.unit.as_deref(), Some("billing-agent.service"));
    assert_eq!(identity.account.as_deref(), Some("billing"));
}

#[test]
fn exited_process_without_cgroupfs() {
    let identity = IdentityResolver::new(Vec::new(), None).resolve(&origin(ABSENT_PID));
    assert!(identity.process_exited);
    assert_eq!(identity.comm, "connector");
    assert_eq!(
        (identity.cgroup.as_deref(), identity.account.as_deref()),
        (None, None)
    );
}

#[test]
fn accounts_match_by_selector_in_order_then_fall_back_to_the_unit() {
    let identity = identity();
    let selector = |f: &dyn Fn(&mut AccountConfig)| {
        let mut a = account("matched");
        f(&mut a);
        account_for(&[a], &identity)
    };
    let matched = Some("matched".to_string());
    let fallback = Some("agent.service".to_string());
    assert_eq!(
        selector(&|a| a.unit = Some("agent.service".into())),
        matched
    );
    assert_eq!(selector(&|a| a.unit = Some("system.slice".into())), matched);
    assert_eq!(
        selector(&|a| a.unit = Some("other.service".into())),
        fallback
    );
    assert_eq!(
        selector(&|a| a.cgroup = Some("/system.slice".into())),
        matched
    );
    assert_eq!(
        selector(&|a| a.cgroup = Some("/system.slice/agent.service/worker".into())),
        matched
    );
    assert_eq!(
        selector(&|a| a.cgroup = Some("/system.slice/agent".into())),
        fallback
    );
    assert_eq!(selector(&|a| a.cgroup = Some("/".into())), matched);
    assert_eq!(selector(&|a| a.uid = Some(1001)), matched);
    assert_eq!(selector(&|a| a.uid = Some(0)), fallback);
    assert_eq!(
        selector(&|a| a.exe = Some("/usr/bin/python3".into())),
        matched
    );
    assert_eq!(
        selector(&|a| a.exe = Some("/usr/bin/python".into())),
        fallback
    );
    let mut first = account("first");
    first.uid = Some(1001);
    let mut second = account("second");
    second.uid = Some(1001);
    assert_eq!(
        account_for(&[first, second], &identity).as_deref(),
        Some("first")
    );
    let no_unit = Identity {
        unit: None,
        ..identity.clone()
    };
    assert_eq!(account_for(&[], &no_unit), None);
}

#[test]
fn looks_up_user_names() {
    assert_eq!(lookup_user_name(0).as_deref(), Some("root"));
    assert_eq!(lookup_user_name(u32::MAX - 7), None);
}

#[test]
fn bounded_map_clears_when_full() {
    let mut map = BoundedMap::default();
    for i in 0..CACHE_CAPACITY {
        map.insert(i, i);
    }
    map.insert(0, 1);
    assert_eq!(map.entries.len(), CACHE_CAPACITY);
    map.insert(CACHE_CAPACITY, 0);
    assert_eq!(map.entries.len(), 1);
}

/// A live process's identity, for selector tests.
pub(super) fn identity() -> Identity {
    Identity {
        pid: 1,
        comm: "python3".into(),
        exe: Some("/usr/bin/python3 (deleted)".into()),
        cmdline: None,
        uid: 1001,
        user: None,
        gid: 1001,
        cgroup_id: 9,
        cgroup: Some("/system.slice/agent.service/worker".into()),
        unit: Some("agent.service".into()),
        container: None,
        account: None,
        k8s_service_account: None,
        k8s_sa_verified: None,
        k8s_sa_selectable: true,
        process_exited: false,
    }
}
