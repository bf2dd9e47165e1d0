//! The sandbox of the unit `warden install` writes is enough for Warden: the daemon, confined to
//! the unit's CapabilityBoundingSet and SystemCallFilter (as systemd expands it, with EPERM for
//! the rest), starts, intercepts a non-root agent, attributes it, and reloads its policy.
//!
//! systemd is not PID 1 here, so the confinement is applied the way systemd applies it: setpriv
//! drops every capability outside the bounding set, libseccomp (python3-seccomp) loads the allow
//! list with no_new_privs, then warden is exec'd.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;
use warden_tests::curl::{self, assert_chat_reply, which};
use warden_tests::env::{require_system_python_module, SYSTEM_PYTHON};
use warden_tests::{require_kernel, require_root_and_tools, AgentFixture, Client, E2e, ImageRoot};

/// Loads an allow list of system calls (one name a line in `$1`), every other call failing with
/// EPERM as SystemCallErrorNumber=EPERM makes it, then execs the rest of the command line.
const SECCOMP_EXEC: &str = r#"
import errno, os, sys, seccomp
allowed = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
for name in open(sys.argv[1]).read().split():
    try:
        allowed.add_rule(seccomp.ALLOW, name)
    except (RuntimeError, ValueError):
        pass  # a call this architecture or libseccomp does not know; systemd skips it too
allowed.load()
os.execv(sys.argv[2], sys.argv[2:])
"#;

/// Capability numbers from linux/capability.h, for the ones the unit may name.
const CAPABILITIES: &[(&str, u32)] = &[
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_NET_ADMIN", 12),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
];

/// The value of `Key=` in the unit (its only occurrence).
fn directive<'u>(unit: &'u str, key: &str) -> &'u str {
    let prefix = format!("{key}=");
    let mut values = unit.lines().filter_map(|line| line.strip_prefix(&prefix));
    let value = values
        .next()
        .unwrap_or_else(|| panic!("no {key}= in\n{unit}"));
    assert!(values.next().is_none(), "{key}= is set twice");
    value
}

/// Every system call name in a SystemCallFilter= allow list, `@groups` expanded by systemd.
fn expand_filter(filter: &str) -> BTreeSet<String> {
    let mut calls = BTreeSet::new();
    let mut pending: Vec<String> = filter.split_whitespace().map(str::to_owned).collect();
    let mut seen = BTreeSet::new();
    while let Some(entry) = pending.pop() {
        if !entry.starts_with('@') {
            calls.insert(entry);
            continue;
        }
        if !seen.insert(entry.clone()) {
            continue;
        }
        let out = Command::new("systemd-analyze")
            .args(["syscall-filter", &entry])
            .output()
            .expect("running systemd-analyze syscall-filter");
        assert!(
            out.status.success(),
            "systemd-analyze syscall-filter {entry}"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines().skip(1).map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                pending.push(line.to_owned());
            }
        }
    }
    calls
}

/// A `warden` stand-in that execs the real binary confined like the unit confines it.
fn confined_warden(e2e: &E2e, unit: &str, dir: &Path) -> PathBuf {
    let bounding: Vec<String> = directive(unit, "CapabilityBoundingSet")
        .split_whitespace()
        .map(|cap| {
            let name = cap.strip_prefix("CAP_").expect("a capability name");
            format!("+{}", name.to_ascii_lowercase())
        })
        .collect();
    let calls = expand_filter(directive(unit, "SystemCallFilter"));
    assert!(
        calls.contains("bpf") && calls.contains("openat"),
        "{calls:?}"
    );
    fs::write(
        dir.join("syscalls"),
        calls.into_iter().collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    fs::write(dir.join("seccomp_exec.py"), SECCOMP_EXEC).unwrap();
    let wrapper = dir.join("warden");
    let script = format!(
        "#!/bin/sh\nexec setpriv --bounding-set=-all,{} --inh-caps=-all --ambient-caps=-all \
         {SYSTEM_PYTHON} {} {} {} \"$@\"\n",
        bounding.join(","),
        dir.join("seccomp_exec.py").display(),
        dir.join("syscalls").display(),
        e2e.warden_bin.display(),
    );
    fs::write(&wrapper, script).unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

/// The capability mask a process confined to the unit's bounding set has.
fn bounding_mask(unit: &str) -> u64 {
    directive(unit, "CapabilityBoundingSet")
        .split_whitespace()
        .map(|cap| {
            let (_, bit) = CAPABILITIES
                .iter()
                .find(|(name, _)| *name == cap)
                .unwrap_or_else(|| panic!("{cap} is not in this test's table"));
            1u64 << bit
        })
        .fold(0, |mask, bit| mask | bit)
}

fn status_field(pid: u32, field: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon's status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_owned()
}

/// A copy of the daemon's trust bundle that the nobody user can read.
fn world_readable_copy(bundle: &Path) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("trust-bundle.pem");
    fs::copy(bundle, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o644)).unwrap();
    (dir, copy)
}

#[test]
fn the_installed_units_capabilities_and_system_calls_are_enough_to_intercept_and_attribute() {
    let Some(e2e) = require_kernel() else { return };
    if require_root_and_tools(&["systemd-analyze", "setpriv"]).is_none()
        || !require_system_python_module("seccomp")
    {
        return;
    }
    let image = ImageRoot::debian(&e2e);
    image.install(&[]);
    let unit = image.read("/etc/systemd/system/warden.service");
    assert_eq!(directive(&unit, "SystemCallErrorNumber"), "EPERM");
    assert_eq!(directive(&unit, "NoNewPrivileges"), "yes");

    let wrapper_dir = tempfile::tempdir().unwrap();
    let confined = E2e {
        warden_bin: confined_warden(&e2e, &unit, wrapper_dir.path()),
    };
    let fx = AgentFixture::start(&confined, "sandboxed");

    // The daemon really is confined: exactly the unit's capabilities, and a seccomp filter.
    let pid = fx.daemon.pid();
    let effective = u64::from_str_radix(&status_field(pid, "CapEff"), 16).unwrap();
    assert_eq!(effective, bounding_mask(&unit), "CapEff {effective:x}");
    assert_eq!(status_field(pid, "Seccomp"), "2", "no seccomp filter");
    assert_eq!(status_field(pid, "NoNewPrivs"), "1");

    // An agent of another user: attributing its executable needs CAP_SYS_PTRACE.
    let (_bundle_dir, bundle) = world_readable_copy(&fx.daemon.trust_bundle());
    let as_nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let out = Client::new(as_nobody.into_iter().map(str::to_owned).chain(curl::chat()))
        .in_cgroup(&fx.agent)
        .hosts(&fx.hosts)
        .trust(&bundle)
        .run();
    assert_chat_reply(&out, fx.upstream.reply());
    let line = fx.daemon.wait_for_exchange(out.pid());
    assert_eq!(line.str("exe"), which("curl").to_str(), "{line}");
    assert_eq!(line.u64("uid"), Some(65534), "{line}");

    // ExecReload= sends SIGHUP.
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGHUP) }, 0);
    // (The directory has no policy file: the reload says so, triggered by the signal.)
    fx.daemon
        .wait_for_log("the policy reload", Duration::from_secs(10), |line| {
            line.str("trigger") == Some("SIGHUP")
        });
}
