//! `[admin]` (who may reach the admin socket) and `[approvals]` (where pending approvals are
//! announced): the configuration of just-in-time approval.
//!
//! ```toml
//! [admin]
//! group = "warden-approvers"   # the socket becomes 0660 root:GROUP; approvers need not be root
//! [approvals]
//! webhook = "https://hooks.slack.com/services/…"   # JSON POST with a Slack `text` per request
//! webhook_timeout_secs = 5
//! ```
use super::locate::KeyPath;

/// `[admin]`: the admin socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// A unix group whose members may connect to the admin socket (mode 0660, this group). Each
    /// operation is still checked against the peer: deciding approvals is for the approvers a
    /// rule names, everything else for root. Absent: the socket is root's alone (0600).
    pub group: Option<String>,
}

/// `[approvals]`: notifications of held requests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// An `http://` or `https://` URL that receives a JSON POST for each new pending approval.
    pub webhook: Option<String>,
    /// How long one webhook POST may take before it is abandoned (and counted as failed).
    pub webhook_timeout_secs: u64,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            webhook: None,
            webhook_timeout_secs: 5,
        }
    }
}

impl AdminConfig {
    pub(super) fn validate(&self) -> Result<(), (KeyPath, String)> {
        match &self.group {
            Some(group) if group.is_empty() || group.contains(['\n', ':', '/']) => Err((
                KeyPath::root().key("admin").key("group"),
                format!("{group:?} is not a group name"),
            )),
            _ => Ok(()),
        }
    }
}

impl ApprovalsConfig {
    pub(super) fn validate(&self) -> Result<(), (KeyPath, String)> {
        let at = KeyPath::root().key("approvals");
        if let Some(url) = &self.webhook {
            let parsed: Result<http::Uri, _> = url.parse();
            let ok = parsed.as_ref().is_ok_and(|uri| {
                matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
            });
            if !ok {
                return Err((
                    at.key("webhook"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if self.webhook_timeout_secs == 0 {
            return Err((at.key("webhook_timeout_secs"), "must be at least 1".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("/w.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn admin_group_and_webhook_are_read_and_checked() {
        let config = load(
            "[admin]\ngroup = \"secops\"\n[approvals]\nwebhook = \"https://hooks.example/x\"\n",
        )
        .unwrap();
        assert_eq!(config.admin.group.as_deref(), Some("secops"));
        assert_eq!(config.approvals.webhook_timeout_secs, 5);
        assert_eq!(Config::default().admin.group, None);

        let error = load("[approvals]\nwebhook = \"ftp://x/\"\n").unwrap_err();
        assert_eq!(
            error,
            "/w.toml:2: approvals.webhook: \"ftp://x/\" is not an http:// or https:// URL"
        );
        let error = load("[admin]\ngroup = \"a:b\"\n").unwrap_err();
        assert_eq!(error, "/w.toml:2: admin.group: \"a:b\" is not a group name");
        assert!(load("[admin]\ngrup = \"x\"\n")
            .unwrap_err()
            .contains("unknown key `grup`"));
    }
}
