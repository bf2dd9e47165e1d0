//! Hostile clients, HTTP/2 abuse: rapid reset (CVE-2023-44487) and a CONTINUATION flood, from a
//! raw h2 client over TLS trusting Warden's CA. Warden ends the abusive connection, nothing of it
//! reaches the upstream, and a well-behaved client is served throughout.

use warden_tests::hostile;
use warden_tests::hostile_fixture::{api_address, assert_served, metric, start, GENEROUS};
use warden_tests::{require_kernel, wait};

#[test]
fn http2_rapid_reset_ends_the_connection_and_reaches_no_upstream() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "rapid-reset", "[limits]\n");
    const RESETS: usize = 5_000;

    let attacker = fx
        .client(hostile::h2_rapid_reset(
            api_address(&fx),
            "api.openai.com",
            &fx.daemon.ca_pem(),
            RESETS,
            150,
        ))
        .timeout(GENEROUS)
        .spawn();
    assert_served(&mut fx);
    let report = hostile::report(&attacker.wait());
    eprintln!("rapid reset: {report:?}");

    assert_ne!(
        report.end, "timeout",
        "Warden ended the connection: {report:?}"
    );
    assert!(
        report.sent < RESETS,
        "cut off before the flood ended: {report:?}"
    );
    let closed = wait::within(GENEROUS, || {
        let by_warden = metric(
            &fx,
            "warden_http2_connections_closed_total",
            &[("reason", "client_resets")],
        );
        (by_warden == 1.0 || report.end.contains("ENHANCE_YOUR_CALM")).then_some(())
    });
    assert!(closed.is_some(), "closed for the resets: {report:?}");
    // The good calls only: every reset request was abandoned before its body was read.
    assert_eq!(fx.upstream.requests().len(), 1);
    assert_served(&mut fx);
}

#[test]
fn a_continuation_flood_is_cut_off() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "continuation", "[limits]\n");
    // 2,000 frames of 16 KiB: 32 MiB of one header block, 500 times the header list bound.
    const FRAMES: usize = 2_000;

    let attacker = fx
        .client(hostile::h2_continuation(
            api_address(&fx),
            "api.openai.com",
            &fx.daemon.ca_pem(),
            FRAMES,
            150,
        ))
        .timeout(GENEROUS)
        .spawn();
    assert_served(&mut fx);
    let report = hostile::report(&attacker.wait());
    eprintln!("continuation flood: {report:?}");

    assert!(
        ["eof", "reset"].contains(&report.end.as_str()),
        "{report:?}"
    );
    assert!(
        report.sent < FRAMES,
        "cut off before the flood ended: {report:?}"
    );
    assert_eq!(fx.upstream.requests().len(), 1);
    assert_served(&mut fx);
}
