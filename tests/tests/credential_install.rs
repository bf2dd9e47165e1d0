//! `warden install` for a config with systemd credentials: the unit loads each one from
//! `/etc/warden/credentials/NAME` with `LoadCredential=`, and still verifies clean with its
//! exposure rated at most 3.0.

use std::fs;

use warden_tests::custody::systemd_credential_toml;
use warden_tests::{require_root_and_tools, ImageRoot};

/// The exposure `systemd-analyze security` may give the unit at most (issue 11).
const MAX_EXPOSURE: f64 = 3.0;

#[test]
fn install_writes_load_credential_for_each_systemd_credential_and_the_unit_stays_hardened() {
    let Some(e2e) = require_root_and_tools(&["systemd-analyze", "unshare", "mount"]) else {
        return;
    };
    let root = ImageRoot::debian(&e2e);
    let config = format!(
        "{}{}",
        systemd_credential_toml("openai-prod", &["account:billing-agent"]),
        systemd_credential_toml("openai-batch", &["unit:*.service"]),
    );
    root.write_config(&config);
    let out = root.install(&[]);
    out.assert_success();
    let text = root.read("/etc/systemd/system/warden.service");
    let service = text
        .split("[Service]")
        .nth(1)
        .and_then(|s| s.split("[Install]").next())
        .unwrap_or_default();
    for line in [
        "LoadCredential=openai-prod:/etc/warden/credentials/openai-prod",
        "LoadCredential=openai-batch:/etc/warden/credentials/openai-batch",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "{line} missing:\n{text}"
        );
    }

    let (score, security) = root.unit_exposure();
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}\n{security}"
    );

    // verify checks that ExecStart= exists: the image's /usr/local/bin is mounted over the host's
    // in a private mount namespace that dies with the command. The credentials' source files
    // exist, as an operator puts them there.
    let sources = root.join("/etc/warden/credentials");
    fs::create_dir_all(&sources).unwrap();
    for name in ["openai-prod", "openai-batch"] {
        fs::write(sources.join(name), "sk-example\n").unwrap();
    }
    root.assert_unit_verifies_clean(&[]);
}
