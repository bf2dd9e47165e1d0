//! sd_notify, against a NOTIFY_SOCKET the test owns (as systemd owns it for a `Type=notify` unit):
//! READY=1 once the daemon serves, a status line, watchdog pings when WATCHDOG_USEC is set,
//! RELOADING=1 then READY=1 around a SIGHUP reload, and STOPPING=1 while it drains.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use warden_tests::{require_kernel, Daemon};

/// The receiving end of NOTIFY_SOCKET; every datagram the daemon sent, in order.
struct NotifySocket {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    socket: UnixDatagram,
    received: Vec<String>,
}

impl NotifySocket {
    fn bind() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("binding the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        Self {
            _dir: dir,
            path,
            socket,
            received: Vec::new(),
        }
    }

    /// Receives until a datagram for which `matches` holds has arrived (returns it), or panics
    /// with everything received after `timeout`.
    fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        if let Some(found) = self.received.iter().find(|m| matches(m)) {
            return found.clone();
        }
        let deadline = Instant::now() + timeout;
        let mut buffer = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buffer) {
                let message = String::from_utf8_lossy(&buffer[..n]).into_owned();
                self.received.push(message.clone());
                if matches(&message) {
                    return message;
                }
            }
        }
        panic!(
            "no notification for {what} after {timeout:?}; received {:?}",
            self.received
        );
    }

    fn count(&self, line: &str) -> usize {
        self.received
            .iter()
            .filter(|m| m.lines().any(|l| l == line))
            .count()
    }
}

fn has_line(message: &str, line: &str) -> bool {
    message.lines().any(|l| l == line)
}

#[test]
fn the_daemon_tells_systemd_when_it_is_ready_reloading_alive_and_stopping() {
    let Some(e2e) = require_kernel() else { return };
    let mut notify = NotifySocket::bind();
    let mut daemon = Daemon::builder(&e2e)
        .notify_socket(&notify.path)
        .watchdog_usec(400_000)
        .policy_file(
            "deny.toml",
            "[[rule]]\nname = \"no-gpt-3\"\naction = \"deny\"\nmessage = \"no\"\n[rule.match]\nmodel_in = [\"gpt-3*\"]\n",
        )
        .start();

    let ready = notify.wait_for("READY=1", Duration::from_secs(10), |m| {
        has_line(m, "READY=1")
    });
    assert!(
        ready
            .lines()
            .any(|l| l.starts_with("STATUS=fail-closed; 0 cgroups selected; 1 rules")),
        "{ready:?}"
    );
    // READY=1 comes after everything it promises: the programs are attached and the daemon serves.
    assert!(daemon.logs().find(|l| l.is("warden ready")).is_some());
    assert_eq!(daemon.status().programs.len(), 7);
    assert_eq!(notify.count("READY=1"), 1, "{:?}", notify.received);

    // WatchdogSec: pings at half the interval.
    notify.wait_for("a watchdog ping", Duration::from_secs(5), |m| {
        has_line(m, "WATCHDOG=1")
    });
    notify.received.clear();
    notify.wait_for("a second watchdog ping", Duration::from_secs(5), |m| {
        has_line(m, "WATCHDOG=1")
    });

    // systemctl reload: SIGHUP, RELOADING=1 (with the time systemd ≥ 253 wants), then READY=1.
    notify.received.clear();
    daemon.signal(libc::SIGHUP);
    let reloading = notify.wait_for("RELOADING=1", Duration::from_secs(10), |m| {
        has_line(m, "RELOADING=1")
    });
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    let reloaded = notify.wait_for("READY=1 after the reload", Duration::from_secs(10), |m| {
        has_line(m, "READY=1")
    });
    assert!(
        reloaded.contains("STATUS=policy reloaded: 1 rules"),
        "{reloaded:?}"
    );
    let order: Vec<&String> = notify
        .received
        .iter()
        .filter(|m| has_line(m, "RELOADING=1") || has_line(m, "READY=1"))
        .collect();
    assert!(has_line(order[0], "RELOADING=1"), "{order:?}");

    // systemctl stop: STOPPING=1 while draining.
    daemon.signal(libc::SIGTERM);
    let stopping = notify.wait_for("STOPPING=1", Duration::from_secs(10), |m| {
        has_line(m, "STOPPING=1")
    });
    assert!(stopping.contains("STATUS=stopping"), "{stopping:?}");
    assert_eq!(daemon.stop(libc::SIGTERM).code(), Some(0));
}
