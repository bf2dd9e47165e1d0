//! The files install writes once and then leaves to the administrator: the commented default
//! configuration and the starter policy.

/// `/etc/warden/warden.toml` as install writes it: every key commented out at its default value.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// The starter policy's file name in the policy directory.
pub const STARTER_POLICY_FILE: &str = "starter.toml";

/// Masks secrets and common personal data in prompts.
pub const STARTER_POLICY: &str = include_str!("starter-policy.toml");

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use super::*;
    use crate::{config::Config, policy::active::ActivePolicy, policy::mask::MaskCounts};

    #[test]
    fn the_default_config_is_the_defaults_and_every_line_uncommented_still_loads() {
        let file = Path::new("/etc/warden/warden.toml");
        assert_eq!(
            Config::from_toml(DEFAULT_CONFIG, file).unwrap(),
            Config::default()
        );

        // `#key = value` lines are settings; `# text` lines are prose.
        let uncomment = |keep_examples: bool| {
            DEFAULT_CONFIG
                .lines()
                .map(|line| match line.strip_prefix('#') {
                    Some(rest) if !rest.starts_with([' ', '#']) && !rest.is_empty() => {
                        if rest.ends_with("# example") && !keep_examples {
                            line
                        } else {
                            rest
                        }
                    }
                    _ => line,
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let defaults = uncomment(false);
        assert_ne!(defaults, DEFAULT_CONFIG.trim_end());
        let mut parsed =
            Config::from_toml(&defaults, file).unwrap_or_else(|e| panic!("{e}\n{defaults}"));
        // Set in a file, the policy directory must exist; the default need not.
        assert!(parsed.policy.dir_configured);
        parsed.policy.dir_configured = false;
        assert_eq!(
            parsed,
            Config::default(),
            "a commented value is not the default"
        );
        let everything = uncomment(true);
        let config =
            Config::from_toml(&everything, file).unwrap_or_else(|e| panic!("{e}\n{everything}"));
        assert_eq!(config.select.units, ["billing-agent.service"]);
        assert_eq!(config.accounts.len(), 1);
        assert_eq!(config.upstream.overrides.len(), 1);
        assert_eq!(config.audit.retention_days, Some(90));
    }

    #[test]
    fn the_starter_policy_loads_and_masks_secrets_and_personal_data_in_prompts() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(STARTER_POLICY_FILE), STARTER_POLICY).unwrap();
        let policy = ActivePolicy::load(dir.path(), crate::policy::active::AbsentDir::Refuse)
            .unwrap_or_else(|e| panic!("{e}"));
        let current = policy.current();
        assert_eq!(current.policy.rules.len(), 1);
        let rule = &current.policy.rules[0];
        let mask = current.mask(&rule.name).expect("a mask rule");
        assert!(
            mask.stream.is_none(),
            "the starter policy masks prompts only"
        );
        let mut counts = MaskCounts::default();
        let masked = mask.masker.mask(
            "mail jane@example.com, key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD, card 4111 1111 1111 1111",
            &mut counts,
        );
        assert!(!masked.contains("jane@example.com"), "{masked}");
        assert!(!masked.contains("sk-proj-"), "{masked}");
        assert!(!masked.contains("4111"), "{masked}");
        assert!(masked.contains("[EMAIL]"), "{masked}");
    }
}
