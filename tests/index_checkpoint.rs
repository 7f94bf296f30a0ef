//! Index checkpoints: open from one gives exactly what a full replay gives,
//! and replays only the log after it; a damaged, stale or unusable one is
//! ignored (full replay), never trusted; power loss at every step of
//! writing one loses nothing; a damaged value is still `Corruption` on its
//! first read; `inspect::IndexCheckpointInfo::continued_by` says what open
//! does.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{random_batch, to_batch, Model, Op, Rng};
use journalstore::io::{CrashMode, SimFs};
use journalstore::{work, Error, Options, Store, SyncMode};

fn options() -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: 8 << 10,
        background_compaction: false,
        status_interval: None,
        // Written at close; the background writer never triggers here.
        index_checkpoint_bytes: Some(1 << 40),
        ..Options::default()
    }
}

/// `options()` without the checkpoint at close: what a test wrote
/// explicitly stays the newest one.
fn no_close_checkpoint() -> Options {
    Options {
        index_checkpoint_bytes: None,
        ..options()
    }
}

/// The index checkpoint files in `dir`.
fn checkpoint_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jidx"))
        .collect();
    out.sort();
    out
}

/// Opens `dir` and returns the store and this thread's recovery work.
fn open(dir: &Path, options: Options) -> (Store, work::Work) {
    work::take();
    let store = Store::open(dir, options).unwrap();
    (store, work::take())
}

/// The journals `step` keeps long when asked to: each batch appends to
/// one of them, and they are trimmed and truncated a few entries at a time.
const LONG: [&[u8]; 2] = [b"long-a", b"long-b"];

/// One random batch, applied to the store and, if the model accepts it,
/// to the model. With `long`, the batch also appends a few entries to one
/// of the `LONG` journals, now and then trims or truncates one, so that
/// they grow past a few hundred entries (loaded from a checkpoint in the
/// form kept for large journals) while changing at both ends.
fn step(store: &Store, model: &mut Model, rng: &mut Rng, ctx: &str, long: bool) {
    let mut ops = random_batch(rng, model, 16, 300);
    if long {
        let id = LONG[rng.below(2) as usize].to_vec();
        let (first, end) = model
            .journals
            .get(&id)
            .map_or((0, 0), |j| (j.first, j.end()));
        match rng.below(100) {
            0..=3 => ops.push(Op::Trim(id, first + rng.below(12))),
            4..=6 => ops.push(Op::Truncate(
                id,
                end.saturating_sub(rng.below(6)).max(first),
            )),
            _ => {
                for _ in 0..1 + rng.below(6) {
                    ops.push(Op::Append(id.clone(), None, rng.bytes(24)));
                }
            }
        }
    }
    let expect_ok = model.clone().apply(&ops).is_ok();
    match (expect_ok, store.write(&to_batch(&ops))) {
        (true, Ok(_)) => model.apply(&ops).unwrap(),
        (false, Err(_)) => {}
        (ok, r) => panic!("{ctx}: model says ok={ok}, store says {r:?}"),
    }
}

/// Random workloads with compactions, explicit checkpoints and reopens
/// (clean ones, which write a checkpoint, and drops after a checkpoint
/// went stale): after every reopen the store equals the model, a reopen
/// that loaded a checkpoint replayed fewer records than a full replay of
/// the same files, and the live-space figure equals the full replay's.
#[test]
fn open_from_a_checkpoint_equals_a_full_replay() {
    checkpoint_model(0..4, false);
}

/// As above, with two journals of hundreds of entries beside the short
/// ones: loaded from a checkpoint, then appended to, trimmed, truncated,
/// moved by compaction and written to the next checkpoint.
#[test]
fn open_from_a_checkpoint_equals_a_full_replay_with_long_journals() {
    checkpoint_model(10..13, true);
}

fn checkpoint_model(seeds: std::ops::Range<u64>, long: bool) {
    let mut loaded = 0;
    let mut longest = 0;
    for seed in seeds {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let mut rng = Rng::new(seed);
        let mut model = Model::default();
        let mut store = Store::open(&dir, options()).unwrap();
        for n in 0..1500 {
            let ctx = format!("seed {seed} step {n}");
            step(&store, &mut model, &mut rng, &ctx, long);
            if rng.chance(2) {
                store.compact().unwrap();
            }
            if rng.chance(2) {
                store.write_index_checkpoint().unwrap();
            }
            if rng.chance(1) {
                let live = store.stats().live_bytes;
                store.close().unwrap();
                let (reopened, work) = open(&dir, options());
                store = reopened;
                model.assert_matches(&store.snapshot(), &format!("{ctx}: reopened"));
                assert_eq!(store.stats().live_bytes, live, "{ctx}: live bytes");
                if work.index_checkpoints_loaded == 1 {
                    loaded += 1;
                    longest = LONG
                        .iter()
                        .filter_map(|id| model.journals.get(*id))
                        .map(|j| j.end() - j.first)
                        .fold(longest, u64::max);
                    // The same files without the checkpoint: a full replay.
                    let copy = tmp.path().join(format!("copy-{n}"));
                    store.checkpoint(&copy).unwrap();
                    for f in checkpoint_files(&copy) {
                        std::fs::remove_file(f).unwrap();
                    }
                    let (full, full_work) = open(&copy, options());
                    assert_eq!(full_work.index_checkpoints_loaded, 0);
                    assert!(
                        work.records_replayed <= full_work.records_replayed,
                        "{ctx}: {work:?} vs {full_work:?}"
                    );
                    model.assert_matches(&full.snapshot(), &format!("{ctx}: full replay"));
                    assert_eq!(full.stats().live_bytes, live, "{ctx}: live bytes");
                    drop(full);
                    std::fs::remove_dir_all(&copy).unwrap();
                }
            }
        }
    }
    assert!(
        loaded > 10,
        "only {loaded} reopens started from a checkpoint"
    );
    if long {
        assert!(
            longest > 300,
            "the long journals reached only {longest} entries"
        );
    }
}

/// After a checkpoint: rolls, frees of segments that held entries the
/// checkpoint has (trimmed in the tail), and a crash-like drop with no
/// new checkpoint. Open loads the old checkpoint, replays only the tail,
/// and gives the written state.
#[test]
fn the_tail_after_a_checkpoint_is_replayed_across_rolls_and_frees() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, no_close_checkpoint()).unwrap();
    let mut model = Model::default();
    let mut write = |store: &Store, ops: Vec<Op>| {
        store.write(&to_batch(&ops)).unwrap();
        model.apply(&ops).unwrap();
    };
    for i in 0..60u32 {
        let e = format!("old {i} {}", "o".repeat(200)).into_bytes();
        write(&store, vec![Op::Append(b"old".to_vec(), None, e)]);
    }
    store.write_index_checkpoint().unwrap();
    let before = journalstore::inspect::read_manifest(&journalstore::inspect::manifest_path(&dir))
        .unwrap()
        .segments
        .len();
    // The tail: the old entries die and their segments are freed; new
    // ones roll through several segments.
    write(&store, vec![Op::Trim(b"old".to_vec(), 58)]);
    for i in 0..80u32 {
        let e = format!("new {i} {}", "n".repeat(200)).into_bytes();
        write(&store, vec![Op::Append(b"new".to_vec(), None, e)]);
    }
    drop(store);
    let manifest =
        journalstore::inspect::read_manifest(&journalstore::inspect::manifest_path(&dir)).unwrap();
    assert!(manifest.segments.len() >= 2 && before >= 2, "{manifest:?}");
    let (store, work) = open(&dir, no_close_checkpoint());
    assert_eq!(work.index_checkpoints_loaded, 1, "{work:?}");
    assert!(work.records_replayed <= 81 + 1, "{work:?}");
    model.assert_matches(&store.snapshot(), "after the tail");
}

/// A checkpoint that is cut short, has a flipped byte, names a generation
/// the manifest has not reached, or is stale (a compaction moved entries
/// since) is not used: open replays everything and gives the right state.
#[test]
fn damaged_or_unusable_checkpoints_fall_back_to_a_full_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut model = Model::default();
    let mut rng = Rng::new(7);
    for n in 0..400 {
        step(&store, &mut model, &mut rng, &format!("step {n}"), false);
    }
    store.close().unwrap();
    let [file] = &checkpoint_files(&dir)[..] else {
        panic!("one checkpoint expected: {:?}", checkpoint_files(&dir));
    };
    let original = std::fs::read(file).unwrap();
    let (store, work) = open(&dir, options());
    assert_eq!(work.index_checkpoints_loaded, 1);
    drop(store);
    let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [0, 10, 64, original.len() / 2, original.len() - 1] {
        damaged.push((format!("cut at {cut}"), original[..cut].to_vec()));
    }
    for at in [3, 20, 61, 70, original.len() / 3, original.len() - 5] {
        let mut bytes = original.clone();
        bytes[at] ^= 0x04;
        damaged.push((format!("flip at {at}"), bytes));
    }
    for (what, bytes) in damaged {
        std::fs::write(file, &bytes).unwrap();
        let (store, work) = open(&dir, no_close_checkpoint());
        assert_eq!(work.index_checkpoints_loaded, 0, "{what}");
        model.assert_matches(&store.snapshot(), &what);
        drop(store);
    }
    // A generation the manifest has not reached is never chosen.
    std::fs::write(file, &original).unwrap();
    let future = dir.join("index-00000000ffffffff.jidx");
    std::fs::rename(file, &future).unwrap();
    let (store, work) = open(&dir, no_close_checkpoint());
    assert_eq!(work.index_checkpoints_loaded, 0, "future generation");
    model.assert_matches(&store.snapshot(), "future generation");
    drop(store);
    std::fs::rename(&future, file).unwrap();
    // Stale: a compaction moved live entries after it was written.
    let (store, work) = open(&dir, no_close_checkpoint());
    assert_eq!(work.index_checkpoints_loaded, 1);
    let report = store.compact().unwrap();
    assert!(report.runs > 0, "{report:?}");
    drop(store);
    assert!(!checkpoint_files(&dir).is_empty());
    let (store, work) = open(&dir, no_close_checkpoint());
    assert_eq!(work.index_checkpoints_loaded, 0, "stale after compaction");
    model.assert_matches(&store.snapshot(), "stale after compaction");
}

/// Power loss after every number of file operations of
/// `write_index_checkpoint` (and of the close that follows): whatever
/// survives (no checkpoint, a tmp file, a checkpoint without its
/// directory entry, a complete one), open gives every acknowledged batch.
#[test]
fn power_loss_at_every_step_of_writing_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim_options = |sim: &SimFs| Options {
        sync: SyncMode::Always,
        index_checkpoint_bytes: None,
        fs: Arc::new(sim.clone()),
        ..options()
    };
    let mut model = Model::default();
    let mut rng = Rng::new(3);
    {
        let store = Store::open(&dir, sim_options(&SimFs::new())).unwrap();
        for n in 0..200 {
            step(&store, &mut model, &mut rng, &format!("step {n}"), false);
        }
        store.close().unwrap();
    }
    let mut completed = false;
    for n in 0..200u64 {
        let ctx = format!("power loss after {n} operations");
        let sim = SimFs::new();
        let store = Store::open(&dir, sim_options(&sim)).unwrap();
        step(&store, &mut model, &mut rng, &ctx, false);
        sim.fail_after(n);
        let result = store.write_index_checkpoint();
        drop(store);
        for keep in [false, true] {
            let mode = if keep {
                CrashMode::KeepPrefix {
                    writes: sim.pending_writes() / 2,
                    torn_bytes: 40,
                }
            } else {
                CrashMode::DropUnsynced
            };
            // Both modes from the same disk: the second crash applies to
            // what the first left (a no-op after a reboot).
            sim.crash(&dir, mode).unwrap();
        }
        let (store, work) = open(&dir, sim_options(&SimFs::new()));
        model.assert_matches(&store.snapshot(), &ctx);
        drop(store);
        if result.is_ok() {
            assert_eq!(work.index_checkpoints_loaded, 1, "{ctx}: {work:?}");
            completed = true;
            break;
        }
    }
    assert!(completed, "the checkpoint never completed");
}

/// With a checkpoint, open does not read the values it covers; a flipped
/// byte in one is `Corruption` on the first read of that entry (and the
/// other entries read fine).
#[test]
fn a_damaged_value_is_corruption_on_its_first_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut batch = journalstore::WriteBatch::new();
    for i in 0..40u32 {
        batch.clear();
        batch.append(b"j", format!("value-{i:04}-{}", "v".repeat(300)).as_bytes());
        store.write(&batch).unwrap();
    }
    store.close().unwrap();
    // Flip a byte inside entry 3's value, wherever it is.
    let needle = b"value-0003-";
    let mut hit = None;
    for (id, path) in journalstore::inspect::segment_files(&dir).unwrap() {
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at + needle.len() + 5] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();
            hit = Some(id);
        }
    }
    assert!(hit.is_some(), "value not found");
    let (store, work) = open(&dir, options());
    assert_eq!(work.index_checkpoints_loaded, 1, "{work:?}");
    let snap = store.snapshot();
    let j = snap.journal(b"j").unwrap();
    match j.entry(3) {
        Err(Error::Corruption { journal, .. }) => assert_eq!(journal.as_deref(), Some(&b"j"[..])),
        other => panic!("expected Corruption, got {other:?}"),
    }
    for i in (0..40).filter(|&i| i != 3) {
        assert!(j.entry(i).unwrap().is_some(), "entry {i}");
    }
}

/// Whether `inspect::IndexCheckpointInfo::continued_by` says the current
/// manifest continues the one checkpoint file in `dir`.
fn continued_by_manifest(dir: &Path) -> bool {
    use journalstore::inspect;
    let [file] = &checkpoint_files(dir)[..] else {
        panic!("one checkpoint expected: {:?}", checkpoint_files(dir));
    };
    let info = inspect::decode_index_checkpoint(&std::fs::read(file).unwrap(), file).unwrap();
    let manifest = inspect::read_manifest(&inspect::manifest_path(dir)).unwrap();
    info.continued_by(&manifest)
}

/// The inspection helper applies open's rule: it says "continued" after
/// rolls and frees, when open loads the checkpoint, and "not continued"
/// after a compaction replaced a segment, when open replays everything.
#[test]
fn the_inspect_helper_agrees_with_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, no_close_checkpoint()).unwrap();
    let mut model = Model::default();
    let write = |store: &Store, model: &mut Model, ops: Vec<Op>| {
        store.write(&to_batch(&ops)).unwrap();
        model.apply(&ops).unwrap();
    };
    write(
        &store,
        &mut model,
        vec![Op::Append(b"keep".to_vec(), None, b"k".to_vec())],
    );
    for i in 0..60u32 {
        let e = format!("old {i} {}", "o".repeat(200)).into_bytes();
        write(
            &store,
            &mut model,
            vec![Op::Append(b"old".to_vec(), None, e)],
        );
    }
    store.write_index_checkpoint().unwrap();
    for i in 0..40u32 {
        let e = format!("new {i} {}", "n".repeat(200)).into_bytes();
        write(
            &store,
            &mut model,
            vec![Op::Append(b"new".to_vec(), None, e)],
        );
    }
    drop(store);
    assert!(continued_by_manifest(&dir), "rolls continue it");
    let (store, work) = open(&dir, no_close_checkpoint());
    assert_eq!(work.index_checkpoints_loaded, 1, "{work:?}");
    model.assert_matches(&store.snapshot(), "from the checkpoint");
    // Segment 1 keeps one live entry among dead ones: compaction rewrites
    // it into a new segment in its place.
    write(&store, &mut model, vec![Op::Delete(b"old".to_vec())]);
    store.compact().unwrap();
    drop(store);
    assert!(!continued_by_manifest(&dir), "a compaction makes it stale");
    let (store, work) = open(&dir, no_close_checkpoint());
    assert_eq!(work.index_checkpoints_loaded, 0, "{work:?}");
    model.assert_matches(&store.snapshot(), "full replay");
}

/// The default options write an index checkpoint at clean close, and the
/// next open starts from it: it replays no record.
#[test]
fn the_default_options_checkpoint_at_clean_close() {
    assert_eq!(Options::default().index_checkpoint_bytes, Some(64 << 20));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let defaults = || Options {
        sync: SyncMode::Never,
        ..Options::default()
    };
    let store = Store::open(&dir, defaults()).unwrap();
    let mut batch = journalstore::WriteBatch::new();
    for i in 0..200u32 {
        batch.clear();
        batch.append(format!("j{}", i % 7).as_bytes(), &i.to_le_bytes());
        store.write(&batch).unwrap();
    }
    store.close().unwrap();
    assert_eq!(checkpoint_files(&dir).len(), 1);
    let (store, work) = open(&dir, defaults());
    assert_eq!(
        (work.index_checkpoints_loaded, work.records_replayed),
        (1, 0),
        "{work:?}"
    );
    let snap = store.snapshot();
    let total: usize = (0..7)
        .map(|j| snap.journal(format!("j{j}").as_bytes()).unwrap().len() as usize)
        .sum();
    assert_eq!(total, 200);
}

/// The newest checkpoint file's `last_lsn` and size.
fn newest_checkpoint(dir: &Path) -> (u64, u64) {
    let files = checkpoint_files(dir);
    let newest = files.last().expect("a checkpoint");
    let bytes = std::fs::read(newest).unwrap();
    let info = journalstore::inspect::decode_index_checkpoint(&bytes, newest).unwrap();
    (info.last_lsn, bytes.len() as u64)
}

/// The background writer waits for `index_checkpoint_bytes` appended and
/// for 8 times the last checkpoint's size: with the interval at 1 byte, no
/// checkpoint follows one until that much more was appended, and one does
/// once it was. (Its thread looks once a second.)
#[test]
fn background_checkpoints_wait_for_eight_times_their_size() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(
        &dir,
        Options {
            index_checkpoint_bytes: Some(1),
            segment_size: 4 << 20,
            ..options()
        },
    )
    .unwrap();
    let mut batch = journalstore::WriteBatch::new();
    let mut n = 0u64;
    let mut write_bytes = |store: &Store, bytes: u64| {
        let until = store.stats().bytes_appended + bytes;
        while store.stats().bytes_appended < until {
            batch.clear();
            for _ in 0..10 {
                batch.append(format!("j{}", n % 500).as_bytes(), &[n as u8; 100]);
                n += 1;
            }
            store.write(&batch).unwrap();
        }
        store.snapshot().lsn()
    };
    write_bytes(&store, 512 << 10);
    store.write_index_checkpoint().unwrap();
    let (lsn, size) = newest_checkpoint(&dir);
    assert_eq!(lsn, store.snapshot().lsn());
    assert!(
        size > 16 << 10,
        "a checkpoint of {size} bytes is too small to tell"
    );
    // A quarter of the spacing: over two looks of the thread, none is due.
    write_bytes(&store, 2 * size);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        newest_checkpoint(&dir).0,
        lsn,
        "a checkpoint came too early"
    );
    // Past the spacing: the thread writes one at its next look.
    let last = write_bytes(&store, 7 * size);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while newest_checkpoint(&dir).0 < last {
        assert!(std::time::Instant::now() < deadline, "no checkpoint came");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A write that seals a segment wakes the checkpoint thread: with no
/// periodic look (`index_checkpoint_interval: None`), a checkpoint that is
/// due comes only from the seals' wake-ups. Four rounds, each from an
/// explicit checkpoint: past the spacing, then two segments more; each
/// round's new checkpoint must come (the deadline only bounds a failing
/// run: without the wake-up none ever comes).
#[test]
fn a_sealed_segment_wakes_the_checkpoint_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let segment_size = 64u64 << 10;
    let store = Store::open(
        &dir,
        Options {
            index_checkpoint_bytes: Some(1),
            index_checkpoint_interval: None,
            segment_size,
            ..options()
        },
    )
    .unwrap();
    let mut batch = journalstore::WriteBatch::new();
    let mut n = 0u64;
    let mut write_bytes = |store: &Store, bytes: u64| {
        let until = store.stats().bytes_appended + bytes;
        while store.stats().bytes_appended < until {
            batch.clear();
            batch.append(format!("j{}", n % 50).as_bytes(), &[n as u8; 200]);
            n += 1;
            store.write(&batch).unwrap();
        }
    };
    write_bytes(&store, 64 << 10);
    for round in 0..4 {
        store.write_index_checkpoint().unwrap();
        let (lsn, size) = newest_checkpoint(&dir);
        write_bytes(&store, 8 * size + 2 * segment_size);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while newest_checkpoint(&dir).0 <= lsn {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no checkpoint after the seals"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
