//! `[[credential]]` and `[credentials]` in the config: the types and the rules they must satisfy.
//!
//! The identity selectors are checked for their shape here and parsed by `credentials` when the
//! daemon loads them (config does not depend on identity, which depends on config).
//!
//! ```toml
//! [credentials]
//! presented = "replace"                       # or "require-placeholder"
//! [[credential]]
//! name = "openai-prod"
//! host = "api.openai.com"                     # the default
//! header = "Authorization: Bearer"            # the default; "x-api-key" sets the bare key
//! secret_file = "/etc/warden/credentials/openai-prod"   # root-owned, no group/other access
//! # or: systemd_credential = "openai-prod"    # $CREDENTIALS_DIRECTORY/openai-prod
//! identity = ["account:billing-agent", "unit:*.service"]
//! ```
use std::{collections::HashSet, path::PathBuf};

use http::HeaderName;

use super::locate::KeyPath;

pub const DEFAULT_HOST: &str = "api.openai.com";
pub const DEFAULT_HEADER: &str = "Authorization: Bearer";

/// What Warden does with the key an agent presents on a host that has credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Presented {
    /// Whatever the agent presented is removed and the real key injected.
    #[default]
    Replace,
    /// Like `replace`, but a presented value shaped like a real provider key (`sk-…`) is refused
    /// (401): a real key on the agent's host is a leak.
    RequirePlaceholder,
}

impl Presented {
    pub fn as_str(self) -> &'static str {
        match self {
            Presented::Replace => "replace",
            Presented::RequirePlaceholder => "require-placeholder",
        }
    }
}

/// `[credentials]`: settings for every credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsConfig {
    pub presented: Presented,
}

/// One `[[credential]]`: a key Warden holds and injects for the identities it serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// Names it in status, metrics and logs (never the key itself).
    pub name: String,
    #[serde(default = "default_host")]
    pub host: String,
    /// `NAME` or `NAME: PREFIX`: the header set, and the text before the key in its value.
    #[serde(default = "default_header")]
    pub header: String,
    pub secret_file: Option<PathBuf>,
    pub systemd_credential: Option<String>,
    /// Identity selectors (as in policies); an identity matching any of them is served.
    pub identity: Vec<String>,
}

fn default_host() -> String {
    DEFAULT_HOST.to_string()
}

fn default_header() -> String {
    DEFAULT_HEADER.to_string()
}

/// A parsed `header`: the name, and what precedes the key in the value (`"Bearer "`, or nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSpec {
    pub name: HeaderName,
    pub prefix: String,
}

impl HeaderSpec {
    pub fn parse(text: &str) -> Result<HeaderSpec, String> {
        let (name, scheme) = match text.split_once(':') {
            Some((name, scheme)) => (name.trim(), scheme.trim()),
            None => (text.trim(), ""),
        };
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{text:?}: {name:?} is not a header name (expected \"NAME\" or \"NAME: SCHEME\", e.g. \"Authorization: Bearer\")"))?;
        if !scheme
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b',')
        {
            return Err(format!(
                "{text:?}: the scheme after ':' must be one word (e.g. Bearer)"
            ));
        }
        let prefix = match scheme.is_empty() {
            true => String::new(),
            false => format!("{scheme} "),
        };
        Ok(HeaderSpec { name, prefix })
    }
}

/// Where a credential's secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/NAME`, as systemd's `LoadCredential=` provides it.
    Systemd(String),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Systemd(name) => write!(f, "systemd credential {name}"),
        }
    }
}

impl CredentialConfig {
    /// The source; validation has made sure exactly one is set.
    pub fn source(&self) -> Option<SecretSource> {
        match (&self.secret_file, &self.systemd_credential) {
            (Some(path), None) => Some(SecretSource::File(path.clone())),
            (None, Some(name)) => Some(SecretSource::Systemd(name.clone())),
            _ => None,
        }
    }
}

/// Names used as metric labels and systemd credential names: letters, digits, `.`, `_`, `-`.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "{name:?} must be 1 to 64 letters, digits, '.', '_' or '-'"
        )),
    }
}

/// The first rule the credential entries break, as (key path, reason). `intercepted` says
/// whether Warden decrypts a host at all.
pub(crate) fn validate(
    entries: &[CredentialConfig],
    intercepted: impl Fn(&str) -> bool,
) -> Result<(), (KeyPath, String)> {
    let mut names = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let at = KeyPath::root().key("credential").index(i);
        check_name(&entry.name).map_err(|r| (at.key("name"), r))?;
        if !names.insert(entry.name.as_str()) {
            return Err((
                at.key("name"),
                format!("credential {:?} is defined twice", entry.name),
            ));
        }
        if !intercepted(&entry.host) {
            return Err((
                at.key("host"),
                format!(
                    "{:?} is not in proxy.intercept_hosts: Warden never sees its requests",
                    entry.host
                ),
            ));
        }
        HeaderSpec::parse(&entry.header).map_err(|r| (at.key("header"), r))?;
        match (&entry.secret_file, &entry.systemd_credential) {
            (Some(path), None) if !path.is_absolute() => {
                return Err((at.key("secret_file"), "must be an absolute path".into()));
            }
            (None, Some(name)) => {
                check_name(name).map_err(|r| (at.key("systemd_credential"), r))?;
            }
            (Some(_), None) => {}
            _ => {
                return Err((
                    at.clone(),
                    "set exactly one of secret_file, systemd_credential".into(),
                ))
            }
        }
        if entry.identity.is_empty() {
            return Err((
                at.key("identity"),
                "must name at least one identity selector (e.g. \"account:billing-agent\")".into(),
            ));
        }
        for (index, selector) in entry.identity.iter().enumerate() {
            if !selector
                .split_once(':')
                .is_some_and(|(prefix, value)| !prefix.trim().is_empty() && !value.is_empty())
            {
                return Err((
                    at.key("identity").index(index),
                    format!("{selector:?} is not an identity selector PREFIX:VALUE (e.g. \"account:billing-agent\")"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_a_name_and_an_optional_scheme() {
        let bearer = HeaderSpec::parse(DEFAULT_HEADER).unwrap();
        assert_eq!(bearer.name, http::header::AUTHORIZATION);
        assert_eq!(bearer.prefix, "Bearer ");
        let bare = HeaderSpec::parse("x-api-key").unwrap();
        assert_eq!(
            (bare.name.as_str(), bare.prefix.as_str()),
            ("x-api-key", "")
        );
        assert!(HeaderSpec::parse("bad header: Bearer").is_err());
        assert!(HeaderSpec::parse("Authorization: Two words").is_err());
    }

    fn load(text: &str) -> Result<crate::config::Config, String> {
        crate::config::Config::from_toml(text, std::path::Path::new("/etc/warden/warden.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn credentials_parse_with_their_defaults() {
        let config = load(
            "[credentials]\npresented = \"require-placeholder\"\n[[credential]]\nname = \"openai-prod\"\nsecret_file = \"/etc/warden/credentials/openai-prod\"\nidentity = [\"account:billing-agent\", \"unit:*.service\"]\n",
        )
        .unwrap();
        assert_eq!(config.credentials.presented, Presented::RequirePlaceholder);
        let entry = &config.credential_entries[0];
        assert_eq!(
            (entry.host.as_str(), entry.header.as_str()),
            (DEFAULT_HOST, DEFAULT_HEADER)
        );
        assert_eq!(load("").unwrap().credentials.presented, Presented::Replace);
    }

    #[test]
    fn config_errors_name_the_line_and_the_key() {
        let base = "[[credential]]\nname = \"prod\"\nidentity = [\"uid:0\"]\n";
        for (extra, expected) in [
            (
                "secret_file = \"/k\"\nsecrets = 1\n",
                "/etc/warden/warden.toml:5: unknown key `secrets`",
            ),
            (
                "secret_file = \"k\"\n",
                "/etc/warden/warden.toml:4: credential[0].secret_file: must be an absolute path",
            ),
            (
                "secret_file = \"/k\"\nsystemd_credential = \"k\"\n",
                "credential[0]: set exactly one of secret_file, systemd_credential",
            ),
            (
                "",
                "credential[0]: set exactly one of secret_file, systemd_credential",
            ),
            (
                "systemd_credential = \"a/b\"\n",
                "credential[0].systemd_credential: \"a/b\" must be",
            ),
            (
                "secret_file = \"/k\"\nhost = \"api.anthropic.com\"\n",
                "credential[0].host: \"api.anthropic.com\" is not in proxy.intercept_hosts",
            ),
            (
                "secret_file = \"/k\"\nheader = \"bad name\"\n",
                "credential[0].header:",
            ),
        ] {
            let error = load(&format!("{base}{extra}")).unwrap_err();
            assert!(error.contains(expected), "{error}\n(expected {expected})");
        }
        let error =
            load("[[credential]]\nname = \"p\"\nsecret_file = \"/k\"\nidentity = [\"billing\"]\n")
                .unwrap_err();
        assert!(
            error.contains("credential[0].identity[0]: \"billing\" is not an identity selector"),
            "{error}"
        );
        let error = load("[credentials]\npresented = \"keep\"\n").unwrap_err();
        assert!(error.contains("presented"), "{error}");
    }

    #[test]
    fn names_must_be_label_safe() {
        assert!(check_name("openai-prod.v2_a").is_ok());
        for bad in ["", "..", "a/b", "with space", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
