//! A private hosts file that maps test names to loopback addresses, bind-mounted only for clients.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A hosts file in a tempdir. Clients see it as /etc/hosts inside their own mount namespace (see
/// [`crate::client::Client::hosts`]); the machine's /etc/hosts is never touched.
#[derive(Debug)]
pub struct HostsFile {
    dir: TempDir,
    entries: Vec<(String, IpAddr)>,
}

impl Default for HostsFile {
    fn default() -> Self {
        Self::new()
    }
}

impl HostsFile {
    /// A hosts file with only `localhost`.
    pub fn new() -> Self {
        let hosts = Self {
            dir: tempfile::tempdir().expect("creating a tempdir for the hosts file"),
            entries: Vec::new(),
        };
        hosts.write();
        hosts
    }

    /// Adds `name → ip`. Panics on a non-loopback address: tests never leave the machine.
    pub fn with(mut self, name: &str, ip: impl Into<IpAddr>) -> Self {
        let ip = ip.into();
        assert!(
            ip.is_loopback(),
            "{name} → {ip}: test hosts entries must be loopback"
        );
        self.entries.push((name.to_owned(), ip));
        self.write();
        self
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }

    fn write(&self) {
        fs::write(self.path(), render(&self.entries)).expect("writing the hosts file");
    }

    /// The address `name` maps to, if any.
    pub fn resolve(&self, name: &str) -> Option<IpAddr> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, ip)| *ip)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn render(entries: &[(String, IpAddr)]) -> String {
    let mut text = String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost\n");
    for (name, ip) in entries {
        text.push_str(&format!("{ip} {name}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn writes_one_line_per_name() {
        let hosts = HostsFile::new()
            .with("api.openai.com", Ipv4Addr::new(127, 9, 0, 2))
            .with("v6.test", Ipv6Addr::LOCALHOST);
        let text = fs::read_to_string(hosts.path()).unwrap();
        assert!(text.contains("127.9.0.2 api.openai.com\n"));
        assert!(text.contains("::1 v6.test\n"));
        assert!(text.starts_with("127.0.0.1 localhost\n"));
        assert_eq!(
            hosts.resolve("api.openai.com"),
            Some(Ipv4Addr::new(127, 9, 0, 2).into())
        );
    }

    #[test]
    #[should_panic(expected = "must be loopback")]
    fn refuses_addresses_off_the_machine() {
        let _ = HostsFile::new().with("api.openai.com", Ipv4Addr::new(10, 0, 0, 1));
    }
}
