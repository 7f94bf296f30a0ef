//! The group commit pipeline (`SyncMode::Always`): a group is written while
//! the group before it syncs, and is acknowledged only by a sync of its own
//! that succeeds after that one, and no other step (a compaction switch)
//! shows it before. `SimFs::hold_sync` stops a sync in its tracks so that
//! the next group, or a compaction's switch, comes behind it,
//! deterministically.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use journalstore::io::{CrashMode, Fault, SimFs, SyncHold};
use journalstore::{Error, Options, Store, SyncMode, WriteBatch};

mod common;
use common::fill_three_journals_and_delete_gone;

fn options(sim: &SimFs) -> Options {
    Options {
        sync: SyncMode::Always,
        segment_size: 64 << 10,
        background_compaction: false,
        status_interval: None,
        fs: Arc::new(sim.clone()),
        ..Options::default()
    }
}

/// A generous bound for conditions that hold within milliseconds on an
/// idle machine; only a hang reaches it.
fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn append(
    store: &Arc<Store>,
    journal: &'static str,
    value: &'static str,
) -> JoinHandle<Result<u64, Error>> {
    let store = store.clone();
    std::thread::spawn(move || {
        let mut batch = WriteBatch::new();
        batch.append(journal.as_bytes(), value.as_bytes());
        store.write(&batch)
    })
}

type Writer = JoinHandle<Result<u64, Error>>;

/// The pipeline's two groups, "a" (group n, its sync held) and "b" (group
/// n+1, written behind it), the LSN acknowledged before them and the hold.
struct Pipeline {
    a: Writer,
    b: Writer,
    before: u64,
    hold: SyncHold,
}

/// Sets up the pipeline: "a" is written and its sync is held; then "b" is
/// written while that sync waits.
fn group_written_behind_a_held_sync(store: &Arc<Store>, sim: &SimFs) -> Pipeline {
    let mut first = WriteBatch::new();
    first.append(b"first", b"durable before the test");
    let before = store.write(&first).unwrap();

    let hold = sim.hold_next_sync();
    let a = append(store, "a", "group n");
    assert!(hold.wait_held(deadline()), "group n never synced");
    let appended = store.stats().bytes_appended;
    let b = append(store, "b", "group n+1");
    // `stats` takes the writer's lock, under which a group is encoded and
    // written in one step: once its bytes are counted, they are written.
    let limit = deadline();
    while store.stats().bytes_appended == appended {
        assert!(
            Instant::now() < limit,
            "group n+1 was not written while group n synced"
        );
        std::thread::yield_now();
    }
    // Written, but neither visible nor acknowledged while group n syncs.
    assert_eq!(
        store.last_lsn(),
        before,
        "acknowledged before any sync covered it"
    );
    assert_eq!(store.durable_lsn(), before);
    assert!(
        store.snapshot().journal(b"b").is_none(),
        "group n+1 visible before its sync"
    );
    assert!(
        !b.is_finished(),
        "group n+1 returned before group n's sync ended"
    );
    Pipeline { a, b, before, hold }
}

/// Lets the held sync go on and fail, as an EIO from `fdatasync` would:
/// it is the next sync to reach the fault check.
fn release_failing(sim: &SimFs, hold: &SyncHold) {
    sim.inject(Fault::Sync {
        nth: 0,
        kind: std::io::ErrorKind::Other,
    });
    hold.release();
}

fn reopen_after_power_loss(sim: &SimFs, dir: &Path) -> Store {
    drop(sim.crash(dir, CrashMode::DropUnsynced));
    Store::open(dir, options(&SimFs::new())).unwrap()
}

/// A failed sync of group n drops the unsynced pages of the file, group
/// n+1's included (as Linux does): group n+1, written behind it, must fail
/// too, and never be acknowledged or made visible by a later sync.
#[test]
fn failed_sync_of_a_group_never_acknowledges_the_group_written_behind_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let store = Arc::new(Store::open(&dir, options(&sim)).unwrap());
    let Pipeline { a, b, before, hold } = group_written_behind_a_held_sync(&store, &sim);
    release_failing(&sim, &hold);

    let a = a.join().unwrap();
    assert!(matches!(a, Err(Error::Io { .. })), "group n: {a:?}");
    let b = b.join().unwrap();
    match &b {
        Err(Error::WritesStopped { cause }) => {
            assert!(
                matches!(**cause, Error::Io { .. }),
                "group n+1's cause: {cause:?}"
            )
        }
        other => panic!("group n+1 after group n's failed sync: {other:?}"),
    }
    assert_eq!(
        store.last_lsn(),
        before,
        "a batch of a failed pipeline acknowledged"
    );
    assert_eq!(store.durable_lsn(), before);
    let snap = store.snapshot();
    assert!(snap.journal(b"a").is_none() && snap.journal(b"b").is_none());
    drop(snap);
    assert!(
        store.sync().is_err(),
        "a later sync counted after the failure"
    );
    let store = Arc::try_unwrap(store).unwrap();
    assert!(store.close().is_err());

    let store = reopen_after_power_loss(&sim, &dir);
    let snap = store.snapshot();
    assert_eq!(
        snap.journal(b"first").unwrap().len(),
        1,
        "acknowledged batch lost"
    );
    assert!(snap.journal(b"a").is_none() && snap.journal(b"b").is_none());
}

/// When group n's sync succeeds, group n+1 (written behind it) is synced
/// on its own and both are acknowledged, in LSN order, and survive a power
/// loss.
#[test]
fn group_written_during_a_sync_is_synced_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let store = Arc::new(Store::open(&dir, options(&sim)).unwrap());
    let Pipeline { a, b, before, hold } = group_written_behind_a_held_sync(&store, &sim);
    hold.release();

    let a = a.join().unwrap().unwrap();
    let b = b.join().unwrap().unwrap();
    assert!(before < a && a < b, "LSNs {before} < {a} < {b}");
    assert_eq!(store.durable_lsn(), b);
    assert_eq!(store.last_lsn(), b);
    // The power fails before close: only what the syncs made durable
    // survives.
    sim.fail_after(0);
    drop(store);

    let store = reopen_after_power_loss(&sim, &dir);
    let snap = store.snapshot();
    for journal in [&b"first"[..], b"a", b"b"] {
        assert_eq!(
            snap.journal(journal).map(|j| j.len()),
            Some(1),
            "{journal:?}"
        );
    }
}

/// A store and the group n ("a") of the pipeline, whose sync is held
/// after a compaction switched while it was under way.
struct SwitchDuringSync {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    sim: SimFs,
    store: Arc<Store>,
    a: Writer,
    group_synced: SyncHold,
}

/// A compaction that switches while group n ("a") is written and its sync
/// held: the switch's new version holds group n's batch, which must not
/// show before group n's sync has succeeded. The copy's sync is held until
/// group n is written, so that the switch comes after it.
fn compaction_switched_while_a_group_syncs() -> SwitchDuringSync {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let store = Arc::new(Store::open(&dir, options(&sim)).unwrap());
    fill_three_journals_and_delete_gone(&store);
    let copy_synced = sim.hold_sync(0);
    let group_synced = sim.hold_sync(1);
    let compactor = {
        let store = store.clone();
        std::thread::spawn(move || store.compact())
    };
    assert!(copy_synced.wait_held(deadline()), "compaction never synced");
    let a = append(&store, "a", "group n");
    assert!(group_synced.wait_held(deadline()), "group n never synced");
    copy_synced.release();
    let report = compactor.join().unwrap().unwrap();
    assert!(report.runs >= 1, "no run was rewritten: {report:?}");
    assert!(
        store.snapshot().journal(b"a").is_none(),
        "group n visible while its sync is under way"
    );
    assert!(!a.is_finished(), "group n returned before its sync ended");
    SwitchDuringSync {
        _tmp: tmp,
        dir,
        sim,
        store,
        a,
        group_synced,
    }
}

/// A compaction switch while a group syncs, and the sync fails: the group
/// is never visible, before or after the failure, nor after a power loss;
/// what was acknowledged before survives.
#[test]
fn compaction_switch_never_shows_a_group_whose_sync_then_fails() {
    let SwitchDuringSync {
        _tmp,
        dir,
        sim,
        store,
        a,
        group_synced,
    } = compaction_switched_while_a_group_syncs();
    release_failing(&sim, &group_synced);
    let a = a.join().unwrap();
    assert!(matches!(a, Err(Error::Io { .. })), "group n: {a:?}");
    assert!(
        store.snapshot().journal(b"a").is_none(),
        "group n visible after its sync failed"
    );
    let store = Arc::try_unwrap(store).unwrap();
    assert!(store.close().is_err());

    let store = reopen_after_power_loss(&sim, &dir);
    let snap = store.snapshot();
    assert!(snap.journal(b"a").is_none());
    assert!(snap.journal(b"gone").is_none());
    assert_eq!(snap.journal(b"keep").unwrap().len(), 40);
    assert_eq!(snap.journal(b"dies").unwrap().len(), 40);
}

/// A compaction switch while a group syncs, and the sync succeeds: the
/// group is acknowledged and visible, and the switch is published with it,
/// so that the rewritten segments go once nothing pins them.
#[test]
fn compaction_switch_during_a_group_sync_is_published_by_that_group() {
    let SwitchDuringSync {
        _tmp,
        store,
        a,
        group_synced,
        ..
    } = compaction_switched_while_a_group_syncs();
    group_synced.release();
    let a = a.join().unwrap().unwrap();
    assert_eq!(store.last_lsn(), a);
    let snap = store.snapshot();
    assert_eq!(snap.journal(b"a").map(|j| j.len()), Some(1));
    assert_eq!(snap.journal(b"keep").unwrap().len(), 40);
    assert_eq!(
        snap.generation(),
        store.stats().generation,
        "the switch's generation is not the one snapshots get"
    );
}

/// Many writers with slow syncs form groups of dozens, whose leaders are
/// woken for a write pass only once several requests have queued: every
/// batch is acknowledged (no request is left waiting for a pass that never
/// comes), each journal holds its writer's entries in order, and all of
/// them survive a power loss.
#[test]
fn many_writers_share_groups_and_every_batch_is_acknowledged() {
    const WRITERS: u64 = 48;
    const BATCHES: u64 = 60;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    sim.set_sync_latency(Duration::from_micros(300));
    let store = Arc::new(Store::open(&dir, options(&sim)).unwrap());
    let writers: Vec<JoinHandle<Vec<u64>>> = (0..WRITERS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..BATCHES)
                    .map(|n| {
                        let mut batch = WriteBatch::new();
                        batch.append(format!("w{t}").as_bytes(), format!("{t}-{n}").as_bytes());
                        store.write(&batch).unwrap()
                    })
                    .collect()
            })
        })
        .collect();
    let mut lsns: Vec<u64> = writers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    lsns.sort_unstable();
    lsns.dedup();
    assert_eq!(lsns.len() as u64, WRITERS * BATCHES, "an LSN given twice");
    assert_eq!(store.durable_lsn(), *lsns.last().unwrap());
    sim.fail_after(0);
    drop(store);

    let store = reopen_after_power_loss(&sim, &dir);
    let snap = store.snapshot();
    for t in 0..WRITERS {
        let entries: Vec<Vec<u8>> = snap
            .journal(format!("w{t}").as_bytes())
            .unwrap()
            .entries(..)
            .map(|e| e.unwrap().1.to_vec())
            .collect();
        let expected: Vec<Vec<u8>> = (0..BATCHES)
            .map(|n| format!("{t}-{n}").into_bytes())
            .collect();
        assert_eq!(entries, expected, "writer {t}");
    }
}
