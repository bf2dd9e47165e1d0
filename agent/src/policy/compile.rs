//! The policy file format as written (serde, unknown keys refused) and its compilation into rules:
//! each action's keys checked and compiled (the match table is `conditions`' job).
use std::{collections::HashSet, time::Duration};

use regex::Regex;
use serde::Deserialize;

use super::{
    conditions::{compile_match, RawMatch},
    locate::KeyPath,
    model::{
        Action, ApproveRule, Approver, Conditions, Direction, MaskPattern, MaskRule, Rule,
        DEFAULT_REPLACEMENT, RECOGNIZERS,
    },
};
use crate::config::Location;

/// An approval request waits this long when a rule names no `timeout`.
/// Below the official SDKs' 600 s client timeout, so a held call gets Warden's answer.
const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicyFile {
    #[serde(default)]
    pub(super) rule: Vec<RawRule>,
    #[serde(default)]
    pub(super) limit: Vec<super::limit_rules::RawLimit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    name: String,
    action: RawAction,
    message: Option<String>,
    #[serde(rename = "match")]
    conditions: Option<RawMatch>,
    direction: Option<Direction>,
    recognizers: Option<Vec<String>>,
    patterns: Option<Vec<RawPattern>>,
    replacement: Option<String>,
    approvers: Option<Vec<String>>,
    timeout: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawAction {
    Deny,
    Mask,
    Approve,
    Allow,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPattern {
    name: String,
    regex: String,
}

/// Problems found so far, each as (key path, reason).
pub(super) type Problems = Vec<(KeyPath, String)>;

/// The rule at `at`, or None after adding every problem in it to `problems`.
pub(super) fn compile_rule(
    raw: RawRule,
    at: &KeyPath,
    source: Location,
    problems: &mut Problems,
) -> Option<Rule> {
    let before = problems.len();
    if raw.name.trim().is_empty() {
        problems.push((at.key("name"), "must not be empty".into()));
    }
    let misplaced = [
        ("message", raw.message.is_some(), RawAction::Deny),
        ("direction", raw.direction.is_some(), RawAction::Mask),
        ("recognizers", raw.recognizers.is_some(), RawAction::Mask),
        ("patterns", raw.patterns.is_some(), RawAction::Mask),
        ("replacement", raw.replacement.is_some(), RawAction::Mask),
        ("approvers", raw.approvers.is_some(), RawAction::Approve),
        ("timeout", raw.timeout.is_some(), RawAction::Approve),
    ];
    for (key, set, owner) in misplaced {
        if set && raw.action != owner {
            let reason = format!("only {} rules take `{key}`", owner.name());
            problems.push((at.key(key), reason));
        }
    }
    let action = match raw.action {
        RawAction::Deny => deny_action(raw.message, at, problems),
        RawAction::Allow => Some(Action::Allow),
        RawAction::Approve => approve_action(raw.approvers, raw.timeout, at, problems),
        RawAction::Mask => {
            let mask = MaskRule {
                rule: raw.name.clone(),
                direction: raw.direction.unwrap_or(Direction::Both),
                recognizers: raw.recognizers.unwrap_or_default(),
                patterns: Vec::new(),
                replacement: raw
                    .replacement
                    .unwrap_or_else(|| DEFAULT_REPLACEMENT.to_string()),
            };
            mask_action(mask, raw.patterns.unwrap_or_default(), at, problems)
        }
    };
    let conditions = match raw.conditions {
        Some(raw_match) => compile_match(raw_match, &at.key("match"), problems),
        None => Some(Conditions::default()),
    };
    let (action, conditions) = (action?, conditions?);
    (problems.len() == before).then(|| Rule {
        name: raw.name,
        source,
        action,
        conditions,
    })
}

impl RawAction {
    fn name(self) -> &'static str {
        match self {
            RawAction::Deny => "deny",
            RawAction::Mask => "mask",
            RawAction::Approve => "approve",
            RawAction::Allow => "allow",
        }
    }
}

fn deny_action(message: Option<String>, at: &KeyPath, problems: &mut Problems) -> Option<Action> {
    match message {
        Some(message) if !message.trim().is_empty() => Some(Action::Deny { message }),
        Some(_) => {
            problems.push((at.key("message"), "must not be empty".into()));
            None
        }
        None => {
            let reason = "a deny rule needs a `message`: the agent receives it as the error";
            problems.push((at.clone(), reason.into()));
            None
        }
    }
}

fn approve_action(
    approvers: Option<Vec<String>>,
    timeout: Option<String>,
    at: &KeyPath,
    problems: &mut Problems,
) -> Option<Action> {
    let before = problems.len();
    let reason = "an approve rule needs at least one approver (\"group:NAME\", \"user:NAME\" or \"oidc-group:NAME\")";
    // An absent key has no line of its own; the rule's does.
    match &approvers {
        None => problems.push((at.clone(), reason.into())),
        Some(list) if list.is_empty() => problems.push((at.key("approvers"), reason.into())),
        Some(_) => {}
    }
    let approvers = approvers.unwrap_or_default();
    let mut parsed = Vec::new();
    for (i, text) in approvers.iter().enumerate() {
        match Approver::parse(text) {
            Some(approver) => parsed.push(approver),
            None => {
                let reason =
                    format!("{text:?} is not \"group:NAME\", \"user:NAME\" or \"oidc-group:NAME\"");
                problems.push((at.key("approvers").index(i), reason));
            }
        }
    }
    let timeout = match timeout {
        None => DEFAULT_APPROVAL_TIMEOUT,
        Some(text) => parse_duration(&text).unwrap_or_else(|reason| {
            problems.push((at.key("timeout"), reason));
            Duration::ZERO
        }),
    };
    (problems.len() == before).then_some(Action::Approve(ApproveRule {
        approvers: parsed,
        timeout,
    }))
}

fn mask_action(
    mut mask: MaskRule,
    patterns: Vec<RawPattern>,
    at: &KeyPath,
    problems: &mut Problems,
) -> Option<Action> {
    let before = problems.len();
    if mask.recognizers.is_empty() && patterns.is_empty() {
        let reason = "a mask rule needs `recognizers` or `patterns`";
        problems.push((at.clone(), reason.into()));
    }
    let mut labels = HashSet::new();
    for (i, name) in mask.recognizers.iter().enumerate() {
        let path = at.key("recognizers").index(i);
        if !RECOGNIZERS.contains(&name.as_str()) {
            let known = RECOGNIZERS.join(", ");
            problems.push((
                path,
                format!("unknown recognizer {name:?} (known: {known})"),
            ));
        } else if !labels.insert(name.to_uppercase()) {
            problems.push((path, format!("recognizer {name:?} is listed twice")));
        }
    }
    for (i, pattern) in patterns.into_iter().enumerate() {
        let path = at.key("patterns").index(i);
        let name_ok = !pattern.name.is_empty()
            && pattern
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            let reason = format!(
                "pattern name {:?} must be letters, digits and `_` (it becomes the label)",
                pattern.name
            );
            problems.push((path.key("name"), reason));
        } else if !labels.insert(pattern.name.to_uppercase()) {
            let reason = format!(
                "label {} is already used by another recognizer or pattern",
                pattern.name.to_uppercase()
            );
            problems.push((path.key("name"), reason));
        }
        match Regex::new(&pattern.regex) {
            // A pattern that matches nothing at all would insert a replacement between characters.
            Ok(regex) if regex.is_match("") => {
                let reason = format!("regex {:?} matches the empty string", pattern.regex);
                problems.push((path.key("regex"), reason));
            }
            Ok(regex) => mask.patterns.push(MaskPattern {
                name: pattern.name,
                regex,
            }),
            Err(e) => problems.push((path.key("regex"), regex_problem(&pattern.regex, &e))),
        }
    }
    let mut rest = mask.replacement.as_str();
    while let Some(start) = rest.find('{') {
        let placeholder = rest[start..]
            .split_inclusive('}')
            .next()
            .unwrap_or_default();
        if placeholder != "{NAME}" {
            let reason = format!("unknown placeholder {placeholder:?}: only {{NAME}} is replaced");
            problems.push((at.key("replacement"), reason));
            break;
        }
        rest = &rest[start + placeholder.len()..];
    }
    (problems.len() == before).then_some(Action::Mask(mask))
}

/// One line: the regex crate's syntax errors draw a caret diagram over several lines.
pub(super) fn regex_problem(source: &str, e: &regex::Error) -> String {
    let detail = match e {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("error: "))
            .unwrap_or(text)
            .to_string(),
        other => other.to_string(),
    };
    format!("invalid regex {source:?}: {detail}")
}
/// `90s`, `10m`, `2h` or `1d`.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration like 90s, 10m, 2h or 1d");
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(unit_at);
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let number: u64 = number.parse().map_err(|_| invalid())?;
    if number == 0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    let seconds = number.checked_mul(seconds_per_unit).ok_or_else(invalid)?;
    Ok(Duration::from_secs(seconds))
}
