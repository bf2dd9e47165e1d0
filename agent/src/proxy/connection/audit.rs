//! The audit record of one redirected connection, written however the connection ends.
use std::sync::Arc;

use crate::{
    audit::{
        record::{AuditRecord, ConnectionRecord, Disposition, IdentitySnapshot},
        AuditWriter,
    },
    ebpf::origin::ConnectionOrigin,
    identity::Identity,
    proxy::{
        counting::ByteCounts,
        recording::{new_id, now_us},
        ProxyContext,
    },
};

/// The connection's audit record, filled in as the connection goes and submitted when it is
/// dropped: however the connection task ends (done, rejected, cut at shutdown, panicked), the
/// record is written.
pub struct ConnectionAudit {
    writer: AuditWriter,
    pub id: String,
    identity: IdentitySnapshot,
    original_dst: String,
    pub server_name: Option<String>,
    pub disposition: Disposition,
    pub reason: Option<String>,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    /// Once the client stream is wrapped in a counter, the byte counts come from it.
    pub counts: Option<Arc<ByteCounts>>,
    started_at_us: i64,
}

impl ConnectionAudit {
    pub fn new(context: &ProxyContext, identity: &Identity, origin: &ConnectionOrigin) -> Self {
        ConnectionAudit {
            writer: context.audit.clone(),
            id: new_id("cn"),
            identity: IdentitySnapshot::from(identity),
            original_dst: origin.original_dst.to_string(),
            server_name: None,
            // Until a path claims it: a task that ends early leaves a rejected connection.
            disposition: Disposition::Rejected,
            reason: Some("connection ended before Warden finished with it".to_string()),
            bytes_from_client: 0,
            bytes_to_client: 0,
            counts: None,
            started_at_us: now_us(),
        }
    }
}

impl Drop for ConnectionAudit {
    fn drop(&mut self) {
        if let Some(counts) = &self.counts {
            self.bytes_from_client = counts.read();
            self.bytes_to_client = counts.written();
        }
        self.writer
            .submit(AuditRecord::Connection(ConnectionRecord {
                id: std::mem::take(&mut self.id),
                identity: std::mem::take(&mut self.identity),
                original_dst: std::mem::take(&mut self.original_dst),
                server_name: self.server_name.take(),
                disposition: self.disposition,
                reason: self.reason.take(),
                bytes_from_client: self.bytes_from_client,
                bytes_to_client: self.bytes_to_client,
                started_at_us: self.started_at_us,
                ended_at_us: now_us(),
            }));
    }
}
