//! Who is calling the API: the person a verified token names, and the role their groups give.
use serde::Serialize;

use crate::{
    approvals::authority::Peer,
    audit::governance::{Actor, OidcActor},
    config::ApiRolesConfig,
    oidc::VerifiedToken,
};

/// What a person may do. Each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads sessions, approvals, identities, revocations, the status and the chain's verification.
    Auditor,
    /// Also decides approvals (where the rule names one of their groups).
    Approver,
    /// Also revokes and restores identities.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Principal {
    pub person: OidcActor,
    pub name: Option<String>,
    pub preferred_username: Option<String>,
    /// The roles claim's values.
    pub groups: Vec<String>,
    /// The highest role a group gives; None: signed in, but may do nothing.
    pub role: Option<Role>,
    /// When the token (or the browser session) stops being valid, unix seconds.
    pub expires_at: i64,
}

impl Principal {
    pub fn from_token(
        token: &VerifiedToken,
        issuer: &str,
        roles_claim: &str,
        roles: &ApiRolesConfig,
    ) -> Principal {
        let groups = token.strings(roles_claim);
        let holds = |names: &[String]| names.iter().any(|name| groups.contains(name));
        let role = [
            (Role::Admin, &roles.admin),
            (Role::Approver, &roles.approver),
            (Role::Auditor, &roles.auditor),
        ]
        .into_iter()
        .find(|(_, names)| holds(names))
        .map(|(role, _)| role);
        Principal {
            person: OidcActor {
                issuer: issuer.to_string(),
                subject: token.subject.clone(),
                email: token.email.clone(),
            },
            name: token.name.clone(),
            preferred_username: token.preferred_username.clone(),
            groups,
            role,
            expires_at: token.expires_at,
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.role.is_some_and(|held| held >= role)
    }

    /// Every role held, lowest first (the console shows its buttons from this).
    pub fn roles(&self) -> Vec<Role> {
        [Role::Auditor, Role::Approver, Role::Admin]
            .into_iter()
            .filter(|role| self.has(*role))
            .collect()
    }

    /// The approvals authority's view of this person.
    pub fn peer(&self) -> Peer {
        let mut peer = Peer::oidc(
            self.person.clone(),
            self.preferred_username.clone(),
            self.groups.clone(),
        );
        peer.reads_all = self.has(Role::Auditor);
        peer
    }

    /// The actor the chain records for what this person does.
    pub fn actor(&self) -> Actor {
        self.peer().actor
    }

    /// `EMAIL` or `subject S`, for log lines and refusals.
    pub fn describe(&self) -> String {
        self.actor().describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(groups: &[&str]) -> VerifiedToken {
        let mut claims = serde_json::Map::new();
        claims.insert("groups".into(), serde_json::json!(groups));
        VerifiedToken {
            subject: "s-1".into(),
            email: Some("ann@example.com".into()),
            preferred_username: None,
            name: None,
            nonce: None,
            expires_at: 0,
            claims,
        }
    }

    #[test]
    fn the_highest_role_a_group_gives_wins_and_includes_the_lower_ones() {
        let roles = ApiRolesConfig {
            auditor: vec!["audit".into()],
            approver: vec!["approve".into()],
            admin: vec!["ops".into()],
        };
        let principal =
            |groups: &[&str]| Principal::from_token(&token(groups), "i", "groups", &roles);
        assert_eq!(principal(&["approve", "audit"]).role, Some(Role::Approver));
        assert_eq!(
            principal(&["ops"]).roles(),
            [Role::Auditor, Role::Approver, Role::Admin]
        );
        let auditor = principal(&["audit"]);
        assert!(auditor.has(Role::Auditor) && !auditor.has(Role::Approver));
        assert_eq!(principal(&["staff"]).role, None);
        assert!(principal(&[]).roles().is_empty());
    }
}
