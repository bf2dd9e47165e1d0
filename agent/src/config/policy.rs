//! `[policy]`: where the policy files are, how much of a body they may inspect, and what
//! `[[limit]]`s count with (the price table, the default output reservation).
use std::path::PathBuf;

use super::DEFAULT_POLICY_DIR;

/// Where policies are and how much of a body they may inspect.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Every `*.toml` file in this directory is loaded. It must exist when a config file names
    /// it; the built-in default may be absent (the daemon then runs with no policy and says so).
    pub dir: PathBuf,
    /// Bodies larger than this are not inspected: they are refused (413) when a rule that reads
    /// the body applies, so that nothing unmasked slips through because it was big.
    pub max_inspect_bytes: u64,
    /// A price table (TOML, `[models]` "prefix" = { input, output } in USD per million tokens)
    /// replacing the shipped one, for `[[limit]]` cost budgets.
    pub prices_file: Option<PathBuf>,
    /// The output tokens a request without `max_tokens` reserves against a `[[limit]]` until its
    /// actual usage settles it.
    pub limit_default_output_tokens: u64,
    /// Whether `dir` was set in a config file (not the built-in default): then it must exist.
    #[serde(skip)]
    pub dir_configured: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            dir: PathBuf::from(DEFAULT_POLICY_DIR),
            max_inspect_bytes: 16 * 1024 * 1024,
            prices_file: None,
            limit_default_output_tokens: 4096,
            dir_configured: false,
        }
    }
}
