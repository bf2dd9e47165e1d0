//! Who is asking on the admin socket (SO_PEERCRED uid and gid, plus the supplementary groups of
//! the peer process), and whether they may decide a given approval.
use crate::{audit::governance::Actor, identity::lookup_user_name, policy::model::Approver};

/// The admin socket's peer.
#[derive(Clone, Debug)]
pub struct Peer {
    pub actor: Actor,
    /// The primary gid (SO_PEERCRED) and the supplementary groups (/proc/PID/status `Groups:`).
    pub gids: Vec<u32>,
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
            },
            gids,
        }
    }

    pub fn is_root(&self) -> bool {
        self.actor.uid == 0
    }

    /// `user NAME (uid N)`, for refusals.
    pub fn describe(&self) -> String {
        match &self.actor.user {
            Some(user) => format!("user {user} (uid {})", self.actor.uid),
            None => format!("uid {}", self.actor.uid),
        }
    }

    /// Whether `approvers` names this peer, by user name or by one of its groups.
    pub fn is_named(&self, approvers: &[Approver]) -> bool {
        approvers.iter().any(|approver| match approver {
            Approver::User(name) => self.actor.user.as_deref() == Some(name.as_str()),
            Approver::Group(name) => group_id(name).is_some_and(|gid| self.gids.contains(&gid)),
        })
    }

    /// May this peer decide approval `id`, requested under `requester_uid`? Root is no exception:
    /// the rule's approvers decide, and never on a request made under their own uid.
    pub fn may_decide(
        &self,
        id: &str,
        requester_uid: u32,
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
        if requester_uid == self.actor.uid {
            return Err(Refused::OwnRequest {
                id: id.to_string(),
                uid: requester_uid,
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
            },
            gids,
        }
    }

    #[test]
    fn only_named_approvers_decide_and_never_their_own_request() {
        let approvers = [Approver::User("alice".into())];
        let alice = peer(1000, "alice", vec![1000]);
        assert_eq!(alice.may_decide("ap-1", 0, &approvers), Ok(()));
        assert!(matches!(
            alice.may_decide("ap-1", 1000, &approvers),
            Err(Refused::OwnRequest { .. })
        ));
        let root = peer(0, "root", vec![0]);
        let refused = root.may_decide("ap-1", 1000, &approvers).unwrap_err();
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
}
