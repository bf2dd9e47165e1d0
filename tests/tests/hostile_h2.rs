//! Hostile clients, HTTP/2 abuse: rapid reset (CVE-2023-44487) and a CONTINUATION flood, from a
//! raw h2 client over TLS trusting Warden's CA. Warden ends the abusive connection, nothing of it
//! reaches the upstream, and a well-behaved client is served throughout.

use warden_tests::audit::{connections, db_path};
use warden_tests::hostile;
use warden_tests::hostile_fixture::{api_address, assert_served, start, GENEROUS};
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
    // Closed for the resets: by h2's bound on resets before accept (GOAWAY ENHANCE_YOUR_CALM,
    // "excessive load generating behavior"), or by Warden's on requests abandoned after it.
    let db = db_path(&fx.daemon);
    let record = wait::within(GENEROUS, || connections::records_of(&db, report.pid).pop())
        .unwrap_or_else(|| {
            panic!(
                "the attacker's connection record:\n{}",
                fx.daemon.log_text()
            )
        });
    eprintln!("rapid reset record: {record:#}");
    let reason = record["reason"].as_str().unwrap_or_default().to_lowercase();
    assert!(
        reason.contains("excessive load generating behavior")
            || reason.contains("stream reset flood"),
        "{record:#}"
    );
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
