//! The loaded policy: typed rules with their match conditions compiled, and how a request is decided.
//!
//! Semantics (issue 4): every rule whose match holds applies; a deny wins over an approve, an approve
//! over an allow; masks of all matching rules combine. Among rules of the same action the first one
//! (by file name, then position in the file) is the one reported.
use std::{fmt, path::PathBuf, time::Duration};

use regex::{Regex, RegexSet};

use crate::{
    audit::record::RequestParams,
    config::Location,
    identity::selector::{Glob, IdentitySelector, SelectorSubject},
    openai::endpoint::EndpointKind,
};

/// Names accepted in a mask rule's `recognizers`: the built-in recognizers.
pub use super::recognizers::BUILTIN_NAMES as RECOGNIZERS;

/// The default `replacement` of a mask rule; `{NAME}` becomes the recognizer's label.
pub const DEFAULT_REPLACEMENT: &str = "[{NAME}]";

/// Every rule of a policy directory, in file-name order and then in file order.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// `[[limit]]`s, in file-name order and then in file order.
    pub limits: Vec<super::limit_rules::LimitRule>,
    /// The files the rules came from, in load order (files without rules included).
    pub files: Vec<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    /// Unique across the policy; appears in errors and audit records.
    pub name: String,
    /// The file and line of the rule's `name` key.
    pub source: Location,
    pub action: Action,
    /// Absent keys hold; an empty `Conditions` (no `[rule.match]`) matches every request.
    pub conditions: Conditions,
}

#[derive(Clone, Debug)]
pub enum Action {
    Deny { message: String },
    Mask(MaskRule),
    Approve(ApproveRule),
    Allow,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Deny { .. } => "deny",
            Action::Mask(_) => "mask",
            Action::Approve(_) => "approve",
            Action::Allow => "allow",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Request,
    Response,
    Both,
}

impl Direction {
    pub fn covers_request(self) -> bool {
        matches!(self, Direction::Request | Direction::Both)
    }

    pub fn covers_response(self) -> bool {
        matches!(self, Direction::Response | Direction::Both)
    }
}

/// What a mask rule hides, for the masker to build its recognizers from.
#[derive(Clone, Debug)]
pub struct MaskRule {
    /// The name of the rule this belongs to (counts are kept per rule).
    pub rule: String,
    pub direction: Direction,
    /// Built-in recognizer names, each one of `RECOGNIZERS`.
    pub recognizers: Vec<String>,
    pub patterns: Vec<MaskPattern>,
    /// `{NAME}` is replaced by the label (`EMAIL`, `EMPLOYEE_ID`).
    pub replacement: String,
}

/// A user-defined recognizer: its label is `name` uppercased.
#[derive(Clone, Debug)]
pub struct MaskPattern {
    pub name: String,
    /// Compiled at load; `regex.as_str()` is the source.
    pub regex: Regex,
}

#[derive(Clone, Debug)]
pub struct ApproveRule {
    pub approvers: Vec<Approver>,
    /// How long a request waits for a decision (default 120 s).
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approver {
    /// A unix group (admin socket peers).
    Group(String),
    /// A unix user name (admin socket peers).
    User(String),
    /// A group in the identity provider's roles claim (people signed in to the HTTPS API).
    OidcGroup(String),
}

impl Approver {
    /// `group:NAME`, `user:NAME` or `oidc-group:NAME` (the form Display writes back).
    pub fn parse(text: &str) -> Option<Approver> {
        let (kind, name) = text.split_once(':')?;
        if name.is_empty() {
            return None;
        }
        match kind {
            "group" => Some(Approver::Group(name.to_string())),
            "user" => Some(Approver::User(name.to_string())),
            "oidc-group" => Some(Approver::OidcGroup(name.to_string())),
            _ => None,
        }
    }
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Approver::Group(name) => write!(f, "group:{name}"),
            Approver::User(name) => write!(f, "user:{name}"),
            Approver::OidcGroup(name) => write!(f, "oidc-group:{name}"),
        }
    }
}

/// `[rule.match]`, compiled. A list holds if any of its items does.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    pub identity: Option<Vec<IdentitySelector>>,
    /// Lowercase globs over the TLS server name.
    pub host: Option<Vec<Glob>>,
    /// None also when the file lists `"*"`.
    pub endpoint: Option<Vec<EndpointKind>>,
    pub model: Option<ModelCondition>,
    pub param_above: Option<ParamCaps>,
    pub text_matches: Option<RegexSet>,
}

#[derive(Clone, Debug)]
pub enum ModelCondition {
    /// Holds when the request names a model matching one of the globs.
    In(Vec<Glob>),
    /// Holds when the request's model matches none of the globs, or it names no model at all: a
    /// request without a model is not one of the listed models, so an allow list written as a deny
    /// with `model_not_in` fails closed.
    NotIn(Vec<Glob>),
}

/// `param_above`: holds when any listed parameter is present in the request and above its cap.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamCaps {
    pub temperature: Option<f64>,
    pub max_tokens: Option<f64>,
    pub max_output_tokens: Option<f64>,
}

impl ParamCaps {
    fn exceeded_by(&self, params: &RequestParams) -> bool {
        let above = |cap: Option<f64>, value: Option<f64>| matches!((cap, value), (Some(cap), Some(value)) if value > cap);
        // u64 → f64 can round above 2^53, far beyond any token cap; the comparison stays right.
        above(self.temperature, params.temperature)
            || above(self.max_tokens, params.max_tokens.map(|n| n as f64))
            || above(
                self.max_output_tokens,
                params.max_output_tokens.map(|n| n as f64),
            )
    }
}

/// What a rule's match is evaluated against.
pub struct RequestFacts<'a> {
    pub identity: &'a dyn SelectorSubject,
    /// The TLS server name.
    pub host: &'a str,
    pub endpoint: EndpointKind,
    pub model: Option<&'a str>,
    pub params: &'a RequestParams,
    /// Every prompt text of the body (`policy::prompt::prompt_texts`); empty for non-JSON bodies.
    pub prompt_texts: &'a [&'a str],
    /// False for bodies Warden does not inspect (uploads, media, non-JSON): then only rules whose
    /// conditions are about identity, host and endpoint can match.
    pub body_inspected: bool,
}

/// The outcome of evaluating a policy against one request.
#[derive(Clone, Debug)]
pub struct Decision<'p> {
    pub verdict: Verdict<'p>,
    /// Every matching mask rule, in policy order.
    pub masks: Vec<&'p MaskRule>,
    /// The names of every matching rule, in policy order.
    pub matched: Vec<&'p str>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict<'p> {
    Allow,
    Deny {
        rule: &'p str,
        message: &'p str,
    },
    Approve {
        rule: &'p str,
        approvers: &'p [Approver],
        timeout: Duration,
    },
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.name == name)
    }

    /// Deny > approve > allow; with no matching deny or approve rule the request is allowed.
    /// Whether any rule needs to see request bodies: conditions on the model, parameters or text,
    /// or a mask. Without such a rule, a body too big to inspect can pass uninspected.
    pub fn reads_bodies(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| rule.conditions.read_body() || matches!(rule.action, Action::Mask(_)))
    }

    pub fn decide<'p>(&'p self, request: &RequestFacts) -> Decision<'p> {
        let mut decision = Decision {
            verdict: Verdict::Allow,
            masks: Vec::new(),
            matched: Vec::new(),
        };
        for rule in self.rules.iter().filter(|rule| rule.matches(request)) {
            decision.matched.push(&rule.name);
            match &rule.action {
                Action::Deny { message } => {
                    if !matches!(decision.verdict, Verdict::Deny { .. }) {
                        decision.verdict = Verdict::Deny {
                            rule: &rule.name,
                            message,
                        };
                    }
                }
                Action::Approve(approve) => {
                    if decision.verdict == Verdict::Allow {
                        decision.verdict = Verdict::Approve {
                            rule: &rule.name,
                            approvers: &approve.approvers,
                            timeout: approve.timeout,
                        };
                    }
                }
                Action::Mask(mask) => decision.masks.push(mask),
                Action::Allow => {}
            }
        }
        decision
    }
}

impl Rule {
    /// Every present condition holds (and the body was inspected, if a condition is about it).
    pub fn matches(&self, request: &RequestFacts) -> bool {
        (request.body_inspected || !self.conditions.read_body())
            && self.conditions.hold_for(request)
    }
}

impl Conditions {
    pub fn hold_for(&self, request: &RequestFacts) -> bool {
        fn holds<T>(condition: &Option<T>, test: impl FnOnce(&T) -> bool) -> bool {
            condition.as_ref().is_none_or(test)
        }
        holds(&self.identity, |selectors| {
            selectors.iter().any(|s| s.matches(request.identity))
        }) && holds(&self.host, |globs| {
            let host = request.host.trim_end_matches('.').to_ascii_lowercase();
            globs.iter().any(|glob| glob.matches(&host))
        }) && holds(&self.endpoint, |kinds| kinds.contains(&request.endpoint))
            && holds(&self.model, |condition| match condition {
                ModelCondition::In(globs) => request
                    .model
                    .is_some_and(|model| globs.iter().any(|glob| glob.matches(model))),
                ModelCondition::NotIn(globs) => request
                    .model
                    .is_none_or(|model| !globs.iter().any(|glob| glob.matches(model))),
            })
            && holds(&self.param_above, |caps| caps.exceeded_by(request.params))
            && holds(&self.text_matches, |set| {
                request.prompt_texts.iter().any(|text| set.is_match(text))
            })
    }

    /// The conditions look at the request body (model, parameters or prompt text), which non-JSON
    /// and oversized bodies do not provide.
    pub fn read_body(&self) -> bool {
        self.model.is_some() || self.param_above.is_some() || self.text_matches.is_some()
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
