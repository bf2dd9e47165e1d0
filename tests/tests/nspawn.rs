//! The systemd-in-a-container harness (warden_tests::nspawn) does what the service tests rely on:
//! the host's own systemd boots to `running` in its own pid namespace, units run in it and their
//! output comes back, writes inside (to /etc, /usr/local, an existing host file, the trust store
//! through `update-ca-certificates`) never reach the host, eBPF's prerequisites are there, and
//! after Drop nothing is left (no process, cgroup, mount or directory), also when the boot fails.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use warden_tests::cgroup::cgroup2_mount;
use warden_tests::nspawn::{v1_mirror, Container, EXEC_CGROUP};
use warden_tests::require_nspawn;

/// Debian's system trust bundle, which `update-ca-certificates` rewrites.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[test]
fn boots_to_running_in_its_own_pid_namespace() {
    let Some(_) = require_nspawn() else { return };
    let container = Container::builder("boot").boot();

    assert_eq!(
        container.system_state(),
        "running",
        "{}",
        container.console()
    );
    let inside = container.sh(
        "cat /proc/1/comm; readlink /proc/self/ns/pid; readlink /proc/self/ns/uts; \
         grep ^0:: /proc/self/cgroup",
    );
    let lines: Vec<&str> = inside.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"systemd"), "PID 1 inside\n{inside}");
    // Entered commands run in a cgroup of the container's own.
    let exec_cgroup = format!("0::{EXEC_CGROUP}");
    assert_eq!(lines.get(3), Some(&exec_cgroup.as_str()), "{inside}");
    // Its own pid namespace, and its own UTS namespace: the hostname its systemd sets (from
    // /etc/hostname) is not the host's business.
    for (line, namespace) in [(1, "pid"), (2, "uts")] {
        let host = fs::read_link(format!("/proc/self/ns/{namespace}")).expect("our namespace");
        assert_ne!(
            lines.get(line).map(Path::new),
            Some(host.as_path()),
            "the container has a {namespace} namespace of its own\n{inside}"
        );
    }
    let leader_comm = fs::read_to_string(format!("/proc/{}/comm", container.leader_pid()))
        .expect("the leader's comm");
    assert_eq!(leader_comm.trim(), "systemd");
}

#[test]
fn units_run_inside_and_their_output_comes_back() {
    let Some(_) = require_nspawn() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("out");
    fs::create_dir(&out_dir).expect("out dir");
    let unit = dir.path().join("warden-smoke-bound.service");
    fs::write(
        &unit,
        "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo bound-unit-ran; cat /proc/self/cgroup' \
         \nStandardOutput=file:/out/result\n",
    )
    .expect("writing the unit");
    let container = Container::builder("units")
        .bind_ro(&unit, "/etc/systemd/system/warden-smoke-bound.service")
        .bind(&out_dir, "/out")
        .boot();

    // A transient unit: its output comes back through systemd-run's pipe.
    let transient = container.run_unit(
        "warden-smoke-transient",
        ["sh", "-c", "echo transient-unit-ran; cat /proc/self/cgroup"],
    );
    assert!(transient.status.success(), "{transient}");
    assert!(
        transient.stdout.contains("transient-unit-ran")
            && transient
                .stdout
                .contains("0::/system.slice/warden-smoke-transient.service"),
        "the command ran in its own unit\n{transient}"
    );
    let failing = container.run_unit("warden-smoke-failing", ["sh", "-c", "exit 3"]);
    assert_eq!(
        failing.code(),
        Some(3),
        "a unit's exit code comes back\n{failing}"
    );

    // A bound unit file, started by systemctl: its output lands in the bound directory.
    container.sh("systemctl start warden-smoke-bound.service");
    let result = fs::read_to_string(out_dir.join("result")).expect("the unit's output on the host");
    assert!(
        result.contains("bound-unit-ran")
            && result.contains("0::/system.slice/warden-smoke-bound.service"),
        "{result}"
    );
}

#[test]
fn writes_inside_never_reach_the_host() {
    let Some(_) = require_nspawn() else { return };
    // /var/tmp is on the host's root filesystem and nspawn mounts nothing over it, so the
    // container sees this file through its overlay.
    let host_dir = tempfile::Builder::new()
        .prefix("warden-nspawn-")
        .tempdir_in("/var/tmp")
        .expect("tempdir in /var/tmp");
    let existing = host_dir.path().join("existing");
    fs::write(&existing, "host\n").expect("writing the host file");
    let host_bundle = fs::read(SYSTEM_BUNDLE).ok();
    let container = Container::builder("writes").boot();
    let name = container.machine().to_owned();
    let created = [format!("/etc/{name}"), format!("/usr/local/bin/{name}")];

    let script = format!(
        "set -e; echo container > {existing}; for f in {created}; do echo x > $f; done; cat {existing}",
        existing = existing.display(),
        created = created.join(" ")
    );
    let inside = container.sh(&script);
    assert_eq!(inside.stdout, "container\n", "{inside}");
    let files_unchanged = || {
        assert_eq!(fs::read_to_string(&existing).expect("host file"), "host\n");
        for path in &created {
            assert!(!Path::new(path).exists(), "{path} reached the host");
        }
    };
    files_unchanged();

    // Only now that plain writes are known to stay inside: trust a CA the way `warden install`
    // does on Debian, and the host's trust store must not notice.
    let anchor = format!("/usr/local/share/ca-certificates/{name}.crt");
    let trusted = container.sh(&format!(
        "set -e; openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN={name} \
           -keyout /root/{name}.key -out {anchor} 2>/dev/null; \
         update-ca-certificates >/dev/null 2>&1; \
         openssl x509 -in {anchor} -outform PEM | grep -v '^-----' | head -n1 > /root/line; \
         grep -c -F -f /root/line {SYSTEM_BUNDLE}; ls /etc/ssl/certs/{name}.pem"
    ));
    assert_eq!(
        trusted.stdout.lines().next(),
        Some("1"),
        "the container's bundle holds the new CA\n{trusted}"
    );
    let trust_unchanged = || {
        assert_eq!(
            fs::read(SYSTEM_BUNDLE).ok(),
            host_bundle,
            "the host's {SYSTEM_BUNDLE} changed"
        );
        for path in [anchor.clone(), format!("/etc/ssl/certs/{name}.pem")] {
            assert!(!Path::new(&path).exists(), "{path} reached the host");
        }
    };
    trust_unchanged();
    drop(container);
    files_unchanged();
    trust_unchanged();
}

#[test]
fn the_container_has_what_warden_needs() {
    let Some(_) = require_nspawn() else { return };
    let container = Container::builder("needs").boot();

    // The capabilities eBPF needs: CAP_NET_ADMIN (12), CAP_SYS_ADMIN (21), CAP_PERFMON (38),
    // CAP_BPF (39) in PID 1's effective set.
    let caps = container.sh("grep CapEff /proc/1/status | cut -f2");
    let eff = u64::from_str_radix(caps.stdout.trim(), 16).expect("CapEff is hex");
    for (bit, name) in [
        (12, "CAP_NET_ADMIN"),
        (21, "CAP_SYS_ADMIN"),
        (38, "CAP_PERFMON"),
        (39, "CAP_BPF"),
    ] {
        assert!(eff & (1 << bit) != 0, "{name} missing from {eff:x}");
    }

    // No bpffs at first; the container can mount one of its own, which the host does not see.
    let before = container.exec(["mountpoint", "-q", "/sys/fs/bpf"]);
    assert!(!before.status.success(), "bpffs already mounted\n{before}");
    container.mount_bpffs();
    let fs_type = container.sh("stat -f -c %T /sys/fs/bpf; mkdir /sys/fs/bpf/warden-probe");
    assert_eq!(fs_type.stdout.trim(), "bpf_fs", "{fs_type}");
    assert!(!Path::new("/sys/fs/bpf/warden-probe").exists());

    // cgroup2 is mounted and writable (a child cgroup can be made and removed).
    let cgroup2 = container.sh(
        "m=$(findmnt -n -o TARGET -t cgroup2 | head -n1); mkdir \"$m/warden-probe\" && \
         rmdir \"$m/warden-probe\" && echo \"$m\"",
    );
    assert!(
        cgroup2.stdout.trim().starts_with("/sys/fs/cgroup"),
        "{cgroup2}"
    );
}

#[test]
fn nothing_is_left_after_drop() {
    let Some(_) = require_nspawn() else { return };
    let container = Container::builder("leftovers").boot();
    // A unit still running and an entered process still running at power-off.
    container.sh("systemd-run --unit=warden-smoke-sleeper sleep 1000");
    container.sh("setsid sleep 1000 > /dev/null 2>&1 < /dev/null &");
    let footprint = container.footprint();
    assert!(footprint.cgroup_dir.is_dir());

    drop(container);

    footprint.assert_gone();
}

#[test]
fn a_container_that_fails_to_boot_leaves_nothing() {
    let Some(_) = require_nspawn() else { return };
    // Without CAP_SYS_ADMIN systemd cannot mount its API filesystems and exits at once.
    let boot = catch_unwind(AssertUnwindSafe(|| {
        Container::builder("noboot")
            .nspawn_arg("--drop-capability=CAP_SYS_ADMIN")
            .boot_timeout(Duration::from_secs(30))
            .boot()
    }));
    let Err(panic) = boot else {
        panic!("a container without CAP_SYS_ADMIN booted")
    };
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("Failed to mount API filesystems"),
        "the failure shows the console: {message}"
    );

    let prefix = format!("warden-test-nspawn-noboot-{}-", std::process::id());
    let roots = [cgroup2_mount(), v1_mirror("/")];
    for root in roots.into_iter().flatten() {
        let left: Vec<String> = fs::read_dir(&root)
            .expect("reading a cgroup root")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "left in {}: {left:?}", root.display());
    }
}
