//! Replays every committed fuzz corpus (fuzz/corpus/TARGET/*) through its target on stable, so CI
//! checks the seeds and every crash found so far without nightly or cargo-fuzz.
use std::path::{Path, PathBuf};

use super::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_passes_its_target() {
    for (name, target) in TARGETS {
        let files = files_in(&fuzz_dir().join("corpus").join(name));
        assert!(!files.is_empty(), "fuzz/corpus/{name} has no seeds");
        for file in files {
            let data = std::fs::read(&file).expect("a corpus file reads");
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails", file.display());
        }
    }
}

#[test]
fn every_harness_and_corpus_has_a_target() {
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    for harness in files_in(&fuzz_dir().join("fuzz_targets")) {
        let stem = harness
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        assert!(
            names.contains(&stem),
            "fuzz/fuzz_targets/{stem}.rs has no entry in TARGETS"
        );
    }
    for corpus in std::fs::read_dir(fuzz_dir().join("corpus")).expect("fuzz/corpus reads") {
        let corpus = corpus.expect("a directory entry").file_name();
        let corpus = corpus.to_string_lossy();
        assert!(
            names.contains(&&*corpus),
            "fuzz/corpus/{corpus} has no entry in TARGETS"
        );
    }
}
