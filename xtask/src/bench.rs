//! `cargo xtask bench`: prepare a fresh machine, build release, run warden-bench (direct vs Warden vs mitmproxy), then the criterion micro-benchmarks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::build_cmd::{self, Profile};
use crate::process::{cargo, header, is_root, repo_root, run_checked, target_dir};
use crate::{host_packages, python, toolchain};

/// The warden crate's criterion benches that finish in seconds. `audit` is left out on purpose:
/// it builds a store of a million records first and takes many minutes.
const MICRO_BENCHES: &[&str] = &[
    "sse",
    "masking",
    "tls_leaf",
    "policy",
    "request_path",
    "limits",
    "anomaly",
    "sinks",
];

/// Criterion 0.5's own flags (after `--`); they override the benches' configured times.
const QUICK_CRITERION_ARGS: &[&str] = &["--warm-up-time", "0.3", "--measurement-time", "1"];

const PHASES: usize = 6;

/// Runs the phases in order; the first failure stops the run with a non-zero exit.
pub fn bench(quick: bool, warden_bench_args: &[String]) -> Result<()> {
    let invocation = command_line(quick, warden_bench_args);
    // The bench loads eBPF programs and makes cgroups and a mount namespace; without root it can
    // only fail, so say so before spending minutes on setup and builds.
    if !is_root() {
        bail!(
            "the bench needs root (eBPF, cgroups, a mount namespace); re-run with \
             `sudo -E env PATH=\"$PATH\" {invocation}`"
        );
    }
    let root = repo_root()?;
    let mut timeline = Timeline::default();

    timeline.phase("toolchain");
    toolchain::setup()?;
    timeline.phase("host packages");
    host_packages::ensure()?;
    timeline.phase("python venv (mitmproxy)");
    let mitmdump = python::ensure_mitmdump()?;

    timeline.phase("build warden, warden-bench and the micro-benchmarks (release)");
    build_cmd::build_warden(Profile::Release)?;
    run_checked(Command::new(cargo()).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "warden-bench",
    ]))?;
    // Compiling the criterion benches now means a compile error stops us before the long run.
    run_checked(micro_benches(&root)?.arg("--no-run"))?;

    timeline.phase("warden-bench: direct vs warden vs mitmproxy");
    let report = target_dir()?.join("bench").join("report.json");
    let mut run = Command::new(target_dir()?.join("release").join("warden-bench"));
    run.current_dir(&root)
        .arg("run")
        .arg("--warden-bin")
        .arg(build_cmd::warden_binary(Profile::Release)?)
        .arg("--mitmdump")
        .arg(&mitmdump)
        .arg("--out")
        .arg(&report)
        .arg("--command-line")
        .arg(&invocation)
        // Measured as a governed host runs it: Warden injects the key on every request.
        .arg("--custody");
    if quick {
        run.arg("--quick");
    }
    run_checked(run.args(warden_bench_args))?;

    timeline.phase("criterion micro-benchmarks");
    let mut micro = micro_benches(&root)?;
    if quick {
        micro.arg("--").args(QUICK_CRITERION_ARGS);
    }
    run_checked(&mut micro)?;

    timeline.finish();
    println!("    report: {}", report.display());
    println!("    criterion: {}", criterion_home()?.display());
    Ok(())
}

/// `cargo bench -p warden --bench ...` for the micro-benchmarks, run from the workspace root.
fn micro_benches(root: &Path) -> Result<Command> {
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root).args(["bench", "-p", "warden"]);
    for name in MICRO_BENCHES {
        cmd.args(["--bench", name]);
    }
    // Cargo runs each bench binary in agent/; criterion would find the workspace target dir
    // through `cargo metadata`, but a relative CARGO_TARGET_DIR would land under agent/. Say it.
    cmd.env("CRITERION_HOME", criterion_home()?);
    Ok(cmd)
}

fn criterion_home() -> Result<PathBuf> {
    Ok(target_dir()?.join("criterion"))
}

/// How the report says it was produced: the xtask command as typed, extra arguments quoted.
fn command_line(quick: bool, warden_bench_args: &[String]) -> String {
    let mut line = String::from("cargo xtask bench");
    if quick {
        line.push_str(" --quick");
    }
    if !warden_bench_args.is_empty() {
        line.push_str(" --");
        for arg in warden_bench_args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
    }
    line
}

/// `arg` as a POSIX shell reads it back: bare when safe, single-quoted otherwise.
pub(crate) fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=.,/:@+".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Phase headers (`[n/N] ...`) and how long each phase took, printed at the end.
#[derive(Default)]
struct Timeline {
    phases: Vec<(&'static str, Instant)>,
}

impl Timeline {
    fn phase(&mut self, name: &'static str) {
        header(&format!("[{}/{PHASES}] {name}", self.phases.len() + 1));
        self.phases.push((name, Instant::now()));
    }

    fn finish(&self) {
        header("timings");
        let now = Instant::now();
        let ends = self.phases.iter().skip(1).map(|(_, start)| *start);
        for ((name, start), end) in self.phases.iter().zip(ends.chain([now])) {
            println!("    {:>7.1} s  {name}", (end - *start).as_secs_f64());
        }
        if let Some((_, first)) = self.phases.first() {
            println!("    {:>7.1} s  total", (now - *first).as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_says_how_the_bench_was_invoked() {
        assert_eq!(command_line(false, &[]), "cargo xtask bench");
        assert_eq!(command_line(true, &[]), "cargo xtask bench --quick");
        let extra = ["--only".to_owned(), "direct,warden".to_owned()];
        assert_eq!(
            command_line(true, &extra),
            "cargo xtask bench --quick -- --only direct,warden"
        );
    }

    #[test]
    fn odd_arguments_are_quoted_for_a_shell() {
        assert_eq!(shell_quote("--stream-events"), "--stream-events");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_slow_audit_bench_is_not_a_micro_benchmark() {
        assert!(!MICRO_BENCHES.contains(&"audit"));
    }
}
