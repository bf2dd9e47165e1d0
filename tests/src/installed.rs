//! Warden installed by `warden install` in an nspawn container, seen from the outside: the files
//! a test hands in, the long-running agent unit it selects, and what the service, the CLI, the
//! journal and the kernel say about it.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::bpf::attached_program_ids;
use crate::client::ClientOutput;
use crate::nspawn::Container;
use crate::{sdk_scripts, wait, LogLine, Status};

/// Where the container sees the files a test hands in (bound read-only).
pub const SEED: &str = "/etc/warden-test";
/// The upstream's CA, for Warden's `[[upstream.override]] ca_file`: its name in the seed, and
/// its path inside.
pub const UPSTREAM_CA_FILE: &str = "upstream-ca.pem";
pub const UPSTREAM_CA: &str = "/etc/warden-test/upstream-ca.pem";
/// The agent: a unit of its own, running [`sdk_scripts::AGENT_ON_REQUEST`].
pub const AGENT_UNIT: &str = "warden-agent.service";
/// The agent's cgroup as the container sees it.
pub const AGENT_CGROUP: &str = "/system.slice/warden-agent.service";
/// Where the agent reads its requests (a FIFO) and writes its results.
const AGENT_DIR: &str = "/run/warden-agent";
const AGENT_SCRIPT: &str = "agent.py";
const AGENT_UNIT_FILE: &str = "warden-agent.service";
/// How long one agent call may take, connect refusal or 403 included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The files a test hands in: the agent's script and unit, and whatever the test adds.
pub struct Seed {
    dir: tempfile::TempDir,
}

impl Seed {
    /// A seed with the agent's script and unit; `python` is the venv's interpreter.
    pub fn new(python: &Path) -> Self {
        let seed = Seed {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        seed.write(AGENT_SCRIPT, sdk_scripts::AGENT_ON_REQUEST);
        // No Environment= of its own: the agent gets no CA variable from anyone but Warden's drop-in.
        let unit = format!(
            "[Unit]\n\
             Description=An AI agent: the official openai Python SDK, one call per request\n\
             [Service]\n\
             ExecStart={python} {SEED}/{AGENT_SCRIPT} {AGENT_DIR}/requests {AGENT_DIR}\n",
            python = python.display()
        );
        seed.write(AGENT_UNIT_FILE, &unit);
        seed
    }

    pub fn write(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("creating a seed directory");
        }
        fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// The host directory to bind at [`SEED`].
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Installs the agent's unit and makes its FIFO (the unit is started by the test).
pub fn install_agent_unit(container: &Container) {
    container.sh(&format!(
        "set -e; cp {SEED}/{AGENT_UNIT_FILE} /etc/systemd/system/{AGENT_UNIT}; \
         mkdir -p {AGENT_DIR}; mkfifo {AGENT_DIR}/requests"
    ));
}

/// Asks the running agent for one call named `name` and returns its result (see
/// [`sdk_scripts::AGENT_ON_REQUEST`]). Panics if the agent does not answer in time.
pub fn agent_call(container: &Container, name: &str) -> Value {
    // `timeout`: a FIFO write blocks while no agent reads it.
    let asked = container.exec_with_timeout(
        [
            "timeout",
            "10",
            "sh",
            "-c",
            &format!("echo {name} > {AGENT_DIR}/requests"),
        ],
        Duration::from_secs(20),
    );
    assert!(
        asked.status.success(),
        "no agent read the request {name}: {}\n{asked}\n{}",
        unit_state(container, AGENT_UNIT),
        container.journal(AGENT_UNIT)
    );
    let result = format!("{AGENT_DIR}/{name}.json");
    let text = wait::within(CALL_TIMEOUT, || {
        let out = container.exec(["cat", &result]);
        out.status.success().then_some(out.stdout)
    })
    .unwrap_or_else(|| {
        panic!(
            "the agent wrote no result for {name}\n{}",
            container.journal(AGENT_UNIT)
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{result}: {e}: {text}"))
}

/// `systemctl show -p PROPERTY --value UNIT`.
pub fn unit_property(container: &Container, unit: &str, property: &str) -> String {
    container
        .exec(["systemctl", "show", "-p", property, "--value", unit])
        .stdout
        .trim()
        .to_owned()
}

/// ActiveState/SubState, MainPID and InvocationID: enough to tell whether a unit was restarted.
pub fn unit_state(container: &Container, unit: &str) -> String {
    container
        .exec([
            "systemctl",
            "show",
            "-p",
            "ActiveState,SubState,MainPID,InvocationID,NRestarts",
            unit,
        ])
        .stdout
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `warden status --json` inside.
pub fn status(container: &Container) -> Status {
    let out = container.exec(["warden", "status", "--json"]);
    assert!(out.status.success(), "warden status\n{out}");
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("warden status --json: {e}\n{out}"))
}

/// `warden sessions list --json` inside: the exchanges, newest first.
pub fn sessions(container: &Container) -> Vec<Value> {
    let out = container.exec(["warden", "sessions", "list", "--json", "--limit", "1000"]);
    assert!(out.status.success(), "warden sessions list\n{out}");
    match serde_json::from_str(out.stdout.trim()) {
        Ok(Value::Array(items)) => items,
        _ => panic!("`sessions list --json` did not print a JSON array\n{out}"),
    }
}

/// Waits until `sessions list` shows an exchange `matches` accepts, and returns it.
pub fn wait_for_session(
    container: &Container,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    wait::within(Duration::from_secs(20), || {
        sessions(container).into_iter().find(|s| matches(s))
    })
    .unwrap_or_else(|| {
        panic!(
            "no recorded exchange for {what}\n{:#?}",
            sessions(container)
        )
    })
}

/// Warden's JSON lines in its unit's journal.
pub fn warden_log(container: &Container) -> Vec<LogLine> {
    container
        .journal("warden.service")
        .lines()
        .filter_map(LogLine::parse)
        .collect()
}

/// The ids of the programs attached at the container's cgroup2 root (bpftool, from the host:
/// the container's cgroup namespace is rooted at its guard cgroup's `payload`).
pub fn attached_at_container_root(container: &Container) -> Vec<u32> {
    attached_program_ids(&container.cgroup().dir().join("payload"))
}

/// Panics, with the output, unless `out` succeeded.
pub fn assert_ok(out: &ClientOutput, what: &str) {
    assert!(out.status.success(), "{what} failed\n{out}");
}

/// `systemctl status warden` and Warden's journal, for a failure message.
pub fn service_report(container: &Container) -> String {
    let status = container.exec(["systemctl", "status", "--no-pager", "-l", "warden"]);
    let journal = container.exec(["journalctl", "--no-pager", "-u", "warden", "-n", "80"]);
    format!(
        "--- systemctl status warden ---\n{}\n--- journalctl -u warden ---\n{}",
        status.stdout, journal.stdout
    )
}
