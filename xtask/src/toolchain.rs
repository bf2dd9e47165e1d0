//! Makes the eBPF toolchain ready: rustup nightly, its rust-src, and bpf-linker built on the nightly's LLVM.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::llvm_linkage::{ldd_problem, nightly_llvm, parse_ldd, NightlyLlvm};
use crate::process::{capture, cargo, cargo_bin_dir, find_on_path, run_checked};

const NIGHTLY: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Runs the three setup steps in order, printing one line per step.
pub fn setup() -> Result<()> {
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()
}

fn ensure_nightly() -> Result<()> {
    let listed = capture(Command::new("rustup").args(["toolchain", "list"])).context(
        "rustup is needed to manage the nightly toolchain; install it from https://rustup.rs",
    )?;
    if !lists_nightly(&listed) {
        println!("nightly toolchain: missing, installing");
        run_checked(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))
        .context(
            "could not install the nightly toolchain; install it by hand with \
             `rustup toolchain install nightly --profile minimal` and re-run",
        )?;
    }
    let version = capture(Command::new("rustc").args(["+nightly", "--version"]))?;
    println!("nightly toolchain {}: ok", version.trim());
    Ok(())
}

fn ensure_rust_src() -> Result<()> {
    let installed = capture(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        NIGHTLY,
        "--installed",
    ]))?;
    if lists_rust_src(&installed) {
        println!("nightly rust-src: ok");
        return Ok(());
    }
    println!("nightly rust-src: missing, installing");
    run_checked(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        NIGHTLY,
    ]))?;
    println!("nightly rust-src: installed");
    Ok(())
}

fn ensure_bpf_linker() -> Result<()> {
    let llvm = nightly_llvm()?;
    match bpf_linker_problem(&llvm)? {
        None => {
            println!(
                "bpf-linker {BPF_LINKER_VERSION} links {}: ok",
                llvm.link_name
            );
            return Ok(());
        }
        Some(problem) => println!(
            "bpf-linker: {problem}; installing {BPF_LINKER_VERSION} against {} (about a minute)",
            llvm.link_name
        ),
    }
    install_bpf_linker(&llvm)?;
    if let Some(problem) = bpf_linker_problem(&llvm)? {
        bail!("bpf-linker still unusable after installing it: {problem}");
    }
    println!(
        "bpf-linker {BPF_LINKER_VERSION} links {}: installed, ok",
        llvm.link_name
    );
    Ok(())
}

/// Why the bpf-linker a child process would find is unusable, or None when it is fine.
fn bpf_linker_problem(llvm: &NightlyLlvm) -> Result<Option<String>> {
    let Some(binary) = find_on_path("bpf-linker") else {
        return Ok(Some("not found on PATH".to_owned()));
    };
    let ldd = match capture(Command::new("ldd").arg(&binary)) {
        Ok(text) => text,
        // ldd fails on static binaries, i.e. a bpf-linker that bundles its own LLVM.
        Err(err) => return Ok(Some(format!("ldd {}: {err:#}", binary.display()))),
    };
    // Linkage first: a binary whose libLLVM is gone cannot even report its version.
    if let Some(problem) = ldd_problem(&parse_ldd(&ldd), llvm) {
        return Ok(Some(format!("{}: {problem}", binary.display())));
    }
    let version = capture(Command::new(&binary).arg("--version")).unwrap_or_default();
    if parse_bpf_linker_version(&version) != Some(BPF_LINKER_VERSION) {
        return Ok(Some(format!(
            "{} reports version {:?}, want {BPF_LINKER_VERSION}",
            binary.display(),
            version.trim()
        )));
    }
    Ok(None)
}

fn install_bpf_linker(llvm: &NightlyLlvm) -> Result<()> {
    let lib = llvm.lib_dir.display();
    let rustflags = format!(
        "-C link-arg=-L{lib} -C link-arg=-l:{} -C link-arg=-Wl,-rpath,{lib}",
        llvm.link_name
    );
    let features = format!("llvm-{},no-llvm-linking", llvm.major);
    let mut install = Command::new(cargo());
    install
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--locked", "--force", "--no-default-features", "--features"])
        .arg(&features)
        .arg("--root")
        .arg(cargo_home_of(&cargo_bin_dir()?)?)
        // CARGO_ENCODED_RUSTFLAGS would override RUSTFLAGS and drop the LLVM link arguments.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", &rustflags);
    println!("    RUSTFLAGS=\"{rustflags}\"");
    run_checked(&mut install)
}

fn cargo_home_of(bin_dir: &Path) -> Result<PathBuf> {
    bin_dir
        .parent()
        .map(Path::to_path_buf)
        .context("cargo bin directory has no parent")
}

/// Whether `rustup toolchain list` shows the floating `nightly` (not a dated `nightly-YYYY-MM-DD`).
fn lists_nightly(listing: &str) -> bool {
    listing.lines().any(|line| {
        let name = line.split_whitespace().next().unwrap_or("");
        name == NIGHTLY
            || name
                .strip_prefix("nightly-")
                .is_some_and(|host| !host.starts_with(|c: char| c.is_ascii_digit()))
    })
}

fn lists_rust_src(installed: &str) -> bool {
    installed.lines().any(|line| line.trim() == "rust-src")
}

fn parse_bpf_linker_version(output: &str) -> Option<&str> {
    let mut words = output.split_whitespace();
    (words.next()? == "bpf-linker").then_some(())?;
    words.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_floating_nightly_only() {
        let listing =
            "stable-x86_64-unknown-linux-gnu (active, default)\nnightly-x86_64-unknown-linux-gnu\n";
        assert!(lists_nightly(listing));
        assert!(!lists_nightly(
            "stable-x86_64-unknown-linux-gnu (default)\nnightly-2025-01-01-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!lists_nightly("no installed toolchains\n"));
    }

    #[test]
    fn recognises_rust_src() {
        assert!(lists_rust_src(
            "cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!lists_rust_src("rust-std-x86_64-unknown-linux-gnu\n"));
    }

    #[test]
    fn parses_bpf_linker_version() {
        assert_eq!(
            parse_bpf_linker_version("bpf-linker 0.13.0\n"),
            Some("0.13.0")
        );
        assert_eq!(parse_bpf_linker_version("something else 1\n"), None);
        assert_eq!(parse_bpf_linker_version(""), None);
    }
}
