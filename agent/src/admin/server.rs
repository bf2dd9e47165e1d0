//! The daemon side of the admin socket.
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::watch,
};

use super::{
    revocations::{self, root_only},
    AdminRequest, AdminResponse, Status, StatusCounters,
};
use crate::{
    approvals::{self, authority::Peer},
    audit::governance::Actor,
    ebpf::{selection::Selection, Redirector},
    identity::{lookup_user_name, selector::IdentitySelector},
    proxy::ProxyContext,
};

/// A request line longer than this is refused (requests are a few dozen bytes).
const MAX_REQUEST: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum AdminServerError {
    #[error("another Warden daemon is already serving {0}")]
    AlreadyRunning(PathBuf),
    #[error("admin socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct AdminServer {
    pub context: Arc<ProxyContext>,
    pub redirector: Arc<Redirector>,
    pub selection: Arc<Selection>,
    pub listen: Vec<String>,
    pub cgroup2_mount: String,
}

/// Binds the socket (removing a stale one left by a crashed daemon) with mode 0600, or 0660 owned
/// by `group` (a gid from `[admin] group`).
pub fn bind(path: &Path, group: Option<u32>) -> Result<UnixListener, AdminServerError> {
    let socket_error = |source| AdminServerError::Socket {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(AdminServerError::AlreadyRunning(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(socket_error)?;
    }
    let listener = UnixListener::bind(path).map_err(socket_error)?;
    let mode = match group {
        Some(gid) => {
            std::os::unix::fs::chown(path, Some(0), Some(gid)).map_err(socket_error)?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(socket_error)?;
    Ok(listener)
}

impl AdminServer {
    pub async fn serve(
        self: Arc<Self>,
        listener: UnixListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let accept = || listener.accept();
        while let Some((stream, _)) =
            crate::accept::next_connection(accept, &mut shutdown, "admin socket").await
        {
            let server = self.clone();
            tokio::spawn(async move { server.handle(stream).await });
        }
    }

    async fn handle(self: Arc<Self>, stream: UnixStream) {
        // Non-root peers get this far only through `[admin] group` (the socket's mode).
        let cred = match stream.peer_cred() {
            Ok(cred) => cred,
            Err(error) => {
                tracing::warn!(%error, "admin socket: cannot read peer credentials");
                return;
            }
        };
        let pid = cred.pid().and_then(|pid| u32::try_from(pid).ok());
        let actor = Actor {
            uid: cred.uid(),
            user: lookup_user_name(cred.uid()),
            pid,
            oidc: None,
        };
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
        let mut line = String::new();
        let response = match reader.read_line(&mut line).await {
            Ok(_) => match serde_json::from_str::<AdminRequest>(&line) {
                Ok(AdminRequest::Approvals { request }) => {
                    // Only approval operations need the peer's groups (its approver identity).
                    let peer = Peer::new(cred.uid(), cred.gid(), pid);
                    let approvals = self.context.approvals.clone();
                    return approvals::admin::serve(approvals, request, peer, reader, write).await;
                }
                Ok(_) if actor.uid != 0 => {
                    tracing::warn!(
                        uid = actor.uid,
                        pid = actor.pid,
                        "admin request from a non-root peer refused"
                    );
                    refusal(format!(
                        "only root may do this; uid {} may only list, show, watch and decide approvals",
                        actor.uid
                    ))
                }
                // Answers stat cgroupfs and read BPF maps: keep them off the async workers.
                Ok(request) => {
                    let server = self.clone();
                    tokio::task::spawn_blocking(move || server.answer(request, &actor))
                        .await
                        .unwrap_or_else(|error| refusal(format!("internal error: {error}")))
                }
                Err(error) => refusal(format!("invalid request: {error}")),
            },
            Err(error) => refusal(format!("reading request: {error}")),
        };
        let mut bytes = serde_json::to_vec(&response).unwrap_or_default();
        bytes.push(b'\n');
        let _ = write.write_all(&bytes).await;
    }

    /// Answers `request` from `actor`, the peer the socket vouched for.
    fn answer(&self, request: AdminRequest, actor: &Actor) -> AdminResponse {
        match request {
            AdminRequest::Status => AdminResponse {
                ok: true,
                error: None,
                status: serde_json::to_value(self.status()).ok(),
            },
            AdminRequest::SelectExec { path } => match self.selection.add_exec(&path) {
                Ok(cgroup) => {
                    tracing::info!(
                        path = %cgroup.path,
                        id = cgroup.id,
                        by_uid = actor.uid,
                        "warden exec cgroup registered"
                    );
                    ok()
                }
                Err(error) => refusal(error.to_string()),
            },
            AdminRequest::UnselectExec { path } => match self.selection.remove_exec(&path) {
                Ok(()) => ok(),
                Err(error) => refusal(error.to_string()),
            },
            // Served in `handle`, which streams its answers.
            AdminRequest::Approvals { .. } => refusal("internal error: misrouted".into()),
            AdminRequest::Revoke { selector, reason } => root_only(actor, "revoke")
                .unwrap_or_else(|| revocations::revoke(&self.context, actor, &selector, reason)),
            AdminRequest::Restore { selector } => root_only(actor, "restore")
                .unwrap_or_else(|| revocations::restore(&self.context, actor, &selector)),
            AdminRequest::Revocations => root_only(actor, "revoke --list")
                .unwrap_or_else(|| revocations::list(&self.context)),
            AdminRequest::Limits { selector } => {
                root_only(actor, "limits").unwrap_or_else(|| self.limits(selector.as_deref()))
            }
        }
    }

    /// Usage against every `[[limit]]` of the policy in force.
    fn limits(&self, selector: Option<&str>) -> AdminResponse {
        let selector = match selector.map(IdentitySelector::parse).transpose() {
            Ok(selector) => selector,
            Err(error) => return refusal(error.to_string()),
        };
        let policy = self.context.policy.current();
        let rows = crate::identity_limits::report::usage(
            &self.context.limits,
            &policy.policy.limits,
            selector.as_ref(),
            crate::ids::now_us(),
        );
        AdminResponse {
            ok: true,
            error: None,
            status: serde_json::to_value(rows).ok(),
        }
    }

    /// What `warden status` shows (the API's `status` too).
    pub fn status(&self) -> Status {
        let config = &self.context.config;
        Status {
            pid: std::process::id(),
            listen_port: config.proxy.listen_port,
            listen: self.listen.clone(),
            intercept_ports: config.proxy.intercept_ports.clone(),
            tls_ports: config.proxy.tls_ports(),
            intercept_hosts: config.proxy.intercept_hosts.clone(),
            cgroup2_mount: self.cgroup2_mount.clone(),
            programs: self.redirector.programs().to_vec(),
            attachment: self.redirector.attachment(),
            selected: self.selection.selected(),
            policy: self.context.policy.status(),
            credentials: self.context.credentials.status(),
            api: config.api.public_url(),
            counters: StatusCounters {
                proxy: self.context.counters.snapshot(),
                kernel: self.redirector.counters(),
            },
        }
    }
}

fn ok() -> AdminResponse {
    AdminResponse {
        ok: true,
        error: None,
        status: None,
    }
}

fn refusal(error: String) -> AdminResponse {
    AdminResponse {
        ok: false,
        error: Some(error),
        status: None,
    }
}
