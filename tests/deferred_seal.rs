//! A roll does not sync under the writer's lock: it writes the new
//! segment's header and `MANIFEST.next`, and leaves the fdatasync of the
//! segment it sealed, of the new header, and the swap of `MANIFEST` to the
//! next sync (or to the compaction thread). No record of the new segment may
//! count as durable before those steps are done.
//!
//! Set-up: `SyncMode::Never`, small segments, no background compaction, so
//! that the seal stays pending until the test syncs.

use std::path::Path;
use std::sync::Arc;

use journalstore::io::{CrashMode, Fault, SimFs};
use journalstore::{Error, Options, Store, SyncMode, WriteBatch};

const SEGMENT_SIZE: u64 = 64 << 10;

fn options(sim: &SimFs) -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: SEGMENT_SIZE,
        background_compaction: false,
        index_checkpoint_bytes: None,
        status_interval: None,
        fs: Arc::new(sim.clone()),
        ..Options::default()
    }
}

/// Appends 4 KiB entries to journal `a` until a write rolls to a second
/// segment; returns the LSN of the last batch written to the first.
fn fill_until_roll(store: &Store) -> u64 {
    let mut last_in_first = 0;
    for _ in 0..64 {
        let mut b = WriteBatch::new();
        b.append(b"a", &[0x11; 4096]);
        let lsn = store.write(&b).unwrap();
        if store.stats().segments == 2 {
            return last_in_first;
        }
        last_in_first = lsn;
    }
    panic!("no roll after 64 entries of 4 KiB in 64 KiB segments");
}

fn entries(dir: &Path, sim: &SimFs) -> u64 {
    let store = Store::open(dir, options(sim)).unwrap();
    let snap = store.snapshot();
    snap.journal(b"a")
        .map_or(0, |j| j.end_index() - j.first_index())
}

/// A failed fdatasync of the sealed segment, taken by the sync after the
/// roll, fails that sync: the batch written to the new segment is never
/// reported durable, writes stop, and after the power goes the store opens
/// with what was durable before.
#[test]
fn a_failed_sync_of_the_sealed_segment_acknowledges_nothing_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sim = SimFs::new();
    let store = Store::open(dir, options(&sim)).unwrap();
    let mut b = WriteBatch::new();
    b.append(b"a", b"synced");
    store.write(&b).unwrap();
    store.sync().unwrap();
    let synced = store.durable_lsn();

    let sealed_lsn = fill_until_roll(&store);
    let mut b = WriteBatch::new();
    b.append(b"a", b"in the new segment");
    let new_lsn = store.write(&b).unwrap();
    assert!(new_lsn > sealed_lsn);

    // The next sync is the sealed segment's, the first step of the seal.
    sim.inject(Fault::Sync {
        nth: 0,
        kind: std::io::ErrorKind::Other,
    });
    let err = store.sync_to(new_lsn).unwrap_err();
    assert!(
        matches!(err, Error::WritesStopped { .. } | Error::Io { .. }),
        "{err:?}"
    );
    assert!(
        store.durable_lsn() < new_lsn,
        "durable LSN {} covers the new segment's batch {new_lsn} after the sealed segment's sync failed",
        store.durable_lsn()
    );
    assert!(store.durable_lsn() >= synced);
    let mut b = WriteBatch::new();
    b.append(b"a", b"after the failure");
    assert!(matches!(store.write(&b), Err(Error::WritesStopped { .. })));

    sim.fail_after(0);
    drop(store);
    sim.crash(dir, CrashMode::DropUnsynced).unwrap();
    sim.clear_faults();
    // The failed sync dropped the sealed segment's unsynced pages; what the
    // first sync made durable is all there is.
    assert_eq!(entries(dir, &sim), 1);
}

/// A power loss after the roll, before any sync: `MANIFEST.next` and the
/// new segment are lost or ignored, and the store opens on the segment the
/// roll sealed, keeping what was synced before.
#[test]
fn power_loss_before_the_seal_is_finished_opens_on_the_old_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sim = SimFs::new();
    let store = Store::open(dir, options(&sim)).unwrap();
    for _ in 0..3 {
        let mut b = WriteBatch::new();
        b.append(b"a", &[0x22; 4096]);
        store.write(&b).unwrap();
    }
    store.sync().unwrap();
    fill_until_roll(&store);
    let mut b = WriteBatch::new();
    b.append(b"a", b"in the new segment");
    store.write(&b).unwrap();
    assert!(dir.join("MANIFEST.next").exists());

    sim.fail_after(0);
    drop(store);
    sim.crash(dir, CrashMode::DropUnsynced).unwrap();
    sim.clear_faults();
    assert_eq!(entries(dir, &sim), 3);
    assert!(!dir.join("MANIFEST.next").exists());
}

/// Once a sync has finished the seal, `MANIFEST` names the new segment, the
/// stale `MANIFEST.next` is gone, and a power loss keeps every batch.
#[test]
fn a_sync_after_a_roll_makes_both_segments_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sim = SimFs::new();
    let store = Store::open(dir, options(&sim)).unwrap();
    let sealed_lsn = fill_until_roll(&store);
    let mut b = WriteBatch::new();
    b.append(b"a", b"in the new segment");
    let lsn = store.write(&b).unwrap();
    let written = store.snapshot().journal(b"a").unwrap().end_index();
    assert!(lsn > sealed_lsn);
    store.sync().unwrap();
    assert!(store.durable_lsn() >= lsn);
    assert!(!dir.join("MANIFEST.next").exists());

    sim.fail_after(0);
    drop(store);
    sim.crash(dir, CrashMode::DropUnsynced).unwrap();
    sim.clear_faults();
    assert_eq!(entries(dir, &sim), written);
}
