//! The files install writes once and then leaves to the administrator: the commented default
//! configuration and the starter policy.

/// `/etc/warden/warden.toml` as install writes it: every key commented out at its default value.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// The starter policy's file name in the policy directory.
pub const STARTER_POLICY_FILE: &str = "starter.toml";

/// Masks secrets and common personal data in prompts.
pub const STARTER_POLICY: &str = include_str!("starter-policy.toml");
