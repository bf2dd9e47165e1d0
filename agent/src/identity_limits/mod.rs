//! Limits and budgets per identity: the price table, the ledger that admits a request against
//! its caps exactly and settles it with its actual usage, and the refusals over them.
pub mod admission;
pub mod estimate;
pub mod ledger;
pub mod persist;
pub mod prices;
pub mod refusal;
pub mod report;
pub mod windows;

pub use admission::{Admission, Ask, Limits, RateHeaders, Refused, Settlement};
