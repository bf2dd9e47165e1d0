//! Reading policy files: a directory's `*.toml` in name order, each parsed, compiled and checked,
//! with every problem reported as `file:line: key: reason`.
use std::{
    collections::HashMap,
    fs, io,
    path::{Path, PathBuf},
};

use super::{
    compile::{compile_rule, RawPolicyFile},
    limit_rules::{compile_limit, LimitRule},
    locate::{line_of, KeyPath, Locator},
    model::{Policy, Rule},
};
use crate::config::Location;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}: the policy directory does not exist", path.display())]
    MissingDir { path: PathBuf },
    #[error("{}: cannot read policy directory: {source}", path.display())]
    ReadDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: cannot read policy file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{location}: {message}")]
    Syntax { location: Location, message: String },
    #[error("{location}: {key}: {reason}")]
    Invalid {
        location: Location,
        key: String,
        reason: String,
    },
    /// More than one problem; each is one of the variants above.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<PolicyError>),
}

impl PolicyError {
    /// Every single problem, in file order (one for the variants other than `Several`).
    pub fn problems(&self) -> &[PolicyError] {
        match self {
            PolicyError::Several(problems) => problems,
            single => std::slice::from_ref(single),
        }
    }

    fn from_problems(mut problems: Vec<PolicyError>) -> PolicyError {
        if problems.len() == 1 {
            if let Some(single) = problems.pop() {
                return single;
            }
        }
        PolicyError::Several(problems)
    }
}

/// Loads every `*.toml` file of `dir`, sorted by file name. Hidden files (editor locks such as
/// `.#x.toml`) and subdirectories are skipped. A missing directory is an error
/// ([`PolicyError::MissingDir`]): a typo in its path must not mean running without rules. Rule
/// names must be unique across all the files.
pub fn load_dir(dir: &Path) -> Result<Policy, PolicyError> {
    let read_dir_error = |source| PolicyError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(PolicyError::MissingDir {
                path: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(read_dir_error(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_dir_error)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".toml") && !name.starts_with('.') && !entry.path().is_dir() {
            files.push(entry.path());
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    load_files(files)
}

/// Loads one policy file.
pub fn load_file(path: &Path) -> Result<Policy, PolicyError> {
    load_files(vec![path.to_path_buf()])
}

/// Parses and checks one file's text; `file` only names the source in errors and rules.
pub fn parse_rules(text: &str, file: &Path) -> Result<Vec<Rule>, PolicyError> {
    parse_file(text, file)
        .map(|parsed| parsed.rules)
        .map_err(PolicyError::from_problems)
}

/// One file's rules and limits.
struct ParsedFile {
    rules: Vec<Rule>,
    limits: Vec<LimitRule>,
}

fn load_files(files: Vec<PathBuf>) -> Result<Policy, PolicyError> {
    let mut problems = Vec::new();
    let mut per_file = Vec::new();
    for path in &files {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(source) => {
                problems.push(PolicyError::Read {
                    path: path.clone(),
                    source,
                });
                continue;
            }
        };
        match parse_file(&text, path) {
            Ok(parsed) => per_file.push(parsed),
            Err(found) => problems.extend(found),
        }
    }
    let mut rules = Vec::new();
    let mut limits: Vec<LimitRule> = Vec::new();
    let mut first_seen: HashMap<String, Location> = HashMap::new();
    for parsed in per_file {
        for (index, limit) in parsed.limits.into_iter().enumerate() {
            match limits.iter().find(|l| l.name == limit.name) {
                Some(first) => problems.push(PolicyError::Invalid {
                    location: limit.source.clone(),
                    key: KeyPath::root()
                        .key("limit")
                        .index(index)
                        .key("name")
                        .to_string(),
                    reason: format!(
                        "limit {:?} is already defined in {}",
                        limit.name, first.source
                    ),
                }),
                None => limits.push(limit),
            }
        }
        for (index, rule) in parsed.rules.into_iter().enumerate() {
            if let Some(first) = first_seen.get(&rule.name) {
                problems.push(duplicate(&rule, index, first));
                continue;
            }
            first_seen.insert(rule.name.clone(), rule.source.clone());
            rules.push(rule);
        }
    }
    if !problems.is_empty() {
        return Err(PolicyError::from_problems(problems));
    }
    Ok(Policy {
        rules,
        limits,
        files,
    })
}

fn duplicate(rule: &Rule, index: usize, first: &Location) -> PolicyError {
    let first = if first.file == rule.source.file {
        first
            .line
            .map_or_else(String::new, |l| format!(" on line {l}"))
    } else {
        format!(" in {first}")
    };
    PolicyError::Invalid {
        location: rule.source.clone(),
        key: KeyPath::root()
            .key("rule")
            .index(index)
            .key("name")
            .to_string(),
        reason: format!("rule {:?} is already defined{first}", rule.name),
    }
}

/// One file's rules, or every problem found in it (a syntax error stops at the first).
fn parse_file(text: &str, file: &Path) -> Result<ParsedFile, Vec<PolicyError>> {
    let doc = toml_edit::ImDocument::parse(text).map_err(|e| {
        vec![PolicyError::Syntax {
            location: Location {
                file: file.to_path_buf(),
                line: e.span().map(|span| line_of(text, span.start)),
            },
            message: e.message().trim_end().replace('\n', "; "),
        }]
    })?;
    // toml_edit keeps source spans, so it points errors at lines; serde (via `toml`) builds the
    // raw model. Both parse the same text, so a span from one names a place in the other.
    let locate = Locator::new(text, &doc, file);
    let raw = deserialize(text, &locate, file)?;
    let mut found = Vec::new();
    let mut limits = Vec::new();
    for (index, raw_limit) in raw.limit.into_iter().enumerate() {
        let at = KeyPath::root().key("limit").index(index);
        let source = locate.location_of(&at.key("name"));
        limits.extend(compile_limit(raw_limit, &at, source, &mut found));
    }
    let mut rules: Vec<Rule> = Vec::new();
    let mut duplicates = Vec::new();
    for (index, raw_rule) in raw.rule.into_iter().enumerate() {
        let at = KeyPath::root().key("rule").index(index);
        let source = locate.location_of(&at.key("name"));
        if let Some(rule) = compile_rule(raw_rule, &at, source, &mut found) {
            match rules.iter().find(|r| r.name == rule.name) {
                Some(first) => duplicates.push(duplicate(&rule, index, &first.source)),
                None => rules.push(rule),
            }
        }
    }
    let mut problems: Vec<PolicyError> = found
        .into_iter()
        .map(|(path, reason)| PolicyError::Invalid {
            location: locate.location_of(&path),
            key: path.to_string(),
            reason,
        })
        .collect();
    problems.extend(duplicates);
    problems.sort_by_key(|problem| match problem {
        PolicyError::Invalid { location, .. } => location.line,
        _ => None,
    });
    if problems.is_empty() {
        Ok(ParsedFile { rules, limits })
    } else {
        Err(problems)
    }
}

/// The raw model, or every problem serde finds in it. serde stops at the first unknown key, so
/// each one is reported, removed from the text, and the text parsed again: a file with three
/// typos gets three lines. Other problems stop the parse (one is reported).
fn deserialize(
    text: &str,
    original: &Locator,
    file: &Path,
) -> Result<RawPolicyFile, Vec<PolicyError>> {
    let mut problems = Vec::new();
    let mut current = text.to_string();
    loop {
        let error = match toml::from_str::<RawPolicyFile>(&current) {
            Ok(raw) if problems.is_empty() => return Ok(raw),
            Ok(_) => return Err(problems),
            Err(error) => error,
        };
        let edited = {
            // The error's span indexes `current`; the key's path is the same in the original
            // text (only keys were removed, never array elements), which gives its line there.
            let Ok(doc) = toml_edit::ImDocument::parse(current.as_str()) else {
                return Err(problems);
            };
            let here = Locator::new(&current, &doc, file);
            let edited = (!problems.is_empty()).then_some(original);
            let problem = serde_error(&here, edited, &error);
            let unknown_key = error.message().starts_with("unknown field `");
            let path = error.span().and_then(|span| here.path_at(span.start));
            problems.push(problem);
            let (Some(path), true) = (path, unknown_key) else {
                return Err(problems);
            };
            let Ok(mut editable) = current.parse::<toml_edit::DocumentMut>() else {
                return Err(problems);
            };
            if !path.remove_from(&mut editable) {
                return Err(problems);
            }
            editable.to_string()
        };
        current = edited;
    }
}

/// `here` locates the text serde parsed; `original` the file as written when they differ (an
/// unknown key was removed): the problem then names the key's line in the file.
fn serde_error(here: &Locator, original: Option<&Locator>, e: &toml::de::Error) -> PolicyError {
    let span = e.span();
    let path = span.as_ref().and_then(|s| here.path_at(s.start));
    let location = match (&path, original) {
        (Some(path), Some(original)) => {
            let at = original.location_of(path);
            match at.line {
                Some(_) => at,
                None => here.location(span),
            }
        }
        _ => here.location(span),
    };
    let message = e.message().trim_end().replace('\n', "; ");
    let reason = match message.strip_prefix("unknown field `") {
        Some(rest) => match rest.split_once("`, ") {
            Some((_, expected)) => format!("unknown key ({expected})"),
            None => "unknown key".to_string(),
        },
        None => message.clone(),
    };
    match path {
        Some(path) => PolicyError::Invalid {
            location,
            key: path.to_string(),
            reason,
        },
        None => PolicyError::Syntax { location, message },
    }
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "examples_tests.rs"]
mod examples_tests;
