//! The rules a parsed config must satisfy, each failure reported as (key path, reason).
use std::{collections::HashSet, net::IpAddr};

use super::{locate::KeyPath, AccountConfig, Config};

/// Unit types that own a cgroup and so can be selected or named.
const UNIT_SUFFIXES: &[&str] = &[".service", ".scope", ".slice", ".socket", ".mount", ".swap"];

impl Config {
    /// The first rule broken, as (key path, reason).
    pub(super) fn validate(&self) -> Result<(), (KeyPath, String)> {
        let proxy = KeyPath::root().key("proxy");
        let p = &self.proxy;
        if p.listen_port == 0 {
            return Err((
                proxy.key("listen_port"),
                "must be between 1 and 65535".into(),
            ));
        }
        super::ports::validate(
            &p.intercept_ports,
            p.tls_ports_configured.as_deref(),
            p.listen_port,
            &proxy,
        )?;
        let hosts = proxy.key("intercept_hosts");
        if p.intercept_hosts.is_empty() {
            return Err((hosts, "must name at least one host".into()));
        }
        for (i, host) in p.intercept_hosts.iter().enumerate() {
            let name = host.strip_prefix("*.").unwrap_or(host);
            check_dns_name(name).map_err(|r| (hosts.index(i), format!("{host:?} {r}")))?;
        }
        if !p.pin_dir.is_absolute() || p.pin_dir.parent().is_none() {
            return Err((
                proxy.key("pin_dir"),
                "must be an absolute path below a bpf filesystem, e.g. /sys/fs/bpf/warden".into(),
            ));
        }
        let metrics = &self.metrics.listen;
        if !metrics.is_empty() && metrics.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                KeyPath::root().key("metrics").key("listen"),
                format!("{metrics:?} is not host:port (e.g. \"127.0.0.1:9464\"; \"\" turns metrics off)"),
            ));
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
        let upstream = KeyPath::root().key("upstream");
        for (key, secs) in [
            ("response_timeout_secs", self.upstream.response_timeout_secs),
            ("idle_timeout_secs", self.upstream.idle_timeout_secs),
        ] {
            if !(1..=86_400).contains(&secs) {
                return Err((upstream.key(key), "must be between 1 and 86400".into()));
            }
        }
        let audit = KeyPath::root().key("audit");
        if self.audit.retention_days == Some(0) {
            return Err((
                audit.key("retention_days"),
                "must be at least 1 (omit it to keep records forever)".into(),
            ));
        }
        if self.audit.max_body_bytes < 1024 {
            return Err((audit.key("max_body_bytes"), "must be at least 1024".into()));
        }
        if !(1..=60_000).contains(&self.audit.sync_interval_ms) {
            return Err((
                audit.key("sync_interval_ms"),
                "must be between 1 and 60000 (use sync = \"commit\" to fsync every commit)".into(),
            ));
        }
        let policy = KeyPath::root().key("policy");
        if !self.policy.dir.is_absolute() {
            return Err((policy.key("dir"), "must be an absolute path".into()));
        }
        if self.policy.max_inspect_bytes < 1024 {
            return Err((
                policy.key("max_inspect_bytes"),
                "must be at least 1024".into(),
            ));
        }
        if self
            .policy
            .prices_file
            .as_ref()
            .is_some_and(|p| !p.is_absolute())
        {
            return Err((policy.key("prices_file"), "must be an absolute path".into()));
        }
        if self.policy.limit_default_output_tokens == 0 {
            return Err((
                policy.key("limit_default_output_tokens"),
                "must be at least 1".into(),
            ));
        }
        let mut names = HashSet::new();
        for (i, account) in self.accounts.iter().enumerate() {
            validate_account(
                account,
                &KeyPath::root().key("account").index(i),
                &mut names,
            )?;
        }
        self.admin.validate()?;
        self.api.validate()?;
        self.limits.validate(self.policy.max_inspect_bytes)?;
        self.approvals.validate()?;
        self.identity.validate()?;
        super::sinks::validate(&self.sinks)?;
        self.anomaly.validate()?;
        super::credentials::validate(&self.credential_entries, |host| {
            self.is_intercepted_host(host)
        })?;
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
