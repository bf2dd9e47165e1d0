//! Routes around Warden through the kernel, each shown closed: a selected cgroup's socket handed
//! to a process outside it (SCM_RIGHTS), a process moved out after creating its socket, an
//! unprivileged agent trying to leave its cgroup, and raw sockets.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use warden_tests::audit::connections::wait_for_record_of;
use warden_tests::cgroup::cgroup_of;
use warden_tests::client::RunningClient;
use warden_tests::curl::{self, http_code};
use warden_tests::handover::{self, CREATED, LISTENING};
use warden_tests::unix_user::UnixUser;
use warden_tests::{
    require_kernel, require_python, AgentFixture, CgroupGuard, Client, ClientOutput,
};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Starts `client` and waits until it prints `line` (its socket or listener is ready).
fn spawn_until_it_says(client: Client, line: &str, failure: &str) -> RunningClient {
    let mut running = client.spawn();
    assert!(
        running
            .wait_for_stdout_line(READY_TIMEOUT, |l| l == line)
            .is_some(),
        "{failure}"
    );
    running
}

/// The JSON line of a `handover` chat: a 200 with the upstream's reply, which the client (trusting
/// only Warden's CA and the system's) can only have had through Warden.
fn assert_chat_through_warden(out: &ClientOutput, fx: &AgentFixture) {
    out.assert_success();
    let answer = out.last_line_json();
    assert_eq!(answer["status"], 200, "{out}");
    assert_eq!(
        answer["body"]["choices"][0]["message"]["content"],
        fx.upstream.reply(),
        "{out}"
    );
}

fn kernel_counter(fx: &AgentFixture, name: &str) -> u64 {
    let counters = fx.daemon.status().counters;
    counters[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {counters}"))
}

#[test]
fn a_socket_from_a_selected_cgroup_connected_by_a_process_outside_it_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let fx = AgentFixture::start(&e2e, "handover-out");
    let dir = tempfile::tempdir().expect("tempdir");
    let unix_path = dir.path().join("handover.sock");

    // The taker runs in the test's own cgroup, which nothing selects.
    let taker = spawn_until_it_says(
        handover::take(&python, &unix_path, "api.openai.com")
            .hosts(&fx.hosts)
            .trust(&fx.daemon.trust_bundle()),
        LISTENING,
        "the taker never listened",
    );
    let giver = handover::give(&python, &unix_path)
        .in_cgroup(&fx.agent)
        .run();
    giver.assert_success();
    let out = taker.wait();

    assert_ne!(out.cgroup(), fx.agent.path(), "the caller ran outside");
    assert_chat_through_warden(&out, &fx);
    // Recorded: the caller's pid, the cgroup the socket came from.
    let line = fx.daemon.wait_for_exchange(out.pid());
    assert_eq!(line.str("cgroup"), Some(fx.agent.path()), "{line}");
    let record = wait_for_record_of(&fx.daemon, out.pid());
    assert_eq!(record["identity"]["cgroup"], fx.agent.path(), "{record:#}");
    assert_eq!(kernel_counter(&fx, "redirected_by_socket_tag"), 1);
    assert_eq!(fx.upstream.requests().len(), 1);
}

#[test]
fn a_udp_socket_from_a_selected_cgroup_cannot_send_to_an_intercepted_port_from_outside_it() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let fx = AgentFixture::start(&e2e, "handover-udp");
    let dir = tempfile::tempdir().expect("tempdir");
    let unix_path = dir.path().join("handover.sock");

    // The sender runs in the test's own cgroup, which nothing selects: only the socket's tag can
    // refuse its datagram (QUIC would otherwise leave uninspected).
    let sender = spawn_until_it_says(
        handover::send(&python, &unix_path, "127.0.0.1"),
        LISTENING,
        "the sender never listened",
    );
    handover::give_udp(&python, &unix_path)
        .in_cgroup(&fx.agent)
        .run()
        .assert_success();
    let out = sender.wait();
    let errno = format!("errno {}", libc::EPERM);
    assert_eq!(out.stdout.lines().last(), Some(errno.as_str()), "{out}");
    assert_eq!(kernel_counter(&fx, "udp_refused"), 1);
}

#[test]
fn a_socket_from_outside_connected_by_a_selected_process_is_intercepted() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let fx = AgentFixture::start(&e2e, "handover-in");
    let dir = tempfile::tempdir().expect("tempdir");
    let unix_path = dir.path().join("handover.sock");

    let taker = spawn_until_it_says(
        handover::take(&python, &unix_path, "api.openai.com")
            .in_cgroup(&fx.agent)
            .hosts(&fx.hosts)
            .trust(&fx.daemon.trust_bundle()),
        LISTENING,
        "the taker never listened",
    );
    // Created in the test's own cgroup, which nothing selects.
    handover::give(&python, &unix_path).run().assert_success();
    let out = taker.wait();

    assert_chat_through_warden(&out, &fx);
    let line = fx.daemon.wait_for_exchange(out.pid());
    assert_eq!(line.str("cgroup"), Some(fx.agent.path()), "{line}");
    // The caller's own cgroup selected it, not the socket.
    assert_eq!(kernel_counter(&fx, "redirected_by_socket_tag"), 0);
}

#[test]
fn a_socket_created_before_its_process_is_moved_out_of_the_selection_stays_selected() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let fx = AgentFixture::start(&e2e, "moved-out");
    let elsewhere = CgroupGuard::new("moved-out-to");
    let dir = tempfile::tempdir().expect("tempdir");
    let go = handover::fifo(dir.path(), "go");

    let client = spawn_until_it_says(
        handover::later(&python, &go, "api.openai.com")
            .in_cgroup(&fx.agent)
            .hosts(&fx.hosts)
            .trust(&fx.daemon.trust_bundle()),
        CREATED,
        "the client never created its socket",
    );
    let pid = client.wait_for_pid();
    // Root moves it out of the selection (an agent cannot: see the delegation test).
    fs::write(elsewhere.procs_file(), pid.to_string()).expect("moving the client");
    assert_eq!(cgroup_of(pid).as_deref(), Some(elsewhere.path()));
    fs::write(&go, "go").expect("releasing the client");
    let out = client.wait();

    assert_chat_through_warden(&out, &fx);
    let record = wait_for_record_of(&fx.daemon, out.pid());
    assert_eq!(record["identity"]["cgroup"], fx.agent.path(), "{record:#}");
    assert_eq!(kernel_counter(&fx, "redirected_by_socket_tag"), 1);
}

/// Run by an unprivileged user in `work`, a child of the selected (delegated) cgroup: tries to
/// move itself to the cgroup2 root ($1) and to an unselected cgroup ($2), reporting each on
/// stderr, moves to its sibling `other` ($3), then runs the chat request.
const ESCAPE_SCRIPT: &str = r#"
for target in "$1" "$2"; do
  if echo $$ > "$target" 2>/dev/null; then echo "moved:$target" >&2; else echo "refused:$target" >&2; fi
done
echo $$ > "$3" && echo "moved-within" >&2
shift 3
exec "$@"
"#;

#[test]
fn an_unprivileged_agent_cannot_leave_its_delegated_subtree_and_stays_selected_within_it() {
    let Some(e2e) = require_kernel() else { return };
    let user = UnixUser::create("wdnmv", &[]);
    let fx = AgentFixture::start(&e2e, "delegated");
    let work = fx.agent.child("work");
    let other = fx.agent.child("other");
    let unselected = CgroupGuard::new("delegated-unselected");
    // Delegate the agent's subtree to the user, as systemd does for Delegate=yes.
    for path in [
        fx.agent.dir().to_path_buf(),
        fx.agent.procs_file(),
        fx.agent.dir().join("cgroup.subtree_control"),
        fx.agent.dir().join("cgroup.threads"),
        work.dir().to_path_buf(),
        work.procs_file(),
        other.dir().to_path_buf(),
        other.procs_file(),
    ] {
        std::os::unix::fs::chown(&path, Some(user.uid), None)
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
    // The user needs to read the CA bundle; the daemon's directory is root's.
    let readable = tempfile::tempdir().expect("tempdir");
    fs::set_permissions(readable.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let bundle = readable.path().join("trust.pem");
    fs::copy(fx.daemon.trust_bundle(), &bundle).expect("copying the trust bundle");
    fs::set_permissions(&bundle, fs::Permissions::from_mode(0o644)).expect("chmod");

    let root_procs = cgroup_root_procs();
    let mut command = vec![
        "sh".to_owned(),
        "-c".into(),
        ESCAPE_SCRIPT.into(),
        "escape".into(),
        root_procs.display().to_string(),
        unselected.procs_file().display().to_string(),
        other.procs_file().display().to_string(),
    ];
    // No private hosts file (its mount needs root): curl is told where api.openai.com is.
    let mut chat = curl::chat();
    chat.extend([
        "--resolve".to_owned(),
        format!("api.openai.com:443:{}", fx.upstream.ip()),
    ]);
    command.extend(chat);
    let out = Client::new(command)
        .in_cgroup(&work)
        .launched_by(user.setpriv())
        .trust(&bundle)
        .run();

    for target in [&root_procs, &unselected.procs_file()] {
        let refused = format!("refused:{}", target.display());
        assert!(out.stderr.contains(&refused), "{refused}\n{out}");
    }
    assert!(out.stderr.contains("moved-within"), "{out}");
    assert_eq!(http_code(&out), 200, "{out}");
    let line = fx.daemon.wait_for_exchange(out.pid());
    assert_eq!(line.str("cgroup"), Some(other.path()), "{line}");
    assert_eq!(line.u64("uid"), Some(u64::from(user.uid)), "{line}");
}

fn cgroup_root_procs() -> std::path::PathBuf {
    warden_tests::cgroup::cgroup2_mount()
        .expect("cgroup2 mount")
        .join("cgroup.procs")
}

/// Python that opens a raw TCP socket of family `4` or `6` and prints `created` or `errno N`.
fn raw_socket(python: &Path, family: &str) -> Vec<String> {
    let script = r#"
import socket, sys
family = {"4": socket.AF_INET, "6": socket.AF_INET6}[sys.argv[1]]
try:
    socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
    print("created")
except OSError as error:
    print(f"errno {error.errno}")
"#;
    vec![
        python.display().to_string(),
        "-c".into(),
        script.into(),
        family.into(),
    ]
}

#[test]
fn raw_inet_sockets_are_refused_in_a_selected_cgroup_and_allowed_outside() {
    let Some(e2e) = require_kernel() else { return };
    let Some(python) = require_python() else {
        return;
    };
    let fx = AgentFixture::start(&e2e, "raw");
    for family in ["4", "6"] {
        let inside = Client::new(raw_socket(&python, family))
            .in_cgroup(&fx.agent)
            .run();
        assert_eq!(
            inside.stdout.trim(),
            format!("errno {}", libc::EPERM),
            "{inside}"
        );
        let refusal = format!(
            "refused a raw socket (family {}) to tgid {}: selected cgroups cannot write their own packets",
            if family == "4" { libc::AF_INET } else { libc::AF_INET6 },
            inside.pid()
        );
        let line = fx
            .daemon
            .wait_for_log("the kernel's raw socket refusal", READY_TIMEOUT, |l| {
                l.message() == refusal
            });
        assert_eq!(line.level(), "WARN", "{line:?}");

        let outside = Client::new(raw_socket(&python, family)).run();
        assert_eq!(outside.stdout.trim(), "created", "{outside}");
    }
    assert_eq!(kernel_counter(&fx, "raw_refused"), 2);
}
