//! `warden run`: the daemon. Bind, load and attach eBPF, select, serve, and shut down cleanly.
use std::{os::unix::fs::DirBuilderExt, sync::Arc, time::Duration};

use anyhow::Context;
use clap::Args;
use tokio::sync::watch;

use super::Cli;
use crate::{
    admin::server::{self as admin_server, AdminServer},
    approvals::{authority::group_id, Approvals},
    audit::{self, AuditWriter},
    cgroupfs::CgroupFs,
    config::Config,
    credentials::CredentialStore,
    ebpf::{selection::Selection, RedirectSettings, Redirector},
    identity::{IdentityResolver, ServiceAccountVerifier},
    identity_limits::{self, persist, prices::PriceTable, Limits},
    metrics::{self, Metrics},
    policy::active::{AbsentDir, ActivePolicy},
    proxy::{self, upstream::Upstream, Listeners, ProxyContext},
    revocation::Revocations,
    supervisor,
    tls::{self, CertificateAuthority, LeafCache},
};

/// How often the one-line status systemd shows is refreshed.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct RunArgs {}

pub fn run(cli: &Cli, _args: &RunArgs) -> anyhow::Result<()> {
    init_logging();
    let config = cli.load_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(daemon(config))
}

/// JSON lines on stderr, one object per event, fields flattened; `WARDEN_LOG` sets the filter.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn daemon(config: Config) -> anyhow::Result<()> {
    raise_open_file_limit();
    let config = Arc::new(config);
    // Before anything is created: a config that names an absent policy directory stops here.
    let policy = Arc::new(
        ActivePolicy::load(
            &config.policy.dir,
            match config.policy.dir_configured {
                true => AbsentDir::Refuse,
                false => AbsentDir::RunWithoutPolicy,
            },
        )
        .context("loading the policies ([policy] dir)")?,
    );
    let admin_group = admin_group(&config)?;
    // Fail closed: a secret that cannot be read (missing, not root-only, a symlink) stops here.
    let credentials = Arc::new(
        CredentialStore::load(&config.credential_entries, config.credentials.presented)
            .context("loading the credentials ([[credential]])")?,
    );
    create_private_dir(&config.state_dir)?;
    let revocations = Arc::new(Revocations::load(&config.state_dir).context("revocations")?);
    let limits = Arc::new(load_limits(&config)?);
    let ca = Arc::new(CertificateAuthority::load_or_create(&config.ca_dir()).context("Warden CA")?);
    let tls_server = tls::server_config(Arc::new(LeafCache::new(ca.clone())));
    let upstream = Upstream::new(&config)?;
    let service_accounts = ServiceAccountVerifier::start(&config.identity)
        .await
        .context("[identity.kubernetes]: loading the cluster's service-account keys")?;
    let cgroupfs = CgroupFs::discover()?;
    let audit_db = audit::audit_db_path(&config.state_dir);
    let audit = AuditWriter::start(&audit_db, config.audit.writer_options())
        .with_context(|| format!("opening the audit store {}", audit_db.display()))?;
    // After the store, which makes its directory (state_dir) private again when it opens.
    if let Some(gid) = admin_group {
        open_state_dir_to(&config.state_dir, gid)?;
    }

    // Bind before attaching: a redirect with nothing listening would break the selected workloads.
    let listeners = Listeners::bind(config.proxy.listen_port).await?;
    let listen: Vec<String> = listeners
        .addresses()
        .iter()
        .map(ToString::to_string)
        .collect();
    let admin_socket = config.admin_socket_path();
    let admin_listener = admin_server::bind(&admin_socket, admin_group)?;
    let api_listener = crate::api::bind(&config, ca).await?;
    let metrics_listener = match config.metrics.address() {
        Some(address) => Some(metrics::server::bind(address).await?),
        None => None,
    };

    let redirector = Arc::new(
        Redirector::load_and_attach(
            &cgroupfs,
            &RedirectSettings {
                listen_port: config.proxy.listen_port,
                intercept_ports: &config.proxy.intercept_ports,
                tls_ports: &config.proxy.tls_ports(),
                fail_mode: config.proxy.fail_mode,
                pin_dir: &config.proxy.pin_dir,
            },
        )
        .context("attaching the eBPF programs")?,
    );
    let selection = Arc::new(Selection::new(
        cgroupfs.clone(),
        redirector.clone(),
        config.select.cgroups.clone(),
        config.select.units.clone(),
        config.state_dir.join("exec-cgroups"),
    ));
    selection.resync().context("selecting cgroups")?;

    let metrics = Metrics::for_daemon(selection.clone(), redirector.clone(), &audit);
    let sinks = crate::sinks::Sinks::start(&config, &audit_db, metrics.clone())
        .context("starting the sinks ([[sink]])")?;
    let approvals = Approvals::new(&config, audit.clone(), metrics.clone());
    let recovered = approvals
        .recover()
        .await
        .context("closing the approvals the previous run left pending")?;
    let learned = Arc::new(proxy::learned::LearnedAddresses::from_config(&config));
    let anomaly = crate::anomaly::start(crate::anomaly::AnomalyTask {
        config: config.anomaly.clone(),
        db: audit_db.clone(),
        audit: audit.clone(),
        revocations: revocations.clone(),
        metrics: metrics.clone(),
    })
    .context("starting anomaly detection")?;
    let context = Arc::new(ProxyContext {
        config: config.clone(),
        identities: IdentityResolver::new(config.accounts.clone(), Some(cgroupfs.clone()))
            .with_service_account_verifier(service_accounts),
        tls_server,
        upstream,
        audit: audit.clone(),
        policy: policy.clone(),
        counters: Default::default(),
        metrics: metrics.clone(),
        approvals: approvals.clone(),
        credentials: credentials.clone(),
        revocations,
        limits: limits.clone(),
        body_budget: proxy::body_budget::BodyBudget::new(
            config.limits.body_memory_budget_bytes,
            metrics.limits.body_budget_used.clone(),
            metrics.limits.body_budget_refusals.clone(),
        ),
        learned: learned.clone(),
        anomaly,
    });
    let context_for_status = context.clone();
    let (shutdown_tx, shutdown) = watch::channel(false);
    let admin = Arc::new(AdminServer {
        context: context.clone(),
        redirector: redirector.clone(),
        selection: selection.clone(),
        listen: listen.clone(),
        cgroup2_mount: cgroupfs.mount().display().to_string(),
    });
    if let Some(bound) = api_listener {
        crate::api::start(
            bound,
            &config,
            context.clone(),
            admin.clone(),
            shutdown.clone(),
        )?;
    }
    tokio::spawn(admin.serve(admin_listener, shutdown.clone()));
    tokio::spawn(selection.clone().watch(shutdown.clone()));
    tokio::spawn(policy.clone().watch(shutdown.clone()));
    tokio::spawn(credentials.watch(shutdown.clone()));
    tokio::spawn(learned.resolve_periodically(config.clone(), shutdown.clone()));
    tokio::spawn(persist::save_periodically(limits.clone(), shutdown.clone()));
    let metrics_address = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());
    if let Some(listener) = metrics_listener {
        tokio::spawn(metrics::server::serve(metrics, listener, shutdown.clone()));
    }
    let drain = Duration::from_secs(config.proxy.drain_timeout_secs);
    let proxy = tokio::spawn(proxy::serve(
        context,
        redirector.clone(),
        listeners,
        shutdown.clone(),
        drain,
    ));

    let programs: Vec<String> = redirector
        .programs()
        .iter()
        .map(|p| format!("{}#{}", p.name, p.id))
        .collect();
    let selected: Vec<String> = selection
        .selected()
        .iter()
        .map(|c| c.path.clone())
        .collect();
    let attachment = redirector.attachment();
    tracing::info!(
        listen = ?listen,
        intercept_ports = %config.proxy.intercept_ports,
        tls_ports = ?config.proxy.tls_ports(),
        intercept_hosts = ?config.proxy.intercept_hosts,
        programs = ?programs,
        fail_mode = %attachment.fail_mode,
        pinned = attachment.pinned,
        pin_dir = %attachment.pin_dir.display(),
        readopted_pins = attachment.adopted,
        selected = ?selected,
        cgroup2_mount = %cgroupfs.mount().display(),
        ca = %tls::cert_path(&config.ca_dir()).display(),
        audit = %audit_db.display(),
        metrics = ?metrics_address,
        interrupted_approvals = recovered.interrupted,
        restored_grants = recovered.grants,
        "warden ready"
    );
    supervisor::ready(&summary(&context_for_status, &redirector, &selection));
    supervisor::spawn_watchdog(shutdown.clone());
    tokio::spawn(report_status(
        context_for_status.clone(),
        redirector.clone(),
        selection.clone(),
        shutdown.clone(),
    ));

    let signal = wait_for_signal().await?;
    supervisor::stopping("stopping: draining connections");
    // The programs stay attached through the drain in both fail modes: the listener closes first,
    // so a connect made from now on is redirected to a closed port and refused, never sent direct.
    tracing::info!(
        signal,
        fail_mode = %attachment.fail_mode,
        "shutting down: draining connections"
    );
    let _ = shutdown_tx.send(true);
    // Held requests would outlast the drain: refuse them now, their approvals interrupted.
    approvals.interrupt_all().await;
    let _ = proxy.await;
    // Listener closed and drain over: only now may fail open let connects go direct.
    redirector.detach();
    // Every exchange has settled its reservations.
    persist::save(&limits).await;
    // Every exchange has ended: commit the records still queued before exiting.
    let closing = audit.clone();
    if let Err(error) = tokio::task::spawn_blocking(move || closing.shutdown()).await {
        tracing::error!(%error, "closing the audit store");
    }
    // After the last commit, so the sinks ship it too; bounded like the drain.
    sinks.finish(drain).await;
    if let Err(error) = std::fs::remove_file(&admin_socket) {
        tracing::warn!(%error, path = %admin_socket.display(), "removing the admin socket");
    }
    tracing::info!("warden stopped");
    Ok(())
}

/// The `[[limit]]` ledger the last run left, priced by the shipped table or `prices_file`.
fn load_limits(config: &Config) -> anyhow::Result<Limits> {
    let prices = match &config.policy.prices_file {
        Some(path) => PriceTable::load(path).context("[policy] prices_file")?,
        None => PriceTable::shipped(),
    };
    let ledger = identity_limits::admission::ledger_path(&config.state_dir);
    Limits::load(
        &config.state_dir,
        prices,
        config.policy.limit_default_output_tokens,
    )
    .with_context(|| format!("reading the [[limit]] ledger {}", ledger.display()))
}

/// The line `systemctl status` shows: how Warden fails, what it selects, what it has done.
fn summary(context: &ProxyContext, redirector: &Redirector, selection: &Selection) -> String {
    let counters = context.counters.snapshot();
    let policy = context.policy.status();
    let rules = match policy.loaded {
        true => format!("{} rules", policy.rules),
        false => "NO POLICY LOADED".to_string(),
    };
    format!(
        "fail-{}; {} cgroups selected; {rules}; {} exchanges, {} tunnels, {} refused",
        redirector.attachment().fail_mode,
        selection.selected().len(),
        counters.exchanges,
        counters.tunneled,
        counters.rejected,
    )
}

/// Keeps the status line current until shutdown (sent only when it changed).
async fn report_status(
    context: Arc<ProxyContext>,
    redirector: Arc<Redirector>,
    selection: Arc<Selection>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(STATUS_INTERVAL);
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => {}
        }
        let line = summary(&context, &redirector, &selection);
        if line != last {
            supervisor::status(&line);
            last = line;
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

/// Every intercepted connection holds two descriptors (client and upstream), so the soft limit a
/// service often starts with (1024) would refuse connections at about 500 open streams. The hard
/// limit is what the administrator allowed; take all of it.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            let soft = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            soft == limit.rlim_max || libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if raised {
        tracing::info!(open_files = limit.rlim_cur, "open file limit");
    } else {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not raise the open file limit; connections may be refused under load"
        );
    }
}

/// `[admin] group` as a gid: a group that does not exist stops the daemon.
fn admin_group(config: &Config) -> anyhow::Result<Option<u32>> {
    match &config.admin.group {
        None => Ok(None),
        Some(name) => match group_id(name) {
            Some(gid) => Ok(Some(gid)),
            None => anyhow::bail!("[admin] group: no group named {name:?} on this host"),
        },
    }
}

/// state_dir holds the CA key and the admin socket: root-only.
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating state_dir {}", dir.display()))?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        tracing::warn!(path = %dir.display(), mode = format!("{mode:o}"), "state_dir was not 0700; fixing");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// With `[admin] group`, its members must reach the socket in state_dir: the directory becomes
/// 0710 root:GROUP (enter, not list). Everything else in it stays 0600/0700.
fn open_state_dir_to(dir: &std::path::Path, gid: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(dir, Some(0), Some(gid))
        .with_context(|| format!("giving state_dir {} to [admin] group", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))
        .with_context(|| format!("state_dir {}", dir.display()))?;
    Ok(())
}
