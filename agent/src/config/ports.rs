//! `[proxy] intercept_ports` ("all" or a list of ports) and `tls_ports`: which connects are redirected.
use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::locate::KeyPath;

/// Which destination ports of a selected cgroup's TCP connects are redirected to Warden.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum InterceptPorts {
    /// Every port: Warden reads what each connection says (TLS, HTTP, a proxy CONNECT, or
    /// something else) and intercepts, refuses or tunnels it. No odd port or proxy goes around.
    #[default]
    All,
    /// Only these ports; connects to other ports go direct, unseen.
    List(Vec<u16>),
}

impl InterceptPorts {
    pub fn is_all(&self) -> bool {
        matches!(self, InterceptPorts::All)
    }

    /// Whether a connect to `port` is redirected.
    pub fn contains(&self, port: u16) -> bool {
        match self {
            InterceptPorts::All => true,
            InterceptPorts::List(ports) => ports.contains(&port),
        }
    }

    /// The listed ports; empty under "all".
    pub fn listed(&self) -> &[u16] {
        match self {
            InterceptPorts::All => &[],
            InterceptPorts::List(ports) => ports,
        }
    }
}

impl fmt::Display for InterceptPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterceptPorts::All => f.write_str("all"),
            InterceptPorts::List(ports) => write!(f, "{ports:?}"),
        }
    }
}

impl serde::Serialize for InterceptPorts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            InterceptPorts::All => serializer.serialize_str("all"),
            InterceptPorts::List(ports) => ports.serialize(serializer),
        }
    }
}

impl<'de> serde::Deserialize<'de> for InterceptPorts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortsVisitor;
        impl<'de> Visitor<'de> for PortsVisitor {
            type Value = InterceptPorts;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"all\" or a list of ports")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<InterceptPorts, E> {
                match value {
                    "all" => Ok(InterceptPorts::All),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InterceptPorts, A::Error> {
                let mut ports = Vec::new();
                while let Some(port) = seq.next_element::<u16>()? {
                    ports.push(port);
                }
                Ok(InterceptPorts::List(ports))
            }
        }
        deserializer.deserialize_any(PortsVisitor)
    }
}

/// Ports where only TLS is acceptable when `tls_ports` is absent: 443 under "all"; under a list,
/// every listed port (what a list meant before "all" existed).
pub fn default_tls_ports(intercept: &InterceptPorts) -> Vec<u16> {
    match intercept {
        InterceptPorts::All => vec![443],
        InterceptPorts::List(ports) => ports.clone(),
    }
}

/// The `tls_ports` and `intercept_ports` rules, as (key path, reason).
pub(super) fn validate(
    intercept: &InterceptPorts,
    tls_ports: Option<&[u16]>,
    listen_port: u16,
    proxy: &KeyPath,
) -> Result<(), (KeyPath, String)> {
    if let InterceptPorts::List(ports) = intercept {
        let at = proxy.key("intercept_ports");
        if ports.is_empty() {
            return Err((at, "must name at least one port (or be \"all\")".into()));
        }
        check_list(ports, listen_port, &at)?;
    }
    let Some(tls_ports) = tls_ports else {
        return match intercept {
            InterceptPorts::All if listen_port == 443 => Err((
                proxy.key("tls_ports"),
                "port 443 (the default) is proxy.listen_port: redirecting it would loop".into(),
            )),
            _ => Ok(()),
        };
    };
    let at = proxy.key("tls_ports");
    check_list(tls_ports, listen_port, &at)?;
    for (i, &port) in tls_ports.iter().enumerate() {
        if !intercept.contains(port) {
            let reason = format!(
                "port {port} is not in proxy.intercept_ports: Warden would never see its connections"
            );
            return Err((at.index(i), reason));
        }
    }
    Ok(())
}

fn check_list(ports: &[u16], listen_port: u16, at: &KeyPath) -> Result<(), (KeyPath, String)> {
    let mut seen = std::collections::HashSet::new();
    for (i, &port) in ports.iter().enumerate() {
        let reason = if port == 0 {
            "must be between 1 and 65535".to_string()
        } else if !seen.insert(port) {
            format!("port {port} is listed twice")
        } else if port == listen_port {
            format!("port {port} is proxy.listen_port: redirecting it would loop")
        } else {
            continue;
        };
        return Err((at.index(i), reason));
    }
    Ok(())
}
