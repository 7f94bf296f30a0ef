//! The durable watermark of the active segment: damage to records that had
//! been reported synced is `Corruption` at open, never a torn tail that is
//! silently cut.
//!
//! In every sync mode, a store writes batches, makes them durable (`sync`
//! in the buffered modes, every write under `Always`) and closes cleanly;
//! then one bit of an early record, or of the last one, is flipped in the
//! active segment. Opening must fail with `Corruption` at that record, and
//! must keep failing (nothing on disk was changed by the failed open). A
//! process that dies after a sync (no close) leaves the same proof behind.
//! Bytes written after the last sync are still a torn tail: damage there is
//! cut and the store opens with every synced batch.

use std::path::Path;
use std::sync::Arc;

use journalstore::inspect::{self, ScanItem};
use journalstore::io::{CrashMode, SimFs};
use journalstore::{Error, Options, Store, SyncMode, WriteBatch};

const BATCHES: u64 = 50;

fn options(sync: SyncMode) -> Options {
    Options {
        sync,
        background_compaction: false,
        // No index checkpoints: these tests damage synced records and
        // check that open's replay reports them, and open does not read
        // the records a checkpoint (written at clean close) covers.
        index_checkpoint_bytes: None,
        ..Options::default()
    }
}

fn write_batches(store: &Store, from: u64, to: u64) {
    for i in from..to {
        let mut batch = WriteBatch::new();
        batch.append(b"j", format!("entry {i:04}").as_bytes());
        store.write(&batch).unwrap();
    }
}

/// Offsets of the records in the active segment (the last listed one).
fn active_records(dir: &Path) -> (std::path::PathBuf, Vec<u64>) {
    let manifest = inspect::read_manifest(&inspect::manifest_path(dir)).unwrap();
    let active = manifest.segments.last().unwrap();
    let path = dir.join(inspect::segment_file_name_of(active.id));
    let file = inspect::SegmentFile::read(&path).unwrap();
    let offsets = file
        .scan(0, None, false)
        .into_iter()
        .filter_map(|item| match item {
            ScanItem::Record { offset, .. } => Some(offset),
            _ => None,
        })
        .collect();
    (path, offsets)
}

/// Flips one bit in the payload of the record at `offset`.
fn flip_bit(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    // Inside the first operation's journal id: header (32) + op header (32).
    bytes[offset as usize + 64] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn assert_corruption_at(dir: &Path, sync: SyncMode, offset: u64, ctx: &str) {
    for attempt in 0..2 {
        match Store::open(dir, options(sync)) {
            Err(Error::Corruption {
                offset: at, path, ..
            }) => {
                assert_eq!(at, offset, "{ctx} (open {attempt}): corruption reported at");
                assert!(path.ends_with("seg-00000001.jseg"), "{ctx}: {path:?}");
            }
            Err(e) => panic!("{ctx} (open {attempt}): expected Corruption, got {e}"),
            Ok(store) => {
                let n = store.snapshot().journal(b"j").map_or(0, |j| j.len());
                panic!("{ctx} (open {attempt}): opened with {n} of {BATCHES} synced entries")
            }
        }
    }
}

/// The process dies: its store does nothing more (every later mutating
/// call fails), and what it wrote stays as the page cache held it.
fn die_keeping_page_cache(sim: &SimFs, store: Store, dir: &Path) {
    sim.fail_after(0);
    drop(store);
    let writes = sim.pending_writes();
    let keep = CrashMode::KeepPrefix {
        writes,
        torn_bytes: 0,
    };
    sim.crash(dir, keep).unwrap();
}

/// Synced data damaged after a clean close, in each sync mode, at an early
/// record and at the last one.
#[test]
fn damage_to_synced_records_after_close_is_corruption() {
    let modes = [
        SyncMode::Always,
        SyncMode::Never,
        SyncMode::Interval(std::time::Duration::from_secs(3600)),
    ];
    for sync in modes {
        for which in ["early", "last"] {
            let ctx = format!("{sync:?}, {which} record");
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path();
            let store = Store::open(dir, options(sync)).unwrap();
            write_batches(&store, 0, BATCHES);
            store.sync().unwrap();
            store.close().unwrap();
            let (path, offsets) = active_records(dir);
            assert_eq!(offsets.len() as u64, BATCHES, "{ctx}");
            let victim = if which == "early" {
                offsets[10]
            } else {
                *offsets.last().unwrap()
            };
            flip_bit(&path, victim);
            assert_corruption_at(dir, sync, victim, &ctx);
        }
    }
}

/// A process that dies right after a sync (no close) leaves the proof that
/// the synced records were durable: damage to the last one is corruption.
/// The crash keeps what the page cache held (`KeepPrefix` of every write).
#[test]
fn damage_to_the_last_synced_group_after_a_process_crash_is_corruption() {
    for sync in [SyncMode::Always, SyncMode::Never] {
        let ctx = format!("{sync:?}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let sim = SimFs::new();
        let opts = || Options {
            fs: Arc::new(sim.clone()),
            ..options(sync)
        };
        let store = Store::open(dir, opts()).unwrap();
        write_batches(&store, 0, BATCHES);
        store.sync().unwrap();
        die_keeping_page_cache(&sim, store, dir);
        let (path, offsets) = active_records(dir);
        let last = *offsets.last().unwrap();
        flip_bit(&path, last);
        assert_corruption_at(dir, sync, last, &ctx);
    }
}

/// Records written after the last sync may be lost or torn: damage there
/// is cut as a torn tail and every synced batch is kept.
#[test]
fn damage_after_the_last_sync_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sim = SimFs::new();
    let opts = Options {
        fs: Arc::new(sim.clone()),
        ..options(SyncMode::Never)
    };
    let store = Store::open(dir, opts).unwrap();
    write_batches(&store, 0, 20);
    store.sync().unwrap();
    write_batches(&store, 20, 30);
    die_keeping_page_cache(&sim, store, dir);
    let (path, offsets) = active_records(dir);
    assert_eq!(offsets.len(), 30);
    flip_bit(&path, offsets[25]);
    let store = Store::open(dir, options(SyncMode::Never)).unwrap();
    let snap = store.snapshot();
    assert_eq!(
        snap.journal(b"j").unwrap().len(),
        25,
        "records before the damage are kept"
    );
    drop(snap);
    store.close().unwrap();
}

/// A checkpoint's copy of the active segment ends with a sync mark: damage
/// to its last record is corruption when the checkpoint is opened, not a
/// torn tail that is cut.
#[test]
fn damage_to_the_last_record_of_a_checkpoint_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let copy = tmp.path().join("checkpoint");
    let store = Store::open(&dir, options(SyncMode::Always)).unwrap();
    write_batches(&store, 0, BATCHES);
    store.checkpoint(&copy).unwrap();
    store.close().unwrap();
    let (path, offsets) = active_records(&copy);
    let last = *offsets.last().unwrap();
    flip_bit(&path, last);
    assert_corruption_at(&copy, SyncMode::Always, last, "checkpoint");
}
