//! Test fixtures for the audit store: records, a populated store, and an attacker's connection.
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{
    record::{
        AuditRecord, ConnectionRecord, Disposition, ExchangeRequest, ExchangeResponse,
        IdentitySnapshot, Outcome, RecordedBody, RequestParams,
    },
    AuditWriter, WriterOptions,
};
use crate::openai::assemble::{Assembled, Usage};

/// 2023-11-14T22:13:20Z, so test times are far from the epoch and from now.
pub const T0: i64 = 1_700_000_000_000_000;

pub fn identity(pid: u32, account: Option<&str>) -> IdentitySnapshot {
    IdentitySnapshot {
        pid,
        comm: "python3".into(),
        exe: Some("/usr/bin/python3".into()),
        cmdline: Some("python3 agent.py".into()),
        uid: 1000,
        user: Some("alice".into()),
        gid: 1000,
        cgroup_id: 77,
        cgroup: Some("/system.slice/agent.service".into()),
        unit: Some("agent.service".into()),
        container: None,
        account: account.map(str::to_owned),
        k8s_sa: None,
        k8s_sa_verified: None,
        process_exited: false,
    }
}

pub fn request(id: &str, started_at_us: i64, identity: IdentitySnapshot) -> ExchangeRequest {
    ExchangeRequest {
        exchange_id: id.into(),
        connection_id: format!("conn-{id}"),
        started_at_us,
        identity,
        method: "POST".into(),
        host: "api.openai.com".into(),
        path: "/v1/chat/completions".into(),
        endpoint: "chat.completions".into(),
        model: Some("gpt-4o".into()),
        params: RequestParams {
            stream: Some(true),
            temperature: Some(0.2),
            max_tokens: Some(64),
            max_output_tokens: None,
            tools: vec!["lookup".into()],
        },
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), "Bearer …abcd sha256:0123".into()),
        ],
        body: RecordedBody {
            content_type: Some("application/json".into()),
            size: 42,
            text: Some(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#.into()),
            truncated: false,
        },
        policy: Default::default(),
    }
}

pub fn response(id: &str, ended_at_us: i64, outcome: Outcome) -> ExchangeResponse {
    ExchangeResponse {
        exchange_id: id.into(),
        ended_at_us,
        status: Some(200),
        headers: vec![("content-type".into(), "text/event-stream".into())],
        body: None,
        streamed: true,
        events: vec![super::record::StreamEvent {
            offset_ms: 12.5,
            event: None,
            data: r#"{"choices":[{"delta":{"content":"hello"}}]}"#.into(),
        }],
        assembled: Some(Assembled {
            text: "hello".into(),
            usage: Some(Usage {
                input_tokens: 5,
                output_tokens: 7,
                total_tokens: 12,
            }),
            ..Assembled::default()
        }),
        ttfb_ms: Some(12.5),
        duration_ms: 250.25,
        outcome,
        reason: None,
        masked: Default::default(),
    }
}

pub fn connection(id: &str, ended_at_us: i64, identity: IdentitySnapshot) -> ConnectionRecord {
    ConnectionRecord {
        id: id.into(),
        identity,
        original_dst: "192.0.2.10:443".into(),
        server_name: Some("api.openai.com".into()),
        disposition: Disposition::Intercepted,
        reason: None,
        bytes_from_client: 1200,
        bytes_to_client: 3400,
        started_at_us: ended_at_us - 1_000_000,
        ended_at_us,
    }
}

/// A complete exchange: its request, its response, its connection.
pub fn exchange(id: &str, started_at_us: i64, identity: IdentitySnapshot) -> Vec<AuditRecord> {
    vec![
        AuditRecord::Request(request(id, started_at_us, identity.clone())),
        AuditRecord::Response(response(id, started_at_us + 250_000, Outcome::Ok)),
        AuditRecord::Connection(connection(
            &format!("conn-{id}"),
            started_at_us + 300_000,
            identity,
        )),
    ]
}

pub fn store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = super::audit_db_path(dir.path());
    (dir, db)
}

/// Appends `records` in order with a fresh writer, then shuts it down.
pub fn write(db: &Path, records: impl IntoIterator<Item = AuditRecord>) {
    let writer = AuditWriter::start(db, WriterOptions::default()).expect("start writer");
    for record in records {
        writer.commit_blocking(record).expect("commit");
    }
    writer.shutdown();
}

/// A plain read-write connection, like an attacker with the sqlite3 shell.
pub fn attacker(db: &Path) -> Connection {
    Connection::open(db).expect("open as attacker")
}
