//! Background compaction leaves a young sealed segment alone, since data
//! that dies young (a journal trimmed behind its writer) would be copied
//! only to die in the copy; once as many bytes were written after the
//! segment as it holds, or a second passed since its seal, it is
//! rewritten. `Store::compact` does not wait.
//!
//! Set-up: 64 KiB segments, the compaction thread looking every 10 ms,
//! the write stall off. Segment 1 holds journal `x`; a roll seals it and a
//! trim leaves about 40 % of it live: below the rewrite threshold (0.5),
//! above the ratio at which a young segment is cheap to copy (0.25), and
//! the store under its space target.
//!
//! The "left alone" half waits a fixed while and asserts only if less than
//! the second has passed since the seal (a slow machine can only make it
//! miss a bug, never fail a correct store); the other waits are on
//! conditions with generous deadlines.

use std::time::{Duration, Instant};

use journalstore::{Options, Store, SyncMode, WriteBatch};

mod common;
use common::wait_for_stats;

const ENTRY: usize = 1024;

fn options(background: bool) -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: 64 << 10,
        background_compaction: background,
        compaction_interval: Some(Duration::from_millis(10)),
        stall_space_amplification: None,
        index_checkpoint_bytes: None,
        status_interval: None,
        ..Options::default()
    }
}

/// Fills segment 1 with `x`'s entries, rolls into segment 2, and trims
/// `x` so that about 40 % of segment 1 stays live; returns when the roll
/// was seen.
fn young_segment_40_percent_live(store: &Store) -> Instant {
    let mut n = 0u64;
    while store.stats().segments == 1 {
        let mut b = WriteBatch::new();
        b.append(b"x", &[0x5a; ENTRY]);
        store.write(&b).unwrap();
        n += 1;
    }
    let sealed = Instant::now();
    let mut b = WriteBatch::new();
    b.trim_prefix(b"x", n * 6 / 10);
    store.write(&b).unwrap();
    sealed
}

#[test]
fn the_thread_waits_for_a_young_segment_to_age_before_copying_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), options(true)).unwrap();
    let sealed = young_segment_40_percent_live(&store);

    std::thread::sleep(Duration::from_millis(300));
    let s = store.stats();
    if sealed.elapsed() < Duration::from_millis(900) {
        assert_eq!(s.compaction_runs, 0, "a young segment was copied: {s:?}");
    }

    // A segment's worth written after it, all live: segment 1 is old now.
    for _ in 0..64 {
        let mut b = WriteBatch::new();
        b.append(b"y", &[0x11; ENTRY]);
        store.write(&b).unwrap();
    }
    let s = wait_for_stats(&store, Duration::from_secs(30), |s| s.compaction_runs > 0);
    assert!(
        s.compaction_runs > 0,
        "the aged segment was not rewritten: {s:?}"
    );
    let snap = store.snapshot();
    assert_eq!(snap.journal(b"y").unwrap().len(), 64);
    assert!(!snap.journal(b"x").unwrap().is_empty());
}

#[test]
fn a_young_segment_is_rewritten_once_a_second_passed_without_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(
        tmp.path(),
        Options {
            compaction_interval: None,
            ..options(true)
        },
    )
    .unwrap();
    young_segment_40_percent_live(&store);
    // No more writes, no timer: only the thread's own look after the
    // second can rewrite it.
    let s = wait_for_stats(&store, Duration::from_secs(30), |s| s.compaction_runs > 0);
    assert!(
        s.compaction_runs > 0,
        "the idle young segment stayed: {s:?}"
    );
}

#[test]
fn store_compact_rewrites_a_young_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), options(false)).unwrap();
    young_segment_40_percent_live(&store);
    let report = store.compact().unwrap();
    assert_eq!(report.runs, 1, "{report:?}");
    assert_eq!(store.stats().compaction_runs, 1);
}
