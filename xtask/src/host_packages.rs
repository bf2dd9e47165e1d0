//! Installs missing Debian packages the tests rely on (curl, python3-venv, iproute2, util-linux,
//! sqlite3, bpftool, prometheus for promtool, systemd, nodejs and npm, golang, systemd-container,
//! chromium and chromium-driver, rsyslog) with apt-get.

use std::process::Command;

use anyhow::{bail, Result};

use crate::process::{find_on_path, is_root, run_checked, succeeds};

/// A host tool the tests need, how to probe it and which Debian packages provide it.
struct Requirement {
    what: &'static str,
    probe: &'static [&'static str],
    packages: &'static [&'static str],
}

const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        what: "curl",
        probe: &["curl", "--version"],
        packages: &["curl", "ca-certificates"],
    },
    Requirement {
        what: "python3",
        probe: &["python3", "--version"],
        packages: &["python3"],
    },
    // Debian splits ensurepip out of python3, so `python3 -m venv` fails until python3-venv is in.
    Requirement {
        what: "python3 -m venv",
        probe: &["python3", "-c", "import ensurepip, venv"],
        packages: &["python3-venv"],
    },
    // `ip netns` makes the network namespaces of the netns tests.
    Requirement {
        what: "ip",
        probe: &["ip", "-V"],
        packages: &["iproute2"],
    },
    // The audit tests tamper with the store and check its integrity like an operator would.
    Requirement {
        what: "sqlite3",
        probe: &["sqlite3", "-version"],
        packages: &["sqlite3"],
    },
    // The fail-closed tests list the programs attached to a cgroup as an operator would.
    Requirement {
        what: "bpftool",
        probe: &["bpftool", "version"],
        packages: &["bpftool"],
    },
    // unshare (private mount namespaces for the hosts file), setpriv (non-root clients) and nsenter
    // (commands inside the nspawn container).
    Requirement {
        what: "unshare, setpriv, nsenter",
        probe: &["setpriv", "--version"],
        packages: &["util-linux"],
    },
    // The metrics test validates Warden's /metrics output with `promtool check metrics`.
    Requirement {
        what: "promtool",
        probe: &["promtool", "--version"],
        packages: &["prometheus"],
    },
    // The install tests rate and check the unit `warden install` writes.
    Requirement {
        what: "systemd-analyze",
        probe: &["systemd-analyze", "--version"],
        packages: &["systemd"],
    },
    // A test runs the daemon under the unit's system call filter, built with libseccomp.
    Requirement {
        what: "python3 seccomp module",
        probe: &["/usr/bin/python3", "-c", "import seccomp"],
        packages: &["python3-seccomp"],
    },
    // The official `openai` npm package runs on node; npm installs it into target/e2e-node.
    // A node that brings its own npm (NodeSource's) passes both probes and is left alone.
    Requirement {
        what: "node",
        probe: &["node", "--version"],
        packages: &["nodejs"],
    },
    Requirement {
        what: "npm",
        probe: &["npm", "--version"],
        packages: &["npm"],
    },
    // Debian's go builds the Go client (tests/clients/go) the trust tests run.
    Requirement {
        what: "go",
        probe: &["go", "version"],
        packages: &["golang"],
    },
    // systemd-nspawn boots the host's own systemd in a container for the service tests.
    Requirement {
        what: "systemd-nspawn",
        probe: &["systemd-nspawn", "--version"],
        packages: &["systemd-container"],
    },
    // The console tests drive Debian's headless Chromium through chromedriver (WebDriver).
    Requirement {
        what: "chromium",
        probe: &["chromium", "--version"],
        packages: &["chromium"],
    },
    Requirement {
        what: "chromedriver",
        probe: &["chromedriver", "--version"],
        packages: &["chromium-driver"],
    },
    // The syslog sink tests run their own rsyslogd (never the machine's service) as the receiver;
    // rsyslog-openssl brings its TLS driver (lmnsd_ossl) for the RFC 5425 test.
    Requirement {
        what: "rsyslogd",
        probe: &[
            "sh",
            "-c",
            "rsyslogd -v && ls /usr/lib/*/rsyslog/lmnsd_ossl.so",
        ],
        packages: &["rsyslog", "rsyslog-openssl"],
    },
];

/// Probes every requirement; installs the packages of the missing ones (one apt-get update first).
pub fn ensure() -> Result<()> {
    let missing = missing_requirements();
    if missing.is_empty() {
        let names = REQUIREMENTS.iter().map(|req| req.what).collect::<Vec<_>>();
        println!("{}: ok", names.join(", "));
        return Ok(());
    }
    let names = missing.iter().map(|req| req.what).collect::<Vec<_>>();
    let packages = missing
        .iter()
        .flat_map(|req| req.packages.iter().copied())
        .collect::<Vec<_>>();
    println!(
        "missing: {}; installing {}",
        names.join(", "),
        packages.join(" ")
    );
    apt_install(&packages)?;
    let still_missing = missing_requirements();
    if !still_missing.is_empty() {
        let names = still_missing.iter().map(|req| req.what).collect::<Vec<_>>();
        bail!(
            "still not working after apt-get install: {} (is `python3` on PATH the system one?)",
            names.join(", ")
        );
    }
    println!("{}: installed, ok", names.join(", "));
    Ok(())
}

fn missing_requirements() -> Vec<&'static Requirement> {
    REQUIREMENTS
        .iter()
        .filter(|req| match req.probe.split_first() {
            Some((program, args)) => !succeeds(Command::new(program).args(args)),
            None => false,
        })
        .collect()
}

fn apt_install(packages: &[&str]) -> Result<()> {
    if find_on_path("apt-get").is_none() {
        bail!(
            "apt-get not found; install these packages by hand: {}",
            packages.join(" ")
        );
    }
    if !is_root() {
        bail!(
            "installing {} needs root; re-run with sudo -E",
            packages.join(" ")
        );
    }
    run_checked(Command::new("apt-get").arg("update"))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
