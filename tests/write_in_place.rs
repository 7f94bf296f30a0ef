//! Which way a buffered write copies its record: in place (through the
//! file's writable mapping, `StorageFile::write_in_place`) or with
//! `write_at` (`pwrite`). `SimFs` counts the calls of the first.
//!
//! - A lone writer of short records copies them in place: a system call
//!   each would cost more than the page faults they share.
//! - A lone writer of 1 KiB records uses `write_at`: each page would take
//!   its faults for only four records.
//! - Writers of those records side by side copy them in place, so that
//!   they do not queue on the file's inode lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use journalstore::io::SimFs;
use journalstore::{Options, Store, SyncMode, WriteBatch};

fn open(sim: &SimFs, dir: &std::path::Path) -> Store {
    let options = Options {
        sync: SyncMode::Never,
        background_compaction: false,
        status_interval: None,
        fs: Arc::new(sim.clone()),
        ..Options::default()
    };
    Store::open(dir, options).unwrap()
}

/// Appends `n` entries of `len` bytes to journal `id`, one batch each,
/// without a sync; returns how many of the writes went in place.
fn append(store: &Store, sim: &SimFs, id: &[u8], len: usize, n: usize) -> u64 {
    let before = sim.writes_in_place();
    for _ in 0..n {
        let mut batch = WriteBatch::new();
        batch.append(id, &vec![7; len]);
        store.write(&batch).unwrap();
    }
    sim.writes_in_place() - before
}

#[test]
fn a_lone_writer_copies_short_records_in_place_and_longer_ones_with_write_at() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimFs::new();
    let store = open(&sim, tmp.path());
    // The first records set the moving average of record lengths.
    append(&store, &sim, b"long", 1024, 50);
    assert_eq!(append(&store, &sim, b"long", 1024, 500), 0);
    append(&store, &sim, b"short", 64, 50);
    assert_eq!(append(&store, &sim, b"short", 64, 500), 500);
    append(&store, &sim, b"long", 1024, 50);
    assert_eq!(append(&store, &sim, b"long", 1024, 500), 0);
}

#[test]
fn writers_side_by_side_copy_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimFs::new();
    let store = Arc::new(open(&sim, tmp.path()));
    append(&store, &sim, b"w0", 1024, 50);
    assert_eq!(append(&store, &sim, b"w0", 1024, 100), 0);
    // Each write waits a while before it is issued, so two writers' calls
    // overlap as soon as both run; they go on until one is seen in place.
    sim.set_write_latency(Duration::from_millis(1));
    let before = sim.writes_in_place();
    let seen = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(120);
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let (store, sim, seen) = (store.clone(), sim.clone(), seen.clone());
            std::thread::spawn(move || {
                let id = format!("w{t}").into_bytes();
                while !seen.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if append(&store, &sim, &id, 1024, 1) > 0 {
                        seen.store(true, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    assert!(
        sim.writes_in_place() > before,
        "no write went in place while two writers ran side by side"
    );
}
