//! Policies: rules that deny, mask, require approval or allow API calls, loaded from TOML files.
pub mod active;
pub mod check;
mod compile;
mod conditions;
pub mod limit_rules;
pub mod load;
mod locate;
pub mod mask;
pub mod model;
pub mod prompt;
pub mod recognizers;
pub mod stream_mask;

pub use load::{load_dir, load_file, PolicyError};
pub use model::{Decision, Policy, RequestFacts, Rule, Verdict};
