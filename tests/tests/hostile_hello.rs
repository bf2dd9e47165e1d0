//! Hostile clients, malformed ClientHellos: truncated, with lying lengths, in an oversized record,
//! or with a huge extension. Each is refused (never tunneled, nothing answered) and recorded as
//! rejected with the reason; a well-behaved client is served throughout.

use warden_tests::audit::connections;
use warden_tests::hostile_fixture::{api_address, assert_served, start};
use warden_tests::probe::{self, TcpReport, Then};
use warden_tests::require_kernel;
use warden_tests::tls_hello::{
    client_hello, hello_in_an_oversized_record, hello_with_huge_extension,
    hello_with_lying_handshake_length, hello_with_lying_vector_length,
};

#[test]
fn malformed_client_hellos_are_refused_and_recorded() {
    let Some(e2e) = require_kernel() else { return };
    let mut fx = start(&e2e, "bad-hellos", "[limits]\nhandshake_timeout_secs = 2\n");
    let name = "api.openai.com";
    let truncated = client_hello(name)[..60].to_vec();
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "truncated, then silent",
            truncated,
            "client sent no complete ClientHello within 2s ([limits] handshake_timeout_secs)",
        ),
        (
            "a handshake length of 16 MiB",
            hello_with_lying_handshake_length(name),
            "malformed TLS ClientHello: ClientHello longer than the peek budget",
        ),
        (
            "a cipher-suite length past the end",
            hello_with_lying_vector_length(name),
            "malformed TLS ClientHello: truncated cipher suites",
        ),
        (
            "a record over 2^14 bytes",
            hello_in_an_oversized_record(name),
            "malformed TLS ClientHello: record longer than 2^14 bytes",
        ),
        (
            "a 40 KB extension over three records",
            hello_with_huge_extension(name, 40_000),
            "malformed TLS ClientHello: ClientHello longer than the peek budget",
        ),
    ];

    for (what, payload, reason) in cases {
        let target = api_address(&fx).to_string();
        let out = fx
            .client(probe::tcp(&target, &payload, Then::ReadToEnd, 60_000))
            .run();
        let report: TcpReport = probe::report(&out);
        assert!(report.connected, "{what}: {report:?}");
        assert!(report.received().is_empty(), "{what}: answered {report:?}");
        assert!(
            report.end == "eof" || report.end == "reset",
            "{what}: Warden closed it: {report:?}"
        );
        let record = connections::wait_for_record_of(&fx.daemon, report.pid);
        assert_eq!(record["disposition"], "rejected", "{what}: {record:#}");
        assert_eq!(record["reason"], reason, "{what}: {record:#}");
        assert!(fx.upstream.requests().is_empty(), "{what}: nothing went up");
    }
    assert_served(&mut fx);
}
