//! Direct looks at (and tampering with) the audit store through the `sqlite3` shell, as an
//! investigator or an attacker with root would, and copies of the store to tamper with afresh.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use tempfile::TempDir;

/// The sqlite3 shell (`SQLITE3` overrides it).
fn sqlite3() -> PathBuf {
    std::env::var_os("SQLITE3").map_or_else(|| PathBuf::from("/usr/bin/sqlite3"), PathBuf::from)
}

/// The suffixes of the files one SQLite database in WAL mode consists of.
const SUFFIXES: [&str; 3] = ["", "-wal", "-shm"];

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The store's files that exist: the database and, in WAL mode, its `-wal` and `-shm`.
pub fn store_files(db: &Path) -> Vec<PathBuf> {
    SUFFIXES
        .iter()
        .map(|suffix| with_suffix(db, suffix))
        .filter(|path| path.exists())
        .collect()
}

fn run(db: &Path, read_only: bool, sql: &str) -> Output {
    let mut command = Command::new(sqlite3());
    command.arg("-batch").args(["-cmd", ".timeout 5000"]);
    if read_only {
        command.arg("-readonly");
    }
    command
        .arg(db)
        .arg(sql)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", sqlite3().display()))
}

fn describe(sql: &str, output: &Output) -> String {
    format!(
        "sqlite3 {sql:?}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `sql` read-only; returns stdout, trimmed. Panics, with the output, if sqlite3 fails.
pub fn query(db: &Path, sql: &str) -> String {
    let output = run(db, true, sql);
    assert!(output.status.success(), "{}", describe(sql, &output));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Changes the store with `sql` (which must change exactly one row in its last statement), as an
/// attacker would: append-only triggers, if the store has any, are dropped first.
pub fn tamper(db: &Path, sql: &str) {
    let statement = format!("{sql}; SELECT changes();");
    let mut output = run(db, false, &statement);
    if !output.status.success() {
        let triggers = query(db, "SELECT name FROM sqlite_master WHERE type = 'trigger'");
        let drops: String = triggers
            .lines()
            .map(|name| format!("DROP TRIGGER IF EXISTS \"{name}\"; "))
            .collect();
        output = run(db, false, &format!("{drops}{statement}"));
    }
    assert!(output.status.success(), "{}", describe(sql, &output));
    let changes = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        changes.trim().lines().last(),
        Some("1"),
        "tampering must change exactly one row\n{}",
        describe(sql, &output)
    );
}

/// A copy of a (closed) store's files, to put back before each tampering.
#[derive(Debug)]
pub struct Backup {
    db: PathBuf,
    dir: TempDir,
    saved: Vec<&'static str>,
}

impl Backup {
    pub fn take(db: &Path) -> Self {
        let dir = tempfile::tempdir().expect("creating a tempdir for the store backup");
        let mut saved = Vec::new();
        for suffix in SUFFIXES {
            let from = with_suffix(db, suffix);
            if from.exists() {
                fs::copy(&from, dir.path().join(format!("audit.db{suffix}")))
                    .unwrap_or_else(|e| panic!("backing up {}: {e}", from.display()));
                saved.push(suffix);
            }
        }
        assert!(saved.contains(&""), "no store at {}", db.display());
        Self {
            db: db.to_owned(),
            dir,
            saved,
        }
    }

    /// Puts the store back exactly as it was (files it did not have are removed).
    pub fn restore(&self) {
        for suffix in SUFFIXES {
            let to = with_suffix(&self.db, suffix);
            if self.saved.contains(&suffix) {
                fs::copy(self.dir.path().join(format!("audit.db{suffix}")), &to)
                    .unwrap_or_else(|e| panic!("restoring {}: {e}", to.display()));
            } else if to.exists() {
                fs::remove_file(&to).unwrap_or_else(|e| panic!("removing {}: {e}", to.display()));
            }
        }
    }
}

/// `sqlite3 DB` holding the store's write lock until dropped.
pub struct LockHolder {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl LockHolder {
    /// Takes the lock with `BEGIN EXCLUSIVE` (and a write, so WAL mode holds it too) and returns
    /// once sqlite3 says it holds it.
    pub fn take(db: &Path) -> Self {
        let mut child = Command::new(sqlite3())
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting sqlite3");
        let mut stdin = child.stdin.take().expect("sqlite3's stdin");
        stdin
            .write_all(
                b".timeout 20000\nBEGIN EXCLUSIVE;\nCREATE TABLE lock_holder(x);\nSELECT 'locked';\n",
            )
            .expect("talking to sqlite3");
        stdin.flush().expect("talking to sqlite3");
        let stdout = child.stdout.take().expect("sqlite3's stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading sqlite3");
        assert_eq!(line.trim(), "locked", "sqlite3 did not take the lock");
        Self {
            child,
            stdin: Some(stdin),
        }
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"ROLLBACK;\n.quit\n");
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.wait();
        }
    }
}
