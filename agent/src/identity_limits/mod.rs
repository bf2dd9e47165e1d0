//! Limits and budgets per identity: the price table, and the ledger that admits a request against
//! its caps exactly and settles it with its actual usage.
pub mod estimate;
pub mod ledger;
pub mod prices;
pub mod refusal;
