//! The three setups the bench compares (direct, Warden, mitmproxy): how each is started, where the
//! load generator connects, and which process's memory is measured.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use warden_tests::custody::{credential_toml, SecretDir};
use warden_tests::daemon::UpstreamOverride;
use warden_tests::{CgroupGuard, Client, Daemon, E2e, HostsFile};

use crate::mitm::Mitmproxy;
use crate::sinks::BenchSinks;
use crate::upstream::FakeUpstream;

/// The representative policy Warden runs with: ten rules of every kind, masking included.
pub const BENCH_POLICY: &str = include_str!("../policy.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SetupKind {
    Direct,
    Warden,
    Mitmproxy,
}

impl SetupKind {
    pub const ALL: [SetupKind; 3] = [SetupKind::Direct, SetupKind::Warden, SetupKind::Mitmproxy];

    pub fn label(self) -> &'static str {
        match self {
            SetupKind::Direct => "direct",
            SetupKind::Warden => "warden",
            SetupKind::Mitmproxy => "mitmproxy",
        }
    }
}

/// What a setup needs from outside: the binaries it runs.
pub struct Tools {
    pub warden_bin: PathBuf,
    pub mitmdump: PathBuf,
    /// Run Warden with a `[[credential]]` for the load generator.
    pub custody: bool,
    /// Run Warden with sinks shipping its audit trail (`--sinks`).
    pub sinks: bool,
}

/// A started setup. Dropping it stops whatever it started.
pub enum Setup {
    Direct {
        upstream: SocketAddr,
        ca_file: PathBuf,
    },
    Warden {
        // Field order is drop order: the daemon stops before its clients' cgroup goes.
        daemon: Box<Daemon>,
        clients: CgroupGuard,
        hosts: HostsFile,
        /// The custodied key's file, with `--custody`: held only to be removed on drop.
        _secrets: Option<SecretDir>,
        /// The sinks' receiver and files, with `--sinks`.
        sinks: Option<BenchSinks>,
    },
    Mitmproxy(Mitmproxy),
}

impl Setup {
    pub fn start(kind: SetupKind, tools: &Tools, upstream: &FakeUpstream) -> Result<Self> {
        Ok(match kind {
            SetupKind::Direct => Setup::Direct {
                upstream: upstream.addr(),
                ca_file: upstream.ca_file().to_owned(),
            },
            SetupKind::Warden => {
                let sinks = tools.sinks.then(BenchSinks::start).transpose()?;
                Self::warden(&tools.warden_bin, tools.custody, sinks, upstream)
            }
            SetupKind::Mitmproxy => {
                let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
                Setup::Mitmproxy(Mitmproxy::start(
                    &tools.mitmdump,
                    listen,
                    upstream.addr(),
                    upstream.ca_file(),
                )?)
            }
        })
    }

    /// Warden in front of `upstream`, with the bench policy and `/metrics` on loopback; with
    /// `custody`, a `[[credential]]` serving the load generator; with `sinks`, shipping to them.
    pub fn warden(
        warden_bin: &Path,
        custody: bool,
        sinks: Option<BenchSinks>,
        upstream: &FakeUpstream,
    ) -> Self {
        let clients = CgroupGuard::new("bench-clients");
        let e2e = E2e {
            warden_bin: warden_bin.to_owned(),
        };
        let secrets = custody.then(SecretDir::new);
        let mut builder = Daemon::builder(&e2e);
        if let Some(secrets) = &secrets {
            let key = secrets.write("bench", "sk-bench-custodied-key-0123456789", 0o600);
            // The load generator runs as root in the selected cgroup.
            builder = builder.extra_config(&credential_toml("bench", &key, &["uid:0"]));
        }
        if let Some(sinks) = &sinks {
            builder = builder.extra_config(&sinks.config_toml());
        }
        let daemon = builder
            .metrics()
            .select(&clients)
            .upstream_override(UpstreamOverride::new(
                "api.openai.com",
                upstream.addr(),
                Some(upstream.ca_file()),
            ))
            .policy_file("bench.toml", BENCH_POLICY)
            .start();
        let hosts = HostsFile::new().with("api.openai.com", Ipv4Addr::LOCALHOST);
        Setup::Warden {
            daemon: Box::new(daemon),
            clients,
            hosts,
            _secrets: secrets,
            sinks,
        }
    }

    /// The sinks a Warden setup ships to, with `--sinks`.
    pub fn sinks(&self) -> Option<(&Daemon, &BenchSinks)> {
        match self {
            Setup::Warden {
                daemon,
                sinks: Some(sinks),
                ..
            } => Some((daemon, sinks)),
            _ => None,
        }
    }

    /// The Warden daemon of a Warden setup.
    pub fn daemon(&self) -> Option<&Daemon> {
        match self {
            Setup::Warden { daemon, .. } => Some(daemon),
            _ => None,
        }
    }

    /// Where the load generator connects: through the redirect for Warden (api.openai.com:443,
    /// loopback by the private hosts file), straight to a listener otherwise.
    pub fn connect_to(&self) -> String {
        match self {
            Setup::Direct { upstream, .. } => upstream.to_string(),
            Setup::Warden { .. } => "api.openai.com:443".to_owned(),
            Setup::Mitmproxy(proxy) => proxy.listen().to_string(),
        }
    }

    /// The CA a client must trust to reach the upstream through this setup.
    pub fn ca_file(&self) -> PathBuf {
        match self {
            Setup::Direct { ca_file, .. } => ca_file.clone(),
            Setup::Warden { daemon, .. } => daemon.ca_pem(),
            Setup::Mitmproxy(proxy) => proxy.ca_file(),
        }
    }

    /// Puts a load generator where this setup's clients run: for Warden, in the selected cgroup
    /// and a mount namespace whose /etc/hosts maps api.openai.com to 127.0.0.1.
    pub fn place(&self, client: Client) -> Client {
        match self {
            Setup::Warden { clients, hosts, .. } => client.in_cgroup(clients).hosts(hosts),
            _ => client,
        }
    }

    /// The interception process whose memory is measured (none for a direct connection).
    pub fn proxy_pid(&self) -> Option<u32> {
        match self {
            Setup::Direct { .. } => None,
            Setup::Warden { daemon, .. } => Some(daemon.pid()),
            Setup::Mitmproxy(proxy) => Some(proxy.pid()),
        }
    }

    /// Warden's audit store, for counting what it recorded.
    pub fn audit_db(&self) -> Option<PathBuf> {
        match self {
            Setup::Warden { daemon, .. } => Some(daemon.state_dir().join("audit.db")),
            _ => None,
        }
    }
}

/// A port nothing listens on right now, on 127.0.0.1.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("finding a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// Resident memory of `pid` in MiB (VmRSS).
pub fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kib / 1024.0)
}

/// The user and system CPU time `pid` has used so far, in seconds (/proc/PID/stat: utime and
/// stime, in clock ticks).
pub fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The name may hold spaces: the fields that follow start after its closing parenthesis, with
    // the state (field 3), so utime and stime (fields 14 and 15) are the 12th and 13th after it.
    let after_name = stat
        .rfind(')')
        .map(|end| &stat[end + 1..])
        .with_context(|| format!("no process name in /proc/{pid}/stat"))?;
    let mut fields = after_name.split_whitespace().skip(11);
    let mut ticks = || -> Result<f64> {
        fields
            .next()
            .and_then(|field| field.parse::<f64>().ok())
            .with_context(|| format!("no utime/stime in /proc/{pid}/stat"))
    };
    let (user, system) = (ticks()?, ticks()?);
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((user + system) / per_sec)
}

/// Lets a process that just did something settle before its memory is read.
pub const SETTLE: Duration = Duration::from_millis(500);

/// Counts in Warden's audit store, read through SQLite (read-only; the daemon keeps writing).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct AuditCounts {
    pub records: u64,
    pub exchanges: u64,
    /// Exchanges whose response record is written too.
    pub complete_exchanges: u64,
}

impl AuditCounts {
    pub fn read(db: &Path) -> Result<Self> {
        let conn = rusqlite::Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {}", db.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let count = |sql: &str| -> Result<u64> {
            Ok(conn.query_row(sql, [], |row| row.get::<_, i64>(0))? as u64)
        };
        Ok(Self {
            records: count("SELECT count(*) FROM records")?,
            exchanges: count("SELECT count(*) FROM exchanges")?,
            complete_exchanges: count(
                "SELECT count(*) FROM exchanges WHERE response_seq IS NOT NULL",
            )?,
        })
    }
}
