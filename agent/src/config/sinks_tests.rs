use std::path::Path;

use super::*;
use crate::config::Config;

fn load(text: &str) -> Result<Config, String> {
    Config::from_toml(text, Path::new("/w.toml")).map_err(|e| e.to_string())
}

#[test]
fn each_kind_is_read_with_the_common_keys_defaulted() {
    let config = load(
        r#"
[[sink]]
name = "jsonl"
kind = "file"
path = "/var/log/warden/audit.jsonl"

[[sink]]
name = "siem"
kind = "webhook"
url = "https://siem.example/in"
secret_file = "/etc/warden/siem.key"
events = ["alerts"]
include_bodies = true
batch_max = 10
start = "now"

[[sink]]
name = "splunk"
kind = "splunk_hec"
url = "http://127.0.0.1:8088"
token_file = "/etc/warden/hec.token"
index = "security"
"#,
    )
    .unwrap();
    assert_eq!(config.sinks.len(), 3);
    let file = &config.sinks[0];
    assert_eq!(file.common.name, "jsonl");
    assert_eq!(file.common.events, default_events());
    assert!(!file.common.events.contains(&SinkEventClass::Connections));
    assert!(!file.common.include_bodies);
    assert_eq!(file.common.batch_max, DEFAULT_BATCH_MAX);
    assert_eq!(file.common.start, SinkStart::Beginning);
    assert_eq!(
        file.kind,
        SinkKindConfig::File(FileSinkConfig {
            path: "/var/log/warden/audit.jsonl".into(),
            max_bytes: DEFAULT_FILE_MAX_BYTES,
            keep: DEFAULT_FILE_KEEP,
        })
    );
    let webhook = &config.sinks[1];
    assert_eq!(webhook.common.events, vec![SinkEventClass::Alerts]);
    assert!(webhook.common.include_bodies);
    assert_eq!(webhook.common.batch_max, 10);
    assert_eq!(webhook.common.start, SinkStart::Now);
    assert!(matches!(&webhook.kind, SinkKindConfig::Webhook(w) if w.format == WebhookFormat::Json));
    assert!(
        matches!(&config.sinks[2].kind, SinkKindConfig::SplunkHec(h) if h.index.as_deref() == Some("security"))
    );
}

#[test]
fn errors_name_the_file_line_and_key() {
    let head = "[[sink]]\nname = \"a\"\nkind = \"file\"\npath = \"/x.jsonl\"\n";
    let error = load(&format!("{head}colour = \"red\"\n")).unwrap_err();
    assert!(
        error.starts_with("/w.toml:5: unknown key `colour`"),
        "{error}"
    );
    let error = load(&format!("{head}batch_max = \"many\"\n")).unwrap_err();
    assert_eq!(
        error,
        "/w.toml:5: sink[0].batch_max: invalid type: string \"many\", expected usize"
    );
    let error = load(&format!("{head}keep = -1\n")).unwrap_err();
    assert!(
        error.starts_with("/w.toml:5: sink[0].keep: invalid value"),
        "{error}"
    );
    let error = load(&format!("{head}events = [\"exchanges\", \"everything\"]\n")).unwrap_err();
    assert!(
        error.starts_with("/w.toml:5: sink[0].events: unknown variant `everything`"),
        "{error}"
    );
    let error = load(&format!("{head}batch_max = 0\n")).unwrap_err();
    assert_eq!(
        error,
        "/w.toml:5: sink[0].batch_max: must be between 1 and 10000"
    );
    let error = load("[[sink]]\nname = \"a\"\nkind = \"pigeon\"\n").unwrap_err();
    assert!(error.starts_with("/w.toml:"), "{error}");
    assert!(error.contains("pigeon"), "{error}");
    let error = load(&format!("{head}{}", head)).unwrap_err();
    assert_eq!(error, "/w.toml:6: sink[1].name: two sinks are named \"a\"");
    let error = load("[[sink]]\nname = \"a b\"\nkind = \"file\"\npath = \"/x\"\n").unwrap_err();
    assert!(error.starts_with("/w.toml:2: sink[0].name:"), "{error}");
}

#[test]
fn a_json_webhook_must_be_signed_and_clear_text_stays_on_this_host() {
    let webhook = |url: &str, extra: &str| {
        load(&format!(
            "[[sink]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"{url}\"\n{extra}"
        ))
    };
    let error = webhook("https://siem.example/", "").unwrap_err();
    assert!(
        error.contains("sink[0].secret_file: is required with format = \"json\""),
        "{error}"
    );
    assert!(webhook("https://hooks.slack.example/T/B", "format = \"slack\"\n").is_ok());
    let error = webhook("http://siem.example/", "secret_file = \"/k\"\n").unwrap_err();
    assert!(error.contains("clear text"), "{error}");
    assert!(webhook("http://127.0.0.1:9000/", "secret_file = \"/k\"\n").is_ok());
    assert!(webhook("http://[::1]:9000/", "secret_file = \"/k\"\n").is_ok());
    let error = webhook("https://x/", "secret_file = \"k\"\n").unwrap_err();
    assert!(
        error.contains("sink[0].secret_file: must be an absolute path"),
        "{error}"
    );
}
