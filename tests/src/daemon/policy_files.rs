//! Changing a running daemon's policy: its policy directory, files written the way tools do, SIGHUP.

use std::fs;
use std::path::{Path, PathBuf};

use super::Daemon;

impl Daemon {
    /// `[policy] dir` of this daemon: a directory of its own, removed with it.
    pub fn policy_dir(&self) -> &Path {
        &self.policy_dir
    }

    /// The path of policy file `name` in [`Daemon::policy_dir`].
    pub fn policy_path(&self, name: &str) -> PathBuf {
        self.policy_dir.join(name)
    }

    /// Replaces (or adds) policy file `name` atomically, as editors and configuration tools do: the
    /// text goes to a hidden file (which the daemon ignores) that is then renamed over `name`, so
    /// the daemon never reads a half-written file.
    pub fn write_policy_file(&self, name: &str, toml_text: &str) {
        let staging = self.policy_dir.join(format!(".{name}.staging"));
        fs::write(&staging, toml_text)
            .unwrap_or_else(|e| panic!("writing {}: {e}", staging.display()));
        fs::rename(&staging, self.policy_path(name))
            .unwrap_or_else(|e| panic!("renaming {} over {name}: {e}", staging.display()));
    }

    /// Deletes policy file `name`.
    pub fn remove_policy_file(&self, name: &str) {
        let path = self.policy_path(name);
        fs::remove_file(&path).unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
    }

    /// Sends SIGHUP: the daemon reloads its policy directory.
    pub fn sighup(&self) {
        assert!(
            self.exit.is_none(),
            "SIGHUP for a daemon that has exited ({:?})",
            self.exit
        );
        // SAFETY: kill has no memory preconditions; the pid is our unreaped child, so it cannot
        // have been reused.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(sent, 0, "kill(SIGHUP): {}", std::io::Error::last_os_error());
    }
}
