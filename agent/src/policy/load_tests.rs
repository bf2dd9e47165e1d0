//! Loading policy files and directories: every parse and validation error, and the examples in
//! the repository's `policies/`.
use std::{fs, path::Path};

use super::*;
use crate::policy::model::{Action, Approver, Direction};

const FILE: &str = "/etc/warden/policies/models.toml";

fn errors(text: &str) -> Vec<String> {
    let e = parse_rules(text, Path::new(FILE)).expect_err("policy should be refused");
    e.problems().iter().map(ToString::to_string).collect()
}

fn error(text: &str) -> String {
    let all = errors(text);
    assert_eq!(all.len(), 1, "expected one problem: {all:#?}");
    all.into_iter().next().unwrap_or_default()
}

fn assert_error(text: &str, expected: &str) {
    let e = error(text);
    assert!(
        e.starts_with(&format!("{FILE}:{expected}")),
        "{text}\ngave {e}\nexpected {FILE}:{expected}"
    );
}

const DENY: &str = "[[rule]]\nname = \"d\"\naction = \"deny\"\nmessage = \"no\"\n";

#[test]
fn unknown_keys_name_file_line_and_key() {
    let text = format!(
        "{DENY}\n[[rule]]\nname = \"e\"\naction = \"allow\"\n[rule.match]\nmodle = [\"x\"]\n"
    );
    assert_error(
        &text,
        "10: rule[1].match.modle: unknown key (expected one of `identity`",
    );
    assert_error(
        "[[rule]]\nname = \"a\"\naction = \"allow\"\nnmae = \"x\"\n",
        "4: rule[0].nmae: unknown key (expected one of `name`, `action`",
    );
    assert_error("rules = []\n", "1: rules: unknown key");
    assert_error(
        "[[rule]]\nname = \"a\"\naction = \"allow\"\n[rule.match]\nparam_above = { top_p = 1 }\n",
        "5: rule[0].match.param_above.top_p: unknown key (expected one of `temperature`",
    );
    assert_error(
        "[[rule]]\nname = \"m\"\naction = \"mask\"\npatterns = [{ name = \"x\", regex = \"y\", flags = \"i\" }]\n",
        "4: rule[0].patterns[0].flags: unknown key",
    );
}

#[test]
fn type_and_syntax_errors_name_file_line_and_key() {
    assert_error(
        "[[rule]]\nname = \"a\"\naction = \"block\"\n",
        "3: rule[0].action: unknown variant `block`, expected one of `deny`, `mask`, `approve`, `allow`",
    );
    assert_error(
        "[[rule]]\nname = \"a\"\naction = \"allow\"\n[rule.match]\nhost = \"api.openai.com\"\n",
        "5: rule[0].match.host: invalid type: string",
    );
    assert_error(
        "[[rule]]\nname = \"m\"\naction = \"mask\"\ndirection = \"inbound\"\nrecognizers = [\"email\"]\n",
        "4: rule[0].direction: unknown variant `inbound`",
    );
    let missing = error("[[rule]]\naction = \"allow\"\n");
    assert!(
        missing.starts_with(FILE) && missing.contains("missing field `name`"),
        "{missing}"
    );
    assert_error("[[rule]\nname = \"a\"\n", "1: ");
    assert_error("[[rule]]\nname = \"a\"\nname = \"b\"\n", "3: ");
}

#[test]
fn invalid_rules_name_file_line_and_key() {
    let allow = "[[rule]]\nname = \"a\"\naction = \"allow\"\n[rule.match]\n";
    let m = |line: &str| format!("{allow}{line}\n");
    let cases: Vec<(String, &str)> = vec![
        ("[[rule]]\nname = \" \"\naction = \"allow\"\n".into(), "2: rule[0].name: must not be empty"),
        ("[[rule]]\nname = \"d\"\naction = \"deny\"\n".into(), "1: rule[0]: a deny rule needs a `message`"),
        ("[[rule]]\nname = \"d\"\naction = \"deny\"\nmessage = \"\"\n".into(), "4: rule[0].message: must not be empty"),
        ("[[rule]]\nname = \"a\"\naction = \"allow\"\nmessage = \"hi\"\n".into(), "4: rule[0].message: only deny rules take `message`"),
        (format!("{DENY}direction = \"both\"\n"), "5: rule[0].direction: only mask rules take `direction`"),
        (format!("{DENY}recognizers = [\"email\"]\n"), "5: rule[0].recognizers: only mask rules take"),
        (format!("{DENY}replacement = \"x\"\n"), "5: rule[0].replacement: only mask rules take"),
        (format!("{DENY}approvers = [\"user:a\"]\n"), "5: rule[0].approvers: only approve rules take `approvers`"),
        (format!("{DENY}timeout = \"1m\"\n"), "5: rule[0].timeout: only approve rules take `timeout`"),
        ("[[rule]]\nname = \"m\"\naction = \"mask\"\n".into(), "1: rule[0]: a mask rule needs `recognizers` or `patterns`"),
        ("[[rule]]\nname = \"m\"\naction = \"mask\"\nrecognizers = [\"email\",\n \"emial\"]\n".into(), "5: rule[0].recognizers[1]: unknown recognizer \"emial\" (known: email, credit_card"),
        ("[[rule]]\nname = \"m\"\naction = \"mask\"\nrecognizers = [\"email\", \"email\"]\n".into(), "4: rule[0].recognizers[1]: recognizer \"email\" is listed twice"),
        ("[[rule]]\nname = \"m\"\naction = \"mask\"\npatterns = [{ name = \"emp id\", regex = \"E\" }]\n".into(), "4: rule[0].patterns[0].name: pattern name \"emp id\" must be letters"),
        ("[[rule]]\nname = \"m\"\naction = \"mask\"\nrecognizers = [\"email\"]\npatterns = [{ name = \"Email\", regex = \"E\" }]\n".into(), "5: rule[0].patterns[0].name: label EMAIL is already used"),
        ("[[rule]]\nname = \"m\"\naction = \"mask\"\npatterns = [{ name = \"x\", regex = \"EMP-(\\\\d\" }]\n".into(), "4: rule[0].patterns[0].regex: invalid regex \"EMP-(\\\\d\": unclosed group"),
        ("[[rule]]\nname = \"m\"\naction = \"mask\"\npatterns = [{ name = \"x\", regex = \"\\\\d*\" }]\n".into(), "4: rule[0].patterns[0].regex: regex \"\\\\d*\" matches the empty string"),
        ("[[rule]]\nname = \"m\"\naction = \"mask\"\nrecognizers = [\"jwt\"]\nreplacement = \"<{name}>\"\n".into(), "5: rule[0].replacement: unknown placeholder \"{name}\""),
        ("[[rule]]\nname = \"p\"\naction = \"approve\"\n".into(), "1: rule[0]: an approve rule needs at least one approver"),
        ("[[rule]]\nname = \"p\"\naction = \"approve\"\napprovers = []\n".into(), "4: rule[0].approvers: an approve rule needs at least one approver"),
        ("[[rule]]\nname = \"p\"\naction = \"approve\"\napprovers = [\"secops\"]\n".into(), "4: rule[0].approvers[0]: \"secops\" is not \"group:NAME\", \"user:NAME\" or \"oidc-group:NAME\""),
        ("[[rule]]\nname = \"p\"\naction = \"approve\"\napprovers = [\"team:x\"]\n".into(), "4: rule[0].approvers[0]: \"team:x\" is not"),
        ("[[rule]]\nname = \"p\"\naction = \"approve\"\napprovers = [\"user:a\"]\ntimeout = \"10 minutes\"\n".into(), "5: rule[0].timeout: \"10 minutes\" is not a duration like 90s, 10m, 2h or 1d"),
        ("[[rule]]\nname = \"p\"\naction = \"approve\"\napprovers = [\"user:a\"]\ntimeout = \"0s\"\n".into(), "5: rule[0].timeout: \"0s\" must be longer than zero"),
        (m("identity = []"), "5: rule[0].match.identity: must not be empty (omit the key"),
        (m("identity = [\"acount:x\"]"), "5: rule[0].match.identity[0]: unknown identity selector prefix \"acount\""),
        (m("identity = [\"uid:root\"]"), "5: rule[0].match.identity[0]: identity selector uid:\"root\": uid takes a number"),
        (m("host = [\"\"]"), "5: rule[0].match.host[0]: must not be empty"),
        (m("endpoint = [\"chat\"]"), "5: rule[0].match.endpoint[0]: unknown endpoint \"chat\"; expected one of: chat.completions"),
        (m("model_in = [\"a\"]\nmodel_not_in = [\"b\"]"), "6: rule[0].match.model_not_in: set `model_in` or `model_not_in`, not both"),
        (m("model_in = []"), "5: rule[0].match.model_in: must not be empty"),
        (m("param_above = {}"), "5: rule[0].match.param_above: name at least one of temperature"),
        (m("param_above = { temperature = nan }"), "5: rule[0].match.param_above.temperature: must be a finite number"),
        (m("param_above = { max_tokens = \"4096\" }"), "5: rule[0].match.param_above.max_tokens: invalid type: string"),
        (m("text_matches = [\"ok\", \"(?i)credit[- card\"]"), "5: rule[0].match.text_matches[1]: invalid regex \"(?i)credit[- card\": unclosed character class"),
        (format!("{DENY}\n[[rule]]\nname = \"d\"\naction = \"allow\"\n"), "7: rule[1].name: rule \"d\" is already defined on line 2"),
    ];
    for (text, expected) in cases {
        assert_error(&text, expected);
    }
}

#[test]
fn every_problem_of_a_file_is_reported_in_line_order() {
    let text = "[[rule]]\nname = \"a\"\naction = \"deny\"\n\n[[rule]]\nname = \"a\"\naction = \"allow\"\n[rule.match]\nendpoint = [\"x\"]\nidentity = [\"y\"]\n";
    let all = errors(text);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        all[0].starts_with(&format!("{FILE}:1: rule[0]: a deny rule needs")),
        "{all:#?}"
    );
    assert!(
        all[1].starts_with(&format!("{FILE}:9: rule[1].match.endpoint[0]")),
        "{all:#?}"
    );
    assert!(
        all[2].starts_with(&format!("{FILE}:10: rule[1].match.identity[0]")),
        "{all:#?}"
    );
    let joined = parse_rules(text, Path::new(FILE)).unwrap_err().to_string();
    assert_eq!(joined.matches(FILE).count(), 3, "{joined}");
}

#[test]
fn a_full_rule_parses_into_its_typed_parts() {
    let rules = parse_rules(
        r#"
[[rule]]
name = "mask-pii"
action = "mask"
direction = "request"
recognizers = ["email", "credit_card"]
patterns = [{ name = "employee_id", regex = "EMP-\\d{6}" }]
replacement = "<{NAME}>"

[[rule]]
name = "prod-needs-review"
action = "approve"
approvers = ["group:secops", "user:alice"]
[rule.match]
identity = ["account:prod-*"]
"#,
        Path::new(FILE),
    )
    .unwrap();
    let Action::Mask(mask) = &rules[0].action else {
        panic!("not a mask")
    };
    assert_eq!(mask.rule, "mask-pii");
    assert_eq!(mask.direction, Direction::Request);
    assert_eq!(mask.recognizers, ["email", "credit_card"]);
    assert_eq!(mask.patterns[0].name, "employee_id");
    assert_eq!(mask.patterns[0].regex.as_str(), "EMP-\\d{6}");
    assert_eq!(mask.replacement, "<{NAME}>");
    let Action::Approve(approve) = &rules[1].action else {
        panic!("not approve")
    };
    assert_eq!(
        approve.approvers,
        [
            Approver::Group("secops".into()),
            Approver::User("alice".into())
        ]
    );
    assert_eq!(approve.timeout.as_secs(), 120, "default timeout");
    assert_eq!(rules[1].source.line, Some(11));
}

#[test]
fn durations_take_one_unit() {
    use super::super::compile::parse_duration;
    assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
    assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
    assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
    assert_eq!(parse_duration("1d").unwrap().as_secs(), 86_400);
    for bad in [
        "",
        "m",
        "10",
        "1.5h",
        "-1m",
        "10M",
        "1h30m",
        "99999999999999999999d",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_directory_loads_its_toml_files_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
    write("b.toml", "[[rule]]\nname = \"b\"\naction = \"allow\"\n");
    write("a.toml", "[[rule]]\nname = \"a1\"\naction = \"allow\"\n[[rule]]\nname = \"a2\"\naction = \"allow\"\n");
    write("empty.toml", "# nothing yet\n");
    write("notes.txt", "not a policy");
    write(".#a.toml", "broken [");
    fs::create_dir(dir.path().join("sub.toml")).unwrap();
    let policy = load_dir(dir.path()).unwrap();
    let names: Vec<&str> = policy.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a1", "a2", "b"]);
    let files: Vec<_> = policy
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(files, ["a.toml", "b.toml", "empty.toml"]);
    assert_eq!(policy.rules[2].source.file, dir.path().join("b.toml"));
    assert_eq!(policy.rules[2].source.line, Some(2));
    let one = load_file(&dir.path().join("a.toml")).unwrap();
    assert_eq!(one.rules.len(), 2);
    assert_eq!(one.files, [dir.path().join("a.toml")]);
}

#[test]
fn every_unknown_key_of_a_file_is_reported_with_its_line() {
    let text = "[[rule]]\nnmae = \"a\"\nname = \"a\"\naction = \"deny\"\nmessage = \"no\"\n\
                [rule.match]\nmodle = [\"x\"]\n\n[[rule]]\nname = \"b\"\naction = \"allow\"\n\
                match = { hots = [\"x\"], endpoint = [\"responses\"] }\n";
    let all = errors(text);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        all[0].starts_with(&format!("{FILE}:2: rule[0].nmae: unknown key")),
        "{all:#?}"
    );
    assert!(
        all[1].starts_with(&format!("{FILE}:7: rule[0].match.modle: unknown key")),
        "{all:#?}"
    );
    assert!(
        all[2].starts_with(&format!("{FILE}:12: rule[1].match.hots: unknown key")),
        "{all:#?}"
    );
}

#[test]
fn unknown_keys_and_a_later_type_error_are_all_reported() {
    let text = "[[rule]]\nname = \"a\"\nactoin = \"deny\"\naction = \"deny\"\n\
                message = \"no\"\n\n[[rule]]\nname = 5\naction = \"allow\"\n";
    let all = errors(text);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all[0].starts_with(&format!("{FILE}:3: rule[0].actoin: unknown key")),
        "{all:#?}"
    );
    assert!(
        all[1].starts_with(&format!("{FILE}:8: rule[1].name: ")),
        "{all:#?}"
    );
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent");
    let e = load_dir(&absent).unwrap_err();
    assert!(matches!(e, PolicyError::MissingDir { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("{}: the policy directory does not exist", absent.display())
    );
    let empty = load_dir(dir.path()).unwrap();
    assert!(empty.is_empty() && empty.files.is_empty());
    let e = load_file(&dir.path().join("absent.toml")).unwrap_err();
    assert!(matches!(e, PolicyError::Read { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("absent.toml: cannot read policy file"),
        "{e}"
    );
}

#[test]
fn directory_errors_cover_every_file_and_duplicate_names_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
    write(
        "a.toml",
        "[[rule]]\nname = \"shared\"\naction = \"allow\"\n",
    );
    write(
        "b.toml",
        "\n[[rule]]\nname = \"shared\"\naction = \"allow\"\n",
    );
    write("c.toml", "[[rule]]\nname = \"c\"\naction = \"nope\"\n");
    write("d.toml", "[[rule]\n");
    fs::write(dir.path().join("e.toml"), [0xff, 0xfe]).unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    let problems: Vec<String> = e.problems().iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    let path = |name: &str| dir.path().join(name).display().to_string();
    assert!(
        problems[0].starts_with(&format!(
            "{}:3: rule[0].action: unknown variant",
            path("c.toml")
        )),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with(&format!("{}:1: ", path("d.toml"))),
        "{problems:#?}"
    );
    assert!(
        problems[2].starts_with(&format!("{}: cannot read policy file", path("e.toml"))),
        "{problems:#?}"
    );
    assert_eq!(
        problems[3],
        format!(
            "{}:3: rule[0].name: rule \"shared\" is already defined in {}:2",
            path("b.toml"),
            path("a.toml")
        )
    );
}

#[test]
fn limits_load_beside_rules_and_their_problems_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let limit = "[[limit]]\nname = \"billing\"\nidentity = [\"unit:billing.service\"]\ntokens_per_day = 100000\n";
    fs::write(dir.path().join("a.toml"), format!("{DENY}{limit}")).unwrap();
    let policy = load_dir(dir.path()).unwrap();
    assert_eq!(policy.rules.len(), 1);
    assert_eq!(policy.limits.len(), 1);
    assert_eq!(policy.limits[0].caps.tokens_per_day, Some(100_000));
    assert_eq!(policy.limits[0].source.line, Some(6));

    fs::write(dir.path().join("b.toml"), limit).unwrap();
    let duplicate = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        duplicate.contains("limit \"billing\" is already defined"),
        "{duplicate}"
    );

    assert_error(
        "[[limit]]\nname = \"l\"\nidentity = [\"uid:1\"]\nrequests_per_hour = 5\n",
        "4: limit[0].requests_per_hour: unknown key",
    );
}
