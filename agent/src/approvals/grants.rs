//! Duration grants: an approval `--for` a duration lets later requests of the same identity that
//! match the same rule pass without holding, until it expires.
//!
//! "The same identity" is the same uid and the same account, systemd unit, container and
//! executable: a grant for `billing-agent.service` running python as uid 995 does not cover
//! another unit, another program, or another user, even in the same unit.
use std::sync::Mutex;

use crate::audit::record::IdentitySnapshot;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdentityKey {
    uid: u32,
    account: Option<String>,
    unit: Option<String>,
    container: Option<String>,
    exe: Option<String>,
}

impl IdentityKey {
    pub fn of(identity: &IdentitySnapshot) -> IdentityKey {
        IdentityKey {
            uid: identity.uid,
            account: identity.account.clone(),
            unit: identity.unit.clone(),
            container: identity.container.clone(),
            exe: identity.exe.clone(),
        }
    }
}

#[derive(Debug)]
struct Grant {
    id: String,
    key: IdentityKey,
    rule: String,
    expires_at_us: i64,
}

#[derive(Debug, Default)]
pub struct Grants(Mutex<Vec<Grant>>);

impl Grants {
    pub fn insert(&self, id: String, key: IdentityKey, rule: String, expires_at_us: i64) {
        let mut grants = self.0.lock().unwrap_or_else(|p| p.into_inner());
        grants.push(Grant {
            id,
            key,
            rule,
            expires_at_us,
        });
    }

    /// The id of a grant in force at `now_us` for `key` and `rule`; expired grants are dropped.
    pub fn find(&self, key: &IdentityKey, rule: &str, now_us: i64) -> Option<String> {
        let mut grants = self.0.lock().unwrap_or_else(|p| p.into_inner());
        grants.retain(|grant| grant.expires_at_us > now_us);
        grants
            .iter()
            .find(|grant| grant.rule == rule && &grant.key == key)
            .map(|grant| grant.id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_covers_its_identity_and_rule_until_it_expires() {
        let identity = IdentitySnapshot {
            uid: 995,
            unit: Some("agent.service".into()),
            exe: Some("/usr/bin/python3".into()),
            pid: 1,
            ..IdentitySnapshot::default()
        };
        let grants = Grants::default();
        grants.insert("gr-1".into(), IdentityKey::of(&identity), "r".into(), 100);
        let same_process_later = IdentitySnapshot {
            pid: 2,
            ..identity.clone()
        };
        let key = IdentityKey::of(&same_process_later);
        assert_eq!(grants.find(&key, "r", 50).as_deref(), Some("gr-1"));
        assert_eq!(grants.find(&key, "other-rule", 50), None);
        let other_user = IdentitySnapshot {
            uid: 0,
            ..identity.clone()
        };
        assert_eq!(grants.find(&IdentityKey::of(&other_user), "r", 50), None);
        assert_eq!(grants.find(&key, "r", 100), None, "expired");
    }
}
