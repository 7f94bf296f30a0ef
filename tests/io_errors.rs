//! I/O errors: a failing write, sync or rename stops writes cleanly.
//!
//! Faults are injected through `SimFs` (one-shot `Fault::Write`, `Sync` and
//! `Rename`, with a full disk or an EIO-like error) while a store writes
//! random batches into small segments, so that the faults land in segment
//! writes, group syncs, explicit syncs, segment rolls, segment frees and
//! compaction's manifest swaps. For each case:
//!
//! - the call that hits the fault returns `Error::Io` naming the operation
//!   and a file of the store (or, when the fault hit the segment free that
//!   follows an already durable batch, that batch is acknowledged and the
//!   next call returns `Error::WritesStopped` carrying the cause);
//! - snapshots taken before and after read fine and equal the model of the
//!   acknowledged batches;
//! - every later write returns `Error::WritesStopped`, and so does `close`;
//! - after a reopen (the process died, or the machine lost power) no
//!   acknowledged batch is lost (`Always`), or nothing acknowledged before
//!   the last successful sync (`Never`); the failed batch may or may not be
//!   there, whole; no orphan file is left.
//!
//! A compaction whose copy fails (before anything was switched) leaves the
//! store writable; one whose manifest swap fails stops writes like the rest.

mod common;

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use common::{random_batch, to_batch, Model, Op, Rng};
use journalstore::inspect;
use journalstore::io::{CrashMode, Fault, SimFs};
use journalstore::{DisplayChain, Error, Options, Snapshot, Store, SyncMode};

const SEGMENT: u64 = 8 << 10;
/// The journal whose metadata numbers the batches (see `counter`).
const SEQ: &[u8] = b"seq";

fn options(sim: &SimFs, sync: SyncMode) -> Options {
    Options {
        sync,
        segment_size: SEGMENT,
        background_compaction: false,
        fs: Arc::new(sim.clone()),
        ..Options::default()
    }
}

/// Every segment file on disk is listed by the manifest, and no
/// `MANIFEST.tmp` is left.
fn assert_no_orphans(dir: &Path, ctx: &str) {
    let on_disk: BTreeSet<u32> = inspect::segment_files(dir)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let listed: BTreeSet<u32> = inspect::read_manifest(&inspect::manifest_path(dir))
        .unwrap()
        .segments
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(on_disk, listed, "{ctx}: orphan segment files");
    assert!(
        !dir.join(inspect::MANIFEST_TMP_FILE_NAME).exists(),
        "{ctx}: MANIFEST.tmp left"
    );
}

/// How many batches a state holds: the metadata of `SEQ`, which every
/// batch sets to its position (1-based) in the history.
fn counter(snap: &Snapshot) -> usize {
    snap.journal(SEQ).map_or(0, |j| {
        std::str::from_utf8(j.metadata().unwrap().unwrap_or_default())
            .unwrap()
            .parse()
            .unwrap()
    })
}

/// Checks that `e` is the error of the injected fault: `Error::Io` naming
/// a file of the store in `dir` and carrying the fault's kind, or
/// `Error::WritesStopped` whose cause is that failure. Returns whether it
/// was `Error::Io`.
fn check_fault_error(e: &Error, dir: &Path, kind: ErrorKind, ctx: &str) -> bool {
    match e {
        Error::Io { op, path, source } => {
            assert!(!op.is_empty(), "{ctx}: no operation in {e:?}");
            assert!(path.starts_with(dir), "{ctx}: {path:?} is not in the store");
            assert_eq!(source.kind(), kind, "{ctx}: {e:?}");
            assert!(source.to_string().contains("simulated"), "{ctx}: {e:?}");
            let shown = e.to_string();
            assert!(shown.contains(op), "{ctx}: {shown} does not name {op}");
            true
        }
        Error::WritesStopped { cause } => {
            // The cause is the failure itself, with its own chain.
            let cause: &Error = cause;
            assert!(check_fault_error(cause, dir, kind, ctx), "{ctx}: {e:?}");
            let source = std::error::Error::source(e);
            assert!(
                source.is_some_and(|s| std::ptr::addr_eq(s, cause)),
                "{ctx}: source() is not the cause"
            );
            false
        }
        other => panic!("{ctx}: unexpected error {other:?}"),
    }
}

/// A valid batch for the model (retrying the generator until it is), with
/// the counter set to `seq`.
fn valid_batch(rng: &mut Rng, model: &Model, seq: usize) -> Vec<Op> {
    loop {
        let mut ops = random_batch(rng, model, 8, 300);
        if model.clone().apply(&ops).is_ok() {
            ops.push(Op::SetMetadata(SEQ.to_vec(), seq.to_string().into_bytes()));
            return ops;
        }
    }
}

/// One scenario: what fails, in which mode, and how the process ends.
#[derive(Clone, Copy, Debug)]
struct Case {
    fault: Fault,
    sync: SyncMode,
    /// Whether the machine loses power before the reopen (else only the
    /// process ends, and the page cache survives).
    power_loss: bool,
}

fn kind_of(fault: Fault) -> ErrorKind {
    match fault {
        Fault::Write { kind, .. }
        | Fault::Sync { kind, .. }
        | Fault::Rename { kind, .. }
        | Fault::Allocate { kind, .. } => kind,
        other => panic!("not used here: {other:?}"),
    }
}

/// Runs `case`; returns whether the first error was `Error::Io`.
fn run(case: Case, seed: u64) -> bool {
    let ctx = format!("{case:?} seed {seed}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let store = Store::open(&dir, options(&sim, case.sync)).unwrap();
    let mut rng = Rng::new(seed);
    // models[k]: the state after the first k batches of the history.
    let mut models = vec![Model::default()];
    for _ in 0..10 {
        let ops = valid_batch(&mut rng, models.last().unwrap(), models.len());
        store.write(&to_batch(&ops)).unwrap();
        let mut next = models.last().unwrap().clone();
        next.apply(&ops).unwrap();
        models.push(next);
    }
    store.sync().unwrap();
    // Batches known durable: acknowledged under Always, or synced.
    let mut synced = models.len() - 1;

    sim.inject(case.fault);
    let mut failed_batch: Option<Model> = None;
    let mut failure = None;
    let mut held = None;
    for step in 0..400 {
        held = Some(store.snapshot());
        let acked = models.len() - 1;
        if case.sync == SyncMode::Never && step % 5 == 4 {
            match store.sync() {
                Ok(()) => synced = acked,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            continue;
        }
        let ops = valid_batch(&mut rng, &models[acked], acked + 1);
        match store.write(&to_batch(&ops)) {
            Ok(_) => {
                let mut next = models[acked].clone();
                next.apply(&ops).unwrap();
                models.push(next);
                if case.sync == SyncMode::Always {
                    synced = acked + 1;
                }
            }
            Err(e) => {
                let mut next = models[acked].clone();
                next.apply(&ops).unwrap();
                // A batch refused because writes had already stopped never
                // reached the log.
                if !matches!(e, Error::WritesStopped { .. }) {
                    failed_batch = Some(next);
                }
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.unwrap_or_else(|| panic!("{ctx}: the fault never fired"));
    let was_io = check_fault_error(&failure, &dir, kind_of(case.fault), &ctx);
    let acked = models.len() - 1;
    let held = held.unwrap();

    // Readable: the snapshot from before the failure and a new one.
    models[counter(&held)].assert_matches(&held, &format!("{ctx}: held snapshot"));
    assert_eq!(counter(&held), acked, "{ctx}");
    let after = store.snapshot();
    models[acked].assert_matches(&after, &format!("{ctx}: snapshot after"));
    // Writes stay stopped.
    for _ in 0..3 {
        let ops = valid_batch(&mut rng, &models[acked], acked + 1);
        match store.write(&to_batch(&ops)) {
            Err(e @ Error::WritesStopped { .. }) => {
                let chain = DisplayChain(&e).to_string();
                assert!(chain.contains("simulated"), "{ctx}: {chain}")
            }
            other => panic!("{ctx}: write after the failure: {other:?}"),
        }
    }
    assert!(
        matches!(store.compact(), Err(Error::WritesStopped { .. })),
        "{ctx}: compaction after the failure"
    );
    match store.close() {
        Err(Error::WritesStopped { .. }) => {}
        other => panic!("{ctx}: close after the failure: {other:?}"),
    }
    models[acked].assert_matches(&after, &format!("{ctx}: snapshot after close"));
    drop((held, after));

    if case.power_loss {
        sim.crash(&dir, CrashMode::DropUnsynced).unwrap();
    }
    let store = Store::open(&dir, options(&SimFs::new(), case.sync))
        .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    let snap = store.snapshot();
    let k = counter(&snap);
    // What must be there: everything acknowledged, unless power was lost
    // in Never mode, where only what the last sync covered must be.
    let must = if case.power_loss { synced } else { acked };
    assert!(
        (must..=acked + 1).contains(&k),
        "{ctx}: reopened with {k} batches; acknowledged {acked}, synced {synced}"
    );
    if k == acked + 1 {
        let model = failed_batch
            .as_ref()
            .unwrap_or_else(|| panic!("{ctx}: a batch that was never written is there"));
        model.assert_matches(&snap, &format!("{ctx}: reopened with the failed batch"));
    } else {
        models[k].assert_matches(&snap, &format!("{ctx}: reopened"));
    }
    drop(snap);
    assert_no_orphans(&dir, &ctx);
    // The reopened store writes again.
    let ops = [Op::Append(b"after".to_vec(), None, b"reopen".to_vec())];
    store.write(&to_batch(&ops)).unwrap();
    store.close().unwrap();
    was_io
}

fn cases(make: impl Fn(u64, ErrorKind) -> Fault, nths: &[u64]) -> Vec<Case> {
    let mut out = Vec::new();
    let mut power_loss = false;
    for &nth in nths {
        for kind in [ErrorKind::StorageFull, ErrorKind::Other] {
            for sync in [SyncMode::Always, SyncMode::Never] {
                power_loss = !power_loss;
                out.push(Case {
                    fault: make(nth, kind),
                    sync,
                    power_loss,
                });
            }
        }
    }
    out
}

/// Guards the module's claims for failing segment and manifest writes
/// (full disk and EIO), in both sync modes, across rolls.
#[test]
fn failed_write_stops_writes_and_loses_nothing_acknowledged() {
    let mut io_errors = 0;
    let all = cases(|nth, kind| Fault::Write { nth, kind }, &[0, 3, 11, 23]);
    for (i, case) in all.iter().enumerate() {
        io_errors += usize::from(run(*case, i as u64));
    }
    assert!(io_errors > 0, "no write returned Error::Io");
}

/// Guards the module's claims for failing syncs: group syncs under
/// `Always`, explicit syncs and the syncs of rolls and frees under `Never`.
#[test]
fn failed_sync_stops_writes_and_loses_nothing_acknowledged() {
    let mut io_errors = 0;
    let all = cases(|nth, kind| Fault::Sync { nth, kind }, &[0, 2, 7]);
    for (i, case) in all.iter().enumerate() {
        io_errors += usize::from(run(*case, 100 + i as u64));
    }
    assert!(io_errors > 0, "no call returned Error::Io");
}

/// Guards the module's claims for failing manifest renames, which happen
/// only in segment rolls and frees: the store rolls every few batches.
/// (The write whose roll fails gets `WritesStopped` today, not `Io`; see
/// `write_whose_roll_fails_returns_the_io_error`.)
#[test]
fn failed_rename_in_roll_or_free_stops_writes_and_loses_nothing_acknowledged() {
    let all = cases(|nth, kind| Fault::Rename { nth, kind }, &[0, 1, 4]);
    for (i, case) in all.iter().enumerate() {
        run(*case, 200 + i as u64);
    }
}

/// Guards the module's claims for a failing space reservation (a full disk
/// or EIO from `fallocate`) when a roll creates the next segment.
#[test]
fn failed_allocation_in_roll_stops_writes_and_loses_nothing_acknowledged() {
    let mut io_errors = 0;
    let all = cases(|nth, kind| Fault::Allocate { nth, kind }, &[0, 1, 4]);
    for (i, case) in all.iter().enumerate() {
        io_errors += usize::from(run(*case, 300 + i as u64));
    }
    assert!(io_errors > 0, "no write returned Error::Io");
}

/// Guards: the disk filling up while the writer reserves the next MiB of
/// its segment (segment files are sparse; in the buffered modes space is
/// reserved with `fallocate` 1 MiB ahead of the data) fails that write with
/// `Error::Io` "reserve segment space" and `StorageFull`, leaves every
/// acknowledged batch readable, stops later writes, and after a reopen
/// every acknowledged batch is there. (Under `SyncMode::Always` the space
/// ahead is zero-filled with ordinary writes, which the failing-write
/// tests above cover.)
#[test]
fn disk_full_while_reserving_segment_space_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let opts = Options {
        segment_size: 8 << 20,
        ..options(&sim, SyncMode::Never)
    };
    let store = Store::open(&dir, opts.clone()).unwrap();
    let entry = vec![9u8; 4000];
    let mut batch = journalstore::WriteBatch::new();
    batch.append(b"j", &entry);
    // The first write after an open reserves ahead of the data (the writer
    // does not know what an earlier run reserved); the next allocation is
    // the reservation once the data passes that.
    store.write(&batch).unwrap();
    let mut acknowledged = 1u64;
    sim.inject(Fault::Allocate {
        nth: 0,
        kind: ErrorKind::StorageFull,
    });
    let err = loop {
        let mut batch = journalstore::WriteBatch::new();
        batch.append(b"j", &entry);
        match store.write(&batch) {
            Ok(_) => acknowledged += 1,
            Err(e) => break e,
        }
        assert!(acknowledged < 1000, "no reservation within 4 MB of writes");
    };
    match &err {
        Error::Io { op, path, source } => {
            assert_eq!(*op, "reserve segment space");
            assert!(path.starts_with(&dir), "{path:?}");
            assert_eq!(source.kind(), ErrorKind::StorageFull);
        }
        other => panic!("expected the reservation's Io error, got {other:?}"),
    }
    // The first MiB was reserved by the first write; the next reservation
    // is made once the data comes within 192 KiB of its end, so the failure
    // came after that much. (Each record is a little over 4,000 bytes:
    // header, op header, id.)
    assert!(
        acknowledged >= ((1 << 20) - (192 << 10)) / 4100,
        "{acknowledged} batches"
    );
    assert_eq!(store.snapshot().journal(b"j").unwrap().len(), acknowledged);
    let mut batch = journalstore::WriteBatch::new();
    batch.append(b"j", b"x");
    assert!(matches!(
        store.write(&batch),
        Err(Error::WritesStopped { .. })
    ));
    drop(store);
    let store = Store::open(&dir, opts).unwrap();
    let snap = store.snapshot();
    let j = snap.journal(b"j").unwrap();
    assert_eq!(j.len(), acknowledged);
    for item in j.entries(..) {
        assert_eq!(item.unwrap().1, &entry[..]);
    }
}

/// Guards: the write whose segment roll fails (here the manifest rename)
/// gets the I/O error itself, `Error::Io` naming the operation and file,
/// like a write whose record fails to reach the disk; only later writes
/// get `WritesStopped`.
#[test]
fn write_whose_roll_fails_returns_the_io_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let store = Store::open(&dir, options(&sim, SyncMode::Always)).unwrap();
    let entry = vec![5u8; 1000];
    let mut batch = journalstore::WriteBatch::new();
    batch.append(b"a", &entry);
    // Same-size records: find how many fit in a segment.
    let mut fit = 0;
    while store.stats().segments == 1 {
        store.write(&batch).unwrap();
        fit += 1;
    }
    // The segment that just started holds one record; fill it up to the
    // point where the next write must roll.
    for _ in 1..fit - 1 {
        store.write(&batch).unwrap();
    }
    assert_eq!(store.stats().segments, 2);
    sim.inject(Fault::Rename {
        nth: 0,
        kind: ErrorKind::StorageFull,
    });
    match store.write(&batch) {
        Err(Error::Io { op, path, source }) => {
            assert_eq!(op, "rename manifest");
            assert_eq!(path, dir.join("MANIFEST"));
            assert_eq!(source.kind(), ErrorKind::StorageFull);
        }
        other => panic!("the write whose roll failed got {other:?}"),
    }
    assert!(matches!(
        store.write(&batch),
        Err(Error::WritesStopped { .. })
    ));
}

/// A store (SyncMode::Always) with compaction work, and its model.
fn compactable_store(dir: &Path, sim: &SimFs) -> (Store, Model) {
    let store = Store::open(dir, options(sim, SyncMode::Always)).unwrap();
    let mut model = Model::default();
    let mut rng = Rng::new(77);
    for step in 0..300 {
        let ops = valid_batch(&mut rng, &model, step + 1);
        store.write(&to_batch(&ops)).unwrap();
        model.apply(&ops).unwrap();
        if step % 3 == 0 {
            // A journal that never dies: segments get compacted, not freed.
            let ops = vec![Op::Append(b"keep".to_vec(), None, vec![7; 150])];
            store.write(&to_batch(&ops)).unwrap();
            model.apply(&ops).unwrap();
        }
    }
    (store, model)
}

/// Guards: a failed rename of compaction's manifest swap returns
/// `Error::Io` from `compact()`, stops writes (the manifest on disk may or
/// may not name the new segment), keeps the store readable, makes `close`
/// report it, and the reopened store, after a process death or a power
/// loss, equals the model with no orphan file.
#[test]
fn failed_rename_in_compaction_swap_stops_writes() {
    for (i, power_loss) in [false, true].into_iter().enumerate() {
        for kind in [ErrorKind::StorageFull, ErrorKind::Other] {
            let ctx = format!("power loss {power_loss}, {kind:?}");
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("store");
            let sim = SimFs::new();
            let (store, model) = compactable_store(&dir, &sim);
            let held = store.snapshot();
            sim.inject(Fault::Rename {
                nth: i as u64,
                kind,
            });
            let err = store.compact().unwrap_err();
            assert!(check_fault_error(&err, &dir, kind, &ctx), "{ctx}: {err:?}");
            model.assert_matches(&held, &format!("{ctx}: held"));
            model.assert_matches(&store.snapshot(), &format!("{ctx}: after"));
            let ops = vec![Op::Append(b"keep".to_vec(), None, b"more".to_vec())];
            assert!(
                matches!(
                    store.write(&to_batch(&ops)),
                    Err(Error::WritesStopped { .. })
                ),
                "{ctx}"
            );
            assert!(matches!(store.close(), Err(Error::WritesStopped { .. })));
            drop(held);
            if power_loss {
                sim.crash(&dir, CrashMode::DropUnsynced).unwrap();
            }
            let store = Store::open(&dir, options(&SimFs::new(), SyncMode::Always)).unwrap();
            model.assert_matches(&store.snapshot(), &format!("{ctx}: reopened"));
            assert_no_orphans(&dir, &ctx);
            store.compact().unwrap();
            model.assert_matches(&store.snapshot(), &format!("{ctx}: compacted"));
        }
    }
}

/// Guards: a compaction whose copy fails (writing the new segment's header
/// or data, or syncing it, before anything is switched) returns `Error::Io` and changes
/// nothing: writes go on, a later compaction succeeds, and the reopened
/// store equals the model with no orphan file (a half-made segment file is
/// removed at the latest by the reopen).
#[test]
fn failed_compaction_copy_leaves_the_store_writable() {
    let faults = [
        Fault::Write {
            nth: 0,
            kind: ErrorKind::StorageFull,
        },
        Fault::Write {
            nth: 1,
            kind: ErrorKind::Other,
        },
        Fault::Sync {
            nth: 0,
            kind: ErrorKind::Other,
        },
        // The copy syncs once (header and data together): its only sync.
        Fault::Sync {
            nth: 0,
            kind: ErrorKind::StorageFull,
        },
    ];
    for fault in faults {
        let ctx = format!("{fault:?}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimFs::new();
        let (store, mut model) = compactable_store(&dir, &sim);
        sim.inject(fault);
        let err = store.compact().unwrap_err();
        assert!(
            check_fault_error(&err, &dir, kind_of(fault), &ctx),
            "{ctx}: {err:?}"
        );
        model.assert_matches(&store.snapshot(), &format!("{ctx}: after"));
        let ops = vec![Op::Append(b"keep".to_vec(), None, b"more".to_vec())];
        store.write(&to_batch(&ops)).unwrap();
        model.apply(&ops).unwrap();
        let report = store.compact().unwrap();
        assert!(report.runs > 0, "{ctx}: {report:?}");
        model.assert_matches(&store.snapshot(), &format!("{ctx}: compacted"));
        store.close().unwrap();
        let store = Store::open(&dir, options(&SimFs::new(), SyncMode::Always)).unwrap();
        model.assert_matches(&store.snapshot(), &format!("{ctx}: reopened"));
        assert_no_orphans(&dir, &ctx);
    }
}

/// A `SyncMode::Always` store in `dir` (64 KiB segments) whose `nth` sync
/// from now on fails with an EIO-like error.
fn open_with_failing_sync(dir: &Path, sim: &SimFs, nth: u64) -> Arc<Store> {
    let opts = Options {
        segment_size: 64 << 10,
        ..options(sim, SyncMode::Always)
    };
    let store = Arc::new(Store::open(dir, opts).unwrap());
    sim.inject(Fault::Sync {
        nth,
        kind: ErrorKind::Other,
    });
    store
}

/// Four writers appending `"{t}-{n}"` to journal `t{t}` until a write
/// fails (at most `max` each); each returns how many it had acknowledged
/// and the error that stopped it.
fn spawn_writers(store: &Arc<Store>, max: u64) -> Vec<std::thread::JoinHandle<(u64, Error)>> {
    (0..4u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let id = format!("t{t}").into_bytes();
                for n in 0..max {
                    let mut batch = journalstore::WriteBatch::new();
                    batch.append(&id, format!("{t}-{n}").as_bytes());
                    if let Err(e) = store.write(&batch) {
                        return (n, e);
                    }
                }
                panic!("writer {t}: the fault never stopped writes");
            })
        })
        .collect()
}

/// Writer `t`'s journal shows exactly its `acked[t]` acknowledged entries
/// in a snapshot: nothing unacknowledged is visible, nothing acknowledged
/// is missing.
fn assert_visible_equals_acknowledged(store: &Store, acked: &[u64], ctx: &str) {
    let snap = store.snapshot();
    for (t, n) in acked.iter().enumerate() {
        let len = snap
            .journal(format!("t{t}").as_bytes())
            .map_or(0, |j| j.len());
        assert_eq!(len, *n, "{ctx}: writer {t}: visible vs acknowledged");
    }
}

/// After a power loss (`sim.crash`) and a reopen, writer `t`'s journal
/// holds its `acked[t]` acknowledged entries in order, and at most the one
/// whose write failed beyond them.
fn assert_acknowledged_survive(sim: &SimFs, dir: &Path, acked: &[u64], ctx: &str) {
    sim.crash(dir, CrashMode::DropUnsynced).unwrap();
    let store = Store::open(dir, options(&SimFs::new(), SyncMode::Always))
        .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    let snap = store.snapshot();
    for (t, n) in acked.iter().enumerate() {
        let got = numbered_entries(&snap, t, ctx);
        assert!(
            (*n..=n + 1).contains(&got),
            "{ctx}: writer {t}: {got} entries after power loss, {n} acknowledged"
        );
    }
}

/// How many entries writer `t`'s journal holds in `snap`, checking that
/// they are its numbered entries from the first, in order.
fn numbered_entries(snap: &Snapshot, t: usize, ctx: &str) -> u64 {
    let got: Vec<Vec<u8>> = snap
        .journal(format!("t{t}").as_bytes())
        .map(|j| j.entries(..).map(|e| e.unwrap().1.to_vec()).collect())
        .unwrap_or_default();
    for (k, e) in got.iter().enumerate() {
        assert_eq!(e, format!("{t}-{k}").as_bytes(), "{ctx}: writer {t}");
    }
    got.len() as u64
}

/// Guards group commit under a failing sync (`SyncMode::Always`): four
/// writers append numbered entries to their own journals while a group's
/// sync fails. Every writer stops at its first error; no batch written
/// after the failed group is acknowledged (each journal's snapshot length
/// after the failure equals what its writer saw acknowledged, so nothing
/// unacknowledged is visible either), and after a power loss and a reopen
/// every acknowledged entry is there, in order, with at most the failed
/// batch beyond. With slow syncs the next group is written while one syncs
/// (the pipeline), so the failure drops a group written behind it too.
#[test]
fn failed_group_sync_with_concurrent_writers_loses_nothing_acknowledged() {
    for (nth, latency) in [3u64, 40, 200].into_iter().flat_map(|n| [(n, 0), (n, 500)]) {
        let ctx = format!("sync {nth}, sync latency {latency} us");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimFs::new();
        sim.set_sync_latency(std::time::Duration::from_micros(latency));
        let store = open_with_failing_sync(&dir, &sim, nth);
        let writers = spawn_writers(&store, 5_000);
        let acked: Vec<(u64, Error)> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            acked.iter().any(|(_, e)| matches!(e, Error::Io { .. })),
            "{ctx}: no writer saw the sync fail: {acked:?}"
        );
        let acked: Vec<u64> = acked.iter().map(|(n, _)| *n).collect();
        assert_visible_equals_acknowledged(&store, &acked, &ctx);
        let store = Arc::try_unwrap(store).unwrap();
        assert!(store.close().is_err(), "{ctx}: close after the failure");
        assert_acknowledged_survive(&sim, &dir, &acked, &ctx);
    }
}

/// A sync that fails while writers commit groups and another thread calls
/// `Store::sync` on the same file: on Linux the failure is reported to one
/// caller and the file's unsynced pages are dropped, so no other sync may
/// then count as success. Afterwards `sync`, `write` and `close` all fail,
/// and after a power loss every acknowledged batch is there (nothing the
/// failed sync dropped was acknowledged), with at most one more per writer.
#[test]
fn failed_sync_under_concurrent_store_sync_acknowledges_nothing_it_dropped() {
    for nth in [2u64, 5, 17, 60, 150] {
        let ctx = format!("sync {nth}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimFs::new();
        let store = open_with_failing_sync(&dir, &sim, nth);
        let syncer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..100_000 {
                    if store.sync().is_err() {
                        return;
                    }
                }
                panic!("Store::sync never failed");
            })
        };
        let writers = spawn_writers(&store, 20_000);
        let acked: Vec<u64> = writers.into_iter().map(|h| h.join().unwrap().0).collect();
        syncer.join().unwrap();
        assert!(store.sync().is_err(), "{ctx}: sync after the failure");
        let mut batch = journalstore::WriteBatch::new();
        batch.append(b"t0", b"late");
        assert!(
            matches!(store.write(&batch), Err(Error::WritesStopped { .. })),
            "{ctx}: write after the failure"
        );
        let store = Arc::try_unwrap(store).unwrap();
        assert!(store.close().is_err(), "{ctx}: close after the failure");
        assert_acknowledged_survive(&sim, &dir, &acked, &ctx);
    }
}

/// Guards what a free, a seal or a compaction switch publishes while
/// groups sync: as the test above, with background compaction on and each
/// writer also filling and deleting a scratch journal of 2 KiB entries, so
/// that segments are sealed, freed and rewritten between the groups, and
/// a run of syncs fails (some of them a compaction's, which leave the
/// store writable, until a group's or a switch's stops it). Each
/// journal's snapshot length after the failure equals what its writer saw
/// acknowledged, and after a power loss every acknowledged entry is there.
#[test]
fn failed_group_sync_beside_compaction_shows_nothing_unacknowledged() {
    for first in [5u64, 30, 120] {
        let ctx = format!("syncs from {first}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimFs::new();
        sim.set_sync_latency(std::time::Duration::from_micros(200));
        let opts = Options {
            segment_size: 64 << 10,
            background_compaction: true,
            ..options(&sim, SyncMode::Always)
        };
        let store = Arc::new(Store::open(&dir, opts).unwrap());
        for k in 0..8 {
            sim.inject(Fault::Sync {
                nth: first + 7 * k,
                kind: ErrorKind::Other,
            });
        }
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let (id, scratch) = (format!("t{t}"), format!("s{t}"));
                    for n in 0..20_000u64 {
                        let mut batch = journalstore::WriteBatch::new();
                        batch.append(id.as_bytes(), format!("{t}-{n}").as_bytes());
                        if n % 16 == 15 {
                            batch.delete_journal(scratch.as_bytes());
                        } else {
                            batch.append(scratch.as_bytes(), &[t as u8; 2048]);
                        }
                        if let Err(e) = store.write(&batch) {
                            return (n, e);
                        }
                    }
                    panic!("writer {t}: the faults never stopped writes");
                })
            })
            .collect();
        let acked: Vec<u64> = writers.into_iter().map(|h| h.join().unwrap().0).collect();
        assert_visible_equals_acknowledged(&store, &acked, &ctx);
        let store = Arc::try_unwrap(store).unwrap();
        drop(store.close());
        assert_acknowledged_survive(&sim, &dir, &acked, &ctx);
    }
}

/// Guards buffered writes copied outside the writer's lock
/// (`SyncMode::Never`): four writers append numbered entries to their own
/// journals while one segment write fails. A record reserved after the
/// failed one may be written, but is never acknowledged: after a reopen
/// (the process died, no power loss), recovery keeps the log up to the
/// failed record, and every writer's acknowledged entries are there, in
/// order, with at most the one whose write failed or was refused beyond
/// them. Snapshots after the failure show nothing unacknowledged.
#[test]
fn failed_buffered_write_with_concurrent_writers_acknowledges_nothing_after_it() {
    for nth in [5u64, 40, 300, 2_000] {
        let ctx = format!("write {nth}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimFs::new();
        let store = Arc::new(Store::open(&dir, options(&sim, SyncMode::Never)).unwrap());
        // Writes that wait before they are issued overlap: records
        // reserved after the failing one are written while it fails.
        sim.set_write_latency(std::time::Duration::from_micros(200));
        sim.inject(Fault::Write {
            nth,
            kind: ErrorKind::Other,
        });
        let writers = spawn_writers(&store, 50_000);
        let acked: Vec<(u64, Error)> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            acked.iter().any(|(_, e)| matches!(e, Error::Io { .. })),
            "{ctx}: no writer saw the write fail: {acked:?}"
        );
        let snap = store.snapshot();
        for (t, (n, _)) in acked.iter().enumerate() {
            let got = numbered_entries(&snap, t, &ctx);
            assert!(
                got <= *n,
                "{ctx}: writer {t}: unacknowledged entries visible"
            );
        }
        drop(snap);
        let store = Arc::try_unwrap(store).unwrap();
        assert!(store.close().is_err(), "{ctx}: close after the failure");
        let store = Store::open(&dir, options(&SimFs::new(), SyncMode::Never))
            .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        let snap = store.snapshot();
        for (t, (n, _)) in acked.iter().enumerate() {
            let got = numbered_entries(&snap, t, &ctx);
            assert!(
                (*n..=n + 1).contains(&got),
                "{ctx}: writer {t}: {got} entries after reopen, {n} acknowledged"
            );
        }
        drop(snap);
        store.close().unwrap();
    }
}

/// Under `Interval`, a failed background sync stops writes, and an explicit
/// `sync` and `close` report it too: the data it dropped is not durable,
/// whatever a later fdatasync returns.
#[test]
fn failed_background_sync_fails_later_sync_and_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let opts = Options {
        // No roll (which syncs in the writer) before the background sync.
        segment_size: 64 << 20,
        ..options(
            &sim,
            SyncMode::Interval(std::time::Duration::from_millis(1)),
        )
    };
    let store = Store::open(&dir, opts).unwrap();
    sim.inject(Fault::Sync {
        nth: 0,
        kind: ErrorKind::Other,
    });
    // Write until the background sync has failed and stopped writes (it
    // runs every millisecond; the bound only ends a broken run).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut n = 0u64;
    loop {
        let mut batch = journalstore::WriteBatch::new();
        batch.append(b"j", format!("{n}").as_bytes());
        match store.write(&batch) {
            Ok(_) => n += 1,
            Err(Error::WritesStopped { .. }) => break,
            Err(e) => panic!("unexpected error: {e}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sync never failed"
        );
        std::thread::yield_now();
    }
    assert!(
        matches!(store.sync(), Err(Error::WritesStopped { .. })),
        "sync after a failed background sync"
    );
    assert!(
        store.close().is_err(),
        "close after a failed background sync"
    );
}
