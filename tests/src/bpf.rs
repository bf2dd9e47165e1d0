//! Asks the kernel whether a BPF program id still exists (`BPF_PROG_GET_FD_BY_ID`).

use std::io;

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;

/// The `bpf_attr` variant for the `*_GET_FD_BY_ID` commands.
#[repr(C)]
#[derive(Default)]
struct GetFdById {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

fn prog_fd_by_id(id: u32) -> io::Result<libc::c_int> {
    let attr = GetFdById {
        id,
        ..Default::default()
    };
    // SAFETY: attr is a live, initialised bpf_attr prefix and its exact size is passed; the kernel
    // only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            &attr as *const GetFdById,
            std::mem::size_of::<GetFdById>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as libc::c_int)
    }
}

/// Whether a BPF program with this id is loaded. Panics on errors other than "no such program".
pub fn prog_exists(id: u32) -> bool {
    match prog_fd_by_id(id) {
        Ok(fd) => {
            // SAFETY: fd was just returned by the kernel to us and is closed exactly once.
            unsafe { libc::close(fd) };
            true
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => false,
        Err(e) => panic!("bpf(BPF_PROG_GET_FD_BY_ID, {id}): {e}"),
    }
}

/// The ids of the programs attached at `cgroup` itself (not its descendants), as `bpftool -j
/// cgroup show` lists them: what an operator would look at.
pub fn attached_program_ids(cgroup: &std::path::Path) -> Vec<u32> {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(cgroup)
        .output()
        .expect("running bpftool (cargo xtask test installs it)");
    assert!(
        out.status.success(),
        "bpftool cgroup show {}: {}",
        cgroup.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    let programs: Vec<serde_json::Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bpftool printed {text:?}: {e}"));
    programs
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .map(|id| id as u32)
        .collect()
}

/// bpf(2) answers ENOENT for an id that cannot exist when we may use it, EPERM when we may not.
pub fn check_usable() -> Result<(), String> {
    match prog_fd_by_id(u32::MAX) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Ok(fd) => {
            // SAFETY: fd was just returned by the kernel to us and is closed exactly once.
            unsafe { libc::close(fd) };
            Ok(())
        }
        Err(e) => Err(format!("bpf(BPF_PROG_GET_FD_BY_ID): {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_program_id_does_not_exist() {
        if check_usable().is_err() {
            eprintln!("skipping: bpf(2) not usable");
            return;
        }
        assert!(!prog_exists(u32::MAX));
    }
}
