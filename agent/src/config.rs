//! Typed configuration (TOML): defaults, validation with errors that name file, line and key.
//!
//! ```toml
//! state_dir = "/var/lib/warden"               # CA and the audit store
//! [proxy]
//! listen_port = 15443                         # on 127.0.0.1 and ::1
//! intercept_ports = [443]                     # destination ports redirected from selected cgroups
//! intercept_hosts = ["api.openai.com"]        # TLS server names that are decrypted; "*.x.com" allowed
//! drain_timeout_secs = 10                     # how long shutdown waits for open connections
//! [select]
//! cgroups = ["/system.slice/agent.service"]   # cgroup2 paths; descendants included
//! units = ["billing-agent.service"]           # systemd unit names, resolved to their cgroups
//! [[upstream.override]]                       # send one host's traffic elsewhere
//! host = "api.openai.com"
//! address = "127.0.0.2:8443"
//! ca_file = "/path/to/extra-ca.pem"           # extra roots trusted for this upstream (optional)
//! [[account]]                                 # service-account names for workloads
//! name = "billing-agent"
//! unit = "billing-agent.service"              # or exactly one of: cgroup, uid, exe
//! ```
use std::{
    collections::HashSet,
    fmt, fs, io,
    net::{IpAddr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/warden/warden.toml";

/// Unit types that own a cgroup and so can be selected or named.
const UNIT_SUFFIXES: &[&str] = &[".service", ".scope", ".slice", ".socket", ".mount", ".swap"];

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub state_dir: PathBuf,
    pub proxy: ProxyConfig,
    pub select: SelectConfig,
    pub upstream: UpstreamConfig,
    #[serde(rename = "account")]
    pub accounts: Vec<AccountConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    pub listen_port: u16,
    pub intercept_ports: Vec<u16>,
    pub intercept_hosts: Vec<String>,
    /// How long shutdown waits for open connections before closing them.
    pub drain_timeout_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectConfig {
    pub cgroups: Vec<String>,
    pub units: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    #[serde(rename = "override")]
    pub overrides: Vec<UpstreamOverride>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOverride {
    pub host: String,
    pub address: SocketAddr,
    pub ca_file: Option<PathBuf>,
}

/// Names a workload: exactly one selector (unit, cgroup, uid, exe) is set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub name: String,
    pub unit: Option<String>,
    pub cgroup: Option<String>,
    pub uid: Option<u32>,
    pub exe: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: PathBuf::from("/var/lib/warden"),
            proxy: ProxyConfig::default(),
            select: SelectConfig::default(),
            upstream: UpstreamConfig::default(),
            accounts: Vec::new(),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen_port: 15443,
            intercept_ports: vec![443],
            intercept_hosts: vec!["api.openai.com".to_string()],
            drain_timeout_secs: 10,
        }
    }
}

/// Where in which file a problem is; the line is absent when the key came from the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read config: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{location}: {message}")]
    Syntax { location: Location, message: String },
    #[error("{location}: unknown key `{key}` in {table} (expected {expected})")]
    UnknownKey {
        location: Location,
        key: String,
        table: String,
        expected: String,
    },
    #[error("{location}: {key}: {reason}")]
    Invalid {
        location: Location,
        key: String,
        reason: String,
    },
}

impl Config {
    /// None → DEFAULT_CONFIG_PATH, and if that file is absent the built-in defaults apply.
    /// Some(path) → the file must exist (a typo must not silently run with defaults).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => load_file(path, true),
            None => load_file(Path::new(DEFAULT_CONFIG_PATH), false),
        }
    }

    /// Parses and validates `text`; `file` only names the source in errors.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let doc = toml_edit::ImDocument::parse(text).map_err(|e| ConfigError::Syntax {
            location: Location {
                file: file.to_path_buf(),
                line: e.span().map(|span| line_of(text, span.start)),
            },
            message: e.message().trim_end().replace('\n', "; "),
        })?;
        let locate = Locator {
            text,
            doc: &doc,
            file,
        };
        let mut config: Config = toml::from_str(text).map_err(|e| locate.serde_error(&e))?;
        config.normalize();
        config
            .validate()
            .map_err(|(path, reason)| ConfigError::Invalid {
                location: locate.location(locate.span_of(&path)),
                key: path.to_string(),
                reason,
            })?;
        Ok(config)
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.state_dir.join("ca")
    }

    pub fn admin_socket_path(&self) -> PathBuf {
        self.state_dir.join("admin.sock")
    }

    /// Case-insensitive exact match, or a `*.example.com` entry matching one or more labels below it.
    pub fn is_intercepted_host(&self, server_name: &str) -> bool {
        // Called per connection: compare in place rather than lowercasing copies.
        let name = server_name.trim_end_matches('.');
        self.proxy
            .intercept_hosts
            .iter()
            .any(|entry| match entry.strip_prefix('*') {
                Some(suffix) if suffix.starts_with('.') && name.len() > suffix.len() => name
                    .get(name.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix)),
                _ => name.eq_ignore_ascii_case(entry),
            })
    }

    pub fn upstream_override(&self, host: &str) -> Option<&UpstreamOverride> {
        let host = host.trim_end_matches('.');
        self.upstream
            .overrides
            .iter()
            .find(|o| o.host.eq_ignore_ascii_case(host))
    }

    /// Host names compare case-insensitively everywhere; store them lowercase once.
    fn normalize(&mut self) {
        for host in &mut self.proxy.intercept_hosts {
            *host = host.to_ascii_lowercase();
        }
        for o in &mut self.upstream.overrides {
            o.host = o.host.to_ascii_lowercase();
        }
    }

    /// The first rule broken, as (key path, reason).
    fn validate(&self) -> Result<(), (KeyPath, String)> {
        let proxy = KeyPath::root().key("proxy");
        let p = &self.proxy;
        if p.listen_port == 0 {
            return Err((
                proxy.key("listen_port"),
                "must be between 1 and 65535".into(),
            ));
        }
        let ports = proxy.key("intercept_ports");
        if p.intercept_ports.is_empty() {
            return Err((ports, "must name at least one port".into()));
        }
        let mut seen = HashSet::new();
        for (i, &port) in p.intercept_ports.iter().enumerate() {
            let reason = if port == 0 {
                "must be between 1 and 65535".to_string()
            } else if !seen.insert(port) {
                format!("port {port} is listed twice")
            } else if port == p.listen_port {
                format!("port {port} is proxy.listen_port: redirecting it would loop")
            } else {
                continue;
            };
            return Err((ports.index(i), reason));
        }
        let hosts = proxy.key("intercept_hosts");
        if p.intercept_hosts.is_empty() {
            return Err((hosts, "must name at least one host".into()));
        }
        for (i, host) in p.intercept_hosts.iter().enumerate() {
            let name = host.strip_prefix("*.").unwrap_or(host);
            check_dns_name(name).map_err(|r| (hosts.index(i), format!("{host:?} {r}")))?;
        }
        if !self.state_dir.is_absolute() {
            return Err((
                KeyPath::root().key("state_dir"),
                "must be an absolute path".into(),
            ));
        }
        let select = KeyPath::root().key("select");
        for (i, cgroup) in self.select.cgroups.iter().enumerate() {
            check_cgroup(cgroup).map_err(|r| (select.key("cgroups").index(i), r))?;
        }
        for (i, unit) in self.select.units.iter().enumerate() {
            check_unit(unit).map_err(|r| (select.key("units").index(i), r))?;
        }
        let mut hosts_seen = HashSet::new();
        for (i, o) in self.upstream.overrides.iter().enumerate() {
            let at = KeyPath::root().key("upstream").key("override").index(i);
            check_dns_name(&o.host).map_err(|r| (at.key("host"), format!("{:?} {r}", o.host)))?;
            if !hosts_seen.insert(o.host.as_str()) {
                return Err((at.key("host"), format!("{} has two overrides", o.host)));
            }
            if o.ca_file.as_ref().is_some_and(|f| !f.is_absolute()) {
                return Err((at.key("ca_file"), "must be an absolute path".into()));
            }
        }
        let mut names = HashSet::new();
        for (i, account) in self.accounts.iter().enumerate() {
            validate_account(
                account,
                &KeyPath::root().key("account").index(i),
                &mut names,
            )?;
        }
        Ok(())
    }
}

fn validate_account<'a>(
    a: &'a AccountConfig,
    at: &KeyPath,
    names: &mut HashSet<&'a str>,
) -> Result<(), (KeyPath, String)> {
    if a.name.trim().is_empty() {
        return Err((at.key("name"), "must not be empty".into()));
    }
    if !names.insert(a.name.as_str()) {
        return Err((
            at.key("name"),
            format!("account {:?} is defined twice", a.name),
        ));
    }
    let selectors = [
        a.unit.is_some(),
        a.cgroup.is_some(),
        a.uid.is_some(),
        a.exe.is_some(),
    ];
    if selectors.iter().filter(|set| **set).count() != 1 {
        return Err((
            at.clone(),
            "set exactly one of unit, cgroup, uid, exe".into(),
        ));
    }
    if let Some(unit) = &a.unit {
        check_unit(unit).map_err(|r| (at.key("unit"), r))?;
    }
    if let Some(cgroup) = &a.cgroup {
        check_cgroup(cgroup).map_err(|r| (at.key("cgroup"), r))?;
    }
    if a.exe.as_ref().is_some_and(|exe| !exe.is_absolute()) {
        return Err((at.key("exe"), "must be an absolute path".into()));
    }
    Ok(())
}

fn load_file(path: &Path, required: bool) -> Result<Config, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Config::from_toml(&text, path),
        Err(e) if !required && e.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "no config file; using built-in defaults");
            Ok(Config::default())
        }
        Err(source) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A (lowercase) DNS name as it appears in SNI: no IP literals, no trailing dot.
fn check_dns_name(name: &str) -> Result<(), &'static str> {
    if name.parse::<IpAddr>().is_ok() {
        return Err("is an IP literal; TLS server names are DNS names");
    }
    let labels: Vec<&str> = name.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let numeric_tld = labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if name.len() > 253 || !labels.iter().all(label_ok) || numeric_tld {
        return Err("is not a valid DNS name");
    }
    Ok(())
}

fn check_cgroup(path: &str) -> Result<(), String> {
    crate::cgroupfs::validate_path(path).map_err(|e| e.to_string())
}

fn check_unit(unit: &str) -> Result<(), String> {
    let has_suffix = UNIT_SUFFIXES
        .iter()
        .any(|s| unit.len() > s.len() && unit.ends_with(s));
    if unit.contains('/') || !has_suffix {
        return Err(format!(
            "{unit:?} is not a systemd unit name (expected a name ending in one of {})",
            UNIT_SUFFIXES.join(" ")
        ));
    }
    Ok(())
}

/// A key's place in the document: `upstream.override[0].address`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    fn root() -> Self {
        KeyPath(Vec::new())
    }

    fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Key(key.to_string()));
        path
    }

    fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// How the table holding this key is written: `[proxy]`, `[[account]]`, or the top level.
    fn parent_table(&self) -> String {
        let parent = &self.0[..self.0.len().saturating_sub(1)];
        let array = matches!(parent.last(), Some(Segment::Index(_)));
        let names: Vec<&str> = parent
            .iter()
            .filter_map(|s| match s {
                Segment::Key(k) => Some(k.as_str()),
                Segment::Index(_) => None,
            })
            .collect();
        match (names.is_empty(), array) {
            (true, _) => "the top level".to_string(),
            (false, true) => format!("[[{}]]", names.join(".")),
            (false, false) => format!("[{}]", names.join(".")),
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// Maps between key paths and source positions using toml_edit's spans.
struct Locator<'a> {
    text: &'a str,
    doc: &'a toml_edit::ImDocument<&'a str>,
    file: &'a Path,
}

/// A node of the document while walking it: tables of `[[x]]` arrays and array elements are not Items.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a toml_edit::Item),
    Table(&'a toml_edit::Table),
    Value(&'a toml_edit::Value),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Table(table) => Some(table),
            Node::Value(value) => value
                .as_inline_table()
                .map(|t| t as &dyn toml_edit::TableLike),
        }
    }

    fn element(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(toml_edit::Item::ArrayOfTables(tables)) => {
                tables.get(index).map(Node::Table)
            }
            Node::Item(toml_edit::Item::Value(value)) | Node::Value(value) => {
                value.as_array()?.get(index).map(Node::Value)
            }
            _ => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Table(table) => table.span(),
            Node::Value(value) => value.span(),
        }
    }

    /// Direct children with their paths and the spans that point at them (key, then value).
    fn children(self, at: &KeyPath) -> Vec<(KeyPath, Node<'a>, Option<Range<usize>>)> {
        if let Some(table) = self.table_like() {
            return table
                .iter()
                .filter_map(|(name, _)| table.get_key_value(name))
                .map(|(key, item)| (at.key(key.get()), Node::Item(item), key.span()))
                .collect();
        }
        (0..)
            .map_while(|i| self.element(i).map(|node| (at.index(i), node, None)))
            .collect()
    }
}

impl Locator<'_> {
    fn location(&self, span: Option<Range<usize>>) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: span.map(|span| line_of(self.text, span.start)),
        }
    }

    /// The span of the key (or, for array elements, the value) at `path`; None when absent.
    fn span_of(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut node = Node::Table(self.doc.as_table());
        let mut span = None;
        for segment in &path.0 {
            match segment {
                Segment::Key(k) => {
                    let (key, item) = node.table_like()?.get_key_value(k)?;
                    node = Node::Item(item);
                    span = key.span().or_else(|| item.span());
                }
                Segment::Index(i) => {
                    node = node.element(*i)?;
                    span = node.span();
                }
            }
        }
        span
    }

    /// The deepest key whose name or value contains `offset`.
    fn path_at(&self, offset: usize) -> Option<KeyPath> {
        let mut best = None;
        let mut stack = vec![(KeyPath::root(), Node::Table(self.doc.as_table()))];
        while let Some((at, node)) = stack.pop() {
            for (path, child, key_span) in node.children(&at) {
                let hit =
                    |s: &Option<Range<usize>>| s.as_ref().is_some_and(|s| s.contains(&offset));
                if hit(&key_span) || hit(&child.span()) {
                    best = Some(path.clone());
                }
                stack.push((path, child));
            }
        }
        best
    }

    fn serde_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span();
        let path = span.as_ref().and_then(|s| self.path_at(s.start));
        let location = self.location(span);
        let message = e.message().trim_end().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((key, expected)) = rest.split_once("`, ") {
                let expected = expected.strip_prefix("expected ").unwrap_or(expected);
                let table = path
                    .map(|p| p.parent_table())
                    .unwrap_or_else(|| "the config".into());
                return ConfigError::UnknownKey {
                    location,
                    key: key.to_string(),
                    table,
                    expected: expected.to_string(),
                };
            }
        }
        match path {
            Some(path) => ConfigError::Invalid {
                location,
                key: path.to_string(),
                reason: message,
            },
            None => ConfigError::Syntax { location, message },
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
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
        assert_eq!(config.proxy.intercept_ports, vec![443]);
        assert_eq!(config.proxy.intercept_hosts, vec!["api.openai.com"]);
        assert_eq!(config.proxy.drain_timeout_secs, 10);
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
        let e = error("[[account]]\nname = \"a\"\nuid = 1\n\n[[account]]\nname = \"b\"\nunti = \"b.service\"\n");
        assert!(
            e.starts_with("/etc/warden/warden.toml:7: unknown key `unti` in [[account]]"),
            "{e}"
        );
        let e = error(
            "[[upstream.override]]\nhost = \"a.com\"\naddress = \"127.0.0.1:1\"\ncafile = \"/x\"\n",
        );
        assert!(
            e.starts_with(
                "/etc/warden/warden.toml:4: unknown key `cafile` in [[upstream.override]]"
            ),
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
        assert_eq!(e, "/etc/warden/warden.toml: proxy.intercept_ports[0]: port 443 is proxy.listen_port: redirecting it would loop");
    }

    #[test]
    fn intercepted_hosts_match_exactly_or_by_wildcard() {
        let config =
            parse("proxy.intercept_hosts = [\"API.openai.com\", \"*.example.com\"]").unwrap();
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
}
