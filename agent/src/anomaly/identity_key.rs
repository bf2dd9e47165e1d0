//! The identity an anomaly baseline belongs to, written as the selector a block revokes.
//!
//! The most specific stable selector Warden can revoke: the account (a configured `[[account]]`,
//! else the systemd unit), else the unit, else the uid. Never the pid or the exe: a pid is one
//! process's, and an exe is shared by every workload running that binary. A name holding a glob
//! character (`*`, `?`) would revoke more than this identity, so it falls back to the uid.

/// The identity key of an identity with these fields (the live identity's, or an `exchanges` row's).
pub fn identity_key(account: Option<&str>, unit: Option<&str>, uid: u32) -> String {
    let literal = |name: &&str| !name.is_empty() && !name.contains(['*', '?']);
    if let Some(account) = account.filter(literal) {
        return format!("account:{account}");
    }
    if let Some(unit) = unit.filter(literal) {
        return format!("unit:{unit}");
    }
    format!("uid:{uid}")
}

#[cfg(test)]
mod tests {
    use super::identity_key;
    use crate::identity::selector::IdentitySelector;

    #[test]
    fn the_most_specific_stable_selector_is_chosen() {
        assert_eq!(
            identity_key(Some("billing"), Some("b.service"), 7),
            "account:billing"
        );
        assert_eq!(identity_key(None, Some("b.service"), 7), "unit:b.service");
        assert_eq!(identity_key(None, None, 7), "uid:7");
        // A glob character would revoke others too.
        assert_eq!(identity_key(Some("a*"), Some("x?.service"), 7), "uid:7");
        for key in ["account:billing", "unit:b.service", "uid:7"] {
            IdentitySelector::parse(key).expect("a key is a selector revoke accepts");
        }
    }
}
