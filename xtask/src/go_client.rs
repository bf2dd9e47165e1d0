//! Builds the e2e tests' Go client (tests/clients/go, standard library only) with the host's go into target/e2e-go.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::process::{capture, find_on_path, repo_root, run_checked, target_dir};

const DIR_NAME: &str = "e2e-go";
const BINARY: &str = "warden-go-client";
const SOURCE_DIR: &str = "tests/clients/go";

/// Builds (incrementally: go's own cache decides) and returns the client's absolute path.
pub fn ensure_client() -> Result<PathBuf> {
    let go = find_on_path("go").context("go is not on PATH (host packages install golang)")?;
    let dir = target_dir()?.join(DIR_NAME);
    let binary = dir.join(BINARY);
    let source = repo_root()?.join(SOURCE_DIR);
    let mut build = Command::new(&go);
    build
        .current_dir(&source)
        .args(["build", "-trimpath", "-o"])
        .arg(&binary)
        .arg(".")
        // Everything go writes stays under target/, never in ~/go or ~/.cache.
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOMODCACHE", dir.join("gopath").join("pkg").join("mod"))
        // The client has no dependencies, so go never needs the network: make that a rule, and
        // keep a newer go from fetching another toolchain.
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("GOTOOLCHAIN", "local")
        // A static binary with Go's own resolver, which reads /etc/hosts (the tests' private
        // hosts file) and needs no C compiler.
        .env("CGO_ENABLED", "0");
    let version = capture(Command::new(&go).arg("version"))?;
    println!("{}: building {BINARY}", version.trim());
    run_checked(&mut build)?;
    if !binary.is_file() {
        bail!("{} is missing after go build", binary.display());
    }
    println!("{}: ok", binary.display());
    Ok(binary)
}
