//! The `syslog` sink's keys: where the receiver is, how to reach it, and how messages are tagged.
//!
//! ```toml
//! [[sink]]
//! kind = "syslog"
//! transport = "tls"                 # udp | tcp | tls | unix
//! address = "siem.example.com:6514" # host:port, or a socket path for unix
//! ca_file = "/etc/warden/siem-ca.pem"
//! app_name = "warden"
//! facility = "local0"
//! max_message_bytes = 8192          # udp and unix: longer messages are cut (valid UTF-8)
//! ```
use std::path::PathBuf;

use serde::Deserialize;

/// How messages travel to the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransportKind {
    /// One datagram per message (RFC 5426): fast, but a lost datagram is lost for good.
    Udp,
    /// Octet-counted frames over TCP (RFC 6587).
    Tcp,
    /// Octet-counted frames over TLS (RFC 5425), trusting the system roots and `ca_file`.
    Tls,
    /// One datagram per message on a unix datagram socket (a local daemon's, /dev/log style).
    Unix,
}

impl SyslogTransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SyslogTransportKind::Udp => "udp",
            SyslogTransportKind::Tcp => "tcp",
            SyslogTransportKind::Tls => "tls",
            SyslogTransportKind::Unix => "unix",
        }
    }
}

/// `[[sink]] kind = "syslog"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSinkConfig {
    pub transport: SyslogTransportKind,
    /// `host:port` for udp, tcp and tls (the host is the TLS server name); a path for unix.
    pub address: String,
    /// PEM certificates trusted besides the system roots (tls only).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// RFC 5424 APP-NAME: printable ASCII, at most 48 characters.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// `kern`, `user`, `daemon`, `auth`, `syslog`, `authpriv`, or `local0` … `local7`.
    #[serde(default = "default_facility")]
    pub facility: String,
    /// Datagram transports (udp, unix) cut longer messages to this many bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

fn default_app_name() -> String {
    "warden".to_owned()
}

fn default_facility() -> String {
    "local0".to_owned()
}

fn default_max_message_bytes() -> usize {
    8192
}

/// The smallest cut that still holds a header and the structured data.
const MIN_MESSAGE_BYTES: usize = 480;
/// An IPv4 UDP datagram's payload cannot be longer.
const MAX_DATAGRAM_BYTES: usize = 65_507;

const FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("authpriv", 10),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// A facility's number (RFC 5424 §6.2.1), or None for a name that is not one.
pub fn facility_code(name: &str) -> Option<u8> {
    FACILITIES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, code)| *code)
}

impl SyslogSinkConfig {
    /// The first key that is wrong, and why (the `[[sink]]` loader names the sink around it).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if facility_code(&self.facility).is_none() {
            let names: Vec<&str> = FACILITIES.iter().map(|(name, _)| *name).collect();
            return Err((
                "facility",
                format!(
                    "{:?} is not a facility; expected one of {}",
                    self.facility,
                    names.join(", ")
                ),
            ));
        }
        let app_name_ok = !self.app_name.is_empty()
            && self.app_name.len() <= 48
            && self.app_name.bytes().all(|b| (33..=126).contains(&b));
        if !app_name_ok {
            return Err((
                "app_name",
                format!(
                    "{:?} is not an RFC 5424 APP-NAME (1 to 48 printable ASCII characters, no space)",
                    self.app_name
                ),
            ));
        }
        match self.transport {
            SyslogTransportKind::Unix => {
                if !self.address.starts_with('/') {
                    return Err((
                        "address",
                        format!(
                            "{:?} is not an absolute socket path (transport unix)",
                            self.address
                        ),
                    ));
                }
            }
            _ => {
                if split_host_port(&self.address).is_none() {
                    return Err(("address", format!("{:?} is not host:port", self.address)));
                }
            }
        }
        if self.ca_file.is_some() && self.transport != SyslogTransportKind::Tls {
            return Err((
                "ca_file",
                format!(
                    "only transport \"tls\" uses a CA file (this sink's is {:?})",
                    self.transport.as_str()
                ),
            ));
        }
        if !(MIN_MESSAGE_BYTES..=MAX_DATAGRAM_BYTES).contains(&self.max_message_bytes) {
            return Err((
                "max_message_bytes",
                format!("must be between {MIN_MESSAGE_BYTES} and {MAX_DATAGRAM_BYTES}"),
            ));
        }
        Ok(())
    }

    pub fn facility_code(&self) -> u8 {
        facility_code(&self.facility).unwrap_or(16)
    }
}

/// `host:port` or `[v6]:port` → (host without brackets, port).
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|port| *port != 0)?;
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> SyslogSinkConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn defaults_are_warden_local0_8192() {
        let parsed = config("transport = \"udp\"\naddress = \"127.0.0.1:5514\"");
        assert_eq!(parsed.app_name, "warden");
        assert_eq!(parsed.facility_code(), 16);
        assert_eq!(parsed.max_message_bytes, 8192);
        assert_eq!(parsed.validate(), Ok(()));
    }

    #[test]
    fn wrong_keys_are_named() {
        let cases = [
            ("transport = \"tcp\"\naddress = \"nowhere\"", "address"),
            ("transport = \"tcp\"\naddress = \"h:0\"", "address"),
            ("transport = \"unix\"\naddress = \"dev/log\"", "address"),
            (
                "transport = \"udp\"\naddress = \"h:1\"\nfacility = \"local9\"",
                "facility",
            ),
            (
                "transport = \"udp\"\naddress = \"h:1\"\napp_name = \"has space\"",
                "app_name",
            ),
            (
                "transport = \"tcp\"\naddress = \"h:1\"\nca_file = \"/ca.pem\"",
                "ca_file",
            ),
            (
                "transport = \"udp\"\naddress = \"h:1\"\nmax_message_bytes = 100",
                "max_message_bytes",
            ),
        ];
        for (text, key) in cases {
            let (named, _) = config(text).validate().expect_err(text);
            assert_eq!(named, key, "{text}");
        }
        assert!(
            toml::from_str::<SyslogSinkConfig>("transport = \"smtp\"\naddress = \"h:1\"").is_err()
        );
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("127.0.0.1:514"), Some(("127.0.0.1", 514)));
        assert_eq!(split_host_port("[::1]:514"), Some(("::1", 514)));
        assert_eq!(
            split_host_port("siem.example:6514"),
            Some(("siem.example", 6514))
        );
        assert_eq!(split_host_port("::1:514"), None);
        assert_eq!(split_host_port(":514"), None);
    }
}
