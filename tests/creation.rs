//! Creating a store is crash-safe too: a failure or a power loss during the
//! very first open never leaves a directory that later opens refuse.

use std::sync::Arc;

use journalstore::io::{CrashMode, Fault, SimFs};
use journalstore::{Options, Store, WriteBatch};

fn options(sim: &SimFs) -> Options {
    Options {
        fs: Arc::new(sim.clone()),
        segment_size: 1 << 20,
        ..Options::default()
    }
}

/// A full disk while preallocating the first segment fails the open with an
/// error; the next open creates the store and it works.
#[test]
fn failed_creation_leaves_an_openable_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    sim.inject(Fault::Allocate {
        nth: 0,
        kind: std::io::ErrorKind::StorageFull,
    });
    assert!(Store::open(&dir, options(&sim)).is_err());
    sim.clear_faults();
    let store = Store::open(&dir, options(&sim)).expect("reopen after a failed creation");
    let mut b = WriteBatch::new();
    b.append(b"j", b"e");
    store.write(&b).unwrap();
}

/// A power loss after the first segment exists but before the manifest names
/// it, keeping any prefix of the unsynced writes (a torn header included).
#[test]
fn power_loss_during_creation_leaves_an_openable_directory() {
    for cut in 0..4 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimFs::new();
        sim.inject(Fault::Rename {
            nth: 0,
            kind: std::io::ErrorKind::Other,
        });
        assert!(Store::open(&dir, options(&sim)).is_err());
        sim.clear_faults();
        sim.crash(
            &dir,
            CrashMode::KeepPrefix {
                writes: cut,
                torn_bytes: 7,
            },
        )
        .unwrap();
        let store = Store::open(&dir, options(&sim))
            .unwrap_or_else(|e| panic!("cut {cut}: reopen failed: {e}"));
        assert_eq!(store.snapshot().journal_count(), 0);
    }
}

/// With `create_if_missing` off, a path without a store is `NotFound` and
/// nothing is created there (no directory, no lock file); a store that
/// exists opens as usual.
#[test]
fn create_if_missing_off_refuses_a_path_without_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let no_create = || Options {
        create_if_missing: false,
        ..Options::default()
    };
    let missing = tmp.path().join("typo").join("store");
    match Store::open(&missing, no_create()) {
        Err(journalstore::Error::NotFound { path }) => assert_eq!(path, missing),
        other => panic!("missing directory: {other:?}"),
    }
    assert!(!tmp.path().join("typo").exists(), "nothing is created");

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        Store::open(&empty, no_create()),
        Err(journalstore::Error::NotFound { .. })
    ));
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "no lock file"
    );

    let dir = tmp.path().join("store");
    let store = Store::open(&dir, Options::default()).unwrap();
    let mut batch = WriteBatch::new();
    batch.append(b"j", b"kept");
    store.write(&batch).unwrap();
    store.close().unwrap();
    let store = Store::open(&dir, no_create()).unwrap();
    assert_eq!(store.snapshot().journal(b"j").map(|j| j.len()), Some(1));
    store.close().unwrap();
}

/// A journalstore error converts into an `io::Error` whose kind says what
/// happened and which keeps the original error.
#[test]
fn errors_convert_into_io_errors_keeping_the_original() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("none");
    let no_create = Options {
        create_if_missing: false,
        ..Options::default()
    };
    let e: std::io::Error = Store::open(&missing, no_create).unwrap_err().into();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    let inner = e.get_ref().unwrap().downcast_ref::<journalstore::Error>();
    assert!(matches!(inner, Some(journalstore::Error::NotFound { .. })));

    let store = Store::open(tmp.path().join("store"), Options::default()).unwrap();
    let mut batch = WriteBatch::new();
    batch.append_at(b"j", 5, b"gap");
    let e: std::io::Error = store.write(&batch).unwrap_err().into();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    store.close().unwrap();
}
