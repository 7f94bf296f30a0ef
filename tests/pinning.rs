//! Pinning: a snapshot keeps the segment files it can reach.
//!
//! When a delete, trim or truncate leaves whole segments with nothing live,
//! the next manifest generation drops them, but a snapshot taken before still
//! reads every entry it saw: the segments' files stay on disk (and mapped)
//! until the last snapshot that can reach them is dropped, and go then.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{random_batch, to_batch, Model, Op, Rng};
use journalstore::{Options, Store, SyncMode};

const SEGMENT_SIZE: u64 = 8 << 10;

/// Background compaction is off: it pins the version it copies from for a
/// moment, which would keep freed files on disk past the points where these
/// tests look (compaction under pins is tested in `compaction.rs`).
fn options() -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: SEGMENT_SIZE,
        background_compaction: false,
        ..Options::default()
    }
}

/// Names of the segment files in `dir`.
fn segment_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".jseg"))
        .collect()
}

/// Names of the segment files the current generation lists (`MANIFEST`'s,
/// or `MANIFEST.next`'s while a roll's seal is pending).
fn listed_segments(dir: &Path) -> BTreeSet<String> {
    common::listed(dir)
        .into_iter()
        .map(|id| format!("seg-{id:08x}.jseg"))
        .collect()
}

/// A distinct, recognisable 1000-byte entry.
fn big_entry(i: u64) -> Vec<u8> {
    let mut rng = Rng::new(1000 + i);
    (0..1000).map(|_| rng.next_u64() as u8).collect()
}

/// A store, its model, and a helper to write through both.
struct Harness {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    store: Store,
    model: Model,
}

impl Harness {
    fn new() -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let store = Store::open(&dir, options()).unwrap();
        Harness {
            _tmp: tmp,
            dir,
            store,
            model: Model::default(),
        }
    }

    fn write(&mut self, ops: Vec<Op>) {
        self.store
            .write(&to_batch(&ops))
            .unwrap_or_else(|e| panic!("{e}"));
        self.model.apply(&ops).unwrap();
    }

    /// Journal "big" over several full segments (metadata set first, then
    /// replaced after the entries, so its first value dies too), then
    /// journal "small" in the active segment.
    fn fill(&mut self) {
        self.write(vec![Op::SetMetadata(b"big".to_vec(), b"meta v1".to_vec())]);
        for i in 0..40 {
            self.write(vec![Op::Append(b"big".to_vec(), None, big_entry(i))]);
        }
        self.write(vec![Op::SetMetadata(b"big".to_vec(), b"meta v2".to_vec())]);
        for i in 0..3u8 {
            self.write(vec![
                Op::Append(b"small".to_vec(), None, vec![i; 50]),
                Op::SetMetadata(b"small".to_vec(), vec![b's', i]),
            ]);
        }
        let segments = self.store.stats().segments;
        assert!(segments >= 5, "only {segments} segments");
        assert_eq!(segment_files(&self.dir), listed_segments(&self.dir));
    }
}

/// Frees the segments of journal "big" with `free` while a snapshot is held:
/// the generation drops them, their files stay while the snapshot or a clone
/// of it lives, it reads every old entry and the metadata, the pin count
/// follows the snapshots, and the files go when the last clone drops.
fn pinned_free(free: Op, big_after: Option<(u64, u64)>) {
    let mut h = Harness::new();
    h.fill();
    let before = h.store.stats();
    let files_before = segment_files(&h.dir);
    let model_before = h.model.clone();
    assert_eq!(before.pinned_snapshots, 0);

    let old = h.store.snapshot();
    assert_eq!(h.store.stats().pinned_snapshots, 1);
    h.write(vec![free.clone()]);

    // The current generation no longer lists the freed segments...
    let after = h.store.stats();
    assert!(
        after.generation > old.generation(),
        "{free:?}: no new generation"
    );
    let listed = listed_segments(&h.dir);
    assert_eq!(listed.len(), after.segments);
    assert!(
        after.segments + 3 <= before.segments,
        "{free:?}: {} -> {} segments",
        before.segments,
        after.segments
    );
    let freed: BTreeSet<String> = files_before.difference(&listed).cloned().collect();
    assert_eq!(freed.len(), before.segments - after.segments);
    // ...but their files are still there, and the old snapshot reads them.
    assert_eq!(
        segment_files(&h.dir),
        files_before,
        "{free:?}: pinned files removed"
    );
    model_before.assert_matches(&old, "old snapshot after the free");
    h.model
        .assert_matches(&h.store.snapshot(), "current state after the free");
    let big = h
        .store
        .snapshot()
        .journal(b"big")
        .map(|j| (j.first_index(), j.end_index()));
    assert_eq!(big, big_after, "{free:?}");
    assert_eq!(
        h.store.stats().pinned_snapshots,
        1,
        "temporary snapshots dropped"
    );

    // A clone keeps the files after the original drops.
    let clone = old.clone();
    assert_eq!(h.store.stats().pinned_snapshots, 2);
    drop(old);
    assert_eq!(h.store.stats().pinned_snapshots, 1);
    assert_eq!(
        segment_files(&h.dir),
        files_before,
        "{free:?}: clone does not pin"
    );
    model_before.assert_matches(&clone, "clone after the original dropped");
    let j = clone.journal(b"big").unwrap();
    for i in 0..40 {
        assert_eq!(j.entry(i).unwrap(), Some(&big_entry(i)[..]), "entry {i}");
    }
    assert_eq!(j.metadata().unwrap(), Some(&b"meta v2"[..]));

    drop(clone);
    assert_eq!(h.store.stats().pinned_snapshots, 0);
    assert_eq!(
        segment_files(&h.dir),
        listed,
        "{free:?}: freed files left behind"
    );
    assert!(freed.is_disjoint(&segment_files(&h.dir)));

    // The freed segments are not needed: a reopen shows the same state.
    let Harness {
        _tmp,
        dir,
        store,
        model,
    } = h;
    store.close().unwrap();
    let store = Store::open(&dir, options()).unwrap();
    model.assert_matches(&store.snapshot(), "after reopen");
}

/// Deleting a journal that fills several segments frees them; a snapshot
/// taken before the delete keeps them readable until it (and its clones)
/// drop. See `pinned_free`.
#[test]
fn snapshot_pins_segments_freed_by_delete() {
    pinned_free(Op::Delete(b"big".to_vec()), None);
}

/// Trimming the prefix of a journal that fills several segments frees them;
/// a snapshot taken before the trim keeps them readable until it (and its
/// clones) drop. See `pinned_free`.
#[test]
fn snapshot_pins_segments_freed_by_trim_prefix() {
    pinned_free(Op::Trim(b"big".to_vec(), 38), Some((38, 40)));
}

/// A snapshot held across hundreds of random batches, with segment rolls and
/// frees all the time, still reads exactly what it saw (bounds, metadata,
/// every entry), at its own LSN and generation; the segments it pins stay
/// until it drops, segments created and freed after it are not kept, and
/// when it drops only the listed segments remain.
#[test]
fn snapshot_survives_churn() {
    let mut h = Harness::new();
    // Journals that fill the first segments, then die during the churn.
    for i in 0..20 {
        let id = format!("old{}", i % 4).into_bytes();
        h.write(vec![
            Op::Append(id.clone(), None, big_entry(i)),
            Op::SetMetadata(id, format!("old meta {i}").into_bytes()),
        ]);
    }
    let held = h.store.snapshot();
    let held_model = h.model.clone();
    let (held_lsn, held_gen) = (held.lsn(), held.generation());
    let held_files = segment_files(&h.dir);
    assert!(held_files.len() >= 3, "{held_files:?}");

    let mut rng = Rng::new(42);
    let mut created = BTreeSet::new();
    for step in 0..600 {
        if step == 300 {
            // Kill everything the held snapshot shows.
            let ops = (0..4).map(|i| Op::Delete(format!("old{i}").into_bytes()));
            h.write(ops.collect());
        }
        let ops = random_batch(&mut rng, &h.model, 6, 700);
        if h.model.clone().apply(&ops).is_ok() {
            h.write(ops);
        } else {
            assert!(
                h.store.write(&to_batch(&ops)).is_err(),
                "step {step}: {ops:?}"
            );
        }
        created.extend(segment_files(&h.dir));
        if step % 100 == 0 {
            held_model.assert_matches(&held, &format!("held snapshot at step {step}"));
        }
    }
    let stats = h.store.stats();
    assert!(
        stats.generation > held_gen + 50,
        "only {} generations of churn",
        stats.generation - held_gen
    );
    assert_eq!((held.lsn(), held.generation()), (held_lsn, held_gen));
    held_model.assert_matches(&held, "held snapshot after the churn");
    h.model
        .assert_matches(&h.store.snapshot(), "current state after the churn");

    // Every segment the snapshot pins is still there; of the segments
    // created after it, only the listed ones are.
    let listed = listed_segments(&h.dir);
    let on_disk = segment_files(&h.dir);
    assert!(held_files.is_subset(&on_disk), "pinned segment removed");
    assert!(
        !held_files.is_subset(&listed),
        "the churn freed none of the held snapshot's segments"
    );
    let later: BTreeSet<String> = on_disk.difference(&held_files).cloned().collect();
    assert!(
        later.is_subset(&listed),
        "unpinned freed segments kept: {later:?}"
    );
    assert!(created.len() > on_disk.len() + 10, "too few segments freed");

    drop(held);
    assert_eq!(h.store.stats().pinned_snapshots, 0);
    assert_eq!(segment_files(&h.dir), listed_segments(&h.dir));
}

/// With a snapshot of the old store still alive, the store can be closed
/// and reopened: the reopen removes the freed segments' files (orphans to
/// it), the old snapshot stays readable from its mappings, the new store
/// works, and dropping the old snapshot later removes nothing the new store
/// lists (segment ids are never reused).
#[test]
fn reopen_while_an_old_snapshot_is_alive() {
    let mut h = Harness::new();
    h.fill();
    let model_before = h.model.clone();
    let old = h.store.snapshot();
    h.write(vec![Op::Delete(b"big".to_vec())]);
    let files_before = segment_files(&h.dir);
    let listed = listed_segments(&h.dir);
    assert!(files_before.len() > listed.len(), "nothing pinned");

    let Harness {
        _tmp,
        dir,
        store,
        mut model,
    } = h;
    store.close().unwrap();
    model_before.assert_matches(&old, "old snapshot after close");
    assert_eq!(
        segment_files(&dir),
        files_before,
        "close removed pinned files"
    );

    let store = Store::open(&dir, options()).unwrap();
    // The files only the old snapshot pinned are orphans to the new store.
    let orphans: BTreeSet<String> = files_before.difference(&listed).cloned().collect();
    assert!(
        orphans.is_disjoint(&segment_files(&dir)),
        "reopen kept orphans"
    );
    assert_eq!(segment_files(&dir), listed_segments(&dir));
    assert_eq!(
        store.stats().pinned_snapshots,
        0,
        "old snapshot counted by new store"
    );
    model_before.assert_matches(&old, "old snapshot after reopen");
    model.assert_matches(&store.snapshot(), "new store after reopen");

    // Roll and free several segments in the new store.
    for i in 0..30 {
        let ops = vec![
            Op::Append(b"new".to_vec(), None, big_entry(100 + i)),
            Op::Trim(b"new".to_vec(), i.saturating_sub(2)),
        ];
        store.write(&to_batch(&ops)).unwrap();
        model.apply(&ops).unwrap();
    }
    model_before.assert_matches(&old, "old snapshot after new writes");
    drop(old);
    assert_eq!(segment_files(&dir), listed_segments(&dir));
    model.assert_matches(
        &store.snapshot(),
        "new store after the old snapshot dropped",
    );
    store.close().unwrap();
    let store = Store::open(&dir, options()).unwrap();
    model.assert_matches(&store.snapshot(), "second reopen");
}

/// Threads taking, cloning and dropping snapshots at once while another
/// reads the stats: every snapshot is counted while it lives (a thread
/// holding `HELD` snapshots sees at least those) and none after it is
/// dropped (the count returns to exactly zero).
#[test]
fn concurrent_snapshots_are_counted_while_alive_and_released() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 2_000;
    const HELD: usize = 3;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), options()).unwrap();
    let mut batch = journalstore::WriteBatch::new();
    batch.append(b"j", b"entry");
    store.write(&batch).unwrap();
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for _ in 0..ROUNDS {
                    let held: Vec<_> = (0..HELD).map(|_| store.snapshot()).collect();
                    let clone = held[0].clone();
                    assert!(store.stats().pinned_snapshots > HELD);
                    assert_eq!(clone.journal(b"j").unwrap().len(), 1);
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        s.spawn(|| {
            while done.load(std::sync::atomic::Ordering::SeqCst) < THREADS {
                let stats = store.stats();
                assert!(stats.pinned_snapshots <= THREADS * (HELD + 1));
            }
        });
    });
    let stats = store.stats();
    assert_eq!(stats.pinned_snapshots, 0, "{stats:?}");
    assert_eq!(stats.oldest_pinned_age, None);
}

/// A thread that took a snapshot and dropped it keeps nothing once the
/// generation changes: its thread's pin of the version it read (kept idle
/// for its next snapshot) is released by the free, so the freed files go at
/// once, with no further snapshot on that thread or any other.
#[test]
fn a_reader_thread_gone_idle_keeps_no_freed_segment() {
    let mut h = Harness::new();
    h.fill();
    let files_before = segment_files(&h.dir);
    let store = &h.store;
    std::thread::scope(|s| {
        s.spawn(|| {
            let snapshot = store.snapshot();
            assert_eq!(snapshot.journal(b"big").unwrap().len(), 40);
        });
    });
    assert_eq!(store.stats().pinned_snapshots, 0);
    h.write(vec![Op::Delete(b"big".to_vec())]);
    let listed = listed_segments(&h.dir);
    assert!(listed.len() + 3 <= files_before.len(), "{listed:?}");
    assert_eq!(
        segment_files(&h.dir),
        listed,
        "freed files kept by an idle reader thread"
    );
}
