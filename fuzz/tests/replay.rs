//! Replays every stored input of every fuzz target through the same logic
//! the fuzzer runs, on stable Rust: `cd fuzz && cargo test`.
//!
//! Inputs come from `corpus/<target>/` (seeds, checked in),
//! `regressions/<target>/` (inputs that once found a bug, checked in, so a
//! fixed bug stays fixed) and `artifacts/<target>/` (what a local
//! `cargo fuzz run` just found; not checked in). Each target's test fails
//! if any input panics or breaks its budgets (`journalstore_fuzz::budget`:
//! memory, decoder work, time), and names every input that did.

use std::path::{Path, PathBuf};

const SOURCES: [&str; 3] = ["corpus", "regressions", "artifacts"];

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for source in SOURCES {
        let Ok(entries) = std::fs::read_dir(root.join(source).join(target)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// Runs `target` on each of its stored inputs; panics listing the failures.
fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let label = path.display().to_string();
        let budgeted = || journalstore_fuzz::budget::run_labelled(target, &label, &data, run);
        if std::panic::catch_unwind(budgeted).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
    eprintln!("{target}: {} inputs replayed", files.len());
}

/// Segment decoding and recovery of an arbitrary active segment.
#[test]
fn segment_decode() {
    replay("segment_decode", journalstore_fuzz::segment_decode);
}

/// Manifest decoding and recovery of a store with an arbitrary manifest.
#[test]
fn manifest_decode() {
    replay("manifest_decode", journalstore_fuzz::manifest_decode);
}

/// Index checkpoint decoding and recovery of a store with an arbitrary one.
#[test]
fn index_checkpoint_decode() {
    replay(
        "index_checkpoint_decode",
        journalstore_fuzz::index_checkpoint_decode,
    );
}

/// Batches, snapshots, sync and reopen against the model.
#[test]
fn ops_model() {
    replay("ops_model", journalstore_fuzz::ops_model);
}

/// Power loss at any point, then recovery to a prefix of the batches.
#[test]
fn crash_recovery() {
    replay("crash_recovery", journalstore_fuzz::crash_recovery);
}

/// Damaged files of a valid store: detected, or harmless.
#[test]
fn corrupt_open() {
    replay("corrupt_open", journalstore_fuzz::corrupt_open);
}
