//! Compiles a rule's `[rule.match]` table into `Conditions`: selectors parsed, globs built,
//! endpoints named, regexes compiled once.
use std::str::FromStr;

use regex::{Regex, RegexSet};
use serde::Deserialize;

use super::{
    compile::{regex_problem, Problems},
    locate::KeyPath,
    model::{Conditions, ModelCondition, ParamCaps},
};
use crate::{
    identity::selector::{Glob, IdentitySelector},
    openai::endpoint::EndpointKind,
};

const EMPTY_LIST: &str = "must not be empty (omit the key to match every request)";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    identity: Option<Vec<String>>,
    host: Option<Vec<String>>,
    endpoint: Option<Vec<String>>,
    model_in: Option<Vec<String>>,
    model_not_in: Option<Vec<String>>,
    param_above: Option<RawParamCaps>,
    text_matches: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParamCaps {
    temperature: Option<f64>,
    max_tokens: Option<f64>,
    max_output_tokens: Option<f64>,
}

/// Each item of the list at `at.key`, checked by `check`; None when the key is absent.
fn items<T>(
    list: Option<Vec<String>>,
    at: &KeyPath,
    key: &str,
    problems: &mut Problems,
    check: impl Fn(&str) -> Result<T, String>,
) -> Option<Vec<T>> {
    let list = list?;
    if list.is_empty() {
        problems.push((at.key(key), EMPTY_LIST.into()));
    }
    let mut parsed = Vec::new();
    for (i, item) in list.iter().enumerate() {
        match check(item) {
            Ok(value) => parsed.push(value),
            Err(reason) => problems.push((at.key(key).index(i), reason)),
        }
    }
    Some(parsed)
}

fn glob(item: &str) -> Result<Glob, String> {
    match item.is_empty() {
        true => Err("must not be empty".into()),
        false => Ok(Glob::new(item)),
    }
}

pub(super) fn compile_match(
    raw: RawMatch,
    at: &KeyPath,
    problems: &mut Problems,
) -> Option<Conditions> {
    let before = problems.len();
    let identity = items(raw.identity, at, "identity", problems, |item| {
        IdentitySelector::parse(item).map_err(|e| e.to_string())
    });
    let host = items(raw.host, at, "host", problems, |item| {
        glob(&item.trim_end_matches('.').to_ascii_lowercase())
    });
    // `"*"` parses to None: it matches every endpoint, so the list no longer restricts anything.
    let endpoint = items(raw.endpoint, at, "endpoint", problems, |item| match item {
        "*" => Ok(None),
        _ => EndpointKind::from_str(item)
            .map(Some)
            .map_err(|e| format!("{e}, or \"*\"")),
    });
    let endpoint = endpoint.and_then(|kinds| kinds.into_iter().collect::<Option<Vec<_>>>());
    if raw.model_in.is_some() && raw.model_not_in.is_some() {
        let reason = "set `model_in` or `model_not_in`, not both";
        problems.push((at.key("model_not_in"), reason.into()));
    }
    let model_in = items(raw.model_in, at, "model_in", problems, glob);
    let model_not_in = items(raw.model_not_in, at, "model_not_in", problems, glob);
    let model = match (model_in, model_not_in) {
        (Some(globs), None) => Some(ModelCondition::In(globs)),
        (None, Some(globs)) => Some(ModelCondition::NotIn(globs)),
        _ => None,
    };
    let param_above = raw
        .param_above
        .and_then(|caps| param_caps(caps, &at.key("param_above"), problems));
    let sources = items(raw.text_matches, at, "text_matches", problems, |item| {
        Regex::new(item)
            .map(|_| item.to_string())
            .map_err(|e| regex_problem(item, &e))
    });
    if problems.len() != before {
        return None;
    }
    let text_matches = match sources.map(RegexSet::new).transpose() {
        Ok(set) => set,
        Err(e) => {
            problems.push((at.key("text_matches"), e.to_string()));
            return None;
        }
    };
    Some(Conditions {
        identity,
        host,
        endpoint,
        model,
        param_above,
        text_matches,
    })
}

fn param_caps(raw: RawParamCaps, at: &KeyPath, problems: &mut Problems) -> Option<ParamCaps> {
    let caps = [
        ("temperature", raw.temperature),
        ("max_tokens", raw.max_tokens),
        ("max_output_tokens", raw.max_output_tokens),
    ];
    if caps.iter().all(|(_, cap)| cap.is_none()) {
        let reason = "name at least one of temperature, max_tokens, max_output_tokens";
        problems.push((at.clone(), reason.into()));
        return None;
    }
    let mut ok = true;
    for (key, cap) in caps {
        if cap.is_some_and(|cap| !cap.is_finite()) {
            problems.push((at.key(key), "must be a finite number".into()));
            ok = false;
        }
    }
    ok.then_some(ParamCaps {
        temperature: raw.temperature,
        max_tokens: raw.max_tokens,
        max_output_tokens: raw.max_output_tokens,
    })
}
