//! End-to-end tests: TOML text in, a `Config` or an error message naming file, line and key out.
use super::*;

const FULL: &str = r#"state_dir = "/var/lib/warden"
[proxy]
listen_port = 15443
intercept_ports = [443]
intercept_hosts = ["api.openai.com"]
[select]
cgroups = ["/system.slice/agent.service"]
units = ["billing-agent.service"]
[[upstream.override]]
host = "api.openai.com"
address = "127.0.0.2:8443"
ca_file = "/path/to/extra-ca.pem"
[[account]]
name = "billing-agent"
unit = "billing-agent.service"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, Path::new("/etc/warden/warden.toml"))
}

fn error(text: &str) -> String {
    parse(text)
        .expect_err("config should be refused")
        .to_string()
}

#[test]
fn empty_text_gives_defaults() {
    let config = parse("").unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.state_dir, Path::new("/var/lib/warden"));
    assert_eq!(config.proxy.listen_port, 15443);
    assert_eq!(config.proxy.intercept_ports, InterceptPorts::All);
    assert_eq!(config.proxy.tls_ports(), vec![443]);
    assert_eq!(config.proxy.intercept_hosts, vec!["api.openai.com"]);
    assert_eq!(config.proxy.drain_timeout_secs, 10);
    assert_eq!(config.proxy.fail_mode, FailMode::Closed);
    assert_eq!(config.proxy.pin_dir, Path::new("/sys/fs/bpf/warden"));
    assert_eq!(
        config.metrics.address(),
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert!(config.select.cgroups.is_empty() && config.select.units.is_empty());
    assert!(config.upstream.overrides.is_empty() && config.accounts.is_empty());
    assert_eq!(config.ca_dir(), Path::new("/var/lib/warden/ca"));
    assert_eq!(
        config.admin_socket_path(),
        Path::new("/var/lib/warden/admin.sock")
    );
}

#[test]
fn full_example_parses() {
    let config = parse(FULL).unwrap();
    assert_eq!(config.select.cgroups, vec!["/system.slice/agent.service"]);
    assert_eq!(config.select.units, vec!["billing-agent.service"]);
    let o = config.upstream_override("API.OpenAI.com").unwrap();
    assert_eq!(o.address, "127.0.0.2:8443".parse().unwrap());
    assert_eq!(
        o.ca_file.as_deref(),
        Some(Path::new("/path/to/extra-ca.pem"))
    );
    assert!(config.upstream_override("example.com").is_none());
    assert_eq!(config.accounts[0].name, "billing-agent");
    assert_eq!(
        config.accounts[0].unit.as_deref(),
        Some("billing-agent.service")
    );
}

#[test]
fn unknown_keys_name_line_key_and_table() {
    let e = error("state_dir = \"/x\"\nstate_dri = \"/y\"\n");
    assert!(
        e.starts_with("/etc/warden/warden.toml:2: unknown key `state_dri` in the top level"),
        "{e}"
    );
    let e = error("[proxy]\nlisten_port = 1000\nlisten_prot = 1\n");
    assert!(e.starts_with("/etc/warden/warden.toml:3: unknown key `listen_prot` in [proxy] (expected one of `listen_port`"), "{e}");
    let e = error(
        "[[account]]\nname = \"a\"\nuid = 1\n\n[[account]]\nname = \"b\"\nunti = \"b.service\"\n",
    );
    assert!(
        e.starts_with("/etc/warden/warden.toml:7: unknown key `unti` in [[account]]"),
        "{e}"
    );
    let e = error(
        "[[upstream.override]]\nhost = \"a.com\"\naddress = \"127.0.0.1:1\"\ncafile = \"/x\"\n",
    );
    assert!(
        e.starts_with("/etc/warden/warden.toml:4: unknown key `cafile` in [[upstream.override]]"),
        "{e}"
    );
}

#[test]
fn type_errors_name_line_and_key() {
    let e = error("[proxy]\n\nlisten_port = 70000\n");
    assert!(
        e.starts_with("/etc/warden/warden.toml:3: proxy.listen_port: "),
        "{e}"
    );
    let e = error("[[upstream.override]]\nhost = \"a.com\"\naddress = \"nowhere\"\n");
    assert!(
        e.starts_with("/etc/warden/warden.toml:3: upstream.override[0].address: "),
        "{e}"
    );
    let e = error("[proxy]\nintercept_ports = [443, \"x\"]\n");
    assert!(
        e.starts_with("/etc/warden/warden.toml:2: proxy.intercept_ports"),
        "{e}"
    );
    let e = error("[proxy\n");
    assert!(e.starts_with("/etc/warden/warden.toml:1: "), "{e}");
}

#[test]
fn invalid_values_name_line_and_key() {
    let cases = [
        ("[proxy]\nintercept_ports = [443]\n\n\nlisten_port = 0\n", "5: proxy.listen_port: must be between 1 and 65535"),
        ("[proxy]\nintercept_ports = []\n", "2: proxy.intercept_ports: must name at least one port"),
        ("[proxy]\nintercept_ports = [443,\n 443]\n", "3: proxy.intercept_ports[1]: port 443 is listed twice"),
        ("[proxy]\nlisten_port = 8443\nintercept_ports = [8443]\n", "3: proxy.intercept_ports[0]: port 8443 is proxy.listen_port"),
        ("proxy.intercept_hosts = [\"127.0.0.1\"]\n", "1: proxy.intercept_hosts[0]: \"127.0.0.1\" is an IP literal"),
        ("[proxy]\nintercept_hosts = [\"a..b\"]\n", "2: proxy.intercept_hosts[0]: \"a..b\" is not a valid DNS name"),
        ("state_dir = \"relative\"\n", "1: state_dir: must be an absolute path"),
        ("[select]\ncgroups = [\"/a/../b\"]\n", "2: select.cgroups[0]: cgroup path"),
        ("[select]\nunits = [\"sshd\"]\n", "2: select.units[0]: \"sshd\" is not a systemd unit name"),
        ("[[upstream.override]]\nhost = \"a.com\"\naddress = \"127.0.0.1:1\"\nca_file = \"x.pem\"\n", "4: upstream.override[0].ca_file: must be an absolute path"),
        ("[[account]]\nname = \"\"\nuid = 1\n", "2: account[0].name: must not be empty"),
        ("[[account]]\nname = \"a\"\nuid = 1\n[[account]]\nname = \"a\"\nuid = 2\n", "5: account[1].name: account \"a\" is defined twice"),
        ("[[account]]\nname = \"a\"\nuid = 1\nexe = \"/bin/x\"\n", "1: account[0]: set exactly one of unit, cgroup, uid, exe"),
        ("account = [{ name = \"a\", exe = \"x\" }]\n", "1: account[0].exe: must be an absolute path"),
        ("[proxy]\npin_dir = \"warden\"\n", "2: proxy.pin_dir: must be an absolute path"),
        ("[proxy]\nfail_mode = \"ajar\"\n", "2: proxy.fail_mode: unknown variant `ajar`, expected `closed` or `open`"),
        ("[metrics]\nlisten = \"9464\"\n", "2: metrics.listen: \"9464\" is not host:port"),
    ];
    for (text, expected) in cases {
        let e = error(text);
        assert!(
            e.starts_with(&format!("/etc/warden/warden.toml:{expected}")),
            "{text:?} gave {e}"
        );
    }
}

#[test]
fn defaulted_keys_have_no_line() {
    let e = error("[proxy]\nlisten_port = 443\n");
    assert_eq!(e, "/etc/warden/warden.toml: proxy.tls_ports: port 443 (the default) is proxy.listen_port: redirecting it would loop");
}

#[test]
fn intercept_ports_is_all_or_a_list_and_tls_ports_follow_it() {
    let all = parse("[proxy]\nintercept_ports = \"all\"\ntls_ports = [443, 8443]\n").unwrap();
    assert!(all.proxy.intercept_ports.is_all());
    assert!(all.proxy.is_tls_port(8443) && !all.proxy.is_tls_port(80));
    // A list keeps its old meaning: every listed port carries TLS only, unless tls_ports says.
    let list = parse("[proxy]\nintercept_ports = [443, 8080]\n").unwrap();
    assert_eq!(
        list.proxy.intercept_ports,
        InterceptPorts::List(vec![443, 8080])
    );
    assert!(list.proxy.is_tls_port(8080));
    let mixed = parse("[proxy]\nintercept_ports = [443, 8080]\ntls_ports = [443]\n").unwrap();
    assert!(mixed.proxy.is_tls_port(443) && !mixed.proxy.is_tls_port(8080));
    let none = parse("[proxy]\ntls_ports = []\n").unwrap();
    assert!(!none.proxy.is_tls_port(443));

    let cases = [
        ("[proxy]\nintercept_ports = \"some\"\n", "2: proxy.intercept_ports: invalid value: string \"some\", expected \"all\" or a list of ports"),
        ("[proxy]\nintercept_ports = [443]\ntls_ports = [8443]\n", "3: proxy.tls_ports[0]: port 8443 is not in proxy.intercept_ports"),
        ("[proxy]\nlisten_port = 8443\ntls_ports = [8443]\n", "3: proxy.tls_ports[0]: port 8443 is proxy.listen_port"),
        ("[proxy]\ntls_ports = [443, 443]\n", "2: proxy.tls_ports[1]: port 443 is listed twice"),
    ];
    for (text, expected) in cases {
        let e = error(text);
        assert!(
            e.starts_with(&format!("/etc/warden/warden.toml:{expected}")),
            "{text:?} gave {e}"
        );
    }
}

#[test]
fn fail_mode_and_metrics_can_be_set() {
    let config = parse("[proxy]\nfail_mode = \"open\"\n[metrics]\nlisten = \"\"\n").unwrap();
    assert_eq!(config.proxy.fail_mode, FailMode::Open);
    assert_eq!(
        config.metrics.address(),
        None,
        "an empty listen turns metrics off"
    );
    let config = parse("[metrics]\nlisten = \"[::1]:9100\"\n").unwrap();
    assert_eq!(
        config.metrics.address(),
        Some("[::1]:9100".parse().unwrap())
    );
}

#[test]
fn intercepted_hosts_match_exactly_or_by_wildcard() {
    let config = parse("proxy.intercept_hosts = [\"API.openai.com\", \"*.example.com\"]").unwrap();
    assert_eq!(config.proxy.intercept_hosts[0], "api.openai.com");
    assert!(config.is_intercepted_host("api.OpenAI.com"));
    assert!(!config.is_intercepted_host("openai.com"));
    assert!(!config.is_intercepted_host("xapi.openai.com"));
    assert!(config.is_intercepted_host("a.example.com"));
    assert!(config.is_intercepted_host("a.b.Example.com"));
    assert!(!config.is_intercepted_host("example.com"));
    assert!(!config.is_intercepted_host("badexample.com"));
}

#[test]
fn explicit_path_must_exist_default_path_may_not() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("warden.toml");
    let e = Config::load(Some(&missing)).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string().contains(&missing.display().to_string()),
        "{e}"
    );
    assert_eq!(load_file(&missing, false).unwrap(), Config::default());
    fs::write(&missing, "[proxy]\nlisten_port = 9000\n").unwrap();
    assert_eq!(load_file(&missing, false).unwrap().proxy.listen_port, 9000);
    assert_eq!(
        Config::load(Some(&missing)).unwrap().proxy.listen_port,
        9000
    );
}

#[test]
fn audit_settings_parse_and_are_validated() {
    let config = parse("[audit]\nretention_days = 30\nmax_body_bytes = 65536\n").unwrap();
    assert_eq!(config.audit.retention_days, Some(30));
    assert_eq!(config.audit.max_body_bytes, 65536);
    assert_eq!(parse("").unwrap().audit.retention_days, None);
    let zero = error("[audit]\nretention_days = 0\n");
    assert!(zero.contains(":2: audit.retention_days"), "{zero}");
    let unknown = error("[audit]\nretention = 3\n");
    assert!(
        unknown.contains(":2:") && unknown.contains("retention"),
        "{unknown}"
    );
}

#[test]
fn audit_sync_defaults_to_an_interval_and_can_ask_for_every_commit() {
    use crate::audit::Durability;
    use std::time::Duration;
    let defaults = parse("").unwrap().audit.writer_options();
    assert_eq!(
        defaults.durability,
        Durability::Interval(Duration::from_millis(100))
    );
    let every = parse("[audit]\nsync = \"commit\"\n").unwrap();
    assert_eq!(
        every.audit.writer_options().durability,
        Durability::EveryCommit
    );
    let slower = parse("[audit]\nsync_interval_ms = 1000\nretention_days = 7\n").unwrap();
    let options = slower.audit.writer_options();
    assert_eq!(
        options.durability,
        Durability::Interval(Duration::from_secs(1))
    );
    assert_eq!(options.retention_days, Some(7));
    let zero = error("[audit]\nsync_interval_ms = 0\n");
    assert!(zero.contains(":2: audit.sync_interval_ms"), "{zero}");
    let bad = error("[audit]\nsync = \"sometimes\"\n");
    assert!(bad.contains(":2:") && bad.contains("sync"), "{bad}");
}

#[test]
fn policy_settings_parse_and_are_validated() {
    let defaults = parse("").unwrap().policy;
    assert_eq!(defaults.dir, Path::new("/etc/warden/policies"));
    assert_eq!(defaults.max_inspect_bytes, 16 * 1024 * 1024);
    let config = parse("[policy]\ndir = \"/srv/policies\"\nmax_inspect_bytes = 65536\n").unwrap();
    assert_eq!(config.policy.dir, Path::new("/srv/policies"));
    assert_eq!(config.policy.max_inspect_bytes, 65536);
    let relative = error("[policy]\ndir = \"policies\"\n");
    assert!(
        relative.ends_with(":2: policy.dir: must be an absolute path"),
        "{relative}"
    );
    let small = error("[policy]\n\nmax_inspect_bytes = 10\n");
    assert!(
        small.ends_with(":3: policy.max_inspect_bytes: must be at least 1024"),
        "{small}"
    );
    let unknown = error("[policy]\ndirectory = \"/x\"\n");
    assert!(
        unknown.contains(":2: unknown key `directory` in [policy]"),
        "{unknown}"
    );
}

#[test]
fn a_policy_dir_set_in_the_file_is_marked_configured() {
    let config = parse("[policy]\ndir = \"/srv/policies\"\n").unwrap();
    assert!(config.policy.dir_configured);
    assert_eq!(config.policy.dir, Path::new("/srv/policies"));
    let config = parse("[policy]\nmax_inspect_bytes = 4096\n").unwrap();
    assert!(!config.policy.dir_configured);
    assert_eq!(config.policy.dir, Path::new(DEFAULT_POLICY_DIR));
    assert!(!Config::default().policy.dir_configured);
}
