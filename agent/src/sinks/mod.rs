//! Shipping the audit records off the host: each `[[sink]]` reads the store from its own cursor.
//!
//! A sink never touches the request path. It reads committed records in `seq` order, turns them
//! into `SinkEvent`s (event.rs), hands batches to its transport (one file per kind), and persists
//! its cursor only after the receiver acknowledged the batch: delivery is at-least-once, and
//! `seq` is the id a receiver deduplicates on.
pub mod event;
pub mod host_name;
pub mod otlp;
mod otlp_client;
mod otlp_logs;
mod otlp_traces;
mod otlp_values;
pub mod severity;
pub mod syslog;
pub mod syslog_format;
#[cfg(test)]
mod test_events;

pub use event::{DeliveryError, EventClass, SinkEvent, Transport};
