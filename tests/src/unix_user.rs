//! Real unprivileged users and groups for a test (approvers are not root), removed on Drop.
//!
//! Names are unique per test process and call, so parallel tests never share one. `useradd` and
//! `groupadd` lock /etc/passwd and /etc/group: calls are serialized within the process and
//! retried while another process holds the lock.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::wait;

static ACCOUNTS_LOCK: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh name: `prefix` plus this process's pid and a counter (under 32 characters).
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn run_locked(program: &str, args: &[&str]) {
    let _guard = ACCOUNTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let what = format!("{program} {}", args.join(" "));
    wait::until(&what, Duration::from_secs(30), || {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        if out.status.success() {
            return Some(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Another process holds /etc/passwd or /etc/group: try again.
        assert!(
            stderr.contains("lock") || stderr.contains("try again"),
            "{what} failed: {stderr}"
        );
        None
    });
}

fn id_of(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("running id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// A unix group, deleted on Drop.
#[derive(Debug)]
pub struct UnixGroup {
    pub name: String,
}

impl UnixGroup {
    pub fn create(prefix: &str) -> Self {
        let name = unique(prefix);
        run_locked("groupadd", &[&name]);
        Self { name }
    }
}

impl Drop for UnixGroup {
    fn drop(&mut self) {
        let _guard = ACCOUNTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

/// A unix user with a group of its own and the given supplementary groups, no home and no
/// login shell; deleted (with its own group) on Drop. Drop users before the groups they are in.
#[derive(Debug)]
pub struct UnixUser {
    pub name: String,
    pub uid: u32,
}

impl UnixUser {
    pub fn create(prefix: &str, groups: &[&UnixGroup]) -> Self {
        let name = unique(prefix);
        let groups: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let groups = groups.join(",");
        let mut args = vec![
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
        ];
        if !groups.is_empty() {
            args.extend(["--groups", &groups]);
        }
        args.push(&name);
        run_locked("useradd", &args);
        let uid = id_of(&["-u", &name]);
        Self { name, uid }
    }

    /// `setpriv` arguments that run a command as this user, with its groups.
    pub fn setpriv(&self) -> Vec<String> {
        vec![
            "setpriv".into(),
            format!("--reuid={}", self.name),
            format!("--regid={}", self.name),
            "--init-groups".into(),
            "--".into(),
        ]
    }
}

impl Drop for UnixUser {
    fn drop(&mut self) {
        let _guard = ACCOUNTS_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}
