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
