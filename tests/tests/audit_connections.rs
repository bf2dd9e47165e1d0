//! Every redirected connection leaves a record in the audit store when it ends: who made it, where
//! it was going, its server name, whether Warden intercepted, tunneled or rejected it (and why),
//! the bytes each way and when it started and ended; an exchange names its connection.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use warden_tests::audit::{self, connections};
use warden_tests::curl::{assert_ok, which};
use warden_tests::probe::{self, TcpReport, Then};
use warden_tests::tls_hello::{client_hello, client_hello_without_sni};
use warden_tests::{
    require_kernel, AgentFixture, CgroupGuard, Client, Daemon, EchoOrigin, HostsFile,
};

/// Runs the probe in `agent`: connect to `target`, send `payload`, then do `then`.
fn probe_in(
    agent: &CgroupGuard,
    hosts: &HostsFile,
    target: &str,
    payload: &[u8],
    then: Then,
) -> TcpReport {
    let report: TcpReport = probe::report(
        &Client::new(probe::tcp(target, payload, then, 15_000))
            .in_cgroup(agent)
            .hosts(hosts)
            .run(),
    );
    assert!(report.connected, "{report:?}");
    report
}

fn probe_exe() -> PathBuf {
    probe::probe_bin()
        .canonicalize()
        .expect("the probe binary exists")
}

/// A stand-in for what follows a ClientHello: every byte value, many times.
fn arbitrary_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

fn count(record: &Value, field: &str) -> u64 {
    record[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} should be a count in\n{record:#}"))
}

#[test]
fn an_intercepted_connection_is_recorded_and_its_exchange_names_it() {
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start(&e2e, "audit-conn-curl");
    let prompt = "Record my connection";

    let out = fx.client(audit::curl::chat("gpt-4o-mini", prompt)).run();
    assert_ok(&out);
    let received = out.stdout.len() as u64;
    assert!(received > 0, "curl got a body\n{out}");

    let summary = audit::wait_for_finished(&fx.daemon, 1).remove(0);
    let id = summary["id"].as_str().expect("an id").to_owned();
    // The connection record is written when curl's connection closes, after the exchange.
    let detail = warden_tests::wait::until(
        "the exchange's connection record",
        audit::RECORD_TIMEOUT,
        || {
            let detail = audit::show(&fx.daemon, &id);
            (!detail["connection"].is_null()).then_some(detail)
        },
    );
    let connection = &detail["connection"];

    assert_eq!(connection["disposition"], "intercepted", "{detail:#}");
    let address = fx
        .hosts
        .resolve("api.openai.com")
        .expect("the hosts file maps api.openai.com");
    assert!(address.is_loopback(), "{address}");
    assert_eq!(
        connection["original_dst"],
        format!("{address}:443"),
        "the destination curl connected to: {detail:#}"
    );
    assert_eq!(connection["server_name"], "api.openai.com", "{detail:#}");
    connections::assert_identity(connection, out.pid(), &which("curl"), fx.agent.path());

    // Bytes on the wire (TLS included): at least the request body one way, the body curl got the
    // other.
    let request_body = audit::curl::chat_body("gpt-4o-mini", prompt, false).len() as u64;
    let from_client = count(connection, "bytes_from_client");
    let to_client = count(connection, "bytes_to_client");
    assert!(
        from_client > request_body,
        "bytes_from_client {from_client} < the {request_body}-byte request body: {detail:#}"
    );
    assert!(
        to_client >= received,
        "bytes_to_client {to_client} < the {received} bytes of body curl received: {detail:#}"
    );

    // The exchange happened within the connection, and names it.
    let (started, ended) = connections::span_us(connection);
    let request = &detail["request"];
    let exchange_started = request["started_at_us"]
        .as_i64()
        .unwrap_or_else(|| panic!("request.started_at_us in {detail:#}"));
    assert!(
        started <= exchange_started && exchange_started <= ended,
        "the exchange started at {exchange_started}, outside its connection \
         ({started}..{ended}): {detail:#}"
    );
    assert_eq!(request["connection_id"], connection["id"], "{detail:#}");

    // `sessions show` printed the chain's record, and the index agrees with it.
    let db = audit::db_path(&fx.daemon);
    let recorded = connections::records_of(&db, out.pid());
    assert_eq!(recorded.len(), 1, "one connection record: {recorded:#?}");
    assert_eq!(&recorded[0], connection, "the stored record");
    connections::assert_indexed(&db, connection);

    audit::assert_verifies(&fx.daemon);
}

#[test]
fn a_tunneled_connection_is_recorded_with_the_bytes_the_origin_saw() {
    let Some(e2e) = require_kernel() else { return };
    let origin = EchoOrigin::start_fresh(443);
    let hosts = HostsFile::new().with("tunnel.test", origin.ip());
    let agent = CgroupGuard::new("audit-conn-tunnel");
    let daemon = Daemon::builder(&e2e).select(&agent).start();

    let mut payload = client_hello("tunnel.test");
    payload.extend(arbitrary_bytes(16 * 1024));
    let report = probe_in(&agent, &hosts, "tunnel.test:443", &payload, Then::ReadEcho);
    assert_eq!(report.end, "echo-complete", "{report:?}");
    let echoed = report.received();
    assert!(echoed == payload, "the client got back different bytes");
    let at_origin = origin.wait_for_finished(1, Duration::from_secs(10));
    assert!(
        at_origin[0].bytes == payload,
        "the origin got different bytes"
    );

    let record = connections::wait_for_record_of(&daemon, report.pid);
    assert_eq!(record["disposition"], "tunneled", "{record:#}");
    assert_eq!(record["server_name"], "tunnel.test", "{record:#}");
    assert_eq!(
        record["reason"], "server name not intercepted",
        "{record:#}"
    );
    assert_eq!(
        record["original_dst"],
        origin.addr().to_string(),
        "{record:#}"
    );
    // The origin echoes: what it sent is what it received.
    assert_eq!(
        count(&record, "bytes_from_client"),
        at_origin[0].bytes.len() as u64,
        "bytes the origin received: {record:#}"
    );
    assert_eq!(
        count(&record, "bytes_to_client"),
        echoed.len() as u64,
        "bytes the origin sent back: {record:#}"
    );
    connections::assert_identity(&record, report.pid, &probe_exe(), agent.path());
    connections::span_us(&record);
    connections::assert_indexed(&audit::db_path(&daemon), &record);
    assert!(
        audit::list(&daemon, &[]).is_empty(),
        "a tunnel has no exchanges"
    );

    audit::assert_verifies(&daemon);
}

#[test]
fn a_rejected_connection_is_recorded_with_its_reason() {
    let Some(e2e) = require_kernel() else { return };
    let fx = AgentFixture::start(&e2e, "audit-conn-reject");

    let hello = client_hello_without_sni();
    let report = probe_in(
        &fx.agent,
        &fx.hosts,
        "api.openai.com:443",
        &hello,
        Then::ReadToEnd,
    );
    assert!(
        report.end == "eof" || report.end == "reset",
        "Warden ended the connection: {report:?}"
    );

    let record = connections::wait_for_record_of(&fx.daemon, report.pid);
    assert_eq!(record["disposition"], "rejected", "{record:#}");
    assert_eq!(
        record["reason"], "TLS ClientHello has no server name",
        "{record:#}"
    );
    assert!(record["server_name"].is_null(), "{record:#}");
    let address = fx
        .hosts
        .resolve("api.openai.com")
        .expect("the hosts file maps api.openai.com");
    assert_eq!(
        record["original_dst"],
        format!("{address}:443"),
        "{record:#}"
    );
    // Warden read the whole ClientHello before rejecting it, and sent nothing back.
    assert_eq!(
        count(&record, "bytes_from_client"),
        hello.len() as u64,
        "the ClientHello the client sent: {record:#}"
    );
    assert_eq!(count(&record, "bytes_to_client"), 0, "{record:#}");
    connections::assert_identity(&record, report.pid, &probe_exe(), fx.agent.path());
    connections::span_us(&record);
    connections::assert_indexed(&audit::db_path(&fx.daemon), &record);
    assert!(
        fx.upstream.connections() == 0,
        "a rejected connection reaches no upstream"
    );

    audit::assert_verifies(&fx.daemon);
}
