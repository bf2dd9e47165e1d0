//! Receivers for the sinks on loopback (a webhook that checks the signature, a Splunk HEC fake),
//! what they received, and the `[[sink]]` config the tests give the daemon.

pub mod acknowledging;
pub mod hec;
pub mod webhook;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

pub use acknowledging::AcknowledgingReceiver;
pub use hec::HecFake;
pub use webhook::WebhookReceiver;

/// Every event a receiver accepted (duplicates included), and the raw bodies it was sent.
#[derive(Debug, Default)]
pub struct Received {
    events: Mutex<Vec<Value>>,
    raw: Mutex<Vec<u8>>,
    refused: Mutex<Vec<String>>,
}

impl Received {
    fn accept(&self, raw: &[u8], events: Vec<Value>) {
        self.raw.lock().unwrap().extend_from_slice(raw);
        self.events.lock().unwrap().extend(events);
    }

    fn refuse(&self, raw: &[u8], why: String) {
        self.raw.lock().unwrap().extend_from_slice(raw);
        self.refused.lock().unwrap().push(why);
    }

    /// The events accepted, in arrival order, duplicates included.
    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// The accepted events by seq (a receiver's deduplication).
    pub fn by_seq(&self) -> BTreeMap<u64, Value> {
        self.events()
            .into_iter()
            .map(|e| (e["seq"].as_u64().expect("every event has a seq"), e))
            .collect()
    }

    /// Every byte any request carried, accepted or not: where a leak would show.
    pub fn raw(&self) -> Vec<u8> {
        self.raw.lock().unwrap().clone()
    }

    /// Why requests were refused (bad signature, bad token, malformed body).
    pub fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }
}

/// A root-owned 0600 file holding `secret`, as `secret_file`/`token_file` must be.
pub fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("{secret}\n")).expect("writing a secret file");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    path
}

/// A `[[sink]]` table: `name`, `kind`, then `keys` (TOML lines) as given.
pub fn sink_toml(name: &str, kind: &str, keys: &str) -> String {
    format!(
        "\n[[sink]]\nname = {name:?}\nkind = {kind:?}\nflush_interval_ms = 50\nretry_max_backoff_secs = 1\n{keys}\n"
    )
}
