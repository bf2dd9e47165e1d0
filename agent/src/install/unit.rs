//! The text of `warden.service`: a notify service with only the capabilities Warden uses, hardened
//! so that `systemd-analyze security` rates its exposure at most 3.0.
use std::{fmt::Write, path::Path};

use super::BINARY_PATH;

/// What the unit depends on from the config (all live paths).
#[derive(Debug, Clone, Copy)]
pub struct UnitOptions<'a> {
    /// `--config` when install was given one; the daemon's default otherwise.
    pub config: Option<&'a Path>,
    pub state_dir: &'a Path,
    pub pin_dir: &'a Path,
    /// `[[credential]] systemd_credential` names: each gets a `LoadCredential=` line.
    pub credentials: &'a [String],
}

/// Where `LoadCredential=` reads a systemd credential from: `/etc/warden/credentials/NAME`
/// (root-owned, 0600; systemd hands the daemon a copy in `$CREDENTIALS_DIRECTORY`).
pub const CREDENTIAL_SOURCE_DIR: &str = "/etc/warden/credentials";

/// The bpf filesystem, made writable for the pins.
const BPF_FS: &str = "/sys/fs/bpf";
/// Where systemd's `StateDirectory=` lives.
const STATE_ROOT: &str = "/var/lib";

pub fn unit_text(options: &UnitOptions) -> String {
    let exec_start = warden_command(options.config, "run");
    // StateDirectory= makes the state directory (0700) and the only writable place under
    // ProtectSystem=strict; a state_dir outside /var/lib is made writable by path instead.
    let (state_directory, mut writable) = match options.state_dir.strip_prefix(STATE_ROOT) {
        Ok(relative) if !relative.as_os_str().is_empty() => (
            format!(
                "StateDirectory={}\nStateDirectoryMode=0700\n",
                relative.display()
            ),
            vec![BPF_FS.to_string()],
        ),
        _ => (
            String::new(),
            vec![BPF_FS.to_string(), quote(options.state_dir)],
        ),
    };
    if !options.pin_dir.starts_with(BPF_FS) {
        writable.push(quote(options.pin_dir));
    }
    let load_credentials: String = options
        .credentials
        .iter()
        .map(|name| format!("LoadCredential={name}:{CREDENTIAL_SOURCE_DIR}/{name}\n"))
        .collect();
    let load_credentials = match load_credentials.is_empty() {
        true => String::new(),
        false => format!(
            "# The keys Warden injects ([[credential]] systemd_credential), in $CREDENTIALS_DIRECTORY.\n{load_credentials}"
        ),
    };
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        r#"# Written by `warden install`; `warden install` rewrites it and `warden uninstall` removes it.
# Local changes belong in a drop-in: systemctl edit warden
[Unit]
Description=Warden: records and governs AI agents' calls to LLM APIs
After=network.target

[Service]
# READY=1 once the programs are attached, the listener bound, the audit store open and the policy loaded.
Type=notify
NotifyAccess=main
ExecStart={exec_start}
# SIGHUP reloads the policy.
ExecReload=/bin/kill -HUP $MAINPID
Restart=always
RestartSec=1s
WatchdogSec=30s
# Every intercepted connection holds two descriptors.
LimitNOFILE=1048576
# Kernels before 5.11 charge eBPF maps to the locked-memory limit.
LimitMEMLOCK=infinity
{load_credentials}
# Only the capabilities Warden uses:
#   CAP_BPF, CAP_NET_ADMIN     load the cgroup eBPF programs and attach them to the cgroup2 root
#   CAP_PERFMON                the verifier refuses the programs' stack pointer arithmetic without it
#                              ("pointer arithmetic with it prohibited for !root")
#   CAP_SYS_PTRACE             read other users' /proc/PID/exe and /proc/PID/root (attribution)
#   CAP_DAC_READ_SEARCH        read files other users own: a container's service-account token
#                              through /proc/PID/root
CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
AmbientCapabilities=
NoNewPrivileges=yes
SystemCallFilter=@system-service bpf
SystemCallArchitectures=native
SystemCallErrorNumber=EPERM
# AF_NETLINK: glibc's getaddrinfo asks the kernel for the host's addresses.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

ProtectSystem=strict
{state_directory}ReadWritePaths={writable}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
# Read-only: Warden reads cgroupfs to find the selected units' cgroups, and never writes it.
ProtectControlGroups=yes
# Not ProtectKernelTunables=: systemd releases before PrivateBPF= (252 in Debian 12, 255 in Ubuntu
# 24.04) mount /sys/fs/bpf read-only with it, and neither ReadWritePaths= nor BindPaths= undoes that
# (measured on 252): Warden could not pin its programs and would not start. The tunables it guards are
# made read-only here instead; /sys/fs/bpf stays writable through ReadWritePaths= above.
ReadOnlyPaths=/sys /proc/sys -/proc/sysrq-trigger
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
ProtectHostname=yes
# Not ProtectProc=invisible: attribution reads every process's /proc entries. Not PrivateNetwork=:
# Warden serves the redirected connections on the host's loopback and reaches the API.
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
KeyringMode=private
UMask=0077

[Install]
WantedBy=multi-user.target
"#,
        writable = writable.join(" "),
    );
    text
}

/// The command line that runs `warden SUBCOMMAND` from a unit file, with `--config` when install
/// was given one.
pub fn warden_command(config: Option<&Path>, subcommand: &str) -> String {
    match config {
        // `$` would be expanded as an environment variable on a command line.
        Some(config) => format!(
            "{BINARY_PATH} --config {} {subcommand}",
            quote(config).replace('$', "$$")
        ),
        None => format!("{BINARY_PATH} {subcommand}"),
    }
}

/// A path as one word of a unit file line: systemd splits on whitespace, honours C-style quotes,
/// and expands `%` specifiers.
fn quote(path: &Path) -> String {
    let text = path.display().to_string().replace('%', "%%");
    if text
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_is_a_hardened_notify_service() {
        let text = unit_text(&UnitOptions {
            config: None,
            state_dir: Path::new("/var/lib/warden"),
            pin_dir: Path::new("/sys/fs/bpf/warden"),
            credentials: &[],
        });
        assert!(!text.contains("LoadCredential"), "{text}");
        for line in [
            "Type=notify",
            "ExecStart=/usr/local/bin/warden run",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "Restart=always",
            "WatchdogSec=30s",
            "CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_SYS_PTRACE CAP_DAC_READ_SEARCH",
            "SystemCallFilter=@system-service bpf",
            "ProtectSystem=strict",
            "StateDirectory=warden",
            "StateDirectoryMode=0700",
            "ReadWritePaths=/sys/fs/bpf",
            "NoNewPrivileges=yes",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(
            text.lines()
                .any(|l| l == "ReadOnlyPaths=/sys /proc/sys -/proc/sysrq-trigger"),
            "the kernel tunables are read-only:\n{text}"
        );
        // ProtectKernelTunables= makes /sys/fs/bpf read-only, beyond ReadWritePaths=' reach.
        for forbidden in [
            "ProtectProc=",
            "PrivateNetwork=",
            "ProcSubset=",
            "ProtectKernelTunables=",
        ] {
            assert!(
                !text.lines().any(|l| l.starts_with(forbidden)),
                "{forbidden} would break Warden:\n{text}"
            );
        }
    }

    #[test]
    fn the_unit_names_a_given_config_and_moved_directories() {
        let text = unit_text(&UnitOptions {
            config: Some(Path::new("/srv/my warden/w%.toml")),
            state_dir: Path::new("/var/lib/warden/host-a"),
            pin_dir: Path::new("/run/bpf/warden"),
            credentials: &[],
        });
        assert!(
            text.contains(
                "ExecStart=/usr/local/bin/warden --config \"/srv/my warden/w%%.toml\" run\n"
            ),
            "{text}"
        );
        assert!(text.contains("StateDirectory=warden/host-a\n"), "{text}");
        assert!(
            text.contains("ReadWritePaths=/sys/fs/bpf /run/bpf/warden\n"),
            "{text}"
        );
    }

    #[test]
    fn each_systemd_credential_is_loaded_from_etc_warden_credentials() {
        let names = ["openai-prod".to_string(), "anthropic".to_string()];
        let text = unit_text(&UnitOptions {
            config: None,
            state_dir: Path::new("/var/lib/warden"),
            pin_dir: Path::new("/sys/fs/bpf/warden"),
            credentials: &names,
        });
        let service = text
            .split("[Service]")
            .nth(1)
            .and_then(|s| s.split("[Install]").next());
        let service = service.unwrap_or_default();
        for line in [
            "LoadCredential=openai-prod:/etc/warden/credentials/openai-prod",
            "LoadCredential=anthropic:/etc/warden/credentials/anthropic",
        ] {
            assert!(
                service.lines().any(|l| l == line),
                "{line} missing:\n{text}"
            );
        }
    }
}
