//! Finds the nightly's shared libLLVM and checks, from `ldd` output, that a binary links exactly that one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::process::capture;

/// What bpf-linker must link: the nightly's libLLVM, found in its sysroot.
pub struct NightlyLlvm {
    pub lib_dir: PathBuf,
    /// The `-l:` name, e.g. `libLLVM-22-rust-1.97.0-nightly.so` (a linker script on current nightlies).
    pub link_name: String,
    pub major: u32,
    /// Every `libLLVM*` file in `lib_dir`: the runtime name ldd shows must be one of them.
    runtime_names: Vec<String>,
}

/// Reads the nightly's sysroot `lib/` directory.
pub fn nightly_llvm() -> Result<NightlyLlvm> {
    let sysroot = capture(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let names = fs::read_dir(&lib_dir)
        .with_context(|| format!("cannot list {}", lib_dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect::<Vec<_>>();
    let (link_name, major) = pick_llvm_link_name(&names).with_context(|| {
        format!(
            "no libLLVM-<major>-rust-*.so in {}; the nightly must ship its LLVM as a shared library",
            lib_dir.display()
        )
    })?;
    let runtime_names = names
        .into_iter()
        .filter(|name| name.starts_with("libLLVM"))
        .collect();
    Ok(NightlyLlvm {
        lib_dir,
        link_name,
        major,
        runtime_names,
    })
}

/// Picks `libLLVM-<major>-rust-*.so` from a directory listing: the name to link and the LLVM major.
fn pick_llvm_link_name(names: &[String]) -> Option<(String, u32)> {
    let mut candidates = names
        .iter()
        .filter_map(|name| {
            let rest = name.strip_prefix("libLLVM-")?;
            let (major, tail) = rest.split_once('-')?;
            let major = major.parse::<u32>().ok()?;
            (tail.starts_with("rust-") && tail.ends_with(".so")).then(|| (name.clone(), major))
        })
        .collect::<Vec<_>>();
    candidates.sort();
    candidates.into_iter().next()
}

/// One line of `ldd` output.
#[derive(Debug, PartialEq)]
pub struct LddEntry {
    name: String,
    /// Where the loader found it; None when ldd printed no path (vdso, the loader itself) or "not found".
    resolved: Option<PathBuf>,
    not_found: bool,
}

pub fn parse_ldd(output: &str) -> Vec<LddEntry> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, target) = match line.split_once("=>") {
                Some((name, target)) => (name.trim(), target.trim()),
                None => (line, ""),
            };
            let name = name.split_whitespace().next().unwrap_or(name).to_owned();
            let not_found = target == "not found";
            let resolved = target
                .split_whitespace()
                .next()
                .filter(|path| path.starts_with('/'))
                .map(PathBuf::from);
            LddEntry {
                name,
                resolved,
                not_found,
            }
        })
        .collect()
}

/// Why these ldd entries do not describe a bpf-linker on the nightly's LLVM, or None if they do.
pub fn ldd_problem(entries: &[LddEntry], llvm: &NightlyLlvm) -> Option<String> {
    let missing = entries
        .iter()
        .filter(|entry| entry.not_found)
        .map(|entry| entry.name.as_str())
        .collect::<Vec<_>>();
    if !missing.is_empty() {
        return Some(format!(
            "needs libraries that are not found: {}",
            missing.join(", ")
        ));
    }
    let links_nightly = entries.iter().any(|entry| {
        llvm.runtime_names.contains(&entry.name)
            && entry
                .resolved
                .as_deref()
                .and_then(Path::parent)
                .is_some_and(|dir| same_dir(dir, &llvm.lib_dir))
    });
    if links_nightly {
        return None;
    }
    let other = entries
        .iter()
        .filter(|entry| entry.name.starts_with("libLLVM"))
        .map(|entry| entry.name.as_str())
        .collect::<Vec<_>>();
    Some(if other.is_empty() {
        "does not link a shared libLLVM (built with its own LLVM)".to_owned()
    } else {
        format!(
            "links {} instead of the nightly's {}",
            other.join(", "),
            llvm.link_name
        )
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIB: &str = "/root/.rustup/toolchains/nightly-x86_64-unknown-linux-gnu/lib";

    const LDD_GOOD: &str = "\
\tlinux-vdso.so.1 (0x00007f36e28fb000)
\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f36e28ca000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f36e241e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f36e28fd000)
\tlibLLVM.so.22.1-rust-1.97.0-nightly => /root/.rustup/toolchains/nightly-x86_64-unknown-linux-gnu/lib/libLLVM.so.22.1-rust-1.97.0-nightly (0x00007f36d7c00000)
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f36e289a000)
";

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    fn nightly_22() -> NightlyLlvm {
        NightlyLlvm {
            lib_dir: PathBuf::from(LIB),
            link_name: "libLLVM-22-rust-1.97.0-nightly.so".to_owned(),
            major: 22,
            runtime_names: names(&[
                "libLLVM-22-rust-1.97.0-nightly.so",
                "libLLVM.so.22.1-rust-1.97.0-nightly",
            ]),
        }
    }

    #[test]
    fn picks_link_name_and_major_from_sysroot_listing() {
        let listing = names(&[
            "librustc_driver-b5a965480ee51f9a.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "rustlib",
            "libLLVM-22-rust-1.97.0-nightly.so",
        ]);
        assert_eq!(
            pick_llvm_link_name(&listing),
            Some(("libLLVM-22-rust-1.97.0-nightly.so".to_owned(), 22))
        );
    }

    #[test]
    fn no_link_name_without_shared_llvm() {
        let listing = names(&["librustc_driver-x.so", "libLLVM-x-rust-1.so", "rustlib"]);
        assert_eq!(pick_llvm_link_name(&listing), None);
    }

    #[test]
    fn parses_ldd_lines() {
        let entries = parse_ldd(LDD_GOOD);
        assert_eq!(entries.len(), 6);
        assert_eq!(
            entries[0],
            LddEntry {
                name: "linux-vdso.so.1".to_owned(),
                resolved: None,
                not_found: false
            }
        );
        assert_eq!(
            entries[4].resolved.as_deref(),
            Some(Path::new(
                "/root/.rustup/toolchains/nightly-x86_64-unknown-linux-gnu/lib/libLLVM.so.22.1-rust-1.97.0-nightly"
            ))
        );
        let missing = parse_ldd("\tlibLLVM.so.21.1-rust-1.96.0-nightly => not found\n");
        assert!(missing[0].not_found);
        assert_eq!(missing[0].resolved, None);
    }

    #[test]
    fn accepts_bpf_linker_on_the_nightly_llvm() {
        assert_eq!(ldd_problem(&parse_ldd(LDD_GOOD), &nightly_22()), None);
    }

    #[test]
    fn rejects_missing_libraries() {
        let ldd = format!("{LDD_GOOD}\tlibLLVM.so.21.1-rust-1.96.0-nightly => not found\n");
        let problem = ldd_problem(&parse_ldd(&ldd), &nightly_22()).expect("problem");
        assert!(problem.contains("not found"), "{problem}");
    }

    #[test]
    fn rejects_llvm_from_elsewhere() {
        let ldd = "\tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x1)\n\tlibc.so.6 => /lib/libc.so.6 (0x2)\n";
        let problem = ldd_problem(&parse_ldd(ldd), &nightly_22()).expect("problem");
        assert!(problem.contains("instead of"), "{problem}");
    }

    #[test]
    fn rejects_same_name_in_another_directory() {
        let ldd = "\tlibLLVM.so.22.1-rust-1.97.0-nightly => /opt/other/libLLVM.so.22.1-rust-1.97.0-nightly (0x1)\n";
        assert!(ldd_problem(&parse_ldd(ldd), &nightly_22()).is_some());
    }

    #[test]
    fn rejects_statically_linked_llvm() {
        let ldd = "\tlibc.so.6 => /lib/libc.so.6 (0x2)\n\tlibz.so.1 => /lib/libz.so.1 (0x3)\n";
        let problem = ldd_problem(&parse_ldd(ldd), &nightly_22()).expect("problem");
        assert!(problem.contains("own LLVM"), "{problem}");
    }
}
