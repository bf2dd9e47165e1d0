//! Shipping the audit records off the host: each `[[sink]]` reads the store from its own cursor.
//!
//! A sink never touches the request path. It runs on threads of its own below the proxy's
//! priority (threads.rs), reads committed records in `seq` order through its own read-only
//! connection (source.rs), turns them into `SinkEvent`s, their contents left out while parsing
//! unless asked for (event.rs, classify.rs, pruned.rs), hands batches to its transport (one file
//! per kind), retries with backoff until the receiver acknowledges (runner.rs), and only then
//! persists its cursor (cursor.rs): delivery is at-least-once, and `seq` is the id a receiver
//! deduplicates on.
mod backoff;
mod classify;
pub mod cursor;
pub mod event;
pub mod file;
pub mod host_name;
pub mod otlp;
mod otlp_client;
mod otlp_logs;
mod otlp_traces;
mod otlp_values;
mod pruned;
mod runner;
pub mod severity;
pub mod source;
pub mod splunk_hec;
pub mod syslog;
pub mod syslog_format;
#[cfg(test)]
mod test_events;
mod threads;
pub mod webhook;

use std::{path::Path, sync::Arc, time::Duration};

use tokio::{runtime::Runtime, sync::watch, task::JoinHandle};

pub use event::{DeliveryError, EventClass, SinkEvent, Transport};

use crate::{
    config::{
        sinks::{SinkConfig, SinkKindConfig},
        Config,
    },
    metrics::Metrics,
};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("starting the sinks' threads: {0}")]
    Threads(std::io::Error),
    /// A sink that cannot be set up (a secret file that is not root's alone, a bad CA file, a
    /// file that cannot be opened) stops the daemon at start: it would otherwise never deliver.
    #[error("[[sink]] {name:?}: {reason}")]
    Setup { name: String, reason: String },
}

/// The transport of one `[[sink]]`: one arm per kind.
pub fn transport_for(sink: &SinkConfig) -> Result<Box<dyn Transport>, SinkError> {
    let setup = |reason: String| SinkError::Setup {
        name: sink.common.name.clone(),
        reason,
    };
    Ok(match &sink.kind {
        SinkKindConfig::File(config) => Box::new(
            file::FileTransport::open(config)
                .map_err(|e| setup(format!("{}: {e}", config.path.display())))?,
        ),
        SinkKindConfig::Webhook(config) => {
            Box::new(webhook::WebhookTransport::new(config).map_err(setup)?)
        }
        SinkKindConfig::SplunkHec(config) => {
            Box::new(splunk_hec::SplunkHecTransport::new(config, &sink.common.name).map_err(setup)?)
        }
        SinkKindConfig::Syslog(config) => {
            Box::new(syslog::SyslogTransport::new(config).map_err(|e| setup(e.to_string()))?)
        }
        SinkKindConfig::Otlp(config) => {
            Box::new(otlp::OtlpTransport::new(config).map_err(|e| setup(e.to_string()))?)
        }
    })
}

/// The running sinks.
pub struct Sinks {
    finish: watch::Sender<bool>,
    tasks: Vec<(String, JoinHandle<()>)>,
    /// Taken by `finish`; shut down without waiting (it may be dropped inside another runtime).
    runtime: Option<Runtime>,
}

impl Sinks {
    /// Builds every sink's transport (any failure stops here) and starts one task per sink,
    /// reading `db`. Call it after the audit writer has opened the store.
    pub fn start(config: &Config, db: &Path, metrics: Arc<Metrics>) -> Result<Sinks, SinkError> {
        let runtime = threads::runtime().map_err(SinkError::Threads)?;
        // Transports that hold connections make them on the sinks' runtime.
        let entered = runtime.enter();
        let mut runners = Vec::new();
        for sink in &config.sinks {
            let transport = transport_for(sink)?;
            let cursor_file = cursor::CursorFile::new(&config.state_dir, &sink.common.name)
                .map_err(|e| SinkError::Setup {
                    name: sink.common.name.clone(),
                    reason: e.to_string(),
                })?;
            runners.push(runner::Runner {
                name: sink.common.name.clone(),
                db: db.to_owned(),
                common: sink.common.clone(),
                transport,
                cursor_file,
                metrics: metrics.clone(),
            });
        }
        let (finish, finishing) = watch::channel(false);
        let tasks = runners
            .into_iter()
            .map(|runner| {
                let name = runner.name.clone();
                (name, runtime.spawn(runner.run(finishing.clone())))
            })
            .collect();
        drop(entered);
        Ok(Sinks {
            finish,
            tasks,
            runtime: Some(runtime),
        })
    }

    /// After the writer's last commit: each sink delivers what is left, for at most `timeout`
    /// altogether; a sink still behind then stops where it is (its cursor says where to resume).
    pub async fn finish(mut self, timeout: Duration) {
        let _ = self.finish.send(true);
        let deadline = tokio::time::Instant::now() + timeout;
        for (name, mut task) in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                tracing::warn!(
                    sink = %name,
                    timeout_secs = timeout.as_secs(),
                    "sink stopped with records not yet delivered; it resumes from its cursor at the next start"
                );
            }
        }
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests;
