//! Identity selectors (`account:GLOB`, `uid:N`, …): parsing, matching an identity, and the glob rules.
//!
//! The same syntax is used by `sessions list --identity` (translated to SQL by the audit store) and by
//! policies (matched in memory), so `Glob::matches` follows SQLite's `GLOB` exactly for the subset
//! allowed here: `*` (any run of characters), `?` (one character), everything else literal and
//! case-sensitive.
use std::{fmt, str::FromStr};

use crate::identity::{Identity, IdentitySnapshot};

/// The prefixes a selector may start with, in the order error messages list them.
pub const SELECTOR_PREFIXES: [&str; 8] = [
    "account", "unit", "user", "uid", "cgroup", "exe", "pid", "sa",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("identity selector {0:?} has no prefix: expected PREFIX:VALUE, where PREFIX is one of {prefixes}", prefixes = SELECTOR_PREFIXES.join(", "))]
    MissingPrefix(String),
    #[error("unknown identity selector prefix {0:?}: valid prefixes are {prefixes}", prefixes = SELECTOR_PREFIXES.join(", "))]
    UnknownPrefix(String),
    #[error("identity selector {0:?} has an empty value")]
    EmptyValue(String),
    #[error("identity selector {prefix}:{value:?}: {prefix} takes a number")]
    NotANumber { prefix: &'static str, value: String },
}

/// A case-sensitive glob: `*` matches any run of characters, `?` one character.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: impl Into<String>) -> Self {
        Glob(pattern.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pattern itself when it has no wildcard (so it can be compared with `=`).
    pub fn literal(&self) -> Option<&str> {
        (!self.0.contains(['*', '?'])).then_some(self.0.as_str())
    }

    /// The pattern for SQLite's `GLOB`: `[` starts a character class there, so it is escaped as
    /// `[[]` to keep it literal like `matches` does.
    pub fn sqlite_pattern(&self) -> String {
        self.0.replace('[', "[[]")
    }

    pub fn matches(&self, text: &str) -> bool {
        // It runs for every glob of every rule on every request: bytes when they are characters.
        if self.0.is_ascii() && text.is_ascii() {
            return glob_match(self.0.as_bytes(), text.as_bytes(), b'*', b'?');
        }
        let pattern: Vec<char> = self.0.chars().collect();
        let text: Vec<char> = text.chars().collect();
        glob_match(&pattern, &text, '*', '?')
    }
}

/// `*` (`any`) matches any run of items, `?` (`one`) one item. Iterative, with one backtrack
/// point (the last `*`): linear in practice, never exponential.
fn glob_match<T: Copy + PartialEq>(pattern: &[T], text: &[T], any: T, one: T) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(&c) if c == any => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == one || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == any)
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which identities a selector picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentitySelector {
    Account(Glob),
    Unit(Glob),
    User(Glob),
    Uid(u32),
    Cgroup(Glob),
    Exe(Glob),
    Pid(u32),
    /// `sa:namespace/name` — the Kubernetes service account.
    ServiceAccount(Glob),
}

/// The identity fields a selector can look at; implemented by the live identity and the audit
/// snapshot, so policies and queries agree.
pub trait SelectorSubject {
    fn account(&self) -> Option<&str>;
    fn unit(&self) -> Option<&str>;
    fn user(&self) -> Option<&str>;
    fn uid(&self) -> u32;
    fn cgroup(&self) -> Option<&str>;
    fn exe(&self) -> Option<&str>;
    fn pid(&self) -> u32;
    fn service_account(&self) -> Option<&str>;
}

impl IdentitySelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let text = text.trim();
        let (prefix, value) = text
            .split_once(':')
            .ok_or_else(|| SelectorError::MissingPrefix(text.to_owned()))?;
        if value.is_empty() {
            return Err(SelectorError::EmptyValue(text.to_owned()));
        }
        let glob = || Glob::new(value);
        let number = |prefix: &'static str| {
            value.parse::<u32>().map_err(|_| SelectorError::NotANumber {
                prefix,
                value: value.to_owned(),
            })
        };
        Ok(match prefix {
            "account" => IdentitySelector::Account(glob()),
            "unit" => IdentitySelector::Unit(glob()),
            "user" => IdentitySelector::User(glob()),
            "uid" => IdentitySelector::Uid(number("uid")?),
            "cgroup" => IdentitySelector::Cgroup(glob()),
            "exe" => IdentitySelector::Exe(glob()),
            "pid" => IdentitySelector::Pid(number("pid")?),
            "sa" => IdentitySelector::ServiceAccount(glob()),
            other => return Err(SelectorError::UnknownPrefix(other.to_owned())),
        })
    }

    /// The prefix this selector was written with.
    pub fn prefix(&self) -> &'static str {
        match self {
            IdentitySelector::Account(_) => "account",
            IdentitySelector::Unit(_) => "unit",
            IdentitySelector::User(_) => "user",
            IdentitySelector::Uid(_) => "uid",
            IdentitySelector::Cgroup(_) => "cgroup",
            IdentitySelector::Exe(_) => "exe",
            IdentitySelector::Pid(_) => "pid",
            IdentitySelector::ServiceAccount(_) => "sa",
        }
    }

    /// An identity without the selected field (no account, no unit, …) never matches.
    pub fn matches(&self, identity: &(impl SelectorSubject + ?Sized)) -> bool {
        let glob_matches =
            |glob: &Glob, field: Option<&str>| field.is_some_and(|f| glob.matches(f));
        match self {
            IdentitySelector::Account(glob) => glob_matches(glob, identity.account()),
            IdentitySelector::Unit(glob) => glob_matches(glob, identity.unit()),
            IdentitySelector::User(glob) => glob_matches(glob, identity.user()),
            IdentitySelector::Uid(uid) => identity.uid() == *uid,
            IdentitySelector::Cgroup(glob) => glob_matches(glob, identity.cgroup()),
            IdentitySelector::Exe(glob) => glob_matches(glob, identity.exe()),
            IdentitySelector::Pid(pid) => identity.pid() == *pid,
            IdentitySelector::ServiceAccount(glob) => {
                glob_matches(glob, identity.service_account())
            }
        }
    }
}

impl FromStr for IdentitySelector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        IdentitySelector::parse(text)
    }
}

impl fmt::Display for IdentitySelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.prefix();
        match self {
            IdentitySelector::Uid(n) | IdentitySelector::Pid(n) => write!(f, "{prefix}:{n}"),
            IdentitySelector::Account(glob)
            | IdentitySelector::Unit(glob)
            | IdentitySelector::User(glob)
            | IdentitySelector::Cgroup(glob)
            | IdentitySelector::Exe(glob)
            | IdentitySelector::ServiceAccount(glob) => write!(f, "{prefix}:{glob}"),
        }
    }
}

/// The live identity and its audit snapshot hold the same fields (the service account under
/// another name), so one body serves both and the snapshot's tests cover the live one too.
macro_rules! selector_subject {
    ($subject:ty, $service_account:ident) => {
        impl SelectorSubject for $subject {
            fn account(&self) -> Option<&str> {
                self.account.as_deref()
            }
            fn unit(&self) -> Option<&str> {
                self.unit.as_deref()
            }
            fn user(&self) -> Option<&str> {
                self.user.as_deref()
            }
            fn uid(&self) -> u32 {
                self.uid
            }
            fn cgroup(&self) -> Option<&str> {
                self.cgroup.as_deref()
            }
            fn exe(&self) -> Option<&str> {
                self.exe.as_deref()
            }
            fn pid(&self) -> u32 {
                self.pid
            }
            fn service_account(&self) -> Option<&str> {
                self.$service_account()
            }
        }
    };
}

impl IdentitySnapshot {
    /// Audit queries find every recorded account, verified or not (`k8s_sa_verified` says which).
    fn recorded_service_account(&self) -> Option<&str> {
        self.k8s_sa.as_deref()
    }
}

impl Identity {
    /// Policies and credentials see an account only when it may be trusted (`[identity.kubernetes]`).
    fn selectable_service_account(&self) -> Option<&str> {
        self.k8s_service_account
            .as_deref()
            .filter(|_| self.k8s_sa_selectable)
    }
}

selector_subject!(IdentitySnapshot, recorded_service_account);
selector_subject!(Identity, selectable_service_account);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_prefix_and_round_trips() {
        for text in [
            "account:billing-*",
            "unit:agent?.service",
            "user:alice",
            "uid:1000",
            "cgroup:/system.slice/*",
            "exe:/usr/bin/python3*",
            "pid:42",
            "sa:default/*",
        ] {
            let selector = IdentitySelector::parse(text).unwrap();
            assert_eq!(selector.to_string(), text);
            assert_eq!(text.split(':').next(), Some(selector.prefix()));
        }
        assert_eq!(
            IdentitySelector::parse(" uid:7 ").unwrap(),
            IdentitySelector::Uid(7)
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let err = IdentitySelector::parse("acount:x").unwrap_err();
        assert_eq!(err, SelectorError::UnknownPrefix("acount".into()));
        let message = err.to_string();
        assert!(message.contains("\"acount\""), "{message}");
        assert!(
            message.contains("account, unit, user, uid, cgroup, exe, pid, sa"),
            "{message}"
        );
        assert!(matches!(
            IdentitySelector::parse("billing"),
            Err(SelectorError::MissingPrefix(_))
        ));
        assert!(matches!(
            IdentitySelector::parse("unit:"),
            Err(SelectorError::EmptyValue(_))
        ));
        let err = IdentitySelector::parse("uid:root").unwrap_err();
        assert!(err.to_string().contains("uid takes a number"), "{err}");
        assert!(IdentitySelector::parse("pid:-1").is_err());
    }

    #[test]
    fn glob_follows_sqlite_rules() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("a*", "abc", true),
            ("a*", "bac", false),
            ("*c", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abcd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("?", "é", true),
            ("ABC", "abc", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("[x]", "[x]", true),
            ("[x]", "x", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                expected,
                "{pattern:?} vs {text:?}"
            );
        }
        assert_eq!(Glob::new("a[b]*").sqlite_pattern(), "a[[]b]*");
        assert_eq!(Glob::new("plain").literal(), Some("plain"));
        assert_eq!(Glob::new("pl*n").literal(), None);
    }

    #[test]
    fn matches_snapshot_fields() {
        let snapshot = IdentitySnapshot {
            pid: 42,
            uid: 1000,
            user: Some("alice".into()),
            account: Some("billing-agent".into()),
            unit: Some("agent.service".into()),
            cgroup: Some("/system.slice/agent.service".into()),
            exe: Some("/usr/bin/python3.12".into()),
            k8s_sa: Some("prod/runner".into()),
            ..IdentitySnapshot::default()
        };
        let yes = [
            "account:billing-*",
            "unit:agent.service",
            "user:al*",
            "uid:1000",
            "cgroup:/system.slice/*",
            "exe:*/python3*",
            "pid:42",
            "sa:prod/*",
        ];
        for text in yes {
            assert!(
                IdentitySelector::parse(text).unwrap().matches(&snapshot),
                "{text}"
            );
        }
        let no = ["account:ops*", "uid:0", "pid:43", "user:bob", "sa:dev/*"];
        for text in no {
            assert!(
                !IdentitySelector::parse(text).unwrap().matches(&snapshot),
                "{text}"
            );
        }
        let empty = IdentitySnapshot::default();
        assert!(!IdentitySelector::parse("account:*")
            .unwrap()
            .matches(&empty));
    }
}
