//! Checkpoints: a consistent, openable copy of a store as of one LSN.
//!
//! - A checkpoint taken while writer threads run opens as exactly the
//!   batches with an LSN up to the one it reports.
//! - It refuses a non-empty directory with a typed error.
//! - It works on a store with compacted segments, and both stores go on
//!   independently afterwards.
//! - Sealed segments are hard links on the real file system.
//! - A power loss at any step of a checkpoint leaves the source intact and
//!   the destination either recognisably incomplete (no manifest) or
//!   complete.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{files_on_disk, listed, random_batch, to_batch, Model, Op, Rng};
use journalstore::inspect;
use journalstore::io::{CrashMode, SimFs};
use journalstore::{Error, Options, Store, SyncMode};

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
/// agree on whether it is valid. Returns the ops and LSN if it was written.
fn random_step(
    store: &Store,
    model: &mut Model,
    rng: &mut Rng,
    journals: u64,
) -> Option<(Vec<Op>, u64)> {
    let ops = random_batch(rng, model, journals, 300);
    let expect_ok = model.clone().apply(&ops).is_ok();
    match (expect_ok, store.write(&to_batch(&ops))) {
        (true, Ok(lsn)) => {
            model.apply(&ops).unwrap();
            Some((ops, lsn))
        }
        (false, Err(_)) => None,
        (ok, result) => panic!("model says ok={ok}, store says {result:?} for {ops:?}"),
    }
}

/// `steps` random steps, with an entry appended to a journal that never
/// dies every third step: it keeps most segments from being freed whole, so
/// they are compacted instead.
fn fill(store: &Store, model: &mut Model, rng: &mut Rng, steps: usize) {
    for step in 0..steps {
        random_step(store, model, rng, 8);
        if step % 3 == 0 {
            let ops = vec![Op::Append(b"keep".to_vec(), None, vec![step as u8; 120])];
            store.write(&to_batch(&ops)).unwrap();
            model.apply(&ops).unwrap();
        }
    }
}

/// Prefixes every journal id of `ops` with `w<t>/`.
fn prefixed(t: u64, ops: &[Op]) -> Vec<Op> {
    let g = |id: &Vec<u8>| [format!("w{t}/").as_bytes(), id].concat();
    ops.iter().map(|op| op.map_id(g)).collect()
}

/// Acknowledged batches with their LSNs.
type Log = Vec<(u64, Vec<Op>)>;

/// Guards: a checkpoint taken while writers run opens as exactly its
/// snapshot: its LSN is the reported one, and its content is every
/// acknowledged batch with an LSN up to that, applied in LSN order (each
/// writer owns its journals, so that order reproduces the store's state).
/// Six checkpoints are taken during the run, with the background
/// compaction thread on and one explicit compaction among them.
#[test]
fn checkpoint_during_writes_is_exactly_its_lsn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    // The background thread compacts too, concurrently with the copies.
    let background = Options {
        background_compaction: true,
        ..options()
    };
    let store = Arc::new(Store::open(&dir, background).unwrap());
    let log: Arc<Mutex<Log>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u64)
        .map(|t| {
            let (store, log, stop) = (store.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(t);
                // The writer's model in its own ids; the store sees them
                // prefixed (validity does not depend on the names).
                let mut local = Model::default();
                while !stop.load(Ordering::Relaxed) {
                    let ops = random_batch(&mut rng, &local, 6, 300);
                    let expect_ok = local.clone().apply(&ops).is_ok();
                    match store.write(&to_batch(&prefixed(t, &ops))) {
                        Ok(lsn) => {
                            assert!(expect_ok, "writer {t}: store took {ops:?}");
                            local.apply(&ops).unwrap();
                            log.lock().unwrap().push((lsn, prefixed(t, &ops)));
                        }
                        Err(e) => assert!(!expect_ok, "writer {t}: {e} for {ops:?}"),
                    }
                }
            })
        })
        .collect();
    let mut reports = Vec::new();
    for k in 0..6 {
        std::thread::sleep(Duration::from_millis(250));
        if k == 3 {
            // Under a steady write load this can take a while: it goes on
            // while writers keep making new candidates (up to a cap).
            store.compact().unwrap();
        }
        let dest = tmp.path().join(format!("checkpoint-{k}"));
        reports.push((dest.clone(), store.checkpoint(&dest).unwrap()));
    }
    stop.store(true, Ordering::Relaxed);
    for h in writers {
        h.join().unwrap();
    }
    let mut log = Arc::try_unwrap(log).unwrap().into_inner().unwrap();
    log.sort_by_key(|(lsn, _)| *lsn);
    // One pass over the log, checking each checkpoint at its LSN.
    reports.sort_by_key(|(_, r)| r.lsn);
    let mut model = Model::default();
    let mut next = log.iter().peekable();
    let mut distinct = BTreeSet::new();
    for (dest, report) in &reports {
        let ctx = format!("checkpoint at LSN {}", report.lsn);
        while let Some((_, ops)) = next.next_if(|(lsn, _)| *lsn <= report.lsn) {
            model.apply(ops).unwrap();
        }
        assert_eq!(report.segments, listed(dest).len(), "{ctx}");
        assert_eq!(files_on_disk(dest), listed(dest), "{ctx}");
        let cp = Store::open(dest, options()).unwrap();
        let snap = cp.snapshot();
        assert_eq!(snap.lsn(), report.lsn, "{ctx}");
        model.assert_matches(&snap, &ctx);
        distinct.insert(report.lsn);
    }
    assert!(distinct.len() >= 3, "checkpoints did not see writes go on");
    // The source went on meanwhile and holds everything.
    for (_, ops) in next {
        model.apply(ops).unwrap();
    }
    model.assert_matches(&store.snapshot(), "source");
}

/// Guards: the destination must be empty (or missing: it is then created);
/// a non-empty one is refused with a typed error and left as it was.
#[test]
fn checkpoint_directory_must_be_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store"), options()).unwrap();
    let mut model = Model::default();
    let mut rng = Rng::new(1);
    for _ in 0..50 {
        random_step(&store, &mut model, &mut rng, 4);
    }
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), b"mine").unwrap();
    match store.checkpoint(&busy) {
        Err(Error::InvalidOptions(msg)) => assert!(msg.contains("not empty"), "{msg}"),
        other => panic!("checkpoint into a non-empty directory: {other:?}"),
    }
    let names: Vec<_> = std::fs::read_dir(&busy).unwrap().collect();
    assert_eq!(names.len(), 1, "the directory was changed");
    assert_eq!(std::fs::read(busy.join("notes.txt")).unwrap(), b"mine");

    // A directory holding a finished checkpoint is not empty either.
    let dest = tmp.path().join("a").join("b");
    store.checkpoint(&dest).unwrap();
    assert!(matches!(
        store.checkpoint(&dest),
        Err(Error::InvalidOptions(_))
    ));
    let cp = Store::open(&dest, options()).unwrap();
    model.assert_matches(&cp.snapshot(), "checkpoint into a new directory");
    // Nor may it be an open store.
    drop(cp);
    assert!(matches!(
        store.checkpoint(store.path()),
        Err(Error::InvalidOptions(_))
    ));
}

/// Guards: a checkpoint of a store whose segments were compacted opens as
/// the model; source and checkpoint then go on independently (writes,
/// compactions and frees in the source, whose segment files the checkpoint
/// shares by hard link, do not change the checkpoint, and writes to the
/// checkpoint do not change the source), before and after reopening both.
#[test]
fn checkpoint_of_a_compacted_store_and_both_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut model = Model::default();
    let mut rng = Rng::new(5);
    fill(&store, &mut model, &mut rng, 600);
    let report = store.compact().unwrap();
    assert!(report.runs > 0, "{report:?}");
    for _ in 0..30 {
        random_step(&store, &mut model, &mut rng, 10);
    }
    let dest = tmp.path().join("checkpoint");
    let cp_report = store.checkpoint(&dest).unwrap();
    let at_checkpoint = model.clone();
    // The checkpoint lists compacted segments (ids above their neighbours).
    let ids: Vec<u32> = inspect::read_manifest(&inspect::manifest_path(&dest))
        .unwrap()
        .segments
        .iter()
        .map(|s| s.id)
        .collect();
    assert!(
        ids.windows(2).any(|w| w[0] > w[1]),
        "no compacted segment in the checkpoint: {ids:?}"
    );
    assert_eq!(cp_report.segments, ids.len());

    // The source goes on: churn, compaction, frees.
    for _ in 0..600 {
        random_step(&store, &mut model, &mut rng, 10);
    }
    store.compact().unwrap();
    model.assert_matches(&store.snapshot(), "source after the checkpoint");

    let cp = Store::open(&dest, options()).unwrap();
    at_checkpoint.assert_matches(&cp.snapshot(), "checkpoint");
    assert_eq!(cp.snapshot().lsn(), cp_report.lsn);
    // The checkpoint goes on too, without touching the source.
    let mut cp_model = at_checkpoint.clone();
    let mut cp_rng = Rng::new(99);
    for _ in 0..300 {
        random_step(&cp, &mut cp_model, &mut cp_rng, 10);
    }
    cp.compact().unwrap();
    cp_model.assert_matches(&cp.snapshot(), "checkpoint after writes");
    model.assert_matches(&store.snapshot(), "source after checkpoint writes");
    store.close().unwrap();
    cp.close().unwrap();
    let store = Store::open(&dir, options()).unwrap();
    let cp = Store::open(&dest, options()).unwrap();
    model.assert_matches(&store.snapshot(), "source reopened");
    cp_model.assert_matches(&cp.snapshot(), "checkpoint reopened");
    assert_eq!(files_on_disk(&dir), listed(&dir));
    assert_eq!(files_on_disk(&dest), listed(&dest));
}

/// Guards: on the real file system, the sealed segments of a checkpoint are
/// hard links to the source's files (same inode, two links), and only the
/// active segment is a copy.
#[test]
fn sealed_segments_are_hard_linked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut model = Model::default();
    let mut rng = Rng::new(8);
    for _ in 0..300 {
        random_step(&store, &mut model, &mut rng, 10);
    }
    // A journal no random step touches keeps two segments' worth live, so
    // that sealed segments survive whatever the random steps freed.
    for _ in 0..(2 * SEGMENT / 256) {
        let op = Op::Append(b"kept".to_vec(), None, vec![7; 256]);
        store.write(&to_batch(std::slice::from_ref(&op))).unwrap();
        model.apply(&[op]).unwrap();
    }
    let dest = tmp.path().join("checkpoint");
    let report = store.checkpoint(&dest).unwrap();
    let manifest = inspect::read_manifest(&inspect::manifest_path(&dest)).unwrap();
    assert!(manifest.segments.len() >= 3, "{manifest:?}");
    assert_eq!(report.segments, manifest.segments.len());
    let (active, sealed) = manifest.segments.split_last().unwrap();
    for s in sealed {
        let src = std::fs::metadata(dir.join(&s.file_name)).unwrap();
        let cp = std::fs::metadata(dest.join(&s.file_name)).unwrap();
        assert_eq!(
            (src.dev(), src.ino()),
            (cp.dev(), cp.ino()),
            "{} is not a hard link",
            s.file_name
        );
        assert_eq!(cp.nlink(), 2, "{}", s.file_name);
    }
    let src = std::fs::metadata(dir.join(&active.file_name)).unwrap();
    let cp = std::fs::metadata(dest.join(&active.file_name)).unwrap();
    assert_ne!(src.ino(), cp.ino(), "the active segment must be a copy");
    assert_eq!(cp.nlink(), 1);
    // Only the active segment's data was copied.
    assert!(report.bytes_copied > 0 && report.bytes_copied <= SEGMENT);
    drop(store);
    let cp = Store::open(&dest, options()).unwrap();
    model.assert_matches(&cp.snapshot(), "checkpoint");
}

/// Guards: a power loss at any step of a checkpoint leaves the source
/// exactly as it was, and the destination either without a manifest
/// (incomplete: opening it fails with a typed error, or finds no store to
/// recover and creates an empty one; it never passes for the checkpoint)
/// or complete: exactly the snapshot. A checkpoint that returned `Ok` is
/// complete whatever the crash keeps. Both the source and the destination
/// directories lose power, in both crash modes.
#[test]
fn power_loss_at_every_step_of_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("store");
    let sim_options = |sim: &SimFs| Options {
        sync: SyncMode::Always,
        fs: Arc::new(sim.clone()),
        ..options()
    };
    let mut model = Model::default();
    {
        let store = Store::open(&src, sim_options(&SimFs::new())).unwrap();
        let mut rng = Rng::new(21);
        fill(&store, &mut model, &mut rng, 200);
        store.compact().unwrap();
        for _ in 0..20 {
            random_step(&store, &mut model, &mut rng, 8);
        }
        store.close().unwrap();
    }
    assert!(listed(&src).len() >= 3, "too few segments to copy");

    let (mut incomplete, mut empty_opens, mut complete) = (0, 0, 0);
    let mut n = 0u64;
    loop {
        let mut succeeded = false;
        for keep in [false, true] {
            let ctx = format!("power loss after {n} operations (keep prefix: {keep})");
            let dest = tmp.path().join(format!("cp-{n}-{keep}"));
            let sim = SimFs::new();
            let store = Store::open(&src, sim_options(&sim)).unwrap();
            sim.fail_after(n);
            let result = store.checkpoint(&dest);
            drop(store);
            let mode = if keep {
                CrashMode::KeepPrefix {
                    writes: sim.pending_writes() / 2,
                    torn_bytes: 50,
                }
            } else {
                CrashMode::DropUnsynced
            };
            sim.crash(&src, mode).unwrap();
            if dest.exists() {
                sim.crash(&dest, mode).unwrap();
            }

            let store = Store::open(&src, sim_options(&SimFs::new()))
                .unwrap_or_else(|e| panic!("{ctx}: source does not open: {e}"));
            model.assert_matches(&store.snapshot(), &format!("{ctx}: source"));
            drop(store);

            let has_manifest = inspect::manifest_path(&dest).exists();
            if let Ok(report) = &result {
                succeeded = true;
                assert!(
                    has_manifest,
                    "{ctx}: a finished checkpoint lost its manifest"
                );
                assert_eq!(report.lsn, model_lsn(&src), "{ctx}");
            }
            if has_manifest {
                complete += 1;
                let cp = Store::open(&dest, sim_options(&SimFs::new()))
                    .unwrap_or_else(|e| panic!("{ctx}: checkpoint does not open: {e}"));
                model.assert_matches(&cp.snapshot(), &format!("{ctx}: checkpoint"));
            } else if dest.exists() {
                incomplete += 1;
                match Store::open(&dest, sim_options(&SimFs::new())) {
                    Err(Error::Corruption { .. }) => {}
                    Ok(opened) => {
                        // Nothing of the copy survived (its names were not
                        // durable): an empty directory makes a new store.
                        assert_eq!(opened.snapshot().journal_count(), 0, "{ctx}");
                        empty_opens += 1;
                    }
                    Err(e) => panic!("{ctx}: incomplete checkpoint: {e:?}"),
                }
            }
            if dest.exists() {
                std::fs::remove_dir_all(&dest).unwrap();
            }
        }
        if succeeded {
            break;
        }
        n += 1;
        assert!(n < 10_000, "the checkpoint never finished");
    }
    eprintln!(
        "{n} steps: {complete} complete, {incomplete} incomplete \
         ({empty_opens} of those opened as a new, empty store)"
    );
    assert!(incomplete > 0 && complete > 0);
}

/// The LSN of the store in `dir`, as a fresh open sees it.
fn model_lsn(dir: &Path) -> u64 {
    let store = Store::open(
        dir,
        Options {
            fs: Arc::new(SimFs::new()),
            ..options()
        },
    )
    .unwrap();
    store.snapshot().lsn()
}
