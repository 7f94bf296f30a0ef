//! Target `crash_recovery`: a history through `SimFs` with the machine
//! dying at an arbitrary I/O operation, then a power loss or a process
//! crash, and recovery to a prefix of the history.

use std::path::Path;
use std::time::Duration;

use arbitrary::Unstructured;
use journalstore::inspect::{self, ScanItem, SegmentFile};
use journalstore::io::{CrashMode, SimFs};
use journalstore::{Error, Store, SyncMode};

use crate::common::batches::{expected, gen_batch, outcome_of, Outcome};
use crate::common::check::{read_state, to_model};
use crate::common::{dir_image, options, scratch, segment_files, trace, tracing, MAX_INPUT};
use crate::model::{counter, to_batch, Model, Op, COUNTER};

/// What a run has written, in order, and what must survive.
struct History {
    /// `models[k]`: the model after the first `k` batches of the history.
    models: Vec<Model>,
    /// The first `must_have` batches are durable: they survive any crash.
    must_have: usize,
    /// The first `must_see` (>= `must_have`) batches are in the files: the
    /// next successful open shows them unless the power is cut first
    /// (after a process crash, acknowledged batches are in the page cache).
    must_see: usize,
    /// The last batch's write failed with an I/O error: it may or may not
    /// be on disk. Every other batch in `models` was acknowledged.
    maybe: bool,
    /// The power was cut since the last successful open: the batches after
    /// `must_have` may be gone already, whatever happens next.
    lost_power: bool,
}

impl History {
    fn batches(&self) -> usize {
        self.models.len() - 1
    }
    fn acked(&self) -> usize {
        self.batches() - usize::from(self.maybe)
    }
    /// The first `n` batches were made durable (acknowledged under
    /// `Always`, or covered by a successful sync or close).
    fn durable(&mut self, n: usize) {
        self.must_have = n;
        self.must_see = n;
    }
}

/// Checks a freshly opened store against the history and cuts the history
/// to what survived: the store must hold exactly the model after some
/// prefix `k` of the batches, with `must_see <= k`. What it shows is
/// durable from then on (recovery syncs it before it returns).
fn verify_recovered(store: &Store, dir: &Path, history: &mut History, faults: bool, ctx: &str) {
    // Recovery leaves no orphan segment and no stale manifest behind, unless
    // the machine died during it: a segment it freed is unlinked when its
    // last user drops, which cannot report a failure (the next open removes
    // the orphan).
    let mut listed: Vec<String> = inspect::read_manifest(&inspect::manifest_path(dir))
        .unwrap_or_else(|e| panic!("{ctx}: manifest after a successful open: {e}"))
        .segments
        .into_iter()
        .map(|s| s.file_name)
        .collect();
    // Manifest order is replay order, not id order (compaction).
    listed.sort();
    if !faults {
        assert_eq!(
            segment_files(dir),
            listed,
            "{ctx}: segment files vs manifest"
        );
        assert!(
            !dir.join("MANIFEST.tmp").exists(),
            "{ctx}: MANIFEST.tmp left after open"
        );
    }
    let snap = store.snapshot();
    let state = read_state(&snap, ctx);
    let model = to_model(&state)
        .unwrap_or_else(|| panic!("{ctx}: unreadable values after recovery: {state:?}"));
    let k = counter(&model, ctx);
    assert!(
        k >= history.must_see && k <= history.batches(),
        "{ctx}: recovered batch {k}, must have {} of {} (last maybe: {})",
        history.must_see,
        history.batches(),
        history.maybe
    );
    assert_eq!(
        model, history.models[k],
        "{ctx}: recovered state is not the model after batch {k}"
    );
    history.models.truncate(k + 1);
    history.must_have = k;
    history.must_see = k;
    history.maybe = false;
    history.lost_power = false;
}

/// An arbitrary history of batches through a [`SimFs`] in a sync mode the
/// input picks, over up to three rounds; in each, the machine may die at an
/// arbitrary I/O operation (during recovery, a write, a sync, a roll, a
/// manifest swap, a segment free or a compaction), then the power is cut (unsynced writes
/// dropped, or an arbitrary prefix of them kept with the next one torn at an
/// arbitrary byte) or only the process dies, and the store is reopened.
///
/// Findings: an open that fails although no fault was armed (a torn tail
/// is never corruption), or fails with anything but an I/O error when one
/// was; a recovered state that is not the model after a prefix of the
/// batches, or loses a batch that had to survive (`Always`: every
/// acknowledged batch; `Never`/`Interval`: those covered by a successful
/// `sync` or `close`; after a process crash, every acknowledged batch,
/// unless the power is also cut before an open succeeds); LSNs that do not
/// increase after recovery; orphan files.
pub fn crash_recovery(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut u = Unstructured::new(data);
    let sync = match u.int_in_range(0..=2u8).unwrap_or(0) {
        0 => SyncMode::Always,
        1 => SyncMode::Never,
        // An interval that never elapses during a run keeps runs
        // deterministic; the sync thread still starts and stops.
        _ => SyncMode::Interval(Duration::from_secs(3600)),
    };
    let tmp = scratch();
    let dir = tmp.path();
    let sim = SimFs::new();
    let mut history = History {
        models: vec![Model::default()],
        must_have: 0,
        must_see: 0,
        maybe: false,
        lost_power: false,
    };
    let rounds = u.int_in_range(1..=3u8).unwrap_or(1);
    for round in 0..rounds {
        let ctx = format!("crash_recovery round {round} ({sync:?})");
        let fault = if u.ratio(1, 2).unwrap_or(false) {
            let n = u.int_in_range(0..=80u64).unwrap_or(0);
            sim.fail_after(n);
            trace!("{ctx}: machine dies after {n} more I/O operations");
            Some(n)
        } else {
            None
        };
        let store = match Store::open(dir, options(&sim, sync)) {
            Ok(store) => store,
            Err(e) => {
                trace!("{ctx}: open failed: {e}");
                assert!(
                    fault.is_some(),
                    "{ctx}: open failed with no fault armed: {e}"
                );
                assert!(
                    matches!(e, Error::Io { .. }),
                    "{ctx}: open under an injected I/O failure failed with {e:?}"
                );
                power_loss(&mut u, &sim, dir, &mut history, &ctx);
                continue;
            }
        };
        verify_recovered(
            &store,
            dir,
            &mut history,
            fault.is_some(),
            &format!("{ctx} open"),
        );
        trace!("{ctx}: opened with {} batches", history.batches());
        let mut last_lsn = store.snapshot().lsn();
        let mut stopped = false;
        let mut held = Vec::new();
        let steps = u.int_in_range(0..=24u8).unwrap_or(0);
        for step in 0..steps {
            if stopped {
                break;
            }
            let ctx = format!("{ctx} step {step}");
            match u.int_in_range(0..=10u8).unwrap_or(0) {
                0..=6 => {
                    let tip = history.models.last().expect("never empty");
                    let Ok(mut ops) = gen_batch(&mut u, tip, 300, false) else {
                        break;
                    };
                    let seq = history.batches() as u64 + 1;
                    ops.push(Op::SetMetadata(
                        COUNTER.to_vec(),
                        seq.to_le_bytes().to_vec(),
                    ));
                    let want = expected(tip, &ops);
                    let result = store.write(&to_batch(&ops));
                    trace!("{ctx}: batch {seq} ({want:?}): {result:?}: {ops:?}");
                    match (&result, want) {
                        (Ok(lsn), Outcome::Ok) => {
                            assert!(*lsn > last_lsn, "{ctx}: LSN {lsn} after {last_lsn}");
                            last_lsn = *lsn;
                            let mut next = tip.clone();
                            next.apply(&ops).expect("expected() said valid");
                            history.models.push(next);
                            if sync == SyncMode::Always {
                                history.durable(history.batches());
                            }
                        }
                        (Err(Error::Io { .. }), Outcome::Ok) if fault.is_some() => {
                            let mut next = tip.clone();
                            next.apply(&ops).expect("expected() said valid");
                            history.models.push(next);
                            history.maybe = true;
                            stopped = true;
                        }
                        (Err(Error::WritesStopped { .. }), _) if fault.is_some() => {
                            stopped = true;
                        }
                        (Err(e), want) if want != Outcome::Ok && outcome_of(e) == Some(want) => {}
                        _ => {
                            panic!("{ctx}: batch {ops:?}: expected {want:?}, store said {result:?}")
                        }
                    }
                }
                7 => match store.sync().inspect(|()| trace!("{ctx}: sync ok")) {
                    Ok(()) => history.durable(history.batches()),
                    Err(Error::Io { .. } | Error::WritesStopped { .. }) if fault.is_some() => {
                        stopped = true;
                    }
                    Err(e) => panic!("{ctx}: sync failed: {e}"),
                },
                8 => {
                    if held.len() < 4 {
                        held.push(store.snapshot());
                    }
                }
                // Compaction changes no state, so a crash in the middle of
                // one must not either.
                10 => match store.compact() {
                    Ok(report) => trace!("{ctx}: {report:?}"),
                    Err(Error::Io { .. } | Error::WritesStopped { .. }) if fault.is_some() => {
                        trace!("{ctx}: compact failed");
                        stopped = true;
                    }
                    Err(e) => panic!("{ctx}: compact failed: {e}"),
                },
                _ => {
                    let tip = history.models[history.acked()].clone();
                    tip.assert_matches(&store.snapshot(), &ctx);
                }
            }
        }
        if u.arbitrary::<bool>().unwrap_or(false) {
            trace!("{ctx}: close");
            match store.close() {
                Ok(()) => history.durable(history.acked()),
                Err(e) => assert!(fault.is_some(), "{ctx}: close failed: {e}"),
            }
        } else {
            trace!("{ctx}: drop");
            drop(store);
            // Dropping closes like `close` and ignores errors: with no
            // fault armed that close cannot fail.
            if fault.is_none() {
                history.durable(history.acked());
            }
        }
        // Snapshots may pin freed segments; they go before the power does.
        drop(held);
        power_loss(&mut u, &sim, dir, &mut history, &ctx);
    }
    let ctx = format!("crash_recovery final ({sync:?})");
    sim.clear_faults();
    let store =
        Store::open(dir, options(&sim, sync)).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
    verify_recovered(&store, dir, &mut history, false, &ctx);
    // The recovered store takes writes with LSNs above everything it holds.
    let before = store.snapshot().lsn();
    let mut batch = journalstore::WriteBatch::new();
    batch.append(b"after", b"recovery");
    let lsn = store
        .write(&batch)
        .unwrap_or_else(|e| panic!("{ctx}: write after recovery: {e}"));
    assert!(
        lsn > before,
        "{ctx}: LSN {lsn} not above recovered {before}"
    );
    store.close().expect("crash_recovery: final close");
}

/// Ends a round: the process dies (nothing lost: every acknowledged batch
/// must survive) or the power is cut, in a way the input picks.
fn power_loss(u: &mut Unstructured, sim: &SimFs, dir: &Path, history: &mut History, ctx: &str) {
    let mode = match u.int_in_range(0..=3u8).unwrap_or(1) {
        0 => {
            trace!("{ctx}: process crash only");
            sim.clear_faults();
            // Everything acknowledged is in the files, unless an earlier
            // power loss (not yet seen by a successful open) took it.
            if !history.lost_power {
                history.must_see = history.acked();
            }
            return;
        }
        1 => CrashMode::DropUnsynced,
        _ => {
            let pending = sim.pending_writes();
            let writes = u.int_in_range(0..=pending).unwrap_or(0);
            let torn_bytes = usize::from(u.arbitrary::<u16>().unwrap_or(0));
            CrashMode::KeepPrefix { writes, torn_bytes }
        }
    };
    trace!("{ctx}: power loss {mode:?}");
    history.lost_power = true;
    history.must_see = history.must_have;
    sim.crash(dir, mode)
        .unwrap_or_else(|e| panic!("{ctx}: SimFs::crash: {e}"));
    if tracing() {
        let manifest = inspect::read_manifest(&inspect::manifest_path(dir));
        trace!("{ctx}: after the crash: {:?}", manifest.map(|m| m.segments));
        for (name, bytes) in dir_image(dir) {
            if name.ends_with(".jseg") {
                let file = SegmentFile::from_bytes(Path::new(&name), bytes);
                let records: Vec<String> = file
                    .scan(0, None, false)
                    .iter()
                    .map(|item| match item {
                        ScanItem::Record { offset, lsn, .. } => format!("{offset}:lsn{lsn}"),
                        other => format!("{other:?}"),
                    })
                    .collect();
                trace!("  {name} {:?}: {}", file.header(), records.join(" "));
            }
        }
    }
}
