//! Who is deciding an approval — a peer of the admin socket (SO_PEERCRED uid and gid, plus the
//! supplementary groups of the peer process) or a person signed in to the HTTPS API (the
//! identity provider's subject and groups) — and whether they may decide a given approval.
use crate::{
    audit::{
        governance::{Actor, OidcActor},
        record::IdentitySnapshot,
    },
    identity::lookup_user_name,
    policy::model::Approver,
};

/// Who asks.
#[derive(Clone, Debug)]
pub struct Peer {
    pub actor: Actor,
    /// Socket peers: the primary gid (SO_PEERCRED) and the supplementary groups (/proc/PID/status
    /// `Groups:`). Empty for a person signed in over the API.
    pub gids: Vec<u32>,
    /// API users: the groups of the roles claim, and the names that say a request is their own
    /// (`preferred_username` and the local part of `email`).
    pub oidc_groups: Vec<String>,
    pub oidc_usernames: Vec<String>,
    /// An API user whose role lets them read every approval (auditors and up).
    pub reads_all: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("approval {id} is for {approvers}; {who} is not one of them")]
    NotAnApprover {
        id: String,
        approvers: String,
        who: String,
    },
    #[error("approval {id} was requested under uid {uid}, which is yours: nobody approves their own request")]
    OwnRequest { id: String, uid: u32 },
    #[error("approval {id} was requested by user {user}, which is you ({who}): nobody approves their own request")]
    OwnRequestOidc {
        id: String,
        user: String,
        who: String,
    },
}

impl Peer {
    pub fn new(uid: u32, gid: u32, pid: Option<u32>) -> Peer {
        let mut gids = vec![gid];
        if let Some(pid) = pid {
            gids.extend(supplementary_groups(pid).into_iter().filter(|g| *g != gid));
        }
        Peer {
            actor: Actor {
                uid,
                user: lookup_user_name(uid),
                pid,
                oidc: None,
            },
            gids,
            oidc_groups: Vec::new(),
            oidc_usernames: Vec::new(),
            reads_all: false,
        }
    }

    /// A person the identity provider vouched for, acting through the daemon (whose uid the
    /// actor carries).
    pub fn oidc(
        person: OidcActor,
        preferred_username: Option<String>,
        groups: Vec<String>,
    ) -> Peer {
        let local_part = person
            .email
            .as_deref()
            .and_then(|email| email.split_once('@'))
            .map(|(local, _)| local.to_string());
        let mut usernames: Vec<String> = preferred_username.into_iter().chain(local_part).collect();
        usernames.dedup();
        let uid = nix::unistd::getuid().as_raw();
        Peer {
            actor: Actor {
                uid,
                user: lookup_user_name(uid),
                pid: None,
                oidc: Some(person),
            },
            gids: Vec::new(),
            oidc_groups: groups,
            oidc_usernames: usernames,
            reads_all: false,
        }
    }

    /// Root on the admin socket sees every approval; nobody over the API is root.
    pub fn is_root(&self) -> bool {
        self.actor.uid == 0 && self.actor.oidc.is_none()
    }

    /// Whether every approval is visible to this peer (deciding is another matter).
    pub fn sees_everything(&self) -> bool {
        self.is_root() || self.reads_all
    }

    /// `user NAME (uid N)` or `EMAIL (OIDC subject S)`, for refusals.
    pub fn describe(&self) -> String {
        match (&self.actor.oidc, &self.actor.user) {
            (None, Some(user)) => format!("user {user} (uid {})", self.actor.uid),
            _ => self.actor.describe(),
        }
    }

    /// Whether `approvers` names this peer: a socket peer by user name or one of its groups, an
    /// API user by one of its identity provider's groups. Neither kind answers to the other's.
    pub fn is_named(&self, approvers: &[Approver]) -> bool {
        let api_user = self.actor.oidc.is_some();
        approvers.iter().any(|approver| match approver {
            Approver::User(name) if !api_user => self.actor.user.as_deref() == Some(name.as_str()),
            Approver::Group(name) if !api_user => {
                group_id(name).is_some_and(|gid| self.gids.contains(&gid))
            }
            Approver::OidcGroup(name) if api_user => self.oidc_groups.contains(name),
            _ => false,
        })
    }

    /// Whether this peer decided what `by` decided (same uid on the socket, same subject over the API).
    pub fn is_same_actor(&self, by: &Actor) -> bool {
        match (&self.actor.oidc, &by.oidc) {
            (None, None) => self.actor.uid == by.uid,
            (Some(me), Some(them)) => me.issuer == them.issuer && me.subject == them.subject,
            _ => false,
        }
    }

    /// May this peer decide approval `id`, requested by `requester`? Root is no exception: the
    /// rule's approvers decide, and never on their own request — a socket peer under its own uid,
    /// an API user whose user name is the requester's.
    pub fn may_decide(
        &self,
        id: &str,
        requester: &IdentitySnapshot,
        approvers: &[Approver],
    ) -> Result<(), Refused> {
        if !self.is_named(approvers) {
            let names: Vec<String> = approvers.iter().map(ToString::to_string).collect();
            return Err(Refused::NotAnApprover {
                id: id.to_string(),
                approvers: names.join(", "),
                who: self.describe(),
            });
        }
        if self.actor.oidc.is_none() && requester.uid == self.actor.uid {
            return Err(Refused::OwnRequest {
                id: id.to_string(),
                uid: requester.uid,
            });
        }
        if let Some(user) = requester
            .user
            .as_ref()
            .filter(|user| self.oidc_usernames.contains(user))
        {
            return Err(Refused::OwnRequestOidc {
                id: id.to_string(),
                user: user.clone(),
                who: self.describe(),
            });
        }
        Ok(())
    }
}

/// The `Groups:` line of /proc/PID/status; empty when the process is gone.
fn supplementary_groups(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The gid of group `name`, from the system's group database (NSS).
pub fn group_id(name: &str) -> Option<u32> {
    let group = nix::unistd::Group::from_name(name).ok()??;
    Some(group.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, user: &str, gids: Vec<u32>) -> Peer {
        Peer {
            actor: Actor {
                uid,
                user: Some(user.into()),
                pid: None,
                oidc: None,
            },
            gids,
            oidc_groups: Vec::new(),
            oidc_usernames: Vec::new(),
            reads_all: false,
        }
    }

    fn requester(uid: u32, user: &str) -> IdentitySnapshot {
        IdentitySnapshot {
            uid,
            user: Some(user.into()),
            ..IdentitySnapshot::default()
        }
    }

    fn person(email: &str, username: Option<&str>, groups: &[&str]) -> Peer {
        let actor = OidcActor {
            issuer: "https://idp.example".into(),
            subject: format!("sub-{email}"),
            email: Some(email.into()),
        };
        let groups = groups.iter().map(ToString::to_string).collect();
        Peer::oidc(actor, username.map(Into::into), groups)
    }

    #[test]
    fn only_named_approvers_decide_and_never_their_own_request() {
        let approvers = [Approver::User("alice".into())];
        let alice = peer(1000, "alice", vec![1000]);
        assert_eq!(
            alice.may_decide("ap-1", &requester(0, "root"), &approvers),
            Ok(())
        );
        assert!(matches!(
            alice.may_decide("ap-1", &requester(1000, "alice"), &approvers),
            Err(Refused::OwnRequest { .. })
        ));
        let root = peer(0, "root", vec![0]);
        let refused = root
            .may_decide("ap-1", &requester(1000, "alice"), &approvers)
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "approval ap-1 is for user:alice; user root (uid 0) is not one of them"
        );
    }

    #[test]
    fn groups_are_matched_by_gid() {
        // gid 0 is "root" on every Linux system.
        let approvers = [Approver::Group("root".into())];
        assert!(peer(1000, "bob", vec![1000, 0]).is_named(&approvers));
        assert!(!peer(1000, "bob", vec![1000]).is_named(&approvers));
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-warden"), None);
    }

    #[test]
    fn api_users_answer_only_to_oidc_groups_and_never_approve_their_own_user() {
        let approvers = [
            Approver::OidcGroup("llm-approvers".into()),
            Approver::User("carol".into()),
        ];
        let carol = person("carol@example.com", None, &["llm-approvers"]);
        assert!(!carol.is_root(), "an API user is never root");
        assert_eq!(
            carol.may_decide("ap-1", &requester(1001, "bob"), &approvers),
            Ok(())
        );
        // The unix user "carol" is named, but a person over the API answers only to oidc-group.
        let outsider = person("carol@example.com", None, &["staff"]);
        assert!(matches!(
            outsider.may_decide("ap-1", &requester(1001, "bob"), &approvers),
            Err(Refused::NotAnApprover { .. })
        ));
        // A socket peer is not named by an oidc-group, whatever its groups.
        assert!(!peer(1000, "dave", vec![1000])
            .is_named(&[Approver::OidcGroup("llm-approvers".into())]));
        // The request of unix user carol is carol's own: by email local part or preferred_username.
        let refused = carol
            .may_decide("ap-1", &requester(1002, "carol"), &approvers)
            .unwrap_err();
        assert!(
            matches!(refused, Refused::OwnRequestOidc { .. }),
            "{refused}"
        );
        let by_username = person("c.smith@example.com", Some("bob"), &["llm-approvers"]);
        assert!(matches!(
            by_username.may_decide("ap-1", &requester(1001, "bob"), &approvers),
            Err(Refused::OwnRequestOidc { .. })
        ));
    }
}
