//! This host's name, as the sinks report it (syslog HOSTNAME, OTLP `host.name`).

/// The kernel's node name (what `hostname` prints), or `localhost` when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
