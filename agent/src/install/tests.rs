use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use super::*;
use crate::config::Config;

/// An image root with a Debian trust store and a fake binary to install.
struct Image {
    dir: tempfile::TempDir,
    binary: PathBuf,
}

impl Image {
    fn debian() -> Image {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("usr/local/share/ca-certificates")).unwrap();
        let binary = dir.path().join("warden-build");
        fs::write(&binary, b"\x7fELF not really").unwrap();
        Image { dir, binary }
    }

    fn root(&self) -> Root {
        Root::image(self.dir.path().to_path_buf())
    }

    fn path(&self, live: &str) -> PathBuf {
        self.root().path(Path::new(live))
    }

    fn write_config(&self, text: &str) {
        let path = self.path("/etc/warden/warden.toml");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn install(&self, dry_run: bool) -> Result<Vec<Step>, InstallError> {
        let options = InstallOptions {
            root: self.root(),
            dry_run,
            start: true,
            config: None,
            binary: self.binary.clone(),
        };
        let mut reported = Vec::new();
        let mut sink = |step: &Step| reported.push(step.clone());
        let mut steps = Steps::new(dry_run, &mut sink);
        install(&options, &mut steps)?;
        Ok(reported)
    }

    fn uninstall(&self, purge: bool) -> Vec<Step> {
        let options = UninstallOptions {
            root: self.root(),
            dry_run: false,
            purge,
            config: None,
        };
        let mut reported = Vec::new();
        let mut sink = |step: &Step| reported.push(step.clone());
        let mut steps = Steps::new(false, &mut sink);
        uninstall(&options, &mut steps).unwrap();
        reported
    }

    /// Every path under the root with its mode and contents (directories: empty).
    fn snapshot(&self) -> Vec<(PathBuf, u32, Vec<u8>, std::time::SystemTime)> {
        let mut found = Vec::new();
        let mut pending = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let contents = if meta.is_dir() {
                    pending.push(path.clone());
                    Vec::new()
                } else {
                    fs::read(&path).unwrap()
                };
                found.push((
                    path,
                    meta.permissions().mode(),
                    contents,
                    meta.modified().unwrap(),
                ));
            }
        }
        found.sort();
        found
    }
}

fn changed(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter(|step| step.outcome.changed())
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_second_install_changes_nothing_and_says_so() {
    let image = Image::debian();
    image.write_config("[select]\nunits = [\"agent.service\"]\n");
    let first = image.install(false).unwrap();
    assert!(!changed(&first).is_empty());
    let before = image.snapshot();

    let second = image.install(false).unwrap();
    assert_eq!(changed(&second), Vec::<String>::new());
    assert_eq!(
        image.snapshot(),
        before,
        "the second install touched a file"
    );
    // The commands an image must run are named every time, and are not changes.
    assert!(
        second
            .iter()
            .any(|s| s.outcome == Outcome::Deferred
                && s.subject.starts_with("update-ca-certificates"))
    );
}

#[test]
fn a_dry_run_plans_every_step_and_writes_nothing() {
    let image = Image::debian();
    let before = image.snapshot();
    let planned = image.install(true).unwrap();
    assert_eq!(image.snapshot(), before);
    let lines = changed(&planned);
    for expected in [
        "would create  ",
        "/usr/local/bin/warden",
        "/etc/warden/warden.toml",
        "/etc/warden/policies/starter.toml",
        "/var/lib/warden/ca",
        "warden-ca.crt",
        "/etc/systemd/system/warden.service",
    ] {
        assert!(
            lines.iter().any(|line| line.contains(expected)),
            "{expected} missing from {lines:#?}"
        );
    }
}

#[test]
fn an_existing_config_is_never_overwritten_and_decides_the_drop_ins() {
    let image = Image::debian();
    image.write_config(
        "state_dir = \"/srv/warden\"\n[select]\nunits = [\"a.service\", \"b.slice\"]\n",
    );
    image.install(false).unwrap();
    assert_eq!(
        fs::read_to_string(image.path("/etc/warden/warden.toml")).unwrap(),
        "state_dir = \"/srv/warden\"\n[select]\nunits = [\"a.service\", \"b.slice\"]\n"
    );
    let state = fs::metadata(image.path("/srv/warden")).unwrap();
    assert_eq!(state.permissions().mode() & 0o7777, 0o700);
    assert!(image.path("/srv/warden/ca/ca.pem").is_file());
    let unit = fs::read_to_string(image.path("/etc/systemd/system/warden.service")).unwrap();
    assert!(
        unit.contains("ReadWritePaths=/sys/fs/bpf /srv/warden\n"),
        "{unit}"
    );
    assert!(!unit.contains("StateDirectory="), "{unit}");

    let service =
        fs::read_to_string(image.path("/etc/systemd/system/a.service.d/warden.conf")).unwrap();
    assert!(service.starts_with(DROPIN_MARKER));
    assert!(service.contains(
        "Environment=NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/warden-ca.crt\n"
    ));
    // Packet and raw sockets would write frames past the connect hooks.
    assert!(
        service.contains("\nCapabilityBoundingSet=~CAP_NET_RAW\n"),
        "{service}"
    );
    let slice =
        fs::read_to_string(image.path("/etc/systemd/system/b.slice.d/warden.conf")).unwrap();
    assert!(slice.contains("Wants=warden.service\nAfter=warden.service\n"));
    assert!(!slice.contains("Requires="), "{slice}");
    assert!(!slice.contains("CapabilityBoundingSet"), "{slice}");
    assert!(
        service.contains("ExecStartPre=+/usr/local/bin/warden status --quiet\n"),
        "{service}"
    );
    assert!(
        !slice.contains("[Service]"),
        "a slice has no environment: {slice}"
    );
}

#[test]
fn drop_ins_of_units_no_longer_selected_are_removed_and_others_are_kept() {
    let image = Image::debian();
    image.write_config("[select]\nunits = [\"a.service\", \"b.service\"]\n");
    image.install(false).unwrap();
    // The administrator's own drop-in next to Warden's, and a file that only has Warden's name.
    let own = image.path("/etc/systemd/system/b.service.d/limits.conf");
    fs::write(&own, "[Service]\nMemoryMax=1G\n").unwrap();
    let foreign = image.path("/etc/systemd/system/c.service.d/warden.conf");
    fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    fs::write(&foreign, "[Service]\nEnvironment=X=1\n").unwrap();

    image.write_config("[select]\nunits = [\"a.service\"]\n");
    let steps = image.install(false).unwrap();
    assert!(
        changed(&steps)
            .iter()
            .any(|line| line.starts_with("removed") && line.contains("b.service.d/warden.conf")),
        "{steps:#?}"
    );
    assert!(!image
        .path("/etc/systemd/system/b.service.d/warden.conf")
        .exists());
    assert!(own.exists(), "the administrator's drop-in was removed");
    assert!(
        foreign.exists(),
        "a drop-in Warden did not write was removed"
    );
    assert!(image
        .path("/etc/systemd/system/a.service.d/warden.conf")
        .exists());
}

#[test]
fn a_root_without_a_trust_store_is_refused_before_anything_is_written() {
    let image = Image::debian();
    fs::remove_dir_all(image.path("/usr/local/share")).unwrap();
    let before = image.snapshot();
    let error = image.install(false).unwrap_err().to_string();
    assert!(
        error.contains("/usr/local/share/ca-certificates"),
        "{error}"
    );
    assert!(
        error.contains("/etc/pki/ca-trust/source/anchors"),
        "{error}"
    );
    assert_eq!(image.snapshot(), before);
}

#[test]
fn a_rhel_trust_store_gets_a_pem_anchor() {
    let image = Image::debian();
    fs::remove_dir_all(image.path("/usr/local/share")).unwrap();
    fs::create_dir_all(image.path("/etc/pki/ca-trust/source/anchors")).unwrap();
    image.write_config("[select]\nunits = [\"a.service\"]\n");
    let steps = image.install(false).unwrap();
    let anchor = image.path("/etc/pki/ca-trust/source/anchors/warden-ca.pem");
    assert_eq!(
        fs::read(&anchor).unwrap(),
        fs::read(image.path("/var/lib/warden/ca/ca.pem")).unwrap()
    );
    assert!(steps.iter().any(
        |s| s.outcome == Outcome::Deferred && s.subject.starts_with("update-ca-trust extract")
    ));
    let dropin =
        fs::read_to_string(image.path("/etc/systemd/system/a.service.d/warden.conf")).unwrap();
    assert!(dropin.contains("NODE_EXTRA_CA_CERTS=/etc/pki/ca-trust/source/anchors/warden-ca.pem"));
}

#[test]
fn uninstall_keeps_config_and_state_unless_purged_and_is_idempotent() {
    let image = Image::debian();
    image.write_config("[select]\nunits = [\"a.service\"]\n");
    image.install(false).unwrap();
    let pins = image.path("/sys/fs/bpf/warden/links");
    fs::create_dir_all(&pins).unwrap();

    image.uninstall(false);
    for gone in [
        "/etc/systemd/system/warden.service",
        "/etc/systemd/system/a.service.d",
        "/usr/local/share/ca-certificates/warden-ca.crt",
        "/usr/local/bin/warden",
        "/sys/fs/bpf/warden",
    ] {
        assert!(!image.path(gone).exists(), "{gone} is left");
    }
    for kept in ["/etc/warden/warden.toml", "/var/lib/warden/ca/ca.key"] {
        assert!(image.path(kept).exists(), "{kept} was removed");
    }
    let again = image.uninstall(false);
    assert_eq!(changed(&again), Vec::<String>::new());

    image.uninstall(true);
    assert!(!image.path("/etc/warden").exists());
    assert!(!image.path("/var/lib/warden").exists());
}

#[test]
fn clients_get_the_installed_anchor_only_when_it_is_this_configs_ca() {
    let image = Image::debian();
    image.install(false).unwrap();
    let config = Config::default();
    let anchor = Path::new("/usr/local/share/ca-certificates/warden-ca.crt");
    assert_eq!(trust::client_ca_file_under(&image.root(), &config), anchor);

    fs::write(image.path(anchor.to_str().unwrap()), "another CA").unwrap();
    assert_eq!(
        trust::client_ca_file_under(&image.root(), &config),
        Path::new("/var/lib/warden/ca/ca.pem")
    );
    fs::remove_file(image.path(anchor.to_str().unwrap())).unwrap();
    assert_eq!(
        trust::client_ca_file_under(&image.root(), &config),
        Path::new("/var/lib/warden/ca/ca.pem")
    );
}
