//! Model test: long random sequences of all six operations over many
//! journals, checked after every batch against an in-memory model, with
//! snapshots held across later writes, compactions and close/reopen points.
//! Small segments make rolls, segment freeing and compaction happen all the
//! time, so recovery replays stores whose dead segments were freed and
//! rewritten in every possible order.

mod common;

use common::{random_batch, to_batch, Model, Rng};
use journalstore::{Options, Store, SyncMode};

fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".jseg")
        })
        .count()
}

fn run(seed: u64, steps: usize, sync: SyncMode, segment_size: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    // Compaction runs where the test says (`store.compact()`), so that a
    // failing seed replays exactly; background compaction is covered by
    // read_skew.rs, churn.rs and compaction.rs.
    let options = || Options {
        sync,
        segment_size,
        background_compaction: false,
        ..Options::default()
    };
    let mut rng = Rng::new(seed);
    let mut model = Model::default();
    let mut store = Store::open(&dir, options()).unwrap();
    let mut held: Vec<(journalstore::Snapshot, Model)> = Vec::new();
    let mut last_lsn = 0;
    let mut rejected = 0;
    let mut compactions = 0;
    for step in 0..steps {
        let ops = random_batch(&mut rng, &model, 24, 300);
        let expect_ok = model.clone().apply(&ops).is_ok();
        let result = store.write(&to_batch(&ops));
        let context = format!("seed {seed} step {step} ops {ops:?}");
        match (expect_ok, &result) {
            (true, Ok(lsn)) => {
                assert!(*lsn > last_lsn, "{context}: LSN {lsn} after {last_lsn}");
                last_lsn = *lsn;
                model.apply(&ops).unwrap();
            }
            (false, Err(_)) => rejected += 1,
            _ => panic!("{context}: model says ok={expect_ok}, store says {result:?}"),
        }
        if rng.chance(3) {
            let report = store.compact().unwrap();
            compactions += report.runs;
        }
        let snap = store.snapshot();
        model.assert_matches(&snap, &context);
        if rng.chance(5) {
            held.push((snap, model.clone()));
        }
        if rng.chance(3) && !held.is_empty() {
            let i = rng.below(held.len() as u64) as usize;
            let (snap, old) = held.swap_remove(i);
            old.assert_matches(&snap, &format!("{context} (held snapshot)"));
        }
        if rng.chance(1) {
            // Live accounting is exact: recovery recomputes the same figure.
            let live = store.stats().live_bytes;
            if rng.chance(50) {
                store.close().unwrap();
            } else {
                drop(store);
            }
            store = Store::open(&dir, options()).unwrap();
            assert_eq!(
                store.stats().live_bytes,
                live,
                "{context}: live bytes after reopen"
            );
            model.assert_matches(&store.snapshot(), &format!("{context} (after reopen)"));
        }
    }
    for (snap, old) in held.drain(..) {
        old.assert_matches(&snap, &format!("seed {seed} final held snapshot"));
    }
    // With no snapshot left, every segment file on disk is one the store lists.
    let stats = store.stats();
    assert_eq!(stats.pinned_snapshots, 0);
    assert_eq!(
        segment_files(&dir),
        stats.segments,
        "seed {seed}: leaked segment files"
    );
    if segment_size < 1 << 20 {
        assert!(
            stats.generation > 10,
            "seed {seed}: segments neither rolled nor freed"
        );
        assert!(compactions > 0, "seed {seed}: nothing was ever compacted");
    }
    eprintln!("seed {seed}: {compactions} compaction runs; {stats:?}");
    assert!(
        rejected > 0,
        "seed {seed}: the generator produced no invalid batch"
    );
    drop(store);
    let store = Store::open(&dir, options()).unwrap();
    model.assert_matches(&store.snapshot(), &format!("seed {seed} final reopen"));
}

#[test]
fn random_operations_match_the_model_with_small_segments() {
    for seed in 0..6 {
        run(seed, 2500, SyncMode::Never, 8 << 10);
    }
}

#[test]
fn random_operations_match_the_model_with_sync_always() {
    run(100, 600, SyncMode::Always, 16 << 10);
}

#[test]
fn random_operations_match_the_model_with_default_segments() {
    run(200, 1500, SyncMode::Never, 64 << 20);
}
