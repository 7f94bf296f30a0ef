//! Target `ops_model`: a history of batches, snapshots, syncs,
//! compactions, checkpoints and reopens, run on a store and on the model.

use arbitrary::Unstructured;
use journalstore::io::SimFs;
use journalstore::{Options, Snapshot, Store, SyncMode};

use crate::common::batches::{expected, gen_batch, outcome_of, Outcome};
use crate::common::{options, scratch, segment_files, trace, MAX_INPUT};
use crate::model::{to_batch, Model};

/// Steps per input, at most.
const MAX_STEPS: usize = 64;
/// Snapshots held at once, at most.
const MAX_HELD: usize = 6;

/// An arbitrary sequence of batches (all six operations over four journals,
/// valid and invalid), snapshots taken, read and dropped, syncs,
/// compactions, checkpoints and close/reopen, on a real store with
/// 4608-byte segments and on the model.
///
/// Findings: a batch answered other than [`expected`] says; an LSN that
/// does not increase (across reopens too); any read through the current
/// snapshot or any held snapshot (even across a reopen) that differs from
/// the model at that snapshot (also after a compaction, and in a reopened
/// checkpoint); a failed sync, compaction, checkpoint, close or reopen; once every
/// snapshot is dropped, a segment file on disk the store does not list.
pub fn ops_model(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut u = Unstructured::new(data);
    let sync = if u.arbitrary::<bool>().unwrap_or(false) {
        SyncMode::Never
    } else {
        SyncMode::Always
    };
    // How dead a sealed segment must be for `Store::compact` to rewrite it.
    let threshold = if u.arbitrary::<bool>().unwrap_or(false) {
        0.9
    } else {
        0.5
    };
    let tmp = scratch();
    let dir = &tmp.path().join("store");
    let sim = SimFs::new();
    let store_options = || Options {
        compaction_threshold: threshold,
        ..options(&sim, sync)
    };
    let open =
        || Store::open(dir, store_options()).unwrap_or_else(|e| panic!("ops_model: open: {e}"));
    let mut store = open();
    let mut model = Model::default();
    let mut held: Vec<(Snapshot, Model)> = Vec::new();
    let mut last_lsn = 0u64;
    let mut checkpoints = 0;
    for step in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        let ctx = format!("ops_model step {step} ({sync:?})");
        let Ok(kind) = u.int_in_range(0..=109u8) else {
            break;
        };
        match kind {
            0..=59 => {
                let Ok(ops) = gen_batch(&mut u, &model, 300, true) else {
                    break;
                };
                let want = expected(&model, &ops);
                let result = store.write(&to_batch(&ops));
                match (&result, want) {
                    (Ok(lsn), Outcome::Ok) => {
                        assert!(*lsn > last_lsn, "{ctx}: LSN {lsn} after {last_lsn}");
                        last_lsn = *lsn;
                        model.apply(&ops).expect("expected() said valid");
                    }
                    (Err(e), want) if want != Outcome::Ok && outcome_of(e) == Some(want) => {}
                    _ => panic!("{ctx}: batch {ops:?}: expected {want:?}, store said {result:?}"),
                }
                let snap = store.snapshot();
                assert!(
                    snap.lsn() >= last_lsn,
                    "{ctx}: snapshot LSN below the last write"
                );
                model.assert_matches(&snap, &format!("{ctx} after the batch"));
            }
            60..=69 => {
                if held.len() < MAX_HELD {
                    held.push((store.snapshot(), model.clone()));
                }
            }
            70..=76 => {
                if !held.is_empty() {
                    let i = u.choose_index(held.len()).unwrap_or(0);
                    held.swap_remove(i);
                }
            }
            77..=86 => {
                if !held.is_empty() {
                    let i = u.choose_index(held.len()).unwrap_or(0);
                    let (snap, old) = &held[i];
                    old.assert_matches(snap, &format!("{ctx} held snapshot {i}"));
                }
            }
            87..=92 => store
                .sync()
                .unwrap_or_else(|e| panic!("{ctx}: sync failed: {e}")),
            // Compaction rewrites sealed segments under the readers: the
            // state, every held snapshot and (at the end) the absence of
            // leaked files must be as if it had not run.
            93..=99 => {
                let report = store
                    .compact()
                    .unwrap_or_else(|e| panic!("{ctx}: compact failed: {e}"));
                trace!("{ctx}: {report:?}");
                model.assert_matches(&store.snapshot(), &format!("{ctx} after compact"));
                for (i, (snap, old)) in held.iter().enumerate() {
                    old.assert_matches(snap, &format!("{ctx} held snapshot {i} after compact"));
                }
            }
            // A checkpoint opens as exactly the state it was taken at.
            100..=102 => {
                let dest = tmp.path().join(format!("checkpoint-{checkpoints}"));
                checkpoints += 1;
                let lsn = store.snapshot().lsn();
                let report = store
                    .checkpoint(&dest)
                    .unwrap_or_else(|e| panic!("{ctx}: checkpoint failed: {e}"));
                assert_eq!(report.lsn, lsn, "{ctx}: checkpoint LSN");
                let copy = Store::open(&dest, options(&sim, sync))
                    .unwrap_or_else(|e| panic!("{ctx}: checkpoint does not open: {e}"));
                model.assert_matches(&copy.snapshot(), &format!("{ctx} checkpoint"));
                copy.close().expect("close the checkpoint");
                std::fs::remove_dir_all(&dest).expect("remove the checkpoint");
            }
            _ => {
                let clean = u.arbitrary::<bool>().unwrap_or(true);
                if clean {
                    store
                        .close()
                        .unwrap_or_else(|e| panic!("{ctx}: close failed: {e}"));
                } else {
                    drop(store);
                }
                store = open();
                let snap = store.snapshot();
                assert!(
                    snap.lsn() >= last_lsn,
                    "{ctx}: reopened at LSN {} below the last write {last_lsn}",
                    snap.lsn()
                );
                model.assert_matches(&snap, &format!("{ctx} after reopen"));
                for (i, (snap, old)) in held.iter().enumerate() {
                    old.assert_matches(snap, &format!("{ctx} held snapshot {i} after reopen"));
                }
            }
        }
    }
    for (i, (snap, old)) in held.iter().enumerate() {
        old.assert_matches(snap, &format!("ops_model end, held snapshot {i}"));
    }
    held.clear();
    model.assert_matches(&store.snapshot(), "ops_model end");
    let stats = store.stats();
    assert_eq!(stats.pinned_snapshots, 0, "ops_model end: pinned snapshots");
    assert_eq!(
        segment_files(dir).len(),
        stats.segments,
        "ops_model end: segment files on disk vs listed ({:?})",
        segment_files(dir)
    );
    store.close().expect("ops_model: final close");
}
