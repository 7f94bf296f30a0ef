//! Visibility: a snapshot shows every batch whose `write` returned before
//! the snapshot was taken, in whichever thread it was written.
//!
//! The buffered modes publish versions lazily (a version is made when a
//! snapshot finds the published one stale, not after every batch), so this
//! is not automatic there: these tests guard it across threads, across
//! segment rolls and frees (which publish before their slow steps), and
//! with a compaction thread switching segments underneath.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use journalstore::{Options, Store, SyncMode, WriteBatch};

fn check_mode(sync: SyncMode) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(
            tmp.path(),
            Options {
                sync,
                // Small segments: rolls, frees and compactions every few
                // dozen batches.
                segment_size: 16 << 10,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let (tx, rx) = mpsc::channel::<(u64, u64)>();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..3000u64 {
                let mut batch = WriteBatch::new();
                batch.append(b"j", &i.to_le_bytes());
                batch.set_metadata(b"j", &i.to_le_bytes());
                if i % 50 == 49 {
                    // Trims free the oldest segments now and then.
                    batch.trim_prefix(b"j", i - 10);
                }
                let lsn = store.write(&batch).unwrap();
                tx.send((i, lsn)).unwrap();
            }
        })
    };
    // The reader takes its snapshot only after the writer's `write` has
    // returned (it received the LSN): the batch must be in it.
    let mut checked = 0;
    for (i, lsn) in rx {
        let snap = store.snapshot();
        assert!(
            snap.lsn() >= lsn,
            "{sync:?}: batch {i} at LSN {lsn}, snapshot at {}",
            snap.lsn()
        );
        let j = snap.journal(b"j").expect("journal j");
        assert!(
            j.end_index() > i,
            "{sync:?}: entry {i} missing (end {})",
            j.end_index()
        );
        let meta = u64::from_le_bytes(j.metadata().unwrap().unwrap().try_into().unwrap());
        assert!(meta >= i, "{sync:?}: metadata {meta} older than batch {i}");
        checked += 1;
    }
    writer.join().unwrap();
    assert_eq!(checked, 3000);
    // Stats see the latest state too.
    assert_eq!(store.stats().journals, 1);
    assert_eq!(store.snapshot().journal(b"j").unwrap().end_index(), 3000);
}

/// Guards: in `SyncMode::Never`, a snapshot taken after `write` returned in
/// another thread holds that batch, across rolls, frees and background
/// compactions.
#[test]
fn buffered_writes_are_visible_to_later_snapshots_in_other_threads() {
    check_mode(SyncMode::Never);
}

/// The same in `SyncMode::Interval`.
#[test]
fn interval_writes_are_visible_to_later_snapshots_in_other_threads() {
    check_mode(SyncMode::Interval(Duration::from_millis(5)));
}

/// The same in `SyncMode::Always` (group commit publishes eagerly).
#[test]
fn durable_writes_are_visible_to_later_snapshots_in_other_threads() {
    check_mode(SyncMode::Always);
}
