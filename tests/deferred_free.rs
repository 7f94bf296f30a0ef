//! With background compaction, a write that leaves a segment with nothing
//! live does not free it under the writer's lock: the compaction thread
//! does, after a sync (without that lock) of the records that left it dead.
//! Those records must be durable before the manifest that forgets the
//! segment is: else a power loss keeps the manifest, loses them, and the
//! state they replaced is gone with the segment.
//!
//! Set-up: `SyncMode::Never`, small segments, the compaction timer and the
//! dead-bytes trigger out of the way, so that only the deferred free runs.
//! Segment 1 holds journal `a`'s metadata and a filler journal; a roll
//! seals it. Then, unsynced: the filler is deleted and `a`'s metadata
//! replaced, which leaves segment 1 dead. Once the thread has freed it (and
//! stored the manifest without it), the power goes. The reopened store must
//! hold `a`'s new metadata (the free made it durable), never no metadata at
//! all (segment 1 gone, its replacement lost).
//!
//! The wait is on a condition with a generous deadline; nothing asserts
//! elapsed time.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use journalstore::io::{CrashMode, SimFs};
use journalstore::{inspect, Options, Store, SyncMode, WriteBatch};

fn options(sim: &SimFs) -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: 64 << 10,
        background_compaction: true,
        compaction_interval: None,
        compaction_dead_bytes: Some(1 << 30),
        stall_space_amplification: None,
        index_checkpoint_bytes: None,
        status_interval: None,
        fs: Arc::new(sim.clone()),
        ..Options::default()
    }
}

fn write(store: &Store, fill: impl FnOnce(&mut WriteBatch)) {
    let mut b = WriteBatch::new();
    fill(&mut b);
    store.write(&b).unwrap();
}

fn metadata(dir: &Path, sim: &SimFs) -> Option<Vec<u8>> {
    let store = Store::open(dir, options(sim)).unwrap();
    let snap = store.snapshot();
    let journal = snap.journal(b"a")?;
    journal.metadata().unwrap().map(<[u8]>::to_vec)
}

#[test]
fn a_segment_freed_by_the_compaction_thread_keeps_what_killed_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sim = SimFs::new();
    let store = Store::open(dir, options(&sim)).unwrap();

    write(&store, |b| {
        b.set_metadata(b"a", b"old");
    });
    for _ in 0..10 {
        write(&store, |b| {
            b.append(b"filler", &[0x5a; 4096]);
        });
    }
    // Does not fit in segment 1: the roll seals it.
    write(&store, |b| {
        b.append(b"b", &[0x11; 40 << 10]);
    });
    assert_eq!(store.stats().segments, 2);

    // Not synced: everything segment 1 holds dies.
    write(&store, |b| {
        b.delete_journal(b"filler");
    });
    write(&store, |b| {
        b.set_metadata(b"a", b"new");
    });

    // Freed in memory, then in the manifest on disk (stored after the
    // writer's lock is released).
    let listed = |id: u32| {
        inspect::read_manifest(&inspect::manifest_path(dir))
            .unwrap()
            .segment(id)
            .is_some()
    };
    let start = Instant::now();
    while store.stats().segments != 1 || listed(1) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the compaction thread did not free the dead segment"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // The power goes: nothing more reaches the disk, unsynced writes are lost.
    sim.fail_after(0);
    drop(store);
    sim.crash(dir, CrashMode::DropUnsynced).unwrap();

    assert_eq!(metadata(dir, &sim).as_deref(), Some(&b"new"[..]));
}
