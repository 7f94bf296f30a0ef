//! File descriptors: a store holds a bounded number, whatever its size.
//!
//! Every segment stays mapped for as long as a generation or a snapshot can
//! reach it, but only the active segment keeps its file open: a mapping
//! stays valid after its descriptor is closed. Claims checked, each in a
//! child process (this test binary run again) whose open-file limit is
//! lowered with `ulimit -n` before it starts:
//! - a store of over 600 segments opens under a limit of 256, takes 100
//!   more batches, closes and opens again, holding two descriptors (the
//!   lock file and the active segment) once open; the read-only open of
//!   `inspect` holds none;
//! - a store written under a limit of 64, across hundreds of rolls, with
//!   snapshots pinning freed segments, background compaction, the status
//!   file and a checkpoint, never fails a write.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use journalstore::{inspect, Options, Snapshot, Store, SyncMode, WriteBatch};

/// Set in the child: the store directory to work on.
const CHILD_DIR: &str = "JOURNALSTORE_FD_LIMIT_DIR";

const SEGMENT_SIZE: u64 = 8 << 10;

fn options() -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: SEGMENT_SIZE,
        background_compaction: false,
        status_interval: None,
        ..Options::default()
    }
}

fn entry(journal: u64, i: u64) -> Vec<u8> {
    let mut v = format!("journal {journal} entry {i} ").into_bytes();
    v.resize(1000, b'.');
    v
}

fn journal_id(j: u64) -> Vec<u8> {
    format!("j{j}").into_bytes()
}

/// Appends entry `i` of journal `j` (one batch).
fn append(store: &Store, j: u64, i: u64) {
    let mut b = WriteBatch::new();
    b.append(&journal_id(j), &entry(j, i));
    store
        .write(&b)
        .unwrap_or_else(|e| panic!("journal {j}, entry {i}: {e}"));
}

/// Runs the test `name` of this binary again in a child process whose
/// open-file limit is `limit`, with `dir` in [`CHILD_DIR`]; fails if the
/// child does.
fn run_child(name: &str, limit: u32, dir: &Path) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "child under ulimit -n {limit} failed:\n{text}"
    );
    // A filter that matched nothing would also succeed.
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
}

/// The soft open-file limit of this process, from `/proc/self/limits`.
fn open_file_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    line["Max open files".len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable limit: {line}"))
}

/// File descriptors this process has open now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_DIR).map(PathBuf::from)
}

const BIG_SEGMENTS: usize = 600;
const BIG_JOURNALS: u64 = 50;
/// One 1000-byte entry per batch and seven per 8 KiB segment: 90 rounds of
/// 50 journals fill over 600 segments.
const BIG_ROUNDS: u64 = 90;

/// Checks every journal of the big store: `rounds` entries each.
fn check_big(store: &Store, rounds: u64) {
    let snap = store.snapshot();
    assert_eq!(snap.journal_count() as u64, BIG_JOURNALS);
    for j in 0..BIG_JOURNALS {
        let journal = snap.journal(&journal_id(j)).expect("journal");
        assert_eq!(journal.len(), rounds, "journal {j}");
        for i in [0, rounds / 2, rounds - 1] {
            assert_eq!(journal.entry(i).unwrap(), Some(&entry(j, i)[..]));
        }
    }
}

#[test]
fn a_600_segment_store_opens_writes_and_reopens_under_ulimit_256() {
    if let Some(dir) = child_dir() {
        assert_eq!(open_file_limit(), 256, "the parent's ulimit");
        let rounds = BIG_ROUNDS;
        let before = open_fds();
        let store = Store::open(&dir, options()).unwrap_or_else(|e| panic!("open: {e}"));
        assert!(
            store.stats().segments >= BIG_SEGMENTS,
            "{:?}",
            store.stats()
        );
        assert!(
            open_fds() <= before + 2,
            "{} descriptors open for {} segments",
            open_fds() - before,
            store.stats().segments
        );
        check_big(&store, rounds);
        for k in 0..100 {
            append(&store, k % BIG_JOURNALS, rounds + k / BIG_JOURNALS);
        }
        store.close().unwrap();

        let store = Store::open(&dir, options()).unwrap_or_else(|e| panic!("reopen: {e}"));
        let snap = store.snapshot();
        for j in 0..BIG_JOURNALS {
            assert_eq!(snap.journal(&journal_id(j)).unwrap().len(), rounds + 2);
        }
        drop(snap);
        store.close().unwrap();

        // The read-only open (journal-dump) holds no descriptor at all.
        let before = open_fds();
        let ro = inspect::open_read_only(&dir).unwrap_or_else(|e| panic!("read-only: {e}"));
        assert!(
            open_fds() <= before,
            "read-only open holds {} descriptors",
            open_fds() - before
        );
        assert_eq!(ro.snapshot.journal_count() as u64, BIG_JOURNALS);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    for i in 0..BIG_ROUNDS {
        for j in 0..BIG_JOURNALS {
            append(&store, j, i);
        }
    }
    let segments = store.stats().segments;
    assert!(segments >= BIG_SEGMENTS, "{:?}", store.stats());
    check_big(&store, BIG_ROUNDS);
    store.close().unwrap();
    run_child(
        "a_600_segment_store_opens_writes_and_reopens_under_ulimit_256",
        256,
        &dir,
    );
    // What the child wrote is there.
    let store = Store::open(&dir, options()).unwrap();
    check_big(&store, BIG_ROUNDS + 2);
    store.close().unwrap();
}

/// A running store under a limit of 64: hundreds of rolls, every segment
/// it wrote kept live or pinned by a snapshot, compaction and the status
/// file at work, then a checkpoint and a reopen.
#[test]
fn a_running_store_keeps_writing_under_ulimit_64() {
    let Some(dir) = child_dir() else {
        let tmp = tempfile::tempdir().unwrap();
        run_child(
            "a_running_store_keeps_writing_under_ulimit_64",
            64,
            &tmp.path().join("store"),
        );
        return;
    };
    assert_eq!(open_file_limit(), 64, "the parent's ulimit");
    let opts = Options {
        background_compaction: true,
        status_interval: Some(Duration::from_millis(5)),
        ..options()
    };
    let store = Store::open(&dir, opts.clone()).unwrap();
    // Journals 0..20 stay; 20..40 are deleted a round later, after a
    // snapshot is taken, so the snapshots pin segments the store freed.
    let mut held: Vec<Snapshot> = Vec::new();
    let rounds = 40;
    for i in 0..rounds {
        for j in 0..40 {
            append(&store, j, i);
        }
        held.push(store.snapshot());
        let mut b = WriteBatch::new();
        for j in 20..40 {
            b.delete_journal(&journal_id(j));
        }
        store.write(&b).unwrap();
    }
    let stats = store.stats();
    assert!(stats.pinned_only_bytes > 0, "{stats:?}");
    assert!(
        stats.segments as u64 + stats.pinned_only_bytes / SEGMENT_SIZE > 64,
        "fewer segments than descriptors allowed: {stats:?}"
    );
    // Every snapshot still reads what it saw.
    for (i, snap) in held.iter().enumerate() {
        let i = i as u64;
        assert_eq!(
            snap.journal(&journal_id(30)).unwrap().entry(0).unwrap(),
            Some(&entry(30, i)[..])
        );
        assert_eq!(
            snap.journal(&journal_id(5)).unwrap().entry(i).unwrap(),
            Some(&entry(5, i)[..])
        );
    }
    drop(held);
    store.compact().unwrap();
    let checkpoint = dir.with_file_name("checkpoint");
    store.checkpoint(&checkpoint).unwrap();
    store.close().unwrap();

    for dir in [&dir, &checkpoint] {
        let store = Store::open(dir, options()).unwrap();
        let snap = store.snapshot();
        assert_eq!(snap.journal_count(), 20);
        for j in 0..20 {
            let journal = snap.journal(&journal_id(j)).unwrap();
            assert_eq!(journal.len(), rounds);
            assert_eq!(
                journal.entry(rounds - 1).unwrap(),
                Some(&entry(j, rounds - 1)[..])
            );
        }
        drop(snap);
        store.close().unwrap();
    }
}
