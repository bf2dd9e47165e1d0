//! Warden as a service of a real systemd in a container with its own pid namespace (nspawn):
//! it intercepts a selected unit that runs the official Python SDK and logs the exchange with the
//! pid, executable and cgroup the container sees (issue 11, point 6).

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use warden_tests::net::free_dual_stack_port;
use warden_tests::nspawn::Container;
use warden_tests::{
    require_kernel, require_nspawn, require_python, sdk_scripts, wait, FakeUpstream, HostsFile,
    LogLine,
};

const CONFIG: &str = "/etc/warden-test/warden.toml";
const STATE_DIR: &str = "/var/lib/warden-test";
const WARDEN_UNIT: &str = "warden-test.service";
const AGENT_SLICE: &str = "warden-agents.slice";
/// A dash in a slice's name nests it: warden-agents.slice is below warden.slice.
const AGENT_SLICE_CGROUP: &str = "/warden.slice/warden-agents.slice";
const AGENT_UNIT: &str = "warden-agent.service";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// Warden's config as the container sees it: the agents' slice selected, api.openai.com sent to
/// the fake upstream on the host's loopback (the container shares the host's network).
fn config(upstream: &FakeUpstream) -> String {
    format!(
        r#"state_dir = "{STATE_DIR}"

[proxy]
# Tests send nothing off the machine, DNS queries included.
resolve_intercepted_hosts = false
listen_port = {port}
intercept_ports = [443]
intercept_hosts = ["api.openai.com"]

[select]
cgroups = ["{AGENT_SLICE_CGROUP}"]

[policy]
dir = "/etc/warden-test/policies"

[[upstream.override]]
host = "api.openai.com"
address = "{address}"
ca_file = "/etc/warden-test/upstream-ca.pem"
"#,
        port = free_dual_stack_port(),
        address = upstream.addr(),
    )
}

/// Warden's JSON lines in `unit`'s journal.
fn log_lines(container: &Container, unit: &str) -> Vec<LogLine> {
    container
        .journal(unit)
        .lines()
        .filter_map(LogLine::parse)
        .collect()
}

#[test]
fn warden_in_a_container_intercepts_a_selected_unit() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    if require_nspawn().is_none() {
        return;
    }
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let dir = tempfile::tempdir().expect("tempdir");
    let config_file = dir.path().join("warden.toml");
    fs::write(&config_file, config(&upstream)).expect("writing the config");
    let policies = dir.path().join("policies");
    fs::create_dir(&policies).expect("policy dir");

    // The warden binary and the venv are on the host's root filesystem, which the container
    // sees through its overlay; /tmp is the container's own, so files there are bound in.
    let container = Container::builder("intercept")
        .bind_ro(&config_file, CONFIG)
        .bind_ro(&policies, "/etc/warden-test/policies")
        .bind_ro(upstream.ca_pem_path(), "/etc/warden-test/upstream-ca.pem")
        .bind_ro(&hosts.path(), "/etc/hosts")
        .boot();
    container.mount_bpffs();
    // systemd creates a slice's cgroup only once a unit runs in it: one that waits there makes
    // it exist before Warden starts, so Warden selects it at startup, not in a race with the agent.
    container.sh(&format!(
        "systemd-run --unit=warden-agents-holder --slice={AGENT_SLICE} sleep infinity"
    ));

    let warden = e2e.warden_bin.to_string_lossy().into_owned();
    let started = container.systemd_run(
        &[
            &format!("--unit={WARDEN_UNIT}"),
            "--service-type=exec",
            "--setenv=RUST_BACKTRACE=1",
        ],
        [warden.as_str(), "run", "--config", CONFIG],
    );
    assert!(started.status.success(), "{started}");
    let ready = wait::within(READY_TIMEOUT, || {
        if log_lines(&container, WARDEN_UNIT)
            .iter()
            .any(|l| l.is("warden ready"))
        {
            return Some(true);
        }
        let state = container.exec(["systemctl", "is-active", WARDEN_UNIT]);
        matches!(state.stdout.trim(), "failed" | "inactive").then_some(false)
    });
    let journal = container.journal(WARDEN_UNIT);
    assert_eq!(
        ready,
        Some(true),
        "warden did not get ready in the container\n{journal}"
    );
    let selected = log_lines(&container, WARDEN_UNIT)
        .into_iter()
        .any(|l| l.is("cgroup selected") && l.str("path") == Some(AGENT_SLICE_CGROUP));
    assert!(selected, "Warden selected the agents' slice\n{journal}");

    let python = python.to_string_lossy().into_owned();
    let out = container.systemd_run(
        &[
            "--wait",
            "--pipe",
            "--quiet",
            "--collect",
            "--service-type=exec",
            &format!("--unit={AGENT_UNIT}"),
            &format!("--slice={AGENT_SLICE}"),
            &format!("--setenv=SSL_CERT_FILE={STATE_DIR}/ca/ca.pem"),
        ],
        [python.as_str(), "-c", sdk_scripts::CHAT],
    );
    assert!(
        out.status.success(),
        "{out}\n{}",
        container.journal(WARDEN_UNIT)
    );
    let printed: Value = out.json();
    assert_eq!(printed["content"], upstream.reply(), "{out}");
    assert_eq!(upstream.requests().len(), 1, "one request at the upstream");

    let pid = printed["pid"].as_u64().expect("the script prints its pid");
    let exe = printed["exe"].as_str().expect("the script prints its exe");
    let line = wait::until("the exchange line", LINE_TIMEOUT, || {
        log_lines(&container, WARDEN_UNIT)
            .into_iter()
            .find(|l| l.is("exchange"))
    });
    assert_eq!(
        line.u64("pid"),
        Some(pid),
        "the pid the container sees\n{line}"
    );
    assert_eq!(
        line.str("exe").map(Path::new),
        Some(Path::new(exe)),
        "{line}"
    );
    assert_eq!(
        line.str("cgroup"),
        Some(format!("{AGENT_SLICE_CGROUP}/{AGENT_UNIT}").as_str()),
        "{line}"
    );
    assert_eq!(line.u64("status"), Some(200), "{line}");
}
