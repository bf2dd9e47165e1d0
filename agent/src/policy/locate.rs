//! Key paths and line numbers in policy files: the config's locator, shared.
pub(super) use crate::config::locate::{line_of, KeyPath, Locator};
