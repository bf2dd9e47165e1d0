//! `[anomaly]`: the per-identity baseline and the detectors that compare each exchange with it.
//!
//! ```toml
//! [anomaly]
//! enabled = true               # false: no baseline is learned and nothing is detected
//! baseline_days = 14           # the trailing window the baseline is learned over
//! suppress_secs = 3600         # the same detector does not fire again for the same identity meanwhile
//! [anomaly.token_spike]        # tokens this hour over mean + k·stddev of the identity's hours, and over min_per_hour
//! enabled = true
//! action = "alert"             # or "block": revoke the identity until `warden restore`
//! k = 4.0
//! min_per_hour = 100000
//! [anomaly.request_spike]      # the same, counting requests
//! k = 4.0
//! min_per_hour = 300
//! [anomaly.new_model]          # a model the identity never used, once it has min_baseline_requests on record
//! min_baseline_requests = 20
//! [anomaly.unusual_hours]      # a call in an hour of the day (UTC) seen fewer than min_seen times
//! min_seen = 1
//! min_baseline_hours = 72      # active hours on record before this detector judges at all
//! [anomaly.probing]            # `denials` policy denials within window_secs
//! denials = 5
//! window_secs = 60
//! [anomaly.real_key]           # a real-looking provider key presented on a host with [[credential]] custody
//! [anomaly.pii_burst]          # `masked` values masked within window_secs
//! masked = 20
//! window_secs = 60
//! ```
use super::locate::KeyPath;

/// What a detector does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorAction {
    /// A chain record, a metric and a log line.
    #[default]
    Alert,
    /// The alert, and the identity revoked until an admin runs `warden restore`.
    Block,
}

impl DetectorAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorAction::Alert => "alert",
            DetectorAction::Block => "block",
        }
    }
}

/// `[anomaly]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    pub enabled: bool,
    pub baseline_days: u32,
    pub suppress_secs: u64,
    pub token_spike: SpikeConfig,
    pub request_spike: SpikeConfig,
    pub new_model: NewModelConfig,
    pub unusual_hours: UnusualHoursConfig,
    pub probing: ProbingConfig,
    pub real_key: RealKeyConfig,
    pub pii_burst: PiiBurstConfig,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: true,
            baseline_days: 14,
            suppress_secs: 3600,
            token_spike: SpikeConfig {
                min_per_hour: 100_000,
                ..SpikeConfig::default()
            },
            request_spike: SpikeConfig {
                min_per_hour: 300,
                ..SpikeConfig::default()
            },
            new_model: NewModelConfig::default(),
            unusual_hours: UnusualHoursConfig::default(),
            probing: ProbingConfig::default(),
            real_key: RealKeyConfig::default(),
            pii_burst: PiiBurstConfig::default(),
        }
    }
}

/// `[anomaly.token_spike]`, `[anomaly.request_spike]`: this hour's total against the baseline.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpikeConfig {
    pub enabled: bool,
    pub action: DetectorAction,
    /// How many standard deviations above the mean this hour must be.
    pub k: f64,
    /// And at least this much: a quiet identity's tiny spread does not make every busy hour a spike.
    pub min_per_hour: u64,
}

// `k` is checked finite at load (validate), so equality is reflexive.
impl Eq for SpikeConfig {}

impl Default for SpikeConfig {
    fn default() -> Self {
        SpikeConfig {
            enabled: true,
            action: DetectorAction::Alert,
            k: 4.0,
            min_per_hour: 100_000,
        }
    }
}

/// `[anomaly.new_model]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewModelConfig {
    pub enabled: bool,
    pub action: DetectorAction,
    /// An identity with fewer exchanges in its baseline is still learning: its models are not new.
    pub min_baseline_requests: u64,
}

impl Default for NewModelConfig {
    fn default() -> Self {
        NewModelConfig {
            enabled: true,
            action: DetectorAction::Alert,
            min_baseline_requests: 20,
        }
    }
}

/// `[anomaly.unusual_hours]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnusualHoursConfig {
    pub enabled: bool,
    pub action: DetectorAction,
    /// An hour of the day (UTC) with fewer active hours than this in the baseline is unusual.
    pub min_seen: u64,
    /// Active hours the baseline must hold before the detector judges at all.
    pub min_baseline_hours: u64,
}

impl Default for UnusualHoursConfig {
    fn default() -> Self {
        UnusualHoursConfig {
            enabled: true,
            action: DetectorAction::Alert,
            min_seen: 1,
            min_baseline_hours: 72,
        }
    }
}

/// `[anomaly.probing]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbingConfig {
    pub enabled: bool,
    pub action: DetectorAction,
    /// Exchanges ended `denied` (policy denials, custody refusals) within `window_secs`.
    pub denials: u64,
    pub window_secs: u64,
}

impl Default for ProbingConfig {
    fn default() -> Self {
        ProbingConfig {
            enabled: true,
            action: DetectorAction::Alert,
            denials: 5,
            window_secs: 60,
        }
    }
}

/// `[anomaly.real_key]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RealKeyConfig {
    pub enabled: bool,
    pub action: DetectorAction,
}

impl Default for RealKeyConfig {
    fn default() -> Self {
        RealKeyConfig {
            enabled: true,
            action: DetectorAction::Alert,
        }
    }
}

/// `[anomaly.pii_burst]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PiiBurstConfig {
    pub enabled: bool,
    pub action: DetectorAction,
    /// Values masked (request and response together) within `window_secs`.
    pub masked: u64,
    pub window_secs: u64,
}

impl Default for PiiBurstConfig {
    fn default() -> Self {
        PiiBurstConfig {
            enabled: true,
            action: DetectorAction::Alert,
            masked: 20,
            window_secs: 60,
        }
    }
}

impl AnomalyConfig {
    pub(super) fn validate(&self) -> Result<(), (KeyPath, String)> {
        let at = KeyPath::root().key("anomaly");
        if !(1..=366).contains(&self.baseline_days) {
            return Err((at.key("baseline_days"), "must be between 1 and 366".into()));
        }
        for (name, spike) in [
            ("token_spike", &self.token_spike),
            ("request_spike", &self.request_spike),
        ] {
            if !spike.k.is_finite() || spike.k < 0.0 {
                return Err((
                    at.key(name).key("k"),
                    "must be a number of standard deviations, 0 or more".into(),
                ));
            }
            if spike.min_per_hour == 0 {
                return Err((
                    at.key(name).key("min_per_hour"),
                    "must be at least 1 (the floor keeps a quiet identity's every hour from being a spike)".into(),
                ));
            }
        }
        let at_least_one = [
            ("unusual_hours", "min_seen", self.unusual_hours.min_seen),
            ("probing", "denials", self.probing.denials),
            ("probing", "window_secs", self.probing.window_secs),
            ("pii_burst", "masked", self.pii_burst.masked),
            ("pii_burst", "window_secs", self.pii_burst.window_secs),
        ];
        for (table, key, value) in at_least_one {
            if value == 0 {
                return Err((at.key(table).key(key), "must be at least 1".into()));
            }
        }
        for (table, secs) in [
            ("probing", self.probing.window_secs),
            ("pii_burst", self.pii_burst.window_secs),
        ] {
            if secs > 86_400 {
                return Err((
                    at.key(table).key("window_secs"),
                    "must be at most 86400 (a day)".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::DetectorAction;
    use crate::config::Config;

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("/w.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_overrides_are_read() {
        let config = load("").unwrap().anomaly;
        assert!(config.enabled);
        assert_eq!(config.baseline_days, 14);
        assert_eq!(config.suppress_secs, 3600);
        assert_eq!(config.request_spike.min_per_hour, 300);
        assert_eq!(config.token_spike.min_per_hour, 100_000);
        assert!(config.real_key.enabled);
        assert_eq!(config.probing.action, DetectorAction::Alert);

        let config = load(
            "[anomaly]\nbaseline_days = 7\n[anomaly.request_spike]\naction = \"block\"\nk = 2.5\nmin_per_hour = 10\n[anomaly.real_key]\naction = \"block\"\n",
        )
        .unwrap()
        .anomaly;
        assert_eq!(config.baseline_days, 7);
        assert_eq!(config.request_spike.action, DetectorAction::Block);
        assert_eq!(config.request_spike.k, 2.5);
        assert_eq!(config.request_spike.min_per_hour, 10);
        assert!(config.request_spike.enabled);
        assert!(config.real_key.enabled);
        assert_eq!(config.real_key.action, DetectorAction::Block);
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        assert_eq!(
            load("[anomaly]\nbaseline_days = 0\n").unwrap_err(),
            "/w.toml:2: anomaly.baseline_days: must be between 1 and 366"
        );
        assert_eq!(
            load("[anomaly.probing]\n\ndenials = 0\n").unwrap_err(),
            "/w.toml:3: anomaly.probing.denials: must be at least 1"
        );
        assert!(load("[anomaly.token_spike]\nk = -1.0\n")
            .unwrap_err()
            .starts_with("/w.toml:2: anomaly.token_spike.k:"));
        let error = load("[anomaly.pii_burst]\naction = \"kill\"\n").unwrap_err();
        assert!(error.starts_with("/w.toml:2"), "{error}");
        assert!(load("[anomaly.spike]\nk = 1.0\n")
            .unwrap_err()
            .contains("unknown key `spike`"));
    }
}
