//! Journals at any index, the out-of-range rule at every boundary, metadata
//! that can be absent, and the per-journal byte count; each across close
//! and reopen, compaction, checkpoint and simulated power loss.
//!
//! The rule (`WriteBatch::trim_prefix`, `WriteBatch::truncate`):
//! - `trim_prefix(n)`: at or below `first_index` nothing; up to `end_index`
//!   the entries below `n` go; past `end_index` the journal is emptied at
//!   `n`; a missing journal is created, empty, at `n`.
//! - `truncate(n)`: at or past `end_index` nothing; from `first_index` the
//!   entries from `n` go; below `first_index` the journal is emptied at
//!   `n`; a missing journal stays missing.
//! - Only an index past `MAX_INDEX` fails (`tests/bad_input.rs`).

mod common;

use std::sync::Arc;

use common::{files_on_disk, listed, Model, Op};
use journalstore::io::{CrashMode, SimFs};
use journalstore::{Options, Snapshot, Store, SyncMode, WriteBatch};

fn options() -> Options {
    Options {
        segment_size: 8 << 10,
        background_compaction: false,
        status_interval: None,
        ..Options::default()
    }
}

/// `(first_index, end_index, entries)` of journal `id`, or `None`.
fn shape(snap: &Snapshot, id: &[u8]) -> Option<(u64, u64, Vec<Vec<u8>>)> {
    let j = snap.journal(id)?;
    let entries = j.entries(..).map(|e| e.unwrap().1.to_vec()).collect();
    Some((j.first_index(), j.end_index(), entries))
}

fn write(store: &Store, model: &mut Model, ops: Vec<Op>) -> u64 {
    let lsn = store
        .write(&common::to_batch(&ops))
        .unwrap_or_else(|e| panic!("{ops:?}: {e}"));
    model.apply(&ops).unwrap();
    lsn
}

/// Every boundary of both operations, on a journal holding 3..6 (built by
/// a trim that creates it at 3), and on a missing journal: the bounds and
/// entries after each, written out by hand rather than by the model.
#[test]
fn trim_and_truncate_at_every_boundary() {
    let entries = |range: std::ops::Range<u64>| -> Vec<Vec<u8>> {
        range.map(|i| format!("e{i}").into_bytes()).collect()
    };
    type Case = (&'static str, u64, Option<(u64, u64, Vec<Vec<u8>>)>);
    let cases: Vec<Case> = vec![
        ("trim", 0, Some((3, 6, entries(3..6)))),
        ("trim", 2, Some((3, 6, entries(3..6)))),
        ("trim", 3, Some((3, 6, entries(3..6)))),
        ("trim", 4, Some((4, 6, entries(4..6)))),
        ("trim", 5, Some((5, 6, entries(5..6)))),
        ("trim", 6, Some((6, 6, vec![]))),
        ("trim", 7, Some((7, 7, vec![]))),
        ("trim", 1000, Some((1000, 1000, vec![]))),
        ("truncate", 1000, Some((3, 6, entries(3..6)))),
        ("truncate", 7, Some((3, 6, entries(3..6)))),
        ("truncate", 6, Some((3, 6, entries(3..6)))),
        ("truncate", 5, Some((3, 5, entries(3..5)))),
        ("truncate", 4, Some((3, 4, entries(3..4)))),
        ("truncate", 3, Some((3, 3, vec![]))),
        ("truncate", 2, Some((2, 2, vec![]))),
        ("truncate", 0, Some((0, 0, vec![]))),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), options()).unwrap();
    for (k, (op, n, want)) in cases.iter().enumerate() {
        let id = format!("j{k}").into_bytes();
        let mut setup = WriteBatch::new();
        setup.trim_prefix(&id, 3).set_metadata(&id, b"kept");
        for e in entries(3..6) {
            setup.append(&id, &e);
        }
        store.write(&setup).unwrap();
        let mut batch = WriteBatch::new();
        match *op {
            "trim" => batch.trim_prefix(&id, *n),
            _ => batch.truncate(&id, *n),
        };
        store.write(&batch).unwrap();
        let snap = store.snapshot();
        assert_eq!(&shape(&snap, &id), want, "{op}({n}) on 3..6");
        let j = snap.journal(&id).unwrap();
        assert_eq!(j.metadata().unwrap(), Some(&b"kept"[..]), "{op}({n})");
        // The next append goes at end_index.
        let mut next = WriteBatch::new();
        next.append_at(&id, j.end_index(), b"next");
        store.write(&next).unwrap();
    }
    // Missing journals: a trim creates one at n, a truncate does nothing.
    let mut batch = WriteBatch::new();
    batch.trim_prefix(b"new-0", 0).trim_prefix(b"new-9", 9);
    batch.truncate(b"never", 4).clear_metadata(b"never-2");
    batch.delete_journal(b"never-3");
    store.write(&batch).unwrap();
    let snap = store.snapshot();
    assert_eq!(shape(&snap, b"new-0"), Some((0, 0, vec![])));
    assert_eq!(shape(&snap, b"new-9"), Some((9, 9, vec![])));
    assert_eq!(snap.journal(b"new-9").unwrap().metadata().unwrap(), None);
    for id in [&b"never"[..], b"never-2", b"never-3"] {
        assert!(snap.journal(id).is_none(), "{id:?} was created");
    }
    // Within one batch the rule applies to the state earlier ops left.
    let mut batch = WriteBatch::new();
    batch
        .append(b"b", b"0")
        .trim_prefix(b"b", 5)
        .append_at(b"b", 5, b"5")
        .truncate(b"b", 2)
        .append_at(b"b", 2, b"2");
    store.write(&batch).unwrap();
    assert_eq!(
        shape(&store.snapshot(), b"b"),
        Some((2, 3, vec![b"2".to_vec()]))
    );
}

/// A Raft log: created at index 1 by a trim and appended to; a follower
/// that installs a snapshot at index 10 purges past its last entry and
/// continues at 11. The state holds across close/reopen, compaction (after
/// the segments holding the old entries died), a checkpoint, and a power
/// loss that keeps only what was synced.
#[test]
fn raft_logs_start_anywhere_across_reopen_compaction_checkpoint_and_power_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let sim_options = |sim: &SimFs| Options {
        sync: SyncMode::Always,
        fs: Arc::new(sim.clone()),
        ..options()
    };
    let store = Store::open(&dir, sim_options(&sim)).unwrap();
    let mut model = Model::default();
    let (leader, follower) = (b"raft-leader".to_vec(), b"raft-follower".to_vec());
    let entry = |i: u64| format!("entry {i:04} {}", "x".repeat(200)).into_bytes();
    write(&store, &mut model, vec![Op::Trim(leader.clone(), 1)]);
    assert_eq!(shape(&store.snapshot(), &leader), Some((1, 1, vec![])));
    for i in 1..=40 {
        write(
            &store,
            &mut model,
            vec![
                Op::Append(leader.clone(), Some(i), entry(i)),
                Op::Append(follower.clone(), Some(i - 1), entry(i)),
            ],
        );
    }
    // The follower held 0..40 and installs a snapshot up to index 60: it
    // purges past its last entry and continues at 61.
    write(&store, &mut model, vec![Op::Trim(follower.clone(), 61)]);
    assert_eq!(shape(&store.snapshot(), &follower), Some((61, 61, vec![])));
    write(
        &store,
        &mut model,
        vec![Op::Append(follower.clone(), Some(61), entry(61))],
    );
    // The leader purges up to its 35th entry (Raft log compaction).
    write(&store, &mut model, vec![Op::Trim(leader.clone(), 36)]);
    for i in 41..=60 {
        let e = entry(i);
        write(
            &store,
            &mut model,
            vec![Op::Append(leader.clone(), Some(i), e)],
        );
    }
    write(&store, &mut model, vec![Op::Trim(leader.clone(), 56)]);
    model.assert_matches(&store.snapshot(), "written");

    let report = store.compact().unwrap();
    assert!(report.runs > 0, "nothing compacted: {report:?}");
    model.assert_matches(&store.snapshot(), "after compaction");
    let dest = tmp.path().join("checkpoint");
    store.checkpoint(&dest).unwrap();
    store.close().unwrap();

    let store = Store::open(&dir, sim_options(&sim)).unwrap();
    model.assert_matches(&store.snapshot(), "after reopen");
    let cp = Store::open(&dest, options()).unwrap();
    model.assert_matches(&cp.snapshot(), "checkpoint");
    cp.close().unwrap();

    // Power loss: under SyncMode::Always every acknowledged write survives.
    for i in 62..=70 {
        write(
            &store,
            &mut model,
            vec![Op::Append(follower.clone(), Some(i), entry(i))],
        );
    }
    drop(store);
    sim.crash(&dir, CrashMode::DropUnsynced).unwrap();
    let store = Store::open(&dir, sim_options(&SimFs::new())).unwrap();
    model.assert_matches(&store.snapshot(), "after power loss");
    assert_eq!(files_on_disk(&dir), listed(&dir));
}

/// A cleared metadata value stays cleared when the segment holding the
/// clear, dead by then (a later append replaced it as the journal's
/// anchor), is rewritten by compaction while an older segment still holds
/// the value it cleared (a long-lived journal keeps that segment), and
/// across reopen; set-to-empty stays distinct from absent. A journal whose
/// only live operation is a clear (no entry, no metadata) keeps existing
/// with its bounds after every segment before the clear was freed.
#[test]
fn cleared_metadata_is_never_resurrected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut model = Model::default();
    let filler = |tag: u8, n: usize| -> Vec<Vec<u8>> {
        (0..n).map(|i| [tag, i as u8].repeat(150)).collect()
    };
    let (keep, meta, fill) = (b"keep".to_vec(), b"meta".to_vec(), b"fill".to_vec());
    // The oldest segment: the value to clear, then live entries that keep
    // the segment above the compaction threshold (never rewritten).
    write(
        &store,
        &mut model,
        vec![
            Op::SetMetadata(meta.clone(), b"old value".to_vec()),
            Op::SetMetadata(b"empty".to_vec(), Vec::new()),
        ],
    );
    for e in filler(b'k', 26) {
        write(&store, &mut model, vec![Op::Append(keep.clone(), None, e)]);
    }
    // A journal moved to 9 with metadata, whose clear (below) leaves it
    // with no entry and no metadata: the clear alone carries its bounds.
    let moved = b"moved".to_vec();
    write(
        &store,
        &mut model,
        vec![
            Op::Trim(moved.clone(), 9),
            Op::SetMetadata(moved.clone(), b"m".to_vec()),
        ],
    );
    for e in filler(b'f', 30) {
        write(&store, &mut model, vec![Op::Append(fill.clone(), None, e)]);
    }
    write(&store, &mut model, vec![Op::ClearMetadata(meta.clone())]);
    write(&store, &mut model, vec![Op::ClearMetadata(moved.clone())]);
    // An append kills the clear (the journal's anchor until then): from
    // here only its role as a tombstone keeps it.
    write(
        &store,
        &mut model,
        vec![Op::Append(meta.clone(), None, b"after the clear".to_vec())],
    );
    for e in filler(b'g', 30) {
        write(&store, &mut model, vec![Op::Append(fill.clone(), None, e)]);
    }
    // The filler dies: the segments around the clear are rewritten.
    write(&store, &mut model, vec![Op::Truncate(fill.clone(), 1)]);
    for e in filler(b'K', 30) {
        write(&store, &mut model, vec![Op::Append(keep.clone(), None, e)]);
    }
    let report = store.compact().unwrap();
    assert!(report.runs > 0, "nothing compacted: {report:?}");
    let check = |snap: &Snapshot, ctx: &str| {
        let j = snap.journal(&meta).unwrap();
        assert_eq!(j.metadata().unwrap(), None, "{ctx}: metadata came back");
        let m = snap.journal(b"moved").expect("the moved journal is gone");
        assert_eq!((m.first_index(), m.end_index()), (9, 9), "{ctx}");
        let e = snap.journal(b"empty").unwrap();
        assert_eq!(e.metadata().unwrap(), Some(&b""[..]), "{ctx}");
        model.assert_matches(snap, ctx);
    };
    check(&store.snapshot(), "after compaction");
    store.close().unwrap();
    let store = Store::open(&dir, options()).unwrap();
    check(&store.snapshot(), "after reopen");
    store.compact().unwrap();
    store.close().unwrap();
    let store = Store::open(&dir, options()).unwrap();
    check(&store.snapshot(), "after a second compaction and reopen");
}

/// `entry_bytes` is the sum of the lengths of the entries held, through
/// appends, trims, truncates, a move past the end, compaction and the
/// replay at reopen (where entries of freed segments never count).
#[test]
fn entry_bytes_follow_every_change_and_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut model = Model::default();
    let id = b"j".to_vec();
    for n in 0..60u64 {
        let e = vec![b'e'; (n as usize * 37) % 400];
        write(&store, &mut model, vec![Op::Append(id.clone(), None, e)]);
    }
    let bytes = |store: &Store| store.snapshot().journal(&id).unwrap().entry_bytes();
    let expected =
        |m: &Model| -> u64 { m.journals[&id].entries.iter().map(|e| e.len() as u64).sum() };
    assert_eq!(bytes(&store), expected(&model));
    write(&store, &mut model, vec![Op::Trim(id.clone(), 25)]);
    write(&store, &mut model, vec![Op::Truncate(id.clone(), 50)]);
    assert_eq!(bytes(&store), expected(&model));
    store.compact().unwrap();
    assert_eq!(bytes(&store), expected(&model));
    store.close().unwrap();
    let store = Store::open(&dir, options()).unwrap();
    assert_eq!(bytes(&store), expected(&model), "after reopen");
    write(&store, &mut model, vec![Op::Trim(id.clone(), 500)]);
    assert_eq!(bytes(&store), 0);
    write(
        &store,
        &mut model,
        vec![Op::Append(id.clone(), Some(500), vec![1; 9])],
    );
    store.close().unwrap();
    let store = Store::open(&dir, options()).unwrap();
    assert_eq!(bytes(&store), 9, "after reopen");
    model.assert_matches(&store.snapshot(), "end");
}
