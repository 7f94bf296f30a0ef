//! Compaction is paced by work: the background thread looks for work once
//! `Options::compaction_dead_bytes` bytes of records died since it last
//! looked, without waiting for a segment to fill or for a timer.
//!
//! Set-up: one 64 MiB segment (nothing rolls), the fallback timer off
//! (`compaction_interval: None`) and the write stall off, so only the
//! dead-bytes trigger can start the thread's run. A journal holds 2 MiB and
//! is deleted: under the 3 MiB threshold nothing runs; a second such
//! journal takes the dead bytes past it, and the thread seals the mostly
//! dead active segment and rewrites it.
//!
//! Waits are on conditions with generous deadlines; no assertion is on
//! elapsed time. The "nothing runs" half waits a fixed while and can only
//! miss a bug (a look that would come later), never fail a correct store.

use std::time::Duration;

use journalstore::{Options, Store, SyncMode, WriteBatch};

mod common;
use common::wait_for_stats;

const THRESHOLD: u64 = 3 << 20;

fn options() -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: 64 << 20,
        background_compaction: true,
        compaction_interval: None,
        compaction_dead_bytes: Some(THRESHOLD),
        stall_space_amplification: None,
        status_interval: None,
        ..Options::default()
    }
}

/// Appends about `bytes` of entries to `id`, a batch of 16 KiB at a time,
/// with an entry of the long-lived journal `keep` in each (so that the
/// segment keeps something live to copy), then deletes `id`.
fn fill_and_delete(store: &Store, id: &[u8], bytes: usize) {
    let entry = vec![0x5a; 4096];
    for _ in 0..bytes / (4 * entry.len()) {
        let mut b = WriteBatch::new();
        for _ in 0..4 {
            b.append(id, &entry);
        }
        b.append(b"keep", b"still here");
        store.write(&b).unwrap();
    }
    let mut b = WriteBatch::new();
    b.delete_journal(id);
    store.write(&b).unwrap();
}

#[test]
fn dead_bytes_past_the_threshold_start_a_compaction_run() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), options()).unwrap();

    // About 2 MiB die: under the threshold, the thread is not woken.
    fill_and_delete(&store, b"a", 2 << 20);
    std::thread::sleep(Duration::from_millis(500));
    let s = store.stats();
    assert_eq!(s.segments, 1, "no roll: {s:?}");
    assert_eq!(s.compaction_runs, 0, "under the threshold: {s:?}");

    // About 4 MiB dead in all: past it. The thread seals the active
    // segment (mostly dead, store over its space target) and rewrites it.
    fill_and_delete(&store, b"b", 2 << 20);
    let s = wait_for_stats(&store, Duration::from_secs(30), |s| s.compaction_runs > 0);
    assert!(s.compaction_runs > 0, "no compaction run: {s:?}");
    assert!(s.bytes_written < 2 << 20, "the dead bytes are gone: {s:?}");

    let snap = store.snapshot();
    assert!(snap.journal(b"a").is_none() && snap.journal(b"b").is_none());
    assert_eq!(snap.journal(b"keep").unwrap().len(), 256);
    store.close().unwrap();
    let store = Store::open(tmp.path(), options()).unwrap();
    assert_eq!(store.snapshot().journal(b"keep").unwrap().len(), 256);
}

/// Without background compaction nothing is armed: deaths never start a
/// run, and `Store::compact` still reclaims them.
#[test]
fn without_background_compaction_dead_bytes_start_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        background_compaction: false,
        ..options()
    };
    let store = Store::open(tmp.path(), options).unwrap();
    fill_and_delete(&store, b"a", 4 << 20);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(store.stats().compaction_runs, 0);
    let report = store.compact().unwrap();
    assert!(report.runs > 0, "{report:?}");
    assert_eq!(store.snapshot().journal(b"keep").unwrap().len(), 256);
}

#[test]
fn zero_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for options in [
        Options {
            compaction_dead_bytes: Some(0),
            ..options()
        },
        Options {
            compaction_interval: Some(Duration::ZERO),
            ..options()
        },
    ] {
        let err = Store::open(tmp.path(), options).unwrap_err();
        assert!(
            matches!(err, journalstore::Error::InvalidOptions(_)),
            "{err:?}"
        );
    }
}
