//! Per-write durability (`write_with`, `sync_to`, `durable_lsn`) and
//! following the log (`wait_for`, `wait_for_durable`, `last_lsn`).
//!
//! Durability is checked the only way that means anything: power loss
//! through `SimFs` (`CrashMode::DropUnsynced` drops every write no
//! successful sync covered), then a reopen. The claims:
//! - a `sync: false` write is visible to snapshots at once, before it is
//!   durable (a power loss before any sync takes it back);
//! - once `sync_to(lsn)` returned, every batch up to `lsn` survives a power
//!   loss, across segment rolls, in every `SyncMode`; a `sync: true` write
//!   is durable on return in every `SyncMode`;
//! - after a failed sync, `sync_to` fails for what that sync covered;
//! - `sync_to` of an LSN already durable does no I/O at all.
//!
//! The concurrency tests wait on conditions (joins, channels), never on
//! sleeps: every outcome they check is the same whichever thread runs first.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use journalstore::io::{CrashMode, Fault, SimFs};
use journalstore::{Error, Options, Store, SyncMode, WriteBatch, WriteOptions};

/// A bound for waits that return at once when the code is right: a
/// regression then fails the test instead of hanging it.
const BOUND: Option<Duration> = Some(Duration::from_secs(60));

const BUFFERED: WriteOptions = WriteOptions { sync: false };
const SYNCED: WriteOptions = WriteOptions { sync: true };

const MODES: [SyncMode; 3] = [
    SyncMode::Always,
    SyncMode::Never,
    // Long enough never to run during a test: the explicit calls are what
    // is checked.
    SyncMode::Interval(Duration::from_secs(3600)),
];

fn options(sim: &SimFs, sync: SyncMode) -> Options {
    Options {
        sync,
        // Small segments: a few dozen batches roll.
        segment_size: 16 << 10,
        background_compaction: false,
        status_interval: None,
        fs: Arc::new(sim.clone()),
        ..Options::default()
    }
}

/// A batch appending `value` to journal `j`.
fn append(value: &str) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.append(b"j", value.as_bytes());
    batch
}

/// Journal `j`'s entries in `store`, as strings.
fn entries(store: &Store) -> Vec<String> {
    store
        .snapshot()
        .journal(b"j")
        .map(|j| {
            j.entries(..)
                .map(|e| String::from_utf8(e.unwrap().1.to_vec()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Cuts the power under an open store (nothing more reaches the disk, the
/// page cache is lost) and reopens it on a fresh `SimFs`.
fn power_loss(store: Store, sim: &SimFs, dir: &Path, sync: SyncMode) -> Store {
    sim.fail_after(0);
    drop(store);
    sim.crash(dir, CrashMode::DropUnsynced).unwrap();
    Store::open(dir, options(&SimFs::new(), sync)).unwrap()
}

/// A `sync: false` write is in snapshots at once, in every mode (under
/// `Always` too), and not durable: a power loss before any sync takes it
/// back.
#[test]
fn unsynced_write_is_visible_before_it_is_durable() {
    for sync in MODES {
        let ctx = format!("{sync:?}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimFs::new();
        let store = Store::open(&dir, options(&sim, sync)).unwrap();
        let durable = store.durable_lsn();
        let a = store.write_with(&append("a"), BUFFERED).unwrap();
        assert_eq!(store.last_lsn(), a, "{ctx}");
        assert!(store.snapshot().lsn() >= a, "{ctx}");
        assert_eq!(entries(&store), ["a"], "{ctx}");
        assert_eq!(store.durable_lsn(), durable, "{ctx}: nothing synced");
        assert!(durable < a, "{ctx}");
        let store = power_loss(store, &sim, &dir, sync);
        assert!(entries(&store).is_empty(), "{ctx}: the unsynced batch");
    }
}

/// `sync_to(a)` makes `a` and everything before it durable, across
/// segment rolls; what is written after may be lost.
#[test]
fn batches_up_to_a_sync_to_survive_power_loss() {
    for sync in MODES {
        let ctx = format!("{sync:?}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimFs::new();
        let store = Store::open(&dir, options(&sim, sync)).unwrap();
        // ~40 KiB of batches: two rolls of 16 KiB segments before the sync.
        let value = "x".repeat(400);
        let mut a = 0;
        for i in 0..100 {
            a = store
                .write_with(&append(&format!("{i}{value}")), BUFFERED)
                .unwrap();
        }
        store.sync_to(a).unwrap();
        assert!(store.durable_lsn() >= a, "{ctx}");
        let b = store.write_with(&append("b"), BUFFERED).unwrap();
        assert!(store.durable_lsn() < b, "{ctx}");
        assert_eq!(entries(&store).len(), 101, "{ctx}");
        let store = power_loss(store, &sim, &dir, sync);
        let got = entries(&store);
        assert!(got.len() >= 100, "{ctx}: {} entries survived", got.len());
        for (i, e) in got.iter().take(100).enumerate() {
            assert!(e.starts_with(&format!("{i}x")), "{ctx}: entry {i}");
        }
        // After a reopen everything recovered is durable.
        assert_eq!(store.durable_lsn(), store.last_lsn(), "{ctx}");
    }
}

/// A `sync: true` write is durable on return in every mode, and so is every
/// `sync: false` write before it.
#[test]
fn synced_write_is_durable_on_return_in_every_mode() {
    for sync in MODES {
        let ctx = format!("{sync:?}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimFs::new();
        let store = Store::open(&dir, options(&sim, sync)).unwrap();
        store.write_with(&append("a"), BUFFERED).unwrap();
        let b = store.write_with(&append("b"), SYNCED).unwrap();
        assert!(store.durable_lsn() >= b, "{ctx}");
        assert!(store.snapshot().lsn() >= b, "{ctx}");
        store.write_with(&append("c"), BUFFERED).unwrap();
        let store = power_loss(store, &sim, &dir, sync);
        assert_eq!(entries(&store), ["a", "b"], "{ctx}");
    }
}

/// A sync that fails drops what it covered (SimFs, like Linux): `sync_to`
/// reports it, and keeps failing afterwards, whichever call's sync failed;
/// it never reports success for the dropped batch. An LSN made durable
/// before the failure is still reported durable.
#[test]
fn sync_to_after_a_failed_sync_fails() {
    // Which call runs the failing sync: `sync_to` itself, `Store::sync`,
    // or a `sync: true` write.
    for failing in ["sync_to", "sync", "synced write"] {
        for sync in MODES {
            let ctx = format!("{sync:?}, failing {failing}");
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("store");
            let sim = SimFs::new();
            let store = Store::open(&dir, options(&sim, sync)).unwrap();
            let a = store.write_with(&append("a"), BUFFERED).unwrap();
            store.sync_to(a).unwrap();
            let b = store.write_with(&append("b"), BUFFERED).unwrap();
            sim.inject(Fault::Sync {
                nth: 0,
                kind: ErrorKind::Other,
            });
            let first = match failing {
                "sync_to" => store.sync_to(b),
                "sync" => store.sync(),
                _ => store.write_with(&append("c"), SYNCED).map(|_| ()),
            };
            assert!(
                matches!(first, Err(Error::Io { .. })),
                "{ctx}: the failing call: {first:?}"
            );
            let again = store.sync_to(b);
            assert!(
                matches!(again, Err(Error::WritesStopped { .. })),
                "{ctx}: sync_to after the failure: {again:?}"
            );
            assert!(store.durable_lsn() < b, "{ctx}");
            assert!(store.durable_lsn() >= a, "{ctx}");
            store.sync_to(a).unwrap();
            let write = store.write_with(&append("d"), BUFFERED);
            assert!(
                matches!(write, Err(Error::WritesStopped { .. })),
                "{ctx}: {write:?}"
            );
            let store = power_loss(store, &sim, &dir, sync);
            assert_eq!(entries(&store), ["a"], "{ctx}: b was dropped");
        }
    }
}

/// `sync_to` of an LSN a sync already covered returns without any I/O
/// (SimFs counts every write and sync): no fdatasync, no sync mark.
#[test]
fn sync_to_of_a_durable_lsn_does_no_io() {
    for sync in MODES {
        let ctx = format!("{sync:?}");
        let tmp = tempfile::tempdir().unwrap();
        let sim = SimFs::new();
        let store = Store::open(tmp.path().join("store"), options(&sim, sync)).unwrap();
        let ops = sim.op_count();
        store.sync_to(0).unwrap();
        store.sync_to(store.last_lsn()).unwrap();
        assert_eq!(sim.op_count(), ops, "{ctx}: a fresh store");

        let a = store.write_with(&append("a"), SYNCED).unwrap();
        let ops = sim.op_count();
        store.sync_to(a).unwrap();
        assert_eq!(sim.op_count(), ops, "{ctx}: after a synced write");

        let b = store.write_with(&append("b"), BUFFERED).unwrap();
        let ops = sim.op_count();
        store.sync_to(b).unwrap();
        assert!(sim.op_count() > ops, "{ctx}: b needed a sync");
        let ops = sim.op_count();
        store.sync_to(b).unwrap();
        store.sync_to(a).unwrap();
        assert_eq!(sim.op_count(), ops, "{ctx}: after sync_to");

        let c = store.write_with(&append("c"), BUFFERED).unwrap();
        store.sync().unwrap();
        let ops = sim.op_count();
        store.sync_to(c).unwrap();
        assert_eq!(sim.op_count(), ops, "{ctx}: after Store::sync");
    }
}

/// Writers each write `sync: false` batches and `sync_to` (or `sync`)
/// their own, all at once: every such call returns with the batch durable,
/// and after a power loss every batch one covered is there, in order.
#[test]
fn concurrent_sync_to_callers_each_get_their_batches_durable() {
    const WRITERS: u64 = 4;
    const BATCHES: u64 = 200;
    for sync in MODES {
        let ctx = format!("{sync:?}");
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sim = SimFs::new();
        let store = Arc::new(Store::open(&dir, options(&sim, sync)).unwrap());
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let id = format!("t{t}").into_bytes();
                    for n in 0..BATCHES {
                        let mut batch = WriteBatch::new();
                        batch.append(&id, format!("{t}-{n}").as_bytes());
                        let lsn = store.write_with(&batch, BUFFERED).unwrap();
                        // Every other batch is left to a later sync; one
                        // sync in two is a `Store::sync`, which `sync_to`
                        // callers may find under way.
                        match n % 4 {
                            1 => store.sync_to(lsn).unwrap(),
                            3 => store.sync().unwrap(),
                            _ => continue,
                        }
                        assert!(store.durable_lsn() >= lsn);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let store = Arc::into_inner(store).unwrap();
        let store = power_loss(store, &sim, &dir, sync);
        let snap = store.snapshot();
        for t in 0..WRITERS {
            let journal = snap.journal(format!("t{t}").as_bytes()).unwrap();
            // The last batch of each writer was synced (n % 4 == 3).
            assert_eq!(journal.len(), BATCHES, "{ctx}: writer {t}");
            for (n, e) in journal.entries(..).enumerate() {
                assert_eq!(e.unwrap().1, format!("{t}-{n}").as_bytes(), "{ctx}");
            }
        }
    }
}

fn open_plain(dir: &Path, sync: SyncMode) -> Arc<Store> {
    Arc::new(
        Store::open(
            dir,
            Options {
                sync,
                ..Options::default()
            },
        )
        .unwrap(),
    )
}

/// A follower waiting for the next LSN returns `true` once a writer
/// acknowledged it, and a snapshot then shows the batch, in every mode and
/// for both kinds of write (lazy publishing included).
#[test]
fn wait_for_returns_once_the_lsn_is_written() {
    for sync in MODES {
        for options in [BUFFERED, SYNCED] {
            let ctx = format!("{sync:?}, {options:?}");
            let tmp = tempfile::tempdir().unwrap();
            let store = open_plain(tmp.path(), sync);
            for round in 0..20 {
                let next = store.last_lsn() + 1;
                let follower = {
                    let store = store.clone();
                    std::thread::spawn(move || {
                        let seen = store.wait_for(next, BOUND);
                        (seen, store.snapshot().lsn(), entries(&store).len())
                    })
                };
                let lsn = store
                    .write_with(&append(&round.to_string()), options)
                    .unwrap();
                assert_eq!(lsn, next, "{ctx}");
                let (seen, snap_lsn, len) = follower.join().unwrap();
                assert!(seen.unwrap(), "{ctx}");
                assert!(snap_lsn >= next, "{ctx}");
                assert_eq!(len, round + 1, "{ctx}");
            }
        }
    }
}

/// An LSN never written: `wait_for` and `wait_for_durable` time out with
/// `false`; an LSN already there returns `true` at once.
#[test]
fn wait_for_times_out_on_an_lsn_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_plain(tmp.path(), SyncMode::Never);
    let lsn = store.write(&append("a")).unwrap();
    let short = Some(Duration::from_millis(20));
    assert!(!store.wait_for(lsn + 1, short).unwrap());
    assert!(!store.wait_for_durable(lsn, short).unwrap());
    assert!(store.wait_for(lsn, short).unwrap());
    assert!(store.wait_for(lsn, Some(Duration::ZERO)).unwrap());
    store.sync().unwrap();
    assert!(store.wait_for_durable(lsn, Some(Duration::ZERO)).unwrap());
}

/// A follower waiting for durability wakes when a `sync_to`, a `sync` or
/// a `sync: true` write covers its LSN.
#[test]
fn wait_for_durable_wakes_on_a_sync() {
    for how in ["sync_to", "sync", "synced write"] {
        let tmp = tempfile::tempdir().unwrap();
        let store = open_plain(tmp.path(), SyncMode::Never);
        let lsn = store.write(&append("a")).unwrap();
        let follower = {
            let store = store.clone();
            std::thread::spawn(move || store.wait_for_durable(lsn, BOUND))
        };
        match how {
            "sync_to" => store.sync_to(lsn).unwrap(),
            "sync" => store.sync().unwrap(),
            _ => store.write_with(&append("b"), SYNCED).map(|_| ()).unwrap(),
        }
        assert!(follower.join().unwrap().unwrap(), "{how}");
        assert!(store.durable_lsn() >= lsn, "{how}");
    }
}

/// `sync_to` of an LSN not yet written waits for it to be written, then
/// makes it durable.
#[test]
fn sync_to_of_a_future_lsn_waits_for_it() {
    for sync in MODES {
        let tmp = tempfile::tempdir().unwrap();
        let store = open_plain(tmp.path(), sync);
        let next = store.last_lsn() + 1;
        let syncer = {
            let store = store.clone();
            std::thread::spawn(move || store.sync_to(next).map(|()| store.durable_lsn()))
        };
        store.write_with(&append("a"), BUFFERED).unwrap();
        let durable = syncer.join().unwrap().unwrap();
        assert!(durable >= next, "{sync:?}");
    }
}

/// Closing the store wakes every waiter with `Error::Closed`: `wait_for`,
/// `wait_for_durable` and a `sync_to` waiting for its LSN (whichever comes
/// first, the wait or the close, the outcome is the same). Close does not
/// wait for them to give up first.
#[test]
fn close_wakes_waiters_with_closed() {
    for sync in MODES {
        let tmp = tempfile::tempdir().unwrap();
        let store = open_plain(tmp.path(), sync);
        let lsn = store.write_with(&append("a"), BUFFERED).unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|k| {
                let store = store.clone();
                std::thread::spawn(move || match k {
                    0 => store.wait_for(lsn + 1, None).map(|_| ()),
                    1 => store.wait_for_durable(lsn + 1, None).map(|_| ()),
                    _ => store.sync_to(lsn + 1),
                })
            })
            .collect();
        store.close().unwrap();
        for (k, w) in waiters.into_iter().enumerate() {
            let got = w.join().unwrap();
            assert!(
                matches!(got, Err(Error::Closed)),
                "{sync:?} waiter {k}: {got:?}"
            );
        }
        // What was reached before the close is still reported.
        assert!(store.wait_for(lsn, None).unwrap());
        assert!(
            store.wait_for_durable(lsn, None).unwrap(),
            "close synced it"
        );
        assert!(matches!(store.sync_to(lsn), Err(Error::Closed)));
    }
}

/// Once writes stop, a waiter for an LSN that can no longer come fails
/// with `WritesStopped` instead of waiting out its timeout.
#[test]
fn waiters_fail_when_writes_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let store = Arc::new(Store::open(&dir, options(&sim, SyncMode::Never)).unwrap());
    let lsn = store.write(&append("a")).unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|k| {
            let store = store.clone();
            std::thread::spawn(move || match k {
                0 => store.wait_for(lsn + 1, None),
                _ => store.wait_for_durable(lsn, None),
            })
        })
        .collect();
    sim.inject(Fault::Sync {
        nth: 0,
        kind: ErrorKind::Other,
    });
    assert!(store.sync().is_err());
    for (k, w) in waiters.into_iter().enumerate() {
        let got = w.join().unwrap();
        assert!(
            matches!(got, Err(Error::WritesStopped { .. })),
            "waiter {k}: {got:?}"
        );
    }
}
