//! Simulated power loss through `SimFs`, for every sync mode.
//!
//! Each seed drives one store directory through several rounds of: open
//! (sometimes dying during recovery itself), write random batches from one or
//! two threads (sometimes with the machine dying after a random number of
//! I/O operations, i.e. in the middle of a write, a sync, a segment roll, a
//! manifest swap or a segment free), lose power (`CrashMode::DropUnsynced`, or
//! `KeepPrefix` with a random cut and a torn write) or only the process (the
//! page cache, i.e. SimFs's pending writes, survives), then reopen and check.
//!
//! The claims checked after every reopen:
//! - the store opens: a torn tail is never reported as corruption;
//! - each writer's journals hold exactly the model state after some prefix of
//!   the batches it wrote (batches are all-or-nothing and in order);
//! - `SyncMode::Always`: that prefix holds every acknowledged batch;
//!   `Never`/`Interval`: it holds every batch acknowledged before the last
//!   successful `Store::sync` or clean `Store::close`, and may otherwise be
//!   any prefix, the empty one included;
//! - after a process crash, in every mode, every acknowledged batch is there;
//! - what a reopen recovered survives any later power loss, even if it came
//!   from the page cache only (open makes it durable before building on it);
//! - across writers the surviving acknowledged batches are a prefix in LSN
//!   order: no lost batch has a lower LSN than a surviving one;
//! - the snapshot LSN covers every surviving batch, and later writes get
//!   LSNs above it;
//! - no orphan is left: every `.jseg` file is listed by the manifest, and
//!   there is no `MANIFEST.tmp` or `MANIFEST.next`.
//!
//! Each writer owns the journals under its prefix `t<N>/` and, in every
//! batch, sets the metadata of its journal `t<N>/seq` to the batch's position
//! in its history. That tells exactly which prefix survived, so the state is
//! compared with one model rather than searched among all prefixes.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::{counter, random_batch, read_journal, to_batch, Model, Op, Rng, COUNTER};
use journalstore::io::{CrashMode, FileSystem, RealFs, SimFs};
use journalstore::{Error, Options, Snapshot, Store, SyncMode};

/// Journals per writer (besides its counter journal).
const JOURNALS: u64 = 10;
/// Largest random value; with 8-16 KiB segments, rolls happen every few
/// dozen batches.
const MAX_VALUE: usize = 200;
/// Write/crash/reopen rounds per seed.
const ROUNDS: usize = 8;

/// One writer's history over a whole seed, in writer-local journal ids.
#[derive(Debug, Default)]
struct Writer {
    /// The batches this writer had acknowledged, in order, with their LSNs,
    /// then possibly one whose write failed with an I/O error (`None`): it
    /// may or may not have reached the disk. After a reopen the log is cut
    /// to the batches that survived.
    log: Vec<(Vec<Op>, Option<u64>)>,
    /// `log[..durable]` is known to be on disk (it survived a reopen);
    /// `at_durable` is the model after it.
    durable: usize,
    at_durable: Model,
    /// `log[..must_have]` must survive a power loss: acknowledged under
    /// `Always`, or covered by a successful `sync`/`close`.
    must_have: usize,
    /// `log[..acked]` was acknowledged (or recovered): what must survive a
    /// process crash in every mode.
    acked: usize,
    /// The model after every acknowledged batch of `log`.
    tip: Model,
}

/// What one writer thread left behind after a write phase.
struct Outcome {
    /// Whether a write or sync failed (the store then refuses writes).
    failed: bool,
    /// Snapshots still held, dropped only after the power is cut, so that
    /// segment files they pin cannot be removed before the crash.
    held: Vec<Snapshot>,
}

/// `id` of writer `t` as the store sees it.
fn global_id(t: usize, id: &[u8]) -> Vec<u8> {
    let mut g = format!("t{t}/").into_bytes();
    g.extend_from_slice(id);
    g
}

fn prefixed(t: usize, ops: &[Op]) -> Vec<Op> {
    ops.iter()
        .map(|op| op.map_id(|id| global_id(t, id)))
        .collect()
}

/// Reads the whole store into one model per writer (writer-local ids).
/// Every value read is checksum-verified by the store (on its first read);
/// a failed read is a test failure.
fn read_state(snap: &Snapshot, writers: usize, ctx: &str) -> Vec<Model> {
    let mut models = vec![Model::default(); writers];
    for id in snap.journal_ids() {
        let owner = (0..writers).find(|&t| id.starts_with(&global_id(t, b"")));
        let Some(t) = owner else {
            panic!("{ctx}: journal {id:?} belongs to no writer");
        };
        let local = id[global_id(t, b"").len()..].to_vec();
        let journal = read_journal(snap, id, ctx);
        models[t].journals.insert(local, journal);
    }
    models
}

/// A short description of how two models differ (the first difference).
fn diff(got: &Model, want: &Model) -> String {
    let ids: BTreeSet<&Vec<u8>> = got.journals.keys().chain(want.journals.keys()).collect();
    for id in ids {
        let name = String::from_utf8_lossy(id);
        match (got.journals.get(id), want.journals.get(id)) {
            (Some(g), Some(w)) if g == w => {}
            (Some(g), Some(w)) => {
                return format!(
                "journal {name}: got first {} end {} meta {:?}, want first {} end {} meta {:?}{}",
                g.first,
                g.end(),
                g.metadata,
                w.first,
                w.end(),
                w.metadata,
                if (g.first, g.end()) == (w.first, w.end()) {
                    " (entries differ)"
                } else {
                    ""
                }
            )
            }
            (g, w) => {
                return format!(
                    "journal {name}: present in store {}, in model {}",
                    g.is_some(),
                    w.is_some()
                )
            }
        }
    }
    "no difference".into()
}

/// Segment ids the MANIFEST lists. Layout (`format-spec/README.md`): a
/// 40-byte header whose bytes 12..16 are the segment count, then 16-byte
/// entries starting with the segment id, then a CRC-32.
fn manifest_segments(dir: &Path) -> BTreeSet<u64> {
    let bytes = std::fs::read(dir.join("MANIFEST")).unwrap();
    assert_eq!(&bytes[..8], b"JSTRMAN\0");
    let count = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    assert_eq!(bytes.len(), 40 + 16 * count + 4, "manifest length");
    (0..count)
        .map(|i| {
            let at = 40 + 16 * i;
            u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
        })
        .collect()
}

/// Asserts that the directory holds no segment the manifest does not list
/// and no leftover `MANIFEST.tmp` or `MANIFEST.next`.
fn assert_no_orphans(dir: &Path, ctx: &str) {
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert_ne!(name, "MANIFEST.tmp", "{ctx}: stale MANIFEST.tmp left");
        assert_ne!(name, "MANIFEST.next", "{ctx}: stale MANIFEST.next left");
        if let Some(hex) = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".jseg"))
        {
            files.insert(u64::from_str_radix(hex, 16).unwrap());
        }
    }
    assert_eq!(
        files,
        manifest_segments(dir),
        "{ctx}: segment files on disk vs listed in the manifest"
    );
}

struct Run {
    seed: u64,
    sync: SyncMode,
    segment_size: u64,
    rng: Rng,
    sim: SimFs,
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    writers: Vec<Writer>,
    /// Rounds in which the machine died with a `fail_after` budget, and in
    /// which a write or sync then failed: the test must really exercise that.
    deaths: usize,
    /// Whether the last crash was of the process only (the page cache, i.e.
    /// SimFs's pending writes, survived) rather than a power loss.
    process_crash: bool,
    /// Reopens after a power loss that lost acknowledged batches: under
    /// `Never`/`Interval` the test must really exercise losing data.
    lossy_reopens: usize,
}

impl Run {
    fn new(seed: u64, sync: SyncMode, writers: usize) -> Run {
        let mut rng = Rng::new(seed);
        let segment_size = (8 + rng.below(9)) << 10;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        Run {
            seed,
            sync,
            segment_size,
            rng,
            sim: SimFs::new(),
            _tmp: tmp,
            dir,
            writers: (0..writers).map(|_| Writer::default()).collect(),
            deaths: 0,
            process_crash: false,
            lossy_reopens: 0,
        }
    }

    fn options(&self, fs: Arc<dyn FileSystem>) -> Options {
        // No background compaction: its I/O would spend `fail_after`
        // budgets at random moments and make seeds irreproducible; power
        // loss during compaction is covered step by step in compaction.rs.
        Options {
            sync: self.sync,
            segment_size: self.segment_size,
            background_compaction: false,
            fs,
            ..Options::default()
        }
    }

    /// Cuts the power: unsynced writes are dropped, or a random prefix of
    /// them survives with the next one torn.
    fn crash(&mut self) {
        let pending = self.sim.pending_writes();
        let mode = if self.rng.chance(35) {
            CrashMode::DropUnsynced
        } else {
            CrashMode::KeepPrefix {
                writes: self.rng.below(pending as u64 + 1) as usize,
                torn_bytes: self.rng.below(600) as usize,
            }
        };
        self.sim.crash(&self.dir, mode).unwrap();
        self.process_crash = false;
    }

    /// Opens the store after a crash, sometimes dying during recovery (and
    /// crashing again), sometimes through the real file system; checks what
    /// it recovered and returns it with its snapshot LSN.
    fn open(&mut self, ctx: &str) -> (Store, u64) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ctx = format!("{ctx} open attempt {attempt}");
            let armed = attempt < 6 && self.rng.chance(20);
            if armed {
                self.sim.fail_after(self.rng.below(14));
            }
            // RealFs only while SimFs tracks nothing of the directory (after
            // a power loss), so that the two never disagree about its files.
            let real = !armed && !self.process_crash && self.rng.chance(20);
            let fs: Arc<dyn FileSystem> = if real {
                Arc::new(RealFs)
            } else {
                Arc::new(self.sim.clone())
            };
            match Store::open(&self.dir, self.options(fs)) {
                Ok(store) => {
                    if !armed {
                        assert_no_orphans(&self.dir, &ctx);
                    }
                    let lsn = self.check(&store, &ctx);
                    if real {
                        // Close cleanly and go on through SimFs, which
                        // adopts the files as they are.
                        store.close().unwrap();
                        continue;
                    }
                    return (store, lsn);
                }
                Err(Error::Io { .. }) if armed => self.crash(),
                Err(e) => panic!("{ctx}: open failed: {e}"),
            }
        }
    }

    /// Checks a freshly opened store against the writers' histories (see the
    /// module comment) and makes what it holds the new durable base.
    fn check(&mut self, store: &Store, ctx: &str) -> u64 {
        let process_crash = self.process_crash;
        let snap = store.snapshot();
        let states = read_state(&snap, self.writers.len(), ctx);
        let mut kept_max = 0u64;
        let mut lost_min = u64::MAX;
        for (t, (w, state)) in self.writers.iter_mut().zip(states).enumerate() {
            let k = counter(&state, ctx);
            let must = if process_crash { w.acked } else { w.must_have };
            assert!(
                k >= must && k <= w.log.len(),
                "{ctx}: writer {t} recovered {k} batches; it must have kept {must} and wrote at most {} \
                 (last crash: {})",
                w.log.len(),
                if process_crash { "process" } else { "power" }
            );
            assert!(k >= w.durable, "{ctx}: writer {t} lost recovered batches");
            let mut want = w.at_durable.clone();
            for (ops, _) in &w.log[w.durable..k] {
                want.apply(ops).expect("logged batches are valid");
            }
            assert!(
                state == want,
                "{ctx}: writer {t} holds a state that is no prefix of its batches \
                 (counter says {k}): {}",
                diff(&state, &want)
            );
            let lsns = |part: &[(Vec<Op>, Option<u64>)]| -> Vec<u64> {
                part.iter().filter_map(|(_, lsn)| *lsn).collect()
            };
            if !process_crash && k < w.acked {
                self.lossy_reopens += 1;
            }
            kept_max = kept_max.max(lsns(&w.log[..k]).into_iter().max().unwrap_or(0));
            lost_min = lost_min.min(lsns(&w.log[k..]).into_iter().min().unwrap_or(u64::MAX));
            w.log.truncate(k);
            w.durable = k;
            w.must_have = k;
            w.acked = k;
            w.at_durable = want.clone();
            w.tip = want;
        }
        assert!(
            kept_max < lost_min,
            "{ctx}: batch LSN {lost_min} was lost but LSN {kept_max} survived"
        );
        assert!(
            snap.lsn() >= kept_max,
            "{ctx}: snapshot LSN {} below surviving batch {kept_max}",
            snap.lsn()
        );
        snap.lsn()
    }

    /// Snapshots stay readable after the store is gone (and, here, after
    /// every later I/O fails): all their values still read back with valid
    /// checksums. Dropping them may then fail to unlink freed segments,
    /// which leaves orphans for recovery to remove.
    fn drop_held(&self, held: Vec<Snapshot>, ctx: &str) {
        for snap in held {
            read_state(&snap, self.writers.len(), &format!("{ctx} held snapshot"));
        }
    }

    /// Runs every round; returns how many rounds died mid-work and how many
    /// reopens lost acknowledged batches.
    fn run(mut self) -> (usize, usize) {
        let tag = format!(
            "seed {} {:?} writers {} segment {}",
            self.seed,
            self.sync,
            self.writers.len(),
            self.segment_size
        );
        for round in 0..ROUNDS {
            let ctx = format!("{tag} round {round}");
            let (store, reopen_lsn) = self.open(&ctx);
            let count = 40 + self.rng.below(120);
            let dies = self.rng.chance(60);
            if dies {
                // Ops per batch are about 1 (Never) to 2 (Always), plus ~10
                // per roll: most budgets run out during the round.
                self.sim.fail_after(self.rng.below(count * 2 + 20));
            }
            let seeds: Vec<u64> = self.writers.iter().map(|_| self.rng.next_u64()).collect();
            let sync = self.sync;
            let outcomes: Vec<Outcome> = std::thread::scope(|s| {
                let handles: Vec<_> = self
                    .writers
                    .iter_mut()
                    .zip(seeds)
                    .enumerate()
                    .map(|(t, (w, seed))| {
                        let (store, ctx) = (&store, &ctx);
                        s.spawn(move || {
                            write_phase(store, w, t, Rng::new(seed), count, sync, reopen_lsn, ctx)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let failed = outcomes.iter().any(|o| o.failed);
            let held: Vec<Snapshot> = outcomes.into_iter().flat_map(|o| o.held).collect();
            if dies && failed {
                self.deaths += 1;
            }
            let ending = self.rng.below(100);
            if ending < 15 && !failed {
                // A clean close makes every acknowledged batch durable.
                if store.close().is_ok() {
                    for w in &mut self.writers {
                        w.must_have = w.acked;
                    }
                }
                self.drop_held(held, &ctx);
                self.crash();
            } else if ending < 35 {
                // The process dies: nothing more is written, but what was
                // written stays in the page cache (SimFs keeps it pending)
                // and must all be found at reopen, even if not yet durable.
                self.sim.fail_after(0);
                drop(store);
                self.drop_held(held, &ctx);
                self.sim.clear_faults();
                self.process_crash = true;
            } else {
                self.sim.fail_after(0); // the power is gone: nothing more reaches the disk
                drop(store);
                self.drop_held(held, &ctx);
                self.crash();
            }
        }
        let ctx = format!("{tag} final");
        let (store, _) = self.open(&ctx);
        drop(store);
        (self.deaths, self.lossy_reopens)
    }
}

/// One writer's round: random batches (each also bumping the counter) until
/// `count` or the first failure; under `Never`/`Interval`, occasional syncs.
#[allow(clippy::too_many_arguments)]
fn write_phase(
    store: &Store,
    w: &mut Writer,
    t: usize,
    mut rng: Rng,
    count: u64,
    sync: SyncMode,
    reopen_lsn: u64,
    ctx: &str,
) -> Outcome {
    let mut held = Vec::new();
    let mut last_lsn = reopen_lsn;
    for step in 0..count {
        let mut ops = random_batch(&mut rng, &w.tip, JOURNALS, MAX_VALUE);
        let position = (w.log.len() as u64 + 1).to_le_bytes().to_vec();
        let at = rng.below(ops.len() as u64 + 1) as usize;
        ops.insert(at, Op::SetMetadata(COUNTER.to_vec(), position));
        let expect_ok = w.tip.clone().apply(&ops).is_ok();
        let ctx = format!("{ctx} writer {t} step {step}");
        match store.write(&to_batch(&prefixed(t, &ops))) {
            Ok(lsn) => {
                assert!(expect_ok, "{ctx}: invalid batch accepted: {ops:?}");
                assert!(
                    lsn > last_lsn,
                    "{ctx}: LSN {lsn} not above {last_lsn} (previous write or reopen)"
                );
                last_lsn = lsn;
                w.tip.apply(&ops).unwrap();
                w.log.push((ops, Some(lsn)));
                w.acked = w.log.len();
                if sync == SyncMode::Always {
                    w.must_have = w.log.len();
                }
            }
            Err(Error::UnexpectedIndex { .. } | Error::InvalidRange { .. }) => {
                assert!(!expect_ok, "{ctx}: valid batch rejected: {ops:?}");
            }
            Err(e @ (Error::Io { .. } | Error::WritesStopped { .. })) => {
                if expect_ok {
                    w.log.push((ops, None)); // may or may not be on disk
                }
                // After a failure the store refuses every write.
                let again = store.write(&to_batch(&prefixed(t, &[Op::Delete(b"j0".to_vec())])));
                assert!(
                    matches!(again, Err(Error::WritesStopped { .. })),
                    "{ctx}: write after failure {e} returned {again:?}"
                );
                return Outcome { failed: true, held };
            }
            Err(e) => panic!("{ctx}: unexpected error {e}"),
        }
        if sync != SyncMode::Always && rng.chance(4) {
            match store.sync() {
                Ok(()) => w.must_have = w.log.len(),
                Err(Error::Io { .. } | Error::WritesStopped { .. }) => {
                    return Outcome { failed: true, held }
                }
                Err(e) => panic!("{ctx}: sync failed with {e}"),
            }
        }
        if rng.chance(4) && held.len() < 4 {
            held.push(store.snapshot());
        }
    }
    Outcome {
        failed: false,
        held,
    }
}

fn run_seeds(sync: SyncMode, seeds: std::ops::Range<u64>) {
    let (mut deaths, mut lossy) = (0, 0);
    for seed in seeds {
        let writers = if seed % 3 == 2 { 2 } else { 1 };
        let (d, l) = Run::new(seed, sync, writers).run();
        deaths += d;
        lossy += l;
    }
    assert!(
        deaths >= 5,
        "{sync:?}: only {deaths} rounds died in the middle of the engine's work"
    );
    if sync != SyncMode::Always {
        assert!(
            lossy >= 5,
            "{sync:?}: only {lossy} power losses lost a batch"
        );
    }
}

/// `SyncMode::Always`: every acknowledged batch survives any power loss,
/// including deaths inside rolls, manifest swaps, frees and recovery; what
/// else survives is a prefix; no orphan files remain after reopen.
#[test]
fn power_loss_with_sync_always_keeps_every_acknowledged_batch() {
    run_seeds(SyncMode::Always, 0..20);
}

/// `SyncMode::Never`: after a power loss the store holds a prefix of the
/// batches in LSN order, at least up to the last successful `sync`/`close`.
#[test]
fn power_loss_with_sync_never_keeps_a_prefix() {
    run_seeds(SyncMode::Never, 100..120);
}

/// `SyncMode::Interval`: as `Never` (the background syncs only add
/// durability the test cannot time, so it claims nothing from them).
#[test]
fn power_loss_with_sync_interval_keeps_a_prefix() {
    run_seeds(SyncMode::Interval(Duration::from_millis(2)), 200..220);
}

/// A failed background sync (`SyncMode::Interval`), which no caller sees,
/// is not hidden by `close`: it reports `WritesStopped` rather than `Ok`,
/// since batches acknowledged before may not be durable.
#[test]
fn close_reports_a_failed_background_sync() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let options = Options {
        sync: SyncMode::Interval(Duration::from_millis(1)),
        fs: Arc::new(sim.clone()),
        segment_size: 16 << 10,
        ..Options::default()
    };
    let store = Store::open(&dir, options).unwrap();
    let mut batch = journalstore::WriteBatch::new();
    batch.append(b"j", b"acknowledged");
    store.write(&batch).unwrap();
    // Every operation from now on fails; wait until the sync thread has
    // tried one (SimFs counts failed operations too).
    sim.fail_after(0);
    let seen = sim.op_count();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while sim.op_count() == seen {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync thread never ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    match store.close() {
        Err(Error::WritesStopped { .. }) => {}
        other => panic!("close after a failed background sync returned {other:?}"),
    }
}
