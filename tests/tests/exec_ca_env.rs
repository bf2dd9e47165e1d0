//! `warden exec` hands Node.js (which trusts only its bundled roots) Warden's CA through
//! `NODE_EXTRA_CA_CERTS`, unless the user set it: the installed anchor when it is the daemon's CA,
//! else the CA certificate in the state directory.

use warden_tests::{require_kernel, Client, Daemon};

#[test]
fn exec_hands_node_the_state_ca_when_none_is_installed() {
    let Some(e2e) = require_kernel() else { return };
    let daemon = Daemon::builder(&e2e).start();
    let out = Client::new(["sh", "-c", "echo \"$NODE_EXTRA_CA_CERTS\""])
        .launched_by(daemon.exec_launcher())
        .run();
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        daemon.ca_pem().display().to_string(),
        "{out}"
    );
}

#[test]
fn exec_keeps_the_node_extra_ca_certs_a_user_set_over_the_installed_default() {
    let Some(e2e) = require_kernel() else { return };
    let daemon = Daemon::builder(&e2e).start();
    let out = Client::new(["sh", "-c", "echo \"$NODE_EXTRA_CA_CERTS\""])
        .env("NODE_EXTRA_CA_CERTS", "/opt/corp/extra-ca.pem")
        .launched_by(daemon.exec_launcher())
        .run();
    out.assert_success();
    assert_eq!(out.stdout.trim(), "/opt/corp/extra-ca.pem", "{out}");
}
