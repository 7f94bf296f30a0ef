//! Read-skew test: while writers append, reset (truncate), trim and delete
//! journals, each batch also setting the journal's metadata to a digest of
//! its new state, readers take snapshots and assert that metadata, bounds,
//! `len()` and the entries they iterate always describe the same moment.
//! Runs for 11 s of wall time in all (two sync modes).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{digest, random_reset, random_trim, Rng, Tracked};
use journalstore::{Journal, Options, Snapshot, Store, SyncMode, WriteBatch};

/// Checks one journal of a snapshot against its own metadata.
fn verify(j: &Journal<'_>) -> usize {
    let meta = std::str::from_utf8(j.metadata().unwrap().unwrap_or_default())
        .unwrap()
        .to_owned();
    let entries: Vec<Vec<u8>> = j.entries(..).map(|e| e.unwrap().1.to_vec()).collect();
    assert_eq!(entries.len() as u64, j.len());
    assert_eq!(j.len(), j.end_index() - j.first_index());
    assert_eq!(
        meta,
        digest(j.first_index(), &entries),
        "read skew in {:?}",
        j.id()
    );
    if let Some(last) = entries.last() {
        assert_eq!(j.entry(j.end_index() - 1).unwrap(), Some(&last[..]));
    }
    entries.len()
}

fn verify_all(snap: &Snapshot) -> usize {
    snap.journal_ids()
        .map(|id| verify(&snap.journal(id).unwrap()))
        .sum()
}

fn run(sync: SyncMode, seconds: f64) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(
            tmp.path(),
            Options {
                sync,
                segment_size: 256 << 10,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut handles = Vec::new();
    for w in 0..3u64 {
        let (store, writes) = (store.clone(), writes.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng::new(w);
            // Each writer owns 8 journals; the model is (first, entries).
            let mut journals: Vec<Option<Tracked>> = vec![None; 8];
            while Instant::now() < deadline {
                let k = rng.below(8) as usize;
                let id = format!("w{w}-j{k}").into_bytes();
                let mut batch = WriteBatch::new();
                let state = journals[k].get_or_insert_with(|| (0, Vec::new()));
                match rng.below(100) {
                    0..=69 => {
                        for _ in 0..1 + rng.below(4) {
                            let e = rng.bytes(200);
                            batch.append(&id, &e);
                            state.1.push(e);
                        }
                    }
                    70..=84 => random_reset(&mut rng, &mut batch, &id, state),
                    85..=94 => random_trim(&mut rng, &mut batch, &id, state),
                    _ => {
                        batch.delete_journal(&id);
                        journals[k] = None;
                        store.write(&batch).unwrap();
                        writes.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
                batch.set_metadata(&id, digest(state.0, &state.1).as_bytes());
                store.write(&batch).unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for r in 0..2u64 {
        let (store, stop, reads) = (store.clone(), stop.clone(), reads.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = Rng::new(100 + r);
            let mut held: Vec<Snapshot> = Vec::new();
            let mut last_lsn = 0;
            while !stop.load(Ordering::Relaxed) {
                let snap = store.snapshot();
                assert!(snap.lsn() >= last_lsn, "snapshots went back in time");
                last_lsn = snap.lsn();
                verify_all(&snap);
                reads.fetch_add(1, Ordering::Relaxed);
                if rng.chance(10) {
                    held.push(snap);
                }
                if held.len() > 8 {
                    // An old snapshot still shows one consistent moment.
                    let old = held.remove(rng.below(8) as usize);
                    verify_all(&old);
                }
            }
        }));
    }
    let writers: Vec<_> = handles.drain(..3).collect();
    for h in writers {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    eprintln!(
        "{sync:?}: {} batches written, {} snapshots verified",
        writes.load(Ordering::Relaxed),
        reads.load(Ordering::Relaxed)
    );
    assert!(
        writes.load(Ordering::Relaxed) > 100,
        "writers made no progress"
    );
    assert!(
        reads.load(Ordering::Relaxed) > 10,
        "readers made no progress"
    );
    let store = Arc::try_unwrap(store).unwrap();
    let before = verify_all(&store.snapshot());
    store.close().unwrap();
    let reopened = Store::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(verify_all(&reopened.snapshot()), before);
}

/// One test, so that the two phases run one after the other: 11 s of wall
/// time with group commit and then without sync.
#[test]
fn snapshots_never_mix_moments() {
    run(SyncMode::Always, 5.5);
    run(SyncMode::Never, 5.5);
}
