//! Compaction: what it must preserve and what it must give back.
//!
//! - A snapshot held across many compactions reads exactly what it saw; the
//!   segments only it pins are reported (`pinned_only_bytes`) and their
//!   files go when it drops.
//! - Recovery after compactions gives exactly the model, and a deleted
//!   journal whose records were compacted never comes back.
//! - A run of segments holding only tombstones compacts (its copy is larger
//!   than one segment, which must not fail every pass).
//! - A rate limit paces the copy without changing the result; the longest
//!   pause of the writer's lock is reported.
//! - Compaction runs alongside writer and reader threads.
//! - A power loss at any step of a compaction loses and resurrects nothing.
//! - Deletes that kill nothing do not pile up.
//! - A compacted segment holds each journal's operations next to each
//!   other, with LSNs still increasing, and replays to the same state.
//!
//! Compaction is driven by `Store::compact` with the background thread off,
//! so every test decides when it happens (except the concurrency test,
//! which also runs the background thread).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    digest, files_on_disk, fill_three_journals_and_delete_gone, listed, random_batch, to_batch,
    Model, Op, Rng,
};
use journalstore::inspect;
use journalstore::io::SimFs;
use journalstore::{CompactionReport, Options, Snapshot, Store, SyncMode, WriteBatch};

const SEGMENT: u64 = 8 << 10;

fn options() -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: SEGMENT,
        background_compaction: false,
        ..Options::default()
    }
}

/// Writes one random batch through the store and the model; they must
/// agree on whether it is valid.
fn random_step(store: &Store, model: &mut Model, rng: &mut Rng, journals: u64, ctx: &str) {
    let ops = random_batch(rng, model, journals, 300);
    let expect_ok = model.clone().apply(&ops).is_ok();
    let result = store.write(&to_batch(&ops));
    match (expect_ok, &result) {
        (true, Ok(_)) => model.apply(&ops).unwrap(),
        (false, Err(_)) => {}
        _ => panic!("{ctx}: model says ok={expect_ok}, store says {result:?} for {ops:?}"),
    }
}

fn add(total: &mut CompactionReport, r: &CompactionReport) {
    total.runs += r.runs;
    total.segments_rewritten += r.segments_rewritten;
    total.segments_written += r.segments_written;
    total.bytes_copied += r.bytes_copied;
    total.bytes_released += r.bytes_released;
    total.max_pause = total.max_pause.max(r.max_pause);
}

/// Guards: a snapshot held across many compactions (its segments rewritten
/// and freed under it) still reads all its data byte-exactly; while it is
/// held, `pinned_only_bytes` reports the files only it keeps, and once it
/// drops that figure is 0 and the files on disk are exactly the listed ones.
#[test]
fn held_snapshot_reads_everything_across_compactions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut rng = Rng::new(7);
    let mut model = Model::default();
    for step in 0..400 {
        random_step(&store, &mut model, &mut rng, 16, &format!("fill {step}"));
    }
    let held = store.snapshot();
    let held_model = model.clone();
    let held_generation = held.generation();
    let mut total = CompactionReport::default();
    for round in 0..30 {
        for step in 0..60 {
            let ctx = format!("round {round} step {step}");
            random_step(&store, &mut model, &mut rng, 16, &ctx);
        }
        add(&mut total, &store.compact().unwrap());
        let ctx = format!("round {round}");
        held_model.assert_matches(&held, &format!("{ctx} (held snapshot)"));
        model.assert_matches(&store.snapshot(), &ctx);
    }
    assert!(total.runs >= 10, "too few compactions: {total:?}");

    let stats = store.stats();
    assert_eq!(stats.pinned_snapshots, 1);
    assert_eq!(stats.oldest_pinned_generation, Some(held_generation));
    assert!(stats.oldest_pinned_age.is_some());
    assert!(
        stats.pinned_only_bytes > 0,
        "the held snapshot pins no replaced segment: {stats:?}"
    );
    // Files of replaced segments stay on disk while the snapshot needs them.
    let on_disk = files_on_disk(&dir);
    assert!(on_disk.is_superset(&listed(&dir)));
    assert!(
        on_disk.len() > stats.segments,
        "nothing is kept for the snapshot"
    );
    held_model.assert_matches(&held, "before drop");

    drop(held);
    let stats = store.stats();
    assert_eq!(stats.pinned_snapshots, 0);
    assert_eq!(stats.pinned_only_bytes, 0);
    assert_eq!(stats.oldest_pinned_generation, None);
    assert_eq!(files_on_disk(&dir), listed(&dir), "files left after drop");
    assert_eq!(files_on_disk(&dir).len(), stats.segments);
    model.assert_matches(&store.snapshot(), "after drop");
}

/// Guards: recovery after compactions (in every position: runs at the
/// oldest segment dropping tombstones, runs in the middle keeping them)
/// replays exactly the model, with the same live-byte figure, and leaves no
/// stray file; journals are deleted and recreated often, so a deleted
/// journal whose records were compacted would show up as resurrected.
#[test]
fn reopen_after_compactions_equals_the_model() {
    for seed in 0..2u64 {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let mut store = Store::open(&dir, options()).unwrap();
        let mut rng = Rng::new(100 + seed);
        let mut model = Model::default();
        let mut total = CompactionReport::default();
        for step in 0..1000 {
            let ctx = format!("seed {seed} step {step}");
            // Few journals: each is deleted and recreated many times.
            random_step(&store, &mut model, &mut rng, 6, &ctx);
            if rng.chance(10) {
                add(&mut total, &store.compact().unwrap());
            }
            if rng.chance(2) {
                let live = store.stats().live_bytes;
                drop(store);
                store = Store::open(&dir, options()).unwrap();
                model.assert_matches(&store.snapshot(), &format!("{ctx} (reopen)"));
                assert_eq!(store.stats().live_bytes, live, "{ctx}: live bytes");
                assert_eq!(files_on_disk(&dir), listed(&dir), "{ctx}: stray files");
            }
        }
        assert!(
            total.runs > 20,
            "seed {seed}: too few compactions: {total:?}"
        );
        store.compact().unwrap();
        store.close().unwrap();
        let store = Store::open(&dir, options()).unwrap();
        model.assert_matches(&store.snapshot(), &format!("seed {seed} final"));
    }
}

/// `n` distinct 400-byte entries tagged with `tag`.
fn entries(tag: u8, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut e = vec![tag; 400];
            e[..8].copy_from_slice(&(i as u64).to_le_bytes());
            e
        })
        .collect()
}

/// Guards: delete → compact → reopen leaves the journal absent, in the
/// order that tempts resurrection: the journal's entries and two metadata
/// values (the first killed by the second, in a later segment) are spread
/// over segments that compaction rewrites, the delete sits in a third
/// segment that is itself compacted, and a long-lived journal keeps the
/// oldest segment from being dropped whole.
#[test]
fn deleted_journal_whose_records_were_compacted_stays_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut model = Model::default();
    let mut write = |ops: Vec<Op>| {
        store.write(&to_batch(&ops)).unwrap();
        model.apply(&ops).unwrap();
    };
    let (keep, gone, fill) = (b"keep".to_vec(), b"gone".to_vec(), b"fill".to_vec());
    for (k, e) in entries(b'k', 4).into_iter().enumerate() {
        write(vec![Op::Append(keep.clone(), None, e)]);
        write(vec![Op::Append(
            gone.clone(),
            None,
            entries(b'g', 4)[k].clone(),
        )]);
    }
    write(vec![Op::SetMetadata(gone.clone(), b"first".to_vec())]);
    for e in entries(b'f', 30) {
        write(vec![Op::Append(fill.clone(), None, e)]);
    }
    write(vec![Op::SetMetadata(gone.clone(), b"second".to_vec())]);
    for e in entries(b'F', 30) {
        write(vec![Op::Append(fill.clone(), None, e)]);
    }
    write(vec![Op::Delete(gone.clone())]);
    for e in entries(b'x', 30) {
        write(vec![Op::Append(fill.clone(), None, e)]);
    }
    // Most of the filler dies: the segments around the delete are now
    // mostly dead and get rewritten, the delete among them.
    write(vec![Op::Truncate(fill.clone(), 3)]);
    for e in entries(b'y', 30) {
        write(vec![Op::Append(keep.clone(), None, e)]);
    }
    let report = store.compact().unwrap();
    assert!(report.runs > 0, "nothing was compacted: {report:?}");
    assert!(store.snapshot().journal(&gone).is_none());
    model.assert_matches(&store.snapshot(), "after compaction");
    drop(store);

    let store = Store::open(&dir, options()).unwrap();
    assert!(
        store.snapshot().journal(&gone).is_none(),
        "the deleted journal came back"
    );
    model.assert_matches(&store.snapshot(), "after reopen");
    // Compact again from the recovered state (tombstones may now be at the
    // oldest segment and go), and reopen once more.
    store.compact().unwrap();
    drop(store);
    let store = Store::open(&dir, options()).unwrap();
    model.assert_matches(&store.snapshot(), "after second compaction and reopen");
    assert_eq!(files_on_disk(&dir), listed(&dir));
}

/// Guards: with `compaction_rate_limit`, compaction still copies and
/// switches over correctly (bytes copied, model equal before and after a
/// reopen), it is paced (the copy sleeps until `bytes / rate` has elapsed
/// since each run started, so the whole call lasts at least the total
/// bytes over the rate: a lower bound sleeping guarantees, not a race), and
/// `max_pause` is reported and no longer than the call.
#[test]
fn rate_limited_compaction_is_paced_and_correct() {
    const RATE: u64 = 256 << 10;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let limited = || Options {
        compaction_rate_limit: Some(RATE),
        ..options()
    };
    let store = Store::open(&dir, limited()).unwrap();
    let mut rng = Rng::new(3);
    let mut model = Model::default();
    for step in 0..800 {
        random_step(&store, &mut model, &mut rng, 12, &format!("step {step}"));
    }
    let started = Instant::now();
    let report = store.compact().unwrap();
    let elapsed = started.elapsed();
    assert!(report.runs > 0 && report.bytes_copied > 0, "{report:?}");
    assert!(report.bytes_released > 0, "{report:?}");
    assert!(
        report.segments_written <= report.segments_rewritten,
        "{report:?}"
    );
    let paced = Duration::from_secs_f64(report.bytes_copied as f64 / RATE as f64);
    assert!(
        elapsed >= paced,
        "{} bytes copied at {RATE} B/s in {elapsed:?}",
        report.bytes_copied
    );
    assert!(report.max_pause > Duration::ZERO, "{report:?}");
    assert!(report.max_pause <= elapsed, "{report:?} in {elapsed:?}");
    model.assert_matches(&store.snapshot(), "after compaction");
    store.close().unwrap();
    let store = Store::open(&dir, limited()).unwrap();
    model.assert_matches(&store.snapshot(), "after reopen");
    // Nothing is left to do right after a full pass.
    let again = store.compact().unwrap();
    assert_eq!(again.runs, 0, "{again:?}");
}

/// Checks every journal of `snap` against the digest in its metadata.
fn verify_snapshot(snap: &Snapshot) {
    for id in snap.journal_ids() {
        let j = snap.journal(id).unwrap();
        let entries: Vec<Vec<u8>> = j.entries(..).map(|e| e.unwrap().1.to_vec()).collect();
        assert_eq!(
            j.metadata().unwrap(),
            Some(digest(j.first_index(), &entries).as_bytes()),
            "read skew in {id:?}"
        );
    }
}

type Journals = BTreeMap<Vec<u8>, (u64, Vec<Vec<u8>>)>;

/// Guards: compaction (explicit calls in a loop, plus the background
/// thread) runs alongside writer and reader threads without errors; readers
/// always see consistent journals; at the end, and after a reopen, the store
/// holds exactly what the writers wrote.
#[test]
fn compaction_runs_alongside_writers_and_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let opts = || Options {
        background_compaction: true,
        ..options()
    };
    let store = Arc::new(Store::open(&dir, opts()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(4);
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut rng = Rng::new(w);
                let mut journals = Journals::new();
                while Instant::now() < deadline {
                    let id = format!("w{w}-j{}", rng.below(10)).into_bytes();
                    let mut batch = WriteBatch::new();
                    if rng.chance(8) {
                        batch.delete_journal(&id);
                        journals.remove(&id);
                        store.write(&batch).unwrap();
                        continue;
                    }
                    let (first, list) = journals.entry(id.clone()).or_default();
                    match rng.below(100) {
                        0..=64 => {
                            for _ in 0..1 + rng.below(3) {
                                let e = rng.bytes(400);
                                batch.append(&id, &e);
                                list.push(e);
                            }
                        }
                        65..=84 => {
                            let keep = rng.below(list.len() as u64 + 1) as usize;
                            batch.truncate(&id, *first + keep as u64);
                            list.truncate(keep);
                        }
                        _ => {
                            let n = rng.below(list.len() as u64 + 1) as usize;
                            batch.trim_prefix(&id, *first + n as u64);
                            list.drain(..n);
                            *first += n as u64;
                        }
                    }
                    batch.set_metadata(&id, digest(*first, list).as_bytes());
                    store.write(&batch).unwrap();
                }
                journals
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut old: Option<Snapshot> = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let snap = store.snapshot();
                    verify_snapshot(&snap);
                    if let Some(old) = old.replace(snap) {
                        // A snapshot kept across compactions still verifies.
                        verify_snapshot(&old);
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    let compactor = {
        let (store, stop, runs) = (store.clone(), stop.clone(), runs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = store.compact().unwrap();
                runs.fetch_add(r.runs, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut expected = Journals::new();
    for h in writers {
        expected.extend(h.join().unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    compactor.join().unwrap();
    let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(reads > 10, "readers made no progress");
    assert!(runs.load(Ordering::Relaxed) > 0, "nothing was compacted");

    let check = |snap: &Snapshot, ctx: &str| {
        let ids: Vec<Vec<u8>> = snap.journal_ids().map(|i| i.to_vec()).collect();
        assert_eq!(ids, expected.keys().cloned().collect::<Vec<_>>(), "{ctx}");
        for (id, (first, list)) in &expected {
            let j = snap.journal(id).unwrap();
            assert_eq!(j.first_index(), *first, "{ctx}: {id:?}");
            let got: Vec<Vec<u8>> = j.entries(..).map(|e| e.unwrap().1.to_vec()).collect();
            assert_eq!(&got, list, "{ctx}: entries of {id:?}");
        }
    };
    check(&store.snapshot(), "at the end");
    let store = Arc::try_unwrap(store).unwrap();
    store.close().unwrap();
    let store = Store::open(&dir, opts()).unwrap();
    check(&store.snapshot(), "after reopen");
}

/// Guards: a run of segments holding only tombstones (deletes of journals
/// whose entries sit in older, mostly live segments) compacts. The planner
/// budgets a run by its live bytes, which are 0 here, while compaction must
/// keep the tombstones (the run does not start at the oldest segment); the
/// copy of eight such segments is far larger than one segment. Planning by
/// live bytes alone would fail every `compact()` (and every background
/// pass) with "compaction output does not fit in one segment", forever,
/// since the same run is chosen first each time.
#[test]
fn run_of_tombstone_only_segments_compacts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut model = Model::default();
    let mut write = |ops: Vec<Op>| {
        store.write(&to_batch(&ops)).unwrap();
        model.apply(&ops).unwrap();
    };
    // Long ids make big tombstones; each short journal shares its record
    // with a 1000-byte entry of a journal that stays, so the older segments
    // stay mostly live and the deletes below must be kept.
    let long_id = |k: u32| {
        let mut id = format!("{k:08}").into_bytes();
        id.resize(255, b'.');
        id
    };
    for (k, e) in entries(b'k', 200).into_iter().enumerate() {
        let mut e = e;
        e.resize(1000, b'k');
        write(vec![
            Op::Append(long_id(k as u32), None, b"x".to_vec()),
            Op::Append(b"keep".to_vec(), None, e),
        ]);
    }
    for k in 0..200 {
        write(vec![Op::Delete(long_id(k))]);
    }
    write(vec![Op::Append(b"keep".to_vec(), None, b"last".to_vec())]);
    let report = store.compact().unwrap();
    assert!(report.runs > 0, "{report:?}");
    model.assert_matches(&store.snapshot(), "after compaction");
    drop(store);
    let store = Store::open(&dir, options()).unwrap();
    model.assert_matches(&store.snapshot(), "after reopen");
}

/// Counts the deletes on disk that kill nothing: no older operation of
/// their journal is on disk any more (in manifest order, i.e. replay order).
fn useless_deletes(dir: &Path) -> usize {
    let manifest = inspect::read_manifest(&inspect::manifest_path(dir)).unwrap();
    let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut useless = 0;
    for seg in &manifest.segments {
        let file = inspect::SegmentFile::read(&dir.join(&seg.file_name)).unwrap();
        for item in file.scan(64, seg.sealed_len, false) {
            if let inspect::ScanItem::Record { ops, .. } = item {
                for op in ops {
                    if op.kind == "delete_journal" && !seen.contains(&op.journal) {
                        useless += 1;
                    }
                    seen.insert(op.journal);
                }
            }
        }
    }
    useless
}

/// Guards: deletes that kill nothing any more do not pile up on disk while
/// data that never dies sits in the oldest segments. Each cycle creates 20
/// journals, each first written in the same record as an entry of an
/// append-only journal that is never trimmed, then deletes them and
/// compacts: the short journals' records are dropped from the rewritten
/// segments, after which their deletes kill nothing.
///
/// (Compaction keeps a trim, truncate or delete only while a segment older
/// than its run holds a record of its journal; see `SegmentUsage::journals`.)
#[test]
fn useless_tombstones_do_not_pile_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut model = Model::default();
    let mut after_warm_up = 0;
    for cycle in 0..60u32 {
        for k in 0..20u32 {
            let id = format!("c{cycle}-{k}").into_bytes();
            let ops = vec![
                Op::Append(b"audit".to_vec(), None, vec![b'a'; 300]),
                Op::Append(id, None, vec![b'x'; 400]),
            ];
            store.write(&to_batch(&ops)).unwrap();
            model.apply(&ops).unwrap();
        }
        for k in 0..20u32 {
            let ops = vec![Op::Delete(format!("c{cycle}-{k}").into_bytes())];
            store.write(&to_batch(&ops)).unwrap();
            model.apply(&ops).unwrap();
        }
        store.compact().unwrap();
        if cycle == 9 {
            after_warm_up = useless_deletes(&dir);
        }
    }
    model.assert_matches(&store.snapshot(), "after the cycles");
    let end = useless_deletes(&dir);
    assert!(
        end <= after_warm_up + 40,
        "deletes that kill nothing: {after_warm_up} after cycle 10, {end} after cycle 60; {:?}",
        store.stats()
    );
}

/// Copies the regular files of `from` into the new directory `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Every segment file on disk is listed by the manifest, and no
/// `MANIFEST.tmp` is left.
fn assert_no_orphans(dir: &Path, ctx: &str) {
    assert_eq!(
        files_on_disk(dir),
        listed(dir),
        "{ctx}: orphan segment files"
    );
    assert!(
        !dir.join(inspect::MANIFEST_TMP_FILE_NAME).exists(),
        "{ctx}: MANIFEST.tmp left"
    );
}

/// Guards: a power loss at any step of a compaction loses nothing and
/// resurrects nothing. A store with several runs to compact (deleted,
/// truncated and trimmed journals among them) is copied afresh for every
/// step `n`; `compact()` runs with the machine dying after `n` more I/O
/// operations; the directory is crashed (unsynced data dropped, or a prefix
/// of it kept with a torn write) and reopened: the state is exactly the
/// model, and no orphan file or `MANIFEST.tmp` is left after the reopen.
#[test]
fn power_loss_at_every_step_of_a_compaction() {
    power_loss_at_every_step(false);
}

/// The same with background compaction on, where a compaction's switch and
/// the frees after it leave their manifest swap to be stored after the
/// writer's lock is released. The thread is kept from running on its own
/// (no timer, no dead-bytes trigger within reach, no write stall), so
/// that `compact()` does the work.
#[test]
fn power_loss_at_every_step_of_a_compaction_with_deferred_swaps() {
    power_loss_at_every_step(true);
}

fn power_loss_at_every_step(background: bool) {
    use journalstore::io::{CrashMode, SimFs};
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let sim_options = |sim: &SimFs| Options {
        sync: SyncMode::Always,
        fs: Arc::new(sim.clone()),
        background_compaction: background,
        compaction_interval: None,
        compaction_dead_bytes: Some(1 << 40),
        stall_space_amplification: None,
        ..options()
    };
    let mut model = Model::default();
    {
        let store = Store::open(
            &base,
            Options {
                sync: SyncMode::Always,
                ..options()
            },
        )
        .unwrap();
        let mut rng = Rng::new(11);
        for step in 0..250 {
            random_step(&store, &mut model, &mut rng, 8, &format!("fill {step}"));
            if step % 3 == 0 {
                // A journal that never dies keeps most segments from being
                // freed whole: they are compacted instead.
                let ops = vec![Op::Append(b"keep".to_vec(), None, vec![step as u8; 120])];
                store.write(&to_batch(&ops)).unwrap();
                model.apply(&ops).unwrap();
            }
        }
        // Deleted journals whose records are spread over the segments, and
        // enough after them that the deletes are in sealed segments too.
        let mut tail: Vec<Op> = (0..3)
            .map(|k| Op::Delete(format!("j{k}").into_bytes()))
            .collect();
        tail.push(Op::Append(b"tail".to_vec(), None, vec![1; 300]));
        store.write(&to_batch(&tail)).unwrap();
        model.apply(&tail).unwrap();
        for e in entries(b't', 40) {
            let ops = vec![Op::Append(b"tail".to_vec(), None, e)];
            store.write(&to_batch(&ops)).unwrap();
            model.apply(&ops).unwrap();
        }
        store.close().unwrap();
    }

    // A dry run on a copy: how many I/O operations a whole compaction takes.
    let dry = tmp.path().join("dry");
    copy_dir(&base, &dry);
    let sim = SimFs::new();
    let store = Store::open(&dry, sim_options(&sim)).unwrap();
    let before = sim.op_count();
    let report = store.compact().unwrap();
    let needed = sim.op_count() - before;
    assert!(report.runs >= 3, "too little to compact: {report:?}");
    eprintln!("dry run: {report:?} in {needed} I/O operations");
    drop(store);

    let mut failures = 0;
    for n in 0..=needed {
        for (m, keep) in [false, true].into_iter().enumerate() {
            let ctx = format!("power loss after {n} of {needed} operations (mode {m})");
            let dir = tmp.path().join(format!("run-{n}-{m}"));
            copy_dir(&base, &dir);
            let sim = SimFs::new();
            let store = Store::open(&dir, sim_options(&sim)).unwrap();
            sim.fail_after(n);
            let result = store.compact();
            if result.is_err() {
                failures += 1;
            }
            drop(store);
            let mode = if keep {
                let writes = sim.pending_writes();
                CrashMode::KeepPrefix {
                    writes: writes / 2,
                    torn_bytes: 100,
                }
            } else {
                CrashMode::DropUnsynced
            };
            sim.crash(&dir, mode).unwrap();
            let store = Store::open(&dir, sim_options(&SimFs::new()))
                .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            model.assert_matches(&store.snapshot(), &ctx);
            assert_no_orphans(&dir, &ctx);
            if n % 4 == 0 {
                // The reopened store compacts what is left.
                store.compact().unwrap();
                model.assert_matches(&store.snapshot(), &format!("{ctx}, compacted again"));
            }
            drop(store);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    assert!(failures > 0, "no compaction was interrupted");
}

/// Sealed segments' data bytes and live bytes of the closed store in `dir`
/// (the active segment, last in the manifest, left out).
fn sealed_data_and_live(dir: &Path) -> (u64, u64) {
    let ro = inspect::open_read_only(dir).unwrap();
    let sealed = &ro.segments[..ro.segments.len() - 1];
    (
        sealed.iter().map(|s| s.written - 64).sum(),
        sealed.iter().map(|s| s.live_bytes).sum(),
    )
}

/// Guards `Options::max_space_amplification`: segments that are all about
/// 60 % live are above `compaction_threshold` (0.5), so without the target
/// (`f64::INFINITY`) `compact()` leaves them alone, and the sealed segments
/// hold over 1.5 times their live bytes; with a target of 1.25, `compact()`
/// rewrites them until the sealed segments hold at most 1.25 times their
/// live bytes plus one segment, and the store still equals the model,
/// before and after a reopen.
#[test]
fn space_amplification_target_rewrites_segments_above_the_threshold() {
    for (target, expect_rewrite) in [(f64::INFINITY, false), (1.25, true)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let opts = Options {
            max_space_amplification: target,
            stall_space_amplification: None,
            ..options()
        };
        let store = Store::open(&dir, opts.clone()).unwrap();
        let mut model = Model::default();
        // Five journals interleaved entry by entry: every segment holds a
        // fifth of each; deleting two leaves each segment ~60 % live.
        for i in 0..200u32 {
            let id = format!("j{}", i % 5).into_bytes();
            let ops = vec![Op::Append(id, None, vec![i as u8; 400])];
            store.write(&to_batch(&ops)).unwrap();
            model.apply(&ops).unwrap();
        }
        for k in [1, 3] {
            let ops = vec![Op::Delete(format!("j{k}").into_bytes())];
            store.write(&to_batch(&ops)).unwrap();
            model.apply(&ops).unwrap();
        }
        let report = store.compact().unwrap();
        model.assert_matches(&store.snapshot(), "after compact");
        store.close().unwrap();
        let (data, live) = sealed_data_and_live(&dir);
        let ctx = format!("target {target}: {report:?}, {data} bytes of data for {live} live");
        if expect_rewrite {
            assert!(report.segments_rewritten > 0, "{ctx}");
            assert!(
                data as f64 <= target * live as f64 + SEGMENT as f64,
                "{ctx}"
            );
        } else {
            assert_eq!(report.runs, 0, "{ctx}");
            assert!(data as f64 > 1.5 * live as f64, "{ctx}");
        }
        let store = Store::open(&dir, opts).unwrap();
        model.assert_matches(&store.snapshot(), "after reopen");
    }
}

/// Writes `journals` journals of four random entries of up to 2,000 bytes
/// each and deletes all but every 40th again; returns the model.
fn write_and_delete_most(store: &Store, journals: u32, seed: u64) -> Model {
    let mut model = Model::default();
    let mut rng = Rng::new(seed);
    for k in 0..journals {
        let id = format!("j{k}").into_bytes();
        let ops: Vec<Op> = (0..4)
            .map(|_| Op::Append(id.clone(), None, rng.bytes(2000)))
            .collect();
        store.write(&to_batch(&ops)).unwrap();
        model.apply(&ops).unwrap();
        if k % 40 != 0 {
            let ops = vec![Op::Delete(id)];
            store.write(&to_batch(&ops)).unwrap();
            model.apply(&ops).unwrap();
        }
    }
    model
}

/// Disk blocks allocated to the store's segment files.
fn allocated_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    inspect::segment_files(dir)
        .unwrap()
        .iter()
        .map(|(_, path)| std::fs::metadata(path).unwrap().blocks() * 512)
        .sum()
}

/// Guards: a store whose live data is small next to its segment size (the
/// default 64 MiB) does not keep a mostly dead active segment on disk.
/// Journals are created, appended to and deleted for about 12 MiB of
/// records while a few hundred KiB stay live; one `compact()` seals the
/// active segment early (its data is mostly dead and the store is over
/// `max_space_amplification`) and rewrites it, after which the disk blocks
/// allocated to segment files are within 1.5 times the live bytes plus
/// 2 MiB (the space reserved ahead of the new active segment's data); the
/// store equals the model, also after a reopen. With the early seal turned
/// off (`max_space_amplification` infinite) nothing is reclaimed.
#[test]
fn mostly_dead_active_segment_is_sealed_and_reclaimed() {
    for (target, expect_reclaimed) in [(1.25, true), (f64::INFINITY, false)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let opts = Options {
            segment_size: Options::default().segment_size,
            max_space_amplification: target,
            stall_space_amplification: None,
            ..options()
        };
        let store = Store::open(&dir, opts.clone()).unwrap();
        let model = write_and_delete_most(&store, 3000, 7);
        let report = store.compact().unwrap();
        let live = store.stats().live_bytes;
        model.assert_matches(&store.snapshot(), "after compact");
        store.close().unwrap();
        let allocated = allocated_bytes(&dir);
        let ctx =
            format!("target {target}: {allocated} bytes allocated for {live} live; {report:?}");
        let within = allocated as f64 <= 1.5 * live as f64 + (2 << 20) as f64;
        assert_eq!(within, expect_reclaimed, "{ctx}");
        let store = Store::open(&dir, opts).unwrap();
        model.assert_matches(&store.snapshot(), "after reopen");
    }
}

/// Journals written in turns, one entry each per batch, so that their
/// entries interleave along the log; most journals then die. The compacted
/// segment holds each survivor's operations as one run (a whole-journal
/// read touches consecutive pages), its records' LSNs increase, and the
/// store reads, and reopens to, the model.
#[test]
fn compaction_lays_each_journal_out_contiguously() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut model = Model::default();
    let mut write = |ops: Vec<Op>| {
        store.write(&to_batch(&ops)).unwrap();
        model.apply(&ops).unwrap();
    };
    let ids: Vec<Vec<u8>> = (0..12)
        .map(|j| format!("journal-{j:02}").into_bytes())
        .collect();
    for round in 0..20u8 {
        for (j, id) in ids.iter().enumerate() {
            let mut ops = vec![Op::Append(id.clone(), None, vec![round ^ j as u8; 150])];
            if round == 10 && j % 4 == 0 {
                // A batch over several journals: its operations part ways.
                ops.push(Op::SetMetadata(
                    ids[(j + 1) % ids.len()].clone(),
                    vec![round; 9],
                ));
            }
            write(ops);
        }
    }
    // Journals 0, 4 and 8 survive; the rest die, so the segments holding
    // the interleaved entries are mostly dead.
    let dead: Vec<Op> = (0..ids.len())
        .filter(|j| j % 4 != 0)
        .map(|j| Op::Delete(ids[j].clone()))
        .collect();
    write(dead);
    write(vec![Op::Append(b"filler".to_vec(), None, vec![0; 7000])]);
    let before = listed(&dir);
    let report = store.compact().unwrap();
    assert!(report.segments_written >= 1, "{report:?}");
    model.assert_matches(&store.snapshot(), "after compaction");

    let manifest = inspect::read_manifest(&dir.join("MANIFEST")).unwrap();
    let compacted: Vec<_> = manifest
        .segments
        .iter()
        .filter(|s| !before.contains(&s.id))
        .collect();
    assert!(!compacted.is_empty(), "no new segment in {manifest:?}");
    let mut prev_lsn = 0;
    for segment in compacted {
        let bytes = std::fs::read(dir.join(&segment.file_name)).unwrap();
        let file = inspect::SegmentFile::from_bytes(Path::new(&segment.file_name), bytes);
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut entries = 0;
        for item in file.scan(0, segment.sealed_len, false) {
            let inspect::ScanItem::Record { lsn, ops, .. } = item else {
                continue;
            };
            assert!(lsn > prev_lsn, "LSN {lsn} after {prev_lsn}");
            prev_lsn = lsn;
            for op in ops {
                entries += usize::from(op.kind == "append");
                if order.last() != Some(&op.journal) {
                    assert!(
                        !order.contains(&op.journal),
                        "{}: operations in two places of {}",
                        String::from_utf8_lossy(&op.journal),
                        segment.file_name
                    );
                    order.push(op.journal);
                }
            }
        }
        assert!(entries > 0, "{}: no entry copied", segment.file_name);
    }
    drop(store);
    let store = Store::open(&dir, options()).unwrap();
    model.assert_matches(&store.snapshot(), "reopened after compaction");
}

/// Items that die while compaction copies them lie dead in the new
/// segment, which must stay a candidate: the copy of a run is held in its
/// sync while one of the two journals it moves is deleted, and the same
/// `compact()` goes on to rewrite the new segment without that journal.
/// (Marked as settled, with nothing left in it to die later, it would keep
/// the dead bytes for good.)
#[test]
fn items_that_die_during_the_copy_leave_the_new_segment_a_candidate() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimFs::new();
    let opts = Options {
        fs: Arc::new(sim.clone()),
        segment_size: 64 << 10,
        ..options()
    };
    let store = Arc::new(Store::open(tmp.path(), opts).unwrap());
    fill_three_journals_and_delete_gone(&store);
    store.sync().unwrap();

    let hold = sim.hold_next_sync();
    let compactor = {
        let store = store.clone();
        std::thread::spawn(move || store.compact())
    };
    assert!(
        hold.wait_held(Instant::now() + Duration::from_secs(60)),
        "compaction never synced"
    );
    let mut batch = WriteBatch::new();
    batch.delete_journal(b"dies");
    store.write(&batch).unwrap();
    hold.release();
    let report = compactor.join().unwrap().unwrap();
    // The held sync was the first copy's: "dies" was still live when it
    // was planned (about 20 of its 900-byte entries in the sealed segment).
    assert!(
        report.bytes_copied > 20 * 900,
        "the copy did not include the journal deleted during it: {report:?}"
    );
    store.close().unwrap();
    let (sealed, live) = sealed_data_and_live(tmp.path());
    assert!(
        sealed < 2 * live,
        "the dead copy is still on disk: {sealed} bytes of sealed data for {live} live; {report:?}"
    );
    let store = Store::open(tmp.path(), options()).unwrap();
    let snap = store.snapshot();
    assert!(snap.journal(b"dies").is_none());
    assert_eq!(snap.journal(b"keep").unwrap().end_index(), 40);
}

/// Guards `Options::compact_on_close`: a store whose live set (a few
/// hundred KiB) is small next to what it wrote and deleted, with the
/// background thread on but not woken (no seal, no dead-bytes trigger),
/// closes holding at most `max_space_amplification` times its live bytes
/// plus 64 KiB of slack and the files' header blocks; with the option off,
/// close leaves the dead records on disk. The store equals the model after
/// a reopen either way.
#[test]
fn close_compacts_down_to_the_space_target() {
    for compact_on_close in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let opts = Options {
            segment_size: Options::default().segment_size,
            background_compaction: true,
            compaction_interval: None,
            compaction_dead_bytes: Some(1 << 40),
            stall_space_amplification: None,
            compact_on_close,
            ..options()
        };
        let store = Store::open(&dir, opts.clone()).unwrap();
        let model = write_and_delete_most(&store, 2000, 5);
        let live = store.stats().live_bytes;
        store.close().unwrap();
        let allocated = allocated_bytes(&dir);
        let ctx = format!(
            "compact_on_close {compact_on_close}: {allocated} bytes allocated for {live} live"
        );
        let target = 1.25 * live as f64 + (64 << 10) as f64 + (3 * 4096) as f64;
        assert_eq!(allocated as f64 <= target, compact_on_close, "{ctx}");
        let store = Store::open(&dir, opts).unwrap();
        model.assert_matches(&store.snapshot(), "after reopen");
    }
}
