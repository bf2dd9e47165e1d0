//! Anomaly detection: per-identity baselines learned from the audit store, detectors fed with every
//! recorded exchange as it ends, and their alerts (chain records, metrics, logs, blocks).
//!
//! Off the request path: the exchange log hands a small [`Observation`] to a bounded queue
//! (`try_send`; a full queue drops it and counts it), and one thread of its own learns the
//! baseline at start, then judges each exchange in turn. Writing an alert or a revocation waits
//! on the audit writer there, never on a request.
pub mod baseline;
pub mod detectors;
pub mod identity_key;
pub mod load;
mod react;

use std::{path::PathBuf, sync::Arc};

use tokio::sync::mpsc;

use crate::{
    audit::AuditWriter, config::anomaly::AnomalyConfig, identity::Identity, ids::now_us,
    metrics::Metrics, revocation::Revocations,
};
pub use detectors::{Detector, Detectors, ExchangeFacts, Verdict};
pub use identity_key::identity_key;
pub use react::DAEMON_ACTOR_NAME;

/// Exchanges waiting to be judged; beyond this they are dropped (and counted), never waited for.
const QUEUE: usize = 8192;
/// Once the queue is empty, the thread waits this long before it sleeps on the queue again: a
/// sender only wakes a thread that sleeps on the queue, so under load the exchanges of this
/// interval cost it one wake-up instead of one each. Alerts come at most this much later.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// One recorded exchange that ended, for the detectors.
#[derive(Debug)]
pub struct Observation {
    pub identity: Arc<Identity>,
    pub facts: ExchangeFacts,
}

/// Where the exchange log sends what it observed; cheap to clone, never blocks.
#[derive(Clone, Debug, Default)]
pub struct AnomalyFeed {
    /// None: anomaly detection is off.
    sender: Option<mpsc::Sender<Observation>>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl AnomalyFeed {
    /// A feed that goes nowhere (`[anomaly] enabled = false`, benches, tests).
    pub fn disabled() -> Self {
        AnomalyFeed::default()
    }

    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    pub fn observe(&self, observation: Observation) {
        let Some(sender) = &self.sender else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(observation) {
            self.dropped.inc();
        }
    }
}

/// What the anomaly thread needs.
pub struct AnomalyTask {
    pub config: AnomalyConfig,
    /// The audit store the baseline is learned from.
    pub db: PathBuf,
    pub audit: AuditWriter,
    pub revocations: Arc<Revocations>,
    pub metrics: Arc<Metrics>,
}

/// Starts the anomaly thread (unless `[anomaly] enabled = false`) and returns its feed. The
/// baseline covers the exchanges that started before this call; later ones arrive by the feed.
pub fn start(task: AnomalyTask) -> std::io::Result<AnomalyFeed> {
    if !task.config.enabled {
        tracing::info!("anomaly detection is off ([anomaly] enabled = false)");
        return Ok(AnomalyFeed::disabled());
    }
    let (sender, receiver) = mpsc::channel(QUEUE);
    let dropped = task.metrics.anomaly.dropped.clone();
    let learned_until = now_us();
    std::thread::Builder::new()
        .name("warden-anomaly".into())
        .spawn(move || run(task, receiver, learned_until))?;
    Ok(AnomalyFeed {
        sender: Some(sender),
        dropped,
    })
}

/// The thread: learn, then judge every exchange until the feed's senders are all gone.
fn run(task: AnomalyTask, mut receiver: mpsc::Receiver<Observation>, learned_until: i64) {
    let AnomalyTask {
        config,
        db,
        audit,
        revocations,
        metrics,
    } = task;
    let mut detectors = Detectors::new(config.clone());
    match load::learn_from_store(&mut detectors, &db, config.baseline_days, learned_until) {
        Ok(learned) => {
            let seconds = learned.elapsed_us as f64 / 1e6;
            metrics.anomaly.baseline_load_seconds.set(seconds);
            tracing::info!(
                exchanges = learned.exchanges,
                identities = detectors.identities(),
                baseline_days = config.baseline_days,
                load_ms = seconds * 1000.0,
                "anomaly baseline learned from the audit store"
            );
        }
        // Detection still runs, on what this run sees: an alert too many beats none at all.
        Err(error) => tracing::error!(
            %error,
            "anomaly baseline: the audit store could not be read; every identity starts without history"
        ),
    }
    set_identities(&metrics, &detectors);
    let reactor = react::Reactor {
        audit,
        revocations,
        metrics: metrics.clone(),
    };
    while let Some(observation) = next_observation(&mut receiver) {
        let identity = &observation.identity;
        let key = identity_key(
            identity.account.as_deref(),
            identity.unit.as_deref(),
            identity.uid,
        );
        let now = now_us();
        let verdicts = detectors.observe(&key, &observation.facts, now);
        for verdict in verdicts {
            reactor.react(&key, identity, &observation.facts.exchange_id, verdict, now);
        }
        metrics.anomaly.observed.inc();
        set_identities(&metrics, &detectors);
    }
}

/// The next observation, without a wake-up per exchange; None once every sender is gone.
fn next_observation(receiver: &mut mpsc::Receiver<Observation>) -> Option<Observation> {
    match receiver.try_recv() {
        Ok(observation) => Some(observation),
        Err(mpsc::error::TryRecvError::Disconnected) => None,
        Err(mpsc::error::TryRecvError::Empty) => {
            std::thread::sleep(GATHER);
            receiver.blocking_recv()
        }
    }
}

fn set_identities(metrics: &Metrics, detectors: &Detectors) {
    let count = i64::try_from(detectors.identities()).unwrap_or(i64::MAX);
    metrics.anomaly.identities.set(count);
}
