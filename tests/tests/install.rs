//! `warden install --root` and `warden uninstall --root` with the built binary: every file with its
//! mode and owner, the unit's hardening as systemd itself rates and verifies it, idempotence, dry
//! runs, trust-store layouts, drop-ins.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use warden_tests::image_root::{hash_file, DEBIAN_ANCHORS, RHEL_ANCHORS};
use warden_tests::{require_root_and_tools, E2e, ImageRoot};

/// The exposure `systemd-analyze security` may give the unit at most (issue 11).
const MAX_EXPOSURE: f64 = 3.0;
const DEBIAN_ANCHOR: &str = "/usr/local/share/ca-certificates/warden-ca.crt";
const SELECTING_TWO_UNITS: &str = "[select]\nunits = [\"agent.service\", \"batch.slice\"]\n";

fn e2e() -> Option<E2e> {
    require_root_and_tools(&["systemd-analyze", "unshare", "mount"])
}

/// Panics unless `live` exists in `root` as root:root with `mode` (permission bits).
fn assert_owned_by_root_with_mode(root: &ImageRoot, live: &str, mode: u32) {
    let meta = fs::symlink_metadata(root.join(live)).unwrap_or_else(|e| panic!("{live}: {e}"));
    assert_eq!(meta.mode() & 0o7777, mode, "{live}: mode {:o}", meta.mode());
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "{live}: owner");
}

fn lines_with(out: &warden_tests::ClientOutput, verb: &str) -> Vec<String> {
    out.stdout
        .lines()
        .filter(|line| line.starts_with(verb))
        .map(str::to_string)
        .collect()
}

#[test]
fn install_into_a_root_writes_every_file_with_its_mode_and_owner() {
    let Some(e2e) = e2e() else { return };
    let live_unit_existed = Path::new("/etc/systemd/system/warden.service").exists();
    let root = ImageRoot::debian(&e2e);
    root.write_config(SELECTING_TWO_UNITS);

    let out = root.install(&[]);

    assert_owned_by_root_with_mode(&root, "/usr/local/bin/warden", 0o755);
    assert_eq!(
        hash_file(&root.join("/usr/local/bin/warden")),
        hash_file(&e2e.warden_bin),
        "the installed binary is not the running one"
    );
    assert_owned_by_root_with_mode(&root, "/etc/warden", 0o755);
    assert_owned_by_root_with_mode(&root, "/etc/warden/warden.toml", 0o644);
    assert_eq!(root.read("/etc/warden/warden.toml"), SELECTING_TWO_UNITS);
    assert_owned_by_root_with_mode(&root, "/etc/warden/policies", 0o755);
    assert_owned_by_root_with_mode(&root, "/etc/warden/policies/starter.toml", 0o644);
    assert_owned_by_root_with_mode(&root, "/var/lib/warden", 0o700);
    assert_owned_by_root_with_mode(&root, "/var/lib/warden/ca", 0o700);
    assert_owned_by_root_with_mode(&root, "/var/lib/warden/ca/ca.key", 0o600);
    assert_owned_by_root_with_mode(&root, "/var/lib/warden/ca/ca.pem", 0o644);
    assert_owned_by_root_with_mode(&root, DEBIAN_ANCHOR, 0o644);
    assert_eq!(
        root.read(DEBIAN_ANCHOR),
        root.read("/var/lib/warden/ca/ca.pem"),
        "the trust store holds another certificate than the CA"
    );

    // The unit and drop-ins name the live paths, never the image root.
    assert_owned_by_root_with_mode(&root, "/etc/systemd/system/warden.service", 0o644);
    let unit = root.read("/etc/systemd/system/warden.service");
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/warden run",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        "StateDirectory=warden",
        "ReadWritePaths=/sys/fs/bpf",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing:\n{unit}");
    }
    assert!(!unit.contains(&root.path().display().to_string()), "{unit}");

    let service = "/etc/systemd/system/agent.service.d/warden.conf";
    assert_owned_by_root_with_mode(&root, service, 0o644);
    let service = root.read(service);
    for line in [
        "Wants=warden.service",
        "After=warden.service",
        "ExecStartPre=+/usr/local/bin/warden status --quiet",
        &format!("Environment=NODE_EXTRA_CA_CERTS={DEBIAN_ANCHOR}"),
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "{line} missing:\n{service}"
        );
    }
    assert!(
        service.starts_with("# Written by `warden install`"),
        "{service}"
    );
    let slice = root.read("/etc/systemd/system/batch.slice.d/warden.conf");
    assert!(
        slice.lines().any(|l| l == "Wants=warden.service"),
        "{slice}"
    );
    assert!(
        !slice.contains("Environment="),
        "a slice runs no process: {slice}"
    );

    // The starter policy loads with the daemon's own policy loader.
    root.warden(&[
        "policy",
        "check",
        &root.join("/etc/warden/policies").display().to_string(),
    ])
    .assert_success();

    // Nothing ran against the live system; the output says what the image must run.
    for deferred in ["update-ca-certificates", "systemctl enable warden.service"] {
        assert!(
            lines_with(&out, "not run")
                .iter()
                .any(|l| l.contains(deferred)),
            "{deferred} not named\n{out}"
        );
    }
    assert_eq!(
        Path::new("/etc/systemd/system/warden.service").exists(),
        live_unit_existed,
        "the live system's unit changed"
    );
}

#[test]
fn install_writes_a_commented_config_that_loads_as_the_defaults_and_never_overwrites_it() {
    let Some(e2e) = e2e() else { return };
    let root = ImageRoot::debian(&e2e);
    root.install(&[]);

    let config = root.read("/etc/warden/warden.toml");
    let settings: Vec<&str> = config
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        settings.iter().all(|l| l.starts_with('[')),
        "only table headers are uncommented: {settings:?}"
    );
    assert!(
        config.contains("#state_dir = \"/var/lib/warden\""),
        "{config}"
    );
    let path = root.join("/etc/warden/warden.toml").display().to_string();
    // The config loads and its defaults apply: `ca path` names the CA under the default
    // state_dir (and fails, as it should, while no daemon has created it there).
    let ca = root.warden(&["ca", "path", "--config", &path]);
    let said = if ca.status.success() {
        &ca.stdout
    } else {
        &ca.stderr
    };
    assert!(said.contains("/var/lib/warden/ca/ca.pem"), "{ca}");
    assert!(
        !ca.stderr.contains(&format!("{path}:")),
        "a config error: {ca}"
    );

    let edited = config.replace("#retention_days = 90", "retention_days = 30");
    assert_ne!(edited, config);
    fs::write(root.join("/etc/warden/warden.toml"), &edited).unwrap();
    let out = root.install(&[]);
    assert_eq!(root.read("/etc/warden/warden.toml"), edited);
    assert!(
        out.stdout.contains("warden.toml (exists: kept as it is)"),
        "{out}"
    );
}

#[test]
fn the_installed_unit_is_rated_at_most_3_and_verifies_clean() {
    let Some(e2e) = e2e() else { return };
    let root = ImageRoot::debian(&e2e);
    root.write_config(SELECTING_TWO_UNITS);
    root.install(&[]);
    let (score, security) = root.unit_exposure();
    eprintln!("systemd-analyze security --offline=yes: {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}\n{security}"
    );

    // The selected units exist in the image, so verify loads them with Warden's drop-ins.
    let system = root.join("/etc/systemd/system");
    fs::write(
        system.join("agent.service"),
        "[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    fs::write(system.join("batch.slice"), "[Slice]\n").unwrap();
    root.assert_unit_verifies_clean(&[
        "/etc/systemd/system/agent.service",
        "/etc/systemd/system/batch.slice",
    ]);
}

#[test]
fn a_second_install_changes_nothing_and_leaves_every_file_identical() {
    let Some(e2e) = e2e() else { return };
    let root = ImageRoot::debian(&e2e);
    root.write_config(SELECTING_TWO_UNITS);
    root.install(&[]);
    let before = root.snapshot();

    let out = root.install(&[]);

    assert_eq!(
        root.snapshot(),
        before,
        "the second install changed a file\n{out}"
    );
    for verb in ["created", "updated", "removed", "ran"] {
        assert_eq!(lines_with(&out, verb), Vec::<String>::new(), "{out}");
    }
    assert!(
        out.stdout
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("nothing changed"),
        "{out}"
    );
}

#[test]
fn a_dry_run_install_or_uninstall_plans_and_changes_nothing() {
    let Some(e2e) = e2e() else { return };
    let root = ImageRoot::debian(&e2e);
    let empty = root.snapshot();
    let plan = root.install(&["--dry-run"]);
    assert_eq!(root.snapshot(), empty, "a dry run wrote\n{plan}");
    let planned = lines_with(&plan, "would create").join("\n");
    for path in [
        "/usr/local/bin/warden",
        "/etc/warden/warden.toml",
        "warden.service",
        DEBIAN_ANCHOR,
    ] {
        assert!(planned.contains(path), "{path} not planned\n{plan}");
    }

    root.write_config(SELECTING_TWO_UNITS);
    root.install(&[]);
    root.write_config("[select]\nunits = [\"agent.service\"]\n");
    let installed = root.snapshot();
    let plan = root.install(&["--dry-run"]);
    assert!(
        lines_with(&plan, "would remove")
            .iter()
            .any(|l| l.contains("batch.slice.d/warden.conf")),
        "{plan}"
    );
    let plan_uninstall = root.uninstall(&["--dry-run", "--purge"]);
    assert!(
        !lines_with(&plan_uninstall, "would remove").is_empty(),
        "{plan_uninstall}"
    );
    assert_eq!(root.snapshot(), installed, "a dry run changed the image");
}

#[test]
fn install_uses_the_rhel_trust_store_and_refuses_a_root_without_one() {
    let Some(e2e) = e2e() else { return };
    let rhel = ImageRoot::rhel(&e2e);
    rhel.write_config(SELECTING_TWO_UNITS);
    let out = rhel.install(&[]);
    let anchor = format!("{RHEL_ANCHORS}/warden-ca.pem");
    assert_eq!(rhel.read(&anchor), rhel.read("/var/lib/warden/ca/ca.pem"));
    assert!(!rhel.join(DEBIAN_ANCHORS).exists());
    assert!(out.stdout.contains("update-ca-trust extract"), "{out}");
    let dropin = rhel.read("/etc/systemd/system/agent.service.d/warden.conf");
    assert!(
        dropin.contains(&format!("NODE_EXTRA_CA_CERTS={anchor}\n")),
        "{dropin}"
    );

    let bare = ImageRoot::empty(&e2e);
    let out = bare.warden(&["install"]);
    assert!(
        !out.status.success(),
        "installed without a trust store\n{out}"
    );
    assert!(
        out.stderr.contains(DEBIAN_ANCHORS) && out.stderr.contains(RHEL_ANCHORS),
        "the error does not name both layouts\n{out}"
    );
    assert!(bare.snapshot().is_empty(), "a refused install wrote files");
}

#[test]
fn reinstall_removes_the_drop_in_of_a_unit_no_longer_selected() {
    let Some(e2e) = e2e() else { return };
    let root = ImageRoot::debian(&e2e);
    root.write_config(SELECTING_TWO_UNITS);
    root.install(&[]);
    assert!(root
        .join("/etc/systemd/system/batch.slice.d/warden.conf")
        .exists());

    root.write_config("[select]\nunits = [\"agent.service\"]\n");
    let out = root.install(&[]);
    assert!(
        lines_with(&out, "removed")
            .iter()
            .any(|l| l.contains("batch.slice.d/warden.conf")),
        "{out}"
    );
    assert!(!root.join("/etc/systemd/system/batch.slice.d").exists());
    assert!(root
        .join("/etc/systemd/system/agent.service.d/warden.conf")
        .exists());
}

#[test]
fn uninstall_from_a_root_removes_what_install_wrote_and_keeps_config_and_state_unless_purged() {
    let Some(e2e) = e2e() else { return };
    let root = ImageRoot::debian(&e2e);
    root.write_config(SELECTING_TWO_UNITS);
    root.install(&[]);
    let pins = root.join("/sys/fs/bpf/warden/links");
    fs::create_dir_all(&pins).unwrap();
    fs::write(pins.join("connect4"), "").unwrap();

    root.uninstall(&[]);
    for gone in [
        "/etc/systemd/system/warden.service",
        "/etc/systemd/system/agent.service.d",
        "/etc/systemd/system/batch.slice.d",
        DEBIAN_ANCHOR,
        "/usr/local/bin/warden",
        "/sys/fs/bpf/warden",
    ] {
        assert!(!root.join(gone).exists(), "{gone} is left");
    }
    for kept in [
        "/etc/warden/warden.toml",
        "/etc/warden/policies/starter.toml",
        "/var/lib/warden/ca/ca.key",
    ] {
        assert!(root.join(kept).exists(), "{kept} was removed");
    }
    let again = root.uninstall(&[]);
    assert!(
        again
            .stdout
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("nothing changed"),
        "{again}"
    );

    root.uninstall(&["--purge"]);
    let left: Vec<_> = root
        .snapshot()
        .into_iter()
        .filter(|(_, entry)| entry.contents.is_some())
        .collect();
    assert_eq!(left, Vec::new(), "files left after uninstall --purge");
    assert!(!root.join("/etc/warden").exists());
    assert!(!root.join("/var/lib/warden").exists());
}
