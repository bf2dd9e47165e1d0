//! `cargo xtask fuzz`: install cargo-fuzz when missing, then run the fuzz targets (fuzz/) one after another on nightly.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process::{cargo_bin_dir, find_on_path, header, repo_root, run_checked};
use crate::toolchain;

/// Every harness in fuzz/fuzz_targets/ (by file stem), or only `only`, for `secs` seconds each.
/// New inputs go to fuzz/target/corpus/TARGET (not committed); the seeds in fuzz/corpus/TARGET
/// are read, never written. A crash stops the run; libFuzzer saves the input under
/// fuzz/artifacts/TARGET/.
pub fn fuzz(secs: u64, only: Option<&str>, libfuzzer_args: &[String]) -> Result<()> {
    let fuzz_dir = repo_root()?.join("fuzz");
    let all = harnesses(&fuzz_dir)?;
    let targets: Vec<String> = match only {
        Some(name) if all.iter().any(|target| target == name) => vec![name.to_owned()],
        Some(name) => bail!(
            "no fuzz target `{name}`; the targets are: {}",
            all.join(", ")
        ),
        None => all,
    };
    header("toolchain");
    // The targets build the warden crate, whose build script compiles the eBPF side.
    toolchain::setup()?;
    ensure_cargo_fuzz()?;
    for (number, target) in targets.iter().enumerate() {
        header(&format!(
            "[{}/{}] fuzz {target} for {secs} s",
            number + 1,
            targets.len()
        ));
        let work_corpus = fuzz_dir.join("target").join("corpus").join(target);
        std::fs::create_dir_all(&work_corpus)
            .with_context(|| format!("cannot create {}", work_corpus.display()))?;
        run_checked(
            nightly_cargo()?
                .current_dir(&fuzz_dir)
                .args(["fuzz", "run", target])
                .arg(&work_corpus)
                .arg(fuzz_dir.join("corpus").join(target))
                .arg("--")
                .arg(format!("-max_total_time={secs}"))
                .args(libfuzzer_args),
        )
        .with_context(|| {
            format!(
                "fuzz target {target} failed: the input is under fuzz/artifacts/{target}/; fix \
                 the bug with a unit test beside the code and add the input to fuzz/corpus/{target}/"
            )
        })?;
    }
    Ok(())
}

/// The targets: the file stems of fuzz/fuzz_targets/*.rs, sorted.
fn harnesses(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            if let Some(stem) = path.file_stem().and_then(|stem| stem.to_str()) {
                names.push(stem.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

fn ensure_cargo_fuzz() -> Result<()> {
    if find_on_path("cargo-fuzz").is_some() {
        println!("    cargo-fuzz: installed");
        return Ok(());
    }
    run_checked(nightly_cargo()?.args(["install", "cargo-fuzz", "--locked"]))
}

/// rustup's cargo with the nightly toolchain (cargo-fuzz needs -Z flags and sanitizers). The
/// variables `cargo run` set for xtask would pin children to the stable cargo and rustc.
fn nightly_cargo() -> Result<Command> {
    let rustup_cargo: PathBuf = cargo_bin_dir()?.join("cargo");
    let mut cmd = Command::new(rustup_cargo);
    cmd.arg("+nightly");
    for name in [
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(name);
    }
    Ok(cmd)
}
