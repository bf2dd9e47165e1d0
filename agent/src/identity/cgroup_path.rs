//! What a cgroup2 path says about its process: the systemd unit and the container runtime.
use serde::Serialize;

/// Units that run processes; slices only group other units, so they never name a workload.
const PROCESS_UNIT_SUFFIXES: &[&str] = &[".service", ".scope", ".socket", ".mount", ".swap"];

/// A container the process runs in, as the runtime names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// "docker", "containerd", "cri-o" or "podman".
    pub runtime: &'static str,
    /// The 64-hex-digit container id.
    pub id: String,
}

/// `runtime:id`, the label log lines carry.
impl std::fmt::Display for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.runtime, self.id)
    }
}

/// The deepest path component naming a systemd unit other than a slice:
/// `/system.slice/foo.service/worker` → `foo.service`.
pub fn unit_of(cgroup_path: &str) -> Option<String> {
    cgroup_path
        .rsplit('/')
        .find(|part| {
            PROCESS_UNIT_SUFFIXES
                .iter()
                .any(|s| part.len() > s.len() && part.ends_with(s))
        })
        .map(str::to_string)
}

/// The container of a cgroup path, recognised by the layouts the runtimes create under the systemd
/// and cgroupfs cgroup drivers. The deepest match wins (nested containers report the inner one).
pub fn container_of(cgroup_path: &str) -> Option<Container> {
    let parts: Vec<&str> = cgroup_path.split('/').filter(|p| !p.is_empty()).collect();
    (0..parts.len())
        .rev()
        .find_map(|i| container_at(&parts[..i], parts[i]))
}

/// Whether `part` (below `ancestors`) is a container's cgroup.
fn container_at(ancestors: &[&str], part: &str) -> Option<Container> {
    // systemd driver: `<prefix><id>.scope`; podman's cgroupfs driver drops the `.scope`.
    const SCOPES: &[(&str, &str)] = &[
        ("docker-", "docker"),
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
    ];
    let unscoped = part.strip_suffix(".scope").unwrap_or(part);
    for (prefix, runtime) in SCOPES {
        if let Some(id) = unscoped
            .strip_prefix(prefix)
            .filter(|id| is_container_id(id))
        {
            return Some(Container {
                runtime,
                id: id.to_string(),
            });
        }
    }
    // cgroupfs driver: a bare id below `/docker` or somewhere below `/kubepods`.
    if !is_container_id(part) {
        return None;
    }
    let runtime = if ancestors.last() == Some(&"docker") {
        "docker"
    } else if ancestors.iter().any(|a| a.starts_with("kubepods")) {
        "containerd"
    } else {
        return None;
    };
    Some(Container {
        runtime,
        id: part.to_string(),
    })
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f7a1c2b9e8d3f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";

    fn container(path: &str) -> Option<(&'static str, String)> {
        container_of(path).map(|c| (c.runtime, c.id))
    }

    #[test]
    fn unit_is_the_deepest_non_slice_unit() {
        assert_eq!(
            unit_of("/system.slice/billing-agent.service").as_deref(),
            Some("billing-agent.service")
        );
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/session-3.scope").as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(
            unit_of("/system.slice/foo.service/worker").as_deref(),
            Some("foo.service")
        );
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/app-x.scope")
                .as_deref(),
            Some("app-x.scope")
        );
        assert_eq!(unit_of("/warden/exec-12"), None);
        assert_eq!(unit_of("/system.slice"), None);
        assert_eq!(unit_of("/"), None);
        assert_eq!(unit_of("/a/.service"), None);
    }

    #[test]
    fn recognises_container_runtimes() {
        let docker = Some(("docker", ID.to_string()));
        assert_eq!(
            container(&format!("/system.slice/docker-{ID}.scope")),
            docker
        );
        assert_eq!(container(&format!("/docker/{ID}")), docker);
        assert_eq!(
            container(&format!(
                "/user.slice/user-1000.slice/user@1000.service/docker-{ID}.scope"
            )),
            docker
        );
        let containerd = Some(("containerd", ID.to_string()));
        assert_eq!(
            container(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8a9b_0c1d2e3f4a5b.slice/cri-containerd-{ID}.scope"
            )),
            containerd
        );
        assert_eq!(
            container(&format!(
                "/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/{ID}"
            )),
            containerd
        );
        assert_eq!(
            container(&format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podx.slice/crio-{ID}.scope")),
            Some(("cri-o", ID.to_string()))
        );
        let podman = Some(("podman", ID.to_string()));
        assert_eq!(
            container(&format!("/machine.slice/libpod-{ID}.scope")),
            podman
        );
        assert_eq!(
            container(&format!("/machine.slice/libpod-{ID}.scope/container")),
            podman
        );
        assert_eq!(
            container(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
            )),
            podman
        );
        assert_eq!(container(&format!("/libpod_parent/libpod-{ID}")), podman);
    }

    #[test]
    fn displays_as_runtime_colon_id() {
        let container = container_of(&format!("/system.slice/docker-{ID}.scope")).unwrap();
        assert_eq!(container.to_string(), format!("docker:{ID}"));
    }

    #[test]
    fn ignores_lookalikes() {
        assert_eq!(container("/system.slice/docker.service"), None);
        assert_eq!(
            container(&format!("/machine.slice/libpod-conmon-{ID}.scope")),
            None
        );
        assert_eq!(
            container(&format!("/system.slice/crio-conmon-{ID}.scope")),
            None
        );
        assert_eq!(
            container(&format!("/system.slice/docker-{}.scope", &ID[..12])),
            None
        );
        assert_eq!(container(&format!("/other/{ID}")), None);
        assert_eq!(container(&format!("/docker/{}", ID.to_uppercase())), None);
        assert_eq!(container("/"), None);
    }
}
