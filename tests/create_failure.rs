//! A segment whose creation fails leaves no file behind.
//!
//! Creating a segment makes its file, sizes it, reserves its space, writes
//! its header and maps it; on a full disk any step after the first can
//! fail. Compaction retries (at each seal, each dead-bytes crossing and every
//! `compaction_interval`) and takes a new
//! segment id each time, so a file left by each failure would fill the disk
//! further on every attempt. Claims checked: after each failed compaction
//! (sizing, reserving, header write), the directory holds exactly the
//! segments the manifest lists; compaction then succeeds, and the store
//! reopens with everything it held.

mod common;

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use common::{files_on_disk, listed};
use journalstore::io::{Fault, SimFs};
use journalstore::{DisplayChain, Options, Store, SyncMode, WriteBatch};

const SEGMENT_SIZE: u64 = 8 << 10;

fn options(sim: &SimFs) -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: SEGMENT_SIZE,
        background_compaction: false,
        status_interval: None,
        fs: Arc::new(sim.clone()),
        ..Options::default()
    }
}

fn entry(i: u64) -> Vec<u8> {
    let mut v = format!("entry {i} ").into_bytes();
    v.resize(1000, b'.');
    v
}

/// One "keep" entry for every three "gone" ones over many segments, then
/// "gone" deleted: every sealed segment is about a quarter live, below the
/// compaction threshold, and none is free.
fn fill(store: &Store) {
    for i in 0..120 {
        let mut b = WriteBatch::new();
        let id: &[u8] = if i % 4 == 0 { b"keep" } else { b"gone" };
        b.append(id, &entry(i));
        store.write(&b).unwrap();
    }
    let mut b = WriteBatch::new();
    b.delete_journal(b"gone");
    store.write(&b).unwrap();
}

fn check_keep(store: &Store) {
    let snap = store.snapshot();
    let keep = snap.journal(b"keep").expect("keep");
    assert_eq!(keep.len(), 30);
    for k in 0..30 {
        assert_eq!(keep.entry(k).unwrap(), Some(&entry(4 * k)[..]), "entry {k}");
    }
    assert!(snap.journal(b"gone").is_none());
}

fn assert_only_listed(dir: &Path, ctx: &str) {
    assert_eq!(
        files_on_disk(dir),
        listed(dir),
        "{ctx}: segment files the manifest does not list"
    );
}

#[test]
fn failed_segment_creation_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let store = Store::open(&dir, options(&sim)).unwrap();
    fill(&store);
    let segments = store.stats().segments;
    assert!(segments >= 10, "{:?}", store.stats());
    assert_only_listed(&dir, "before");

    let full = ErrorKind::StorageFull;
    // Compaction's segment creation: sizing (`extend`) and reserving are
    // the first two allocations, the header the first write.
    let faults = [
        ("sizing", Fault::Allocate { nth: 0, kind: full }),
        ("reserving", Fault::Allocate { nth: 1, kind: full }),
        ("header", Fault::Write { nth: 0, kind: full }),
    ];
    for round in 0..2 {
        for (what, fault) in faults {
            let ctx = format!("round {round}, {what}");
            sim.clear_faults();
            sim.inject(fault);
            let err = store.compact().expect_err(&ctx);
            let chain = DisplayChain(&err).to_string();
            assert!(
                chain.contains("simulated"),
                "{ctx}: unexpected error {chain}"
            );
            assert_only_listed(&dir, &ctx);
            assert_eq!(store.stats().segments, segments, "{ctx}");
            check_keep(&store);
        }
    }
    sim.clear_faults();

    // Writes go on, and so does compaction once the disk has room.
    let mut b = WriteBatch::new();
    b.append(b"after", b"x");
    store.write(&b).unwrap();
    let report = store.compact().unwrap();
    assert!(report.runs > 0, "{report:?}");
    assert!(store.stats().segments < segments, "{:?}", store.stats());
    assert_only_listed(&dir, "after compaction");
    check_keep(&store);
    store.close().unwrap();

    let store = Store::open(&dir, options(&sim)).unwrap();
    check_keep(&store);
    assert_eq!(store.snapshot().journal(b"after").unwrap().len(), 1);
    store.close().unwrap();
}
