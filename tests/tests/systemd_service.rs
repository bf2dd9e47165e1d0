//! Warden as the systemd service `warden install` makes, under a real systemd (an nspawn container
//! with its own pid namespace): READY with its status line, zero-config trust for an unmodified
//! Python, curl, Go and Node client, `systemctl reload`, fail-closed under `systemctl kill`,
//! Restart=always re-adopting one set of pinned programs, and `warden uninstall` leaving nothing
//! (issue 11, point 6). The API key comes from a systemd credential (`LoadCredential=` in the unit
//! install writes): the upstream receives it, never the agent's placeholder (issue 13, point 3).
//! The selected agent runs without CAP_NET_RAW, so no packet or raw sockets (issue 14, point 2).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use warden_tests::fake_upstream::openai::MODELS;
use warden_tests::installed::{
    agent_call, assert_ok, attached_at_container_root, install_agent_unit, service_report, status,
    unit_property, unit_state, wait_for_session, warden_log, Seed, AGENT_CGROUP, AGENT_UNIT, SEED,
    UPSTREAM_CA, UPSTREAM_CA_FILE,
};
use warden_tests::net::free_dual_stack_port;
use warden_tests::nspawn::Container;
use warden_tests::policy::deny_rule;
use warden_tests::{
    require_go_client, require_kernel, require_node, require_nspawn, require_python, sdk_scripts,
    wait, FakeUpstream, HostsFile, NodeSdk,
};

const POLICIES: &str = "/etc/warden/policies";
/// The capability's bit number (linux/capability.h).
const CAP_NET_RAW: u32 = 13;
/// The policy directory is a symlink that the test swaps from the first to the second version:
/// the directory watch (inotify on the first) sees nothing, so only `systemctl reload` can apply it.
const POLICIES_FIRST: &str = "/etc/warden/policy-versions/1";
const POLICIES_SECOND: &str = "/etc/warden/policy-versions/2";
const DENY_RULE: &str = "no-gpt-4o-mini";
const DENY_MESSAGE: &str = "gpt-4o-mini may not be used from this host";
const PIN_DIR: &str = "/sys/fs/bpf/warden";
const UNIT_FILE: &str = "/etc/systemd/system/warden.service";
const DROPIN_DIR: &str = "/etc/systemd/system/warden-agent.service.d";
const ANCHOR: &str = "/usr/local/share/ca-certificates/warden-ca.crt";
const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const CA_PEM: &str = "/var/lib/warden/ca/ca.pem";
/// The key Warden reads from its systemd credential and injects (the agent presents `sk-test`).
const CUSTODIED_KEY: &str = "sk-custodied-by-systemd-credential-7e21";
const CREDENTIAL: &str = "openai-test";
/// Restart=always with RestartSec=1s, then startup and re-adoption.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

/// The config seeded before install (install never overwrites it): the agent's unit selected,
/// api.openai.com sent to the fake upstream, ports of its own (the container shares the host's
/// loopback with parallel tests), metrics off.
fn config(upstream: &FakeUpstream) -> String {
    format!(
        r#"[proxy]
# Tests send nothing off the machine, DNS queries included.
resolve_intercepted_hosts = false
listen_port = {port}

[select]
units = ["{AGENT_UNIT}"]

[metrics]
listen = ""

[[upstream.override]]
host = "api.openai.com"
address = "{address}"
ca_file = "{UPSTREAM_CA}"

[[credential]]
name = "{CREDENTIAL}"
systemd_credential = "{CREDENTIAL}"
identity = ["uid:0"]
"#,
        port = free_dual_stack_port(),
        address = upstream.addr(),
    )
}

/// A rule in force from the start, so that both versions have policy files.
fn legacy_rule() -> String {
    deny_rule(
        "no-legacy-models",
        "legacy models may not be used",
        r#"model_in = ["gpt-3.5*"]"#,
    )
}

fn deny_agent_model() -> String {
    deny_rule(DENY_RULE, DENY_MESSAGE, r#"model_in = ["gpt-4o-mini"]"#)
}

/// Panics unless the agent's call got the upstream's reply, with no CA variable set.
fn assert_intercepted_reply(result: &Value, upstream: &FakeUpstream) {
    assert_eq!(result["ok"], true, "the agent's call failed: {result}");
    assert_eq!(result["content"], upstream.reply(), "{result}");
    assert_eq!(
        result["ca_variables"],
        serde_json::json!([]),
        "the agent must have no CA variable: {result}"
    );
}

/// The PEM's base64 body, as update-ca-certificates copies it into the bundle.
fn pem_body(pem: &str) -> String {
    pem.lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The container, with Warden's inputs in it, and the upstream it talks to.
struct Scene {
    container: Container,
    upstream: FakeUpstream,
}

#[test]
fn warden_install_runs_a_hardened_service_that_fails_closed_and_uninstalls_cleanly() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let Some(node) = require_node() else { return };
    let Some(go) = require_go_client() else {
        return;
    };
    if require_nspawn().is_none() {
        return;
    }
    let upstream = FakeUpstream::start();
    let hosts = HostsFile::new().with("api.openai.com", upstream.ip());
    let seed = Seed::new(&python);
    seed.write("warden.toml", &config(&upstream));
    // In the seed directory: nspawn cannot make a mount point inside a read-only bind.
    let upstream_ca = std::fs::read_to_string(upstream.ca_pem_path()).expect("the upstream's CA");
    seed.write(UPSTREAM_CA_FILE, &upstream_ca);
    seed.write("policies-1/legacy.toml", &legacy_rule());
    seed.write("policies-2/legacy.toml", &legacy_rule());
    seed.write("policies-2/deny.toml", &deny_agent_model());
    seed.write(CREDENTIAL, CUSTODIED_KEY);

    let container = Container::builder("service")
        .bind_ro(seed.path(), SEED)
        .bind_ro(&hosts.path(), "/etc/hosts")
        .boot();
    // On a real host systemd mounts the bpffs; the hardened unit cannot (no CAP_SYS_ADMIN).
    container.mount_bpffs();
    container.sh(&format!(
        "set -e; mkdir -p /etc/warden {POLICIES_FIRST} {POLICIES_SECOND}; \
         cp {SEED}/warden.toml /etc/warden/warden.toml; \
         cp {SEED}/policies-1/* {POLICIES_FIRST}/; cp {SEED}/policies-2/* {POLICIES_SECOND}/; \
         ln -s {POLICIES_FIRST} {POLICIES}; \
         install -D -m 600 {SEED}/{CREDENTIAL} /etc/warden/credentials/{CREDENTIAL}"
    ));
    install_agent_unit(&container);

    let scene = Scene {
        container,
        upstream,
    };

    scene.install(&e2e.warden_bin.to_string_lossy());
    let agent_pid = scene.python_agent_is_intercepted();
    scene.other_clients_are_intercepted(&node, &go);
    scene.reload_applies_a_policy();
    scene.a_killed_warden_fails_closed(agent_pid);
    scene.restart_readopts_one_set_of_programs(agent_pid);
    scene.the_agent_does_not_start_without_warden();
    scene.uninstall_leaves_nothing();
}

impl Scene {
    /// 1. `warden install` (live) brings the service to READY with Warden's status line.
    fn install(&self, warden_bin: &str) {
        let installed = self
            .container
            .exec_with_timeout([warden_bin, "install"], RESTART_TIMEOUT);
        assert!(
            installed.status.success(),
            "warden install failed\n{installed}\n{}",
            service_report(&self.container)
        );
        assert_eq!(
            self.container
                .exec(["systemctl", "is-active", "warden"])
                .stdout
                .trim(),
            "active",
            "{installed}\n{}\n{}",
            self.container.exec(["systemctl", "status", "warden"]),
            self.container.journal("warden.service")
        );
        let status_text = unit_property(&self.container, "warden.service", "StatusText");
        assert!(
            status_text.starts_with("fail-closed;"),
            "StatusText={status_text:?}"
        );
        let first_ready = warden_log(&self.container)
            .into_iter()
            .find(|l| l.is("warden ready"))
            .unwrap_or_else(|| {
                panic!(
                    "no `warden ready` line\n{}",
                    self.container.journal("warden.service")
                )
            });
        assert_eq!(
            first_ready.bool("readopted_pins"),
            Some(false),
            "{first_ready}"
        );
        let first_run = status(&self.container);
        assert!(first_run.attachment.pinned, "{first_run:?}");
        let first_programs = first_run.program_ids();
        let mut attached = attached_at_container_root(&self.container);
        attached.sort_unstable();
        let mut expected = first_programs.clone();
        expected.sort_unstable();
        assert_eq!(
            attached, expected,
            "Warden's programs at the container's cgroup root"
        );
    }

    /// 2. The selected agent unit (the official Python SDK, no CA variable) is intercepted and
    ///    recorded: it trusts Warden's CA through the system store install updated. Returns the
    ///    agent's pid.
    fn python_agent_is_intercepted(&self) -> u64 {
        let wants = unit_property(&self.container, AGENT_UNIT, "Wants");
        assert!(
            wants.contains("warden.service"),
            "the drop-in: Wants={wants}"
        );
        self.container.sh(&format!("systemctl start {AGENT_UNIT}"));
        wait::until(
            "the agent's cgroup to be selected",
            Duration::from_secs(20),
            || {
                status(&self.container)
                    .selected(AGENT_CGROUP)
                    .filter(|s| s.source == "unit")
                    .map(|_| ())
            },
        );
        let first = agent_call(&self.container, "first");
        assert_intercepted_reply(&first, &self.upstream);
        assert_eq!(
            self.upstream.authorizations(),
            vec![Some(format!("Bearer {CUSTODIED_KEY}"))],
            "one request at the upstream, with the key from the systemd credential"
        );
        let agent_pid = first["pid"].as_u64().expect("the agent prints its pid");
        let recorded = wait_for_session(&self.container, "the agent's call", |s| {
            s["pid"].as_u64() == Some(agent_pid)
        });
        assert_eq!(recorded["unit"], AGENT_UNIT, "{recorded}");
        assert_eq!(recorded["cgroup"], AGENT_CGROUP, "{recorded}");
        assert_eq!(recorded["status"], 200, "{recorded}");

        // The drop-in took CAP_NET_RAW from the agent for good: no packet or raw IP sockets.
        let status = self
            .container
            .sh(&format!("grep '^CapBnd:' /proc/{agent_pid}/status"));
        let bounding = status.stdout.trim().trim_start_matches("CapBnd:").trim();
        let bounding = u64::from_str_radix(bounding, 16).expect("CapBnd is hex");
        assert_eq!(bounding & (1 << CAP_NET_RAW), 0, "{status}");

        agent_pid
    }

    /// 2b. The other clients, zero-config through `warden exec` (system store for curl and Go, the
    /// NODE_EXTRA_CA_CERTS exec sets for Node); the test sets no CA variable.
    fn other_clients_are_intercepted(&self, node: &NodeSdk, go: &Path) {
        let clients: [(&str, Vec<String>); 3] = [
            (
                "curl",
                [
                    "curl",
                    "-sS",
                    "--max-time",
                    "20",
                    "https://api.openai.com/v1/models",
                ]
                .map(String::from)
                .to_vec(),
            ),
            ("the Go client", vec![go.to_string_lossy().into_owned()]),
            (
                "the Node SDK",
                vec![
                    "env".into(),
                    format!("NODE_PATH={}", node.modules.display()),
                    node.node.to_string_lossy().into_owned(),
                    "-e".into(),
                    sdk_scripts::NODE_CHAT.into(),
                ],
            ),
        ];
        for (what, command) in clients {
            let before = self.upstream.requests().len();
            let mut argv = vec!["warden".to_string(), "exec".into(), "--".into()];
            argv.extend(command);
            let out = self.container.exec(&argv);
            assert_ok(&out, what);
            let expected = if what == "curl" {
                MODELS[0]
            } else {
                self.upstream.reply()
            };
            assert!(
                out.stdout.contains(expected),
                "{what} got the upstream's answer\n{out}"
            );
            assert_eq!(
                self.upstream.requests().len(),
                before + 1,
                "{what}: one request upstream"
            );
            let pid = (what != "curl").then(|| out.last_line_json()["pid"].as_u64());
            wait_for_session(&self.container, what, |s| {
                let in_exec = s["cgroup"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("/warden/exec-"));
                let same = match pid {
                    Some(pid) => s["pid"].as_u64() == pid,
                    None => s["exe"] == "/usr/bin/curl",
                };
                in_exec && same && s["status"] == 200
            });
        }
    }

    /// 3. `systemctl reload` applies a policy the directory watch cannot see: the symlink is
    ///    swapped, the next call still passes, and after the reload it is refused.
    fn reload_applies_a_policy(&self) {
        let upstream_before_reload = self.upstream.requests().len();

        self.container.sh(&format!(
            "ln -sfn {POLICIES_SECOND} {POLICIES}.new && mv -T {POLICIES}.new {POLICIES}"
        ));
        let still_allowed = agent_call(&self.container, "before-reload");
        assert_intercepted_reply(&still_allowed, &self.upstream);
        self.container.sh("systemctl reload warden");
        let reloaded = wait::until("the policy reload", Duration::from_secs(20), || {
            warden_log(&self.container).into_iter().find(|l| {
                l.is("policy reloaded") && l.str("rules").is_some_and(|r| r.contains(DENY_RULE))
            })
        });
        assert_eq!(reloaded.str("trigger"), Some("SIGHUP"), "{reloaded}");
        let denied = agent_call(&self.container, "denied");
        assert_eq!(denied["error"], "PermissionDeniedError", "{denied}");
        assert_eq!(denied["status"], 403, "{denied}");
        assert!(
            denied["message"]
                .as_str()
                .is_some_and(|m| m.contains(DENY_MESSAGE)),
            "refused by the reloaded rule: {denied}"
        );
        assert_eq!(
            self.upstream.requests().len(),
            upstream_before_reload + 1,
            "the denied call reached the upstream"
        );
        let refused = wait_for_session(&self.container, "the denied call", |s| s["status"] == 403);
        assert_eq!(refused["unit"], AGENT_UNIT, "{refused}");
        // Back to the first version for the next steps (again through a reload: the watch is still
        // on the first directory).
        self.container.sh(&format!(
            "ln -sfn {POLICIES_FIRST} {POLICIES}.new && mv -T {POLICIES}.new {POLICIES} && \
         systemctl reload warden"
        ));
        wait::until(
            "the deny rule to be lifted",
            Duration::from_secs(20),
            || {
                let reloads: Vec<_> = warden_log(&self.container)
                    .into_iter()
                    .filter(|l| l.is("policy reloaded"))
                    .collect();
                (reloads.len() == 2
                    && reloads[1]
                        .str("rules")
                        .is_some_and(|r| !r.contains(DENY_RULE)))
                .then_some(())
            },
        );
    }

    /// 4. `systemctl kill -s KILL warden`: the agent's next call fails, nothing reaches the upstream.
    fn a_killed_warden_fails_closed(&self, agent_pid: u64) {
        let upstream_before_kill = self.upstream.requests().len();
        let killed_pid = unit_property(&self.container, "warden.service", "MainPID");
        self.container.sh("systemctl kill -s KILL warden");
        // kill(2) returns before the process is gone: until then its listener still accepts, and
        // a connect made in that moment is reset rather than refused. Wait for it to be gone.
        wait::until(
            "the killed warden to be gone",
            Duration::from_secs(10),
            || {
                let gone = !self
                    .container
                    .exec(["test", "-e", &format!("/proc/{killed_pid}")])
                    .status
                    .success();
                gone.then_some(())
            },
        );
        // Within RestartSec=1s: the call finds the pinned programs and no listener.
        let down = agent_call(&self.container, "while-killed");
        let warden_down = unit_state(&self.container, "warden.service");
        assert_eq!(
            down["ok"], false,
            "a call while Warden was killed: {down}\n{warden_down}"
        );
        assert_eq!(down["error"], "APIConnectionError", "{down}");
        assert!(
            down["causes"].to_string().contains("refused"),
            "the connect is refused: {down}"
        );
        // The agent keeps running while Warden is down (the drop-in only Wants= it).
        assert_eq!(
            down["pid"].as_u64(),
            Some(agent_pid),
            "the agent still runs: {down}\n{}",
            unit_state(&self.container, AGENT_UNIT)
        );
        assert_eq!(
            self.upstream.requests().len(),
            upstream_before_kill,
            "a call made while Warden was down reached the upstream"
        );
    }

    /// 5. Restart=always brings interception back, re-adopting the pins: one set of programs.
    fn restart_readopts_one_set_of_programs(&self, agent_pid: u64) {
        let upstream_before = self.upstream.requests().len();
        let restarted = wait::within(RESTART_TIMEOUT, || {
            warden_log(&self.container)
                .into_iter()
                .filter(|l| l.is("warden ready"))
                .nth(1)
        })
        .unwrap_or_else(|| {
            panic!(
                "Warden did not come back\n{}",
                self.container.journal("warden.service")
            )
        });
        assert_eq!(restarted.bool("readopted_pins"), Some(true), "{restarted}");
        wait::until("warden to be active again", RESTART_TIMEOUT, || {
            let active = self.container.exec(["systemctl", "is-active", "warden"]);
            (active.stdout.trim() == "active").then_some(())
        });
        let second_run = status(&self.container);
        assert!(second_run.attachment.adopted, "{second_run:?}");
        let mut attached = attached_at_container_root(&self.container);
        attached.sort_unstable();
        let mut expected = second_run.program_ids();
        expected.sort_unstable();
        assert_eq!(
            attached, expected,
            "exactly one set of programs is attached"
        );
        // The agent is not restarted with Warden: the same process is intercepted again, with
        // no new cgroup to select (systemd 252 would restart it through a Requires=).
        let back = agent_call(&self.container, "after-restart");
        assert_intercepted_reply(&back, &self.upstream);
        assert_eq!(self.upstream.requests().len(), upstream_before + 1);
        let back_pid = back["pid"].as_u64();
        assert_eq!(
            back_pid,
            Some(agent_pid),
            "the agent was restarted with Warden: {back}"
        );
        wait_for_session(&self.container, "the call after the restart", |s| {
            s["pid"].as_u64() == back_pid && s["unit"] == AGENT_UNIT && s["status"] == 200
        });
    }

    /// The drop-in's ExecStartPre= check: with Warden stopped, the agent does not start (started
    /// without pulling Warden in, as an administrator's `--job-mode=ignore-dependencies` would).
    fn the_agent_does_not_start_without_warden(&self) {
        self.container.sh("systemctl stop warden");
        let start = self.container.exec([
            "systemctl",
            "restart",
            "--job-mode=ignore-dependencies",
            AGENT_UNIT,
        ]);
        assert!(
            !start.status.success(),
            "the agent started while Warden was stopped\n{}",
            unit_state(&self.container, AGENT_UNIT)
        );
        assert_eq!(
            unit_property(&self.container, AGENT_UNIT, "ActiveState"),
            "failed"
        );
        // A normal start pulls Warden in first, then the agent starts.
        self.container.sh(&format!("systemctl start {AGENT_UNIT}"));
        assert_eq!(
            unit_property(&self.container, "warden.service", "ActiveState"),
            "active"
        );
        assert_eq!(
            unit_property(&self.container, AGENT_UNIT, "ActiveState"),
            "active"
        );
    }

    /// 6. `warden uninstall` leaves no unit, no pin, no trust entry.
    fn uninstall_leaves_nothing(&self) {
        let ca_pem = self.container.sh(&format!("cat {CA_PEM}")).stdout;
        let bundle = self.container.sh(&format!("cat {BUNDLE}")).stdout;
        assert!(
            bundle.contains(&pem_body(&ca_pem)),
            "install put the CA in {BUNDLE}"
        );
        let uninstalled = self
            .container
            .exec_with_timeout(["warden", "uninstall"], RESTART_TIMEOUT);
        assert_ok(&uninstalled, "warden uninstall");
        for path in [UNIT_FILE, DROPIN_DIR, PIN_DIR, ANCHOR] {
            let exists = self.container.exec(["test", "-e", path]).status.success();
            assert!(
                !exists,
                "{path} is still there after uninstall\n{uninstalled}"
            );
        }
        assert_eq!(
            unit_property(&self.container, "warden.service", "LoadState"),
            "not-found",
            "{uninstalled}"
        );
        let wants = unit_property(&self.container, AGENT_UNIT, "Wants");
        assert!(!wants.contains("warden.service"), "Wants={wants}");
        assert_eq!(
            attached_at_container_root(&self.container),
            Vec::<u32>::new(),
            "programs still attached after uninstall"
        );
        let bundle = self.container.sh(&format!("cat {BUNDLE}")).stdout;
        assert!(
            !bundle.contains(&pem_body(&ca_pem)),
            "Warden's CA is still in {BUNDLE}"
        );
    }
}
