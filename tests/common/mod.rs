//! Shared test helpers: a seeded random generator and an in-memory model
//! of a store.
#![allow(dead_code)]

use std::collections::BTreeMap;

use journalstore::{Snapshot, WriteBatch};

/// The tests' seeded random generator: `fastrand`'s (which the examples,
/// the benches and the fuzz seeds use directly), behind the few methods the
/// tests call. The same seed gives the same sequence on every run.
#[derive(Clone, Debug)]
pub struct Rng(fastrand::Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.u64(..)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.u64(..n)
    }
    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Random bytes, of a length uniform in `0..=max_len`.
    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let mut out = vec![0; self.0.usize(..=max_len)];
        self.0.fill(&mut out);
        out
    }
}

/// One journal in the model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelJournal {
    pub first: u64,
    pub entries: Vec<Vec<u8>>,
    pub metadata: Option<Vec<u8>>,
}

impl ModelJournal {
    pub fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }
}

/// One operation, kept so the model can apply what the store applied.
#[derive(Clone, Debug)]
pub enum Op {
    Append(Vec<u8>, Option<u64>, Vec<u8>),
    SetMetadata(Vec<u8>, Vec<u8>),
    ClearMetadata(Vec<u8>),
    Trim(Vec<u8>, u64),
    Truncate(Vec<u8>, u64),
    Delete(Vec<u8>),
}

impl Op {
    /// The same operation on journal `f(id)`.
    pub fn map_id(&self, f: impl Fn(&Vec<u8>) -> Vec<u8>) -> Op {
        match self {
            Op::Append(id, at, v) => Op::Append(f(id), *at, v.clone()),
            Op::SetMetadata(id, v) => Op::SetMetadata(f(id), v.clone()),
            Op::ClearMetadata(id) => Op::ClearMetadata(f(id)),
            Op::Trim(id, i) => Op::Trim(f(id), *i),
            Op::Truncate(id, i) => Op::Truncate(f(id), *i),
            Op::Delete(id) => Op::Delete(f(id)),
        }
    }
}

/// Why the model rejects a batch: the error the store must return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// `Error::UnexpectedIndex`.
    UnexpectedIndex,
    /// `Error::InvalidRange`.
    InvalidRange,
}

/// The store's documented semantics, in the simplest possible form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub journals: BTreeMap<Vec<u8>, ModelJournal>,
}

impl Model {
    /// Applies a batch atomically: `Err(())` (and no change) if any op is invalid.
    pub fn apply(&mut self, ops: &[Op]) -> Result<(), ()> {
        self.apply_checked(ops).map_err(|_| ())
    }

    /// Applies a batch atomically, or says why the store rejects it.
    pub fn apply_checked(&mut self, ops: &[Op]) -> Result<(), Reject> {
        let mut next = self.clone();
        for op in ops {
            next.apply_one(op)?;
        }
        *self = next;
        Ok(())
    }

    /// The rules `WriteBatch` documents, written out case by case: only
    /// `append_at` at an index other than the end, and indexes past the
    /// format's limit, fail.
    fn apply_one(&mut self, op: &Op) -> Result<(), Reject> {
        match op {
            Op::Trim(_, t) | Op::Truncate(_, t) if *t > journalstore::record::MAX_INDEX => {
                return Err(Reject::InvalidRange);
            }
            _ => {}
        }
        match op {
            Op::Append(id, at, v) => {
                let j = self.journals.entry(id.clone()).or_default();
                if let Some(at) = at {
                    if *at != j.end() {
                        return Err(Reject::UnexpectedIndex);
                    }
                }
                if j.end() >= journalstore::record::MAX_INDEX {
                    return Err(Reject::InvalidRange);
                }
                j.entries.push(v.clone());
            }
            Op::SetMetadata(id, v) => {
                self.journals.entry(id.clone()).or_default().metadata = Some(v.clone());
            }
            Op::ClearMetadata(id) => {
                if let Some(j) = self.journals.get_mut(id) {
                    j.metadata = None;
                }
            }
            Op::Trim(id, t) => {
                let j = self
                    .journals
                    .entry(id.clone())
                    .or_insert_with(|| ModelJournal {
                        first: *t,
                        ..ModelJournal::default()
                    });
                if *t > j.end() {
                    j.entries.clear();
                    j.first = *t;
                } else if *t > j.first {
                    j.entries.drain(..(*t - j.first) as usize);
                    j.first = *t;
                }
            }
            Op::Truncate(id, t) => {
                if let Some(j) = self.journals.get_mut(id) {
                    if *t < j.first {
                        j.entries.clear();
                        j.first = *t;
                    } else if *t < j.end() {
                        j.entries.truncate((*t - j.first) as usize);
                    }
                }
            }
            Op::Delete(id) => {
                self.journals.remove(id);
            }
        }
        Ok(())
    }

    /// Panics with a description unless `snap` shows exactly this model.
    pub fn assert_matches(&self, snap: &Snapshot, context: &str) {
        let ids: Vec<Vec<u8>> = snap.journal_ids().map(|i| i.to_vec()).collect();
        let want: Vec<Vec<u8>> = self.journals.keys().cloned().collect();
        assert_eq!(ids, want, "{context}: journal ids differ");
        for (id, mj) in &self.journals {
            let j = snap.journal(id).unwrap();
            assert_eq!(
                (j.first_index(), j.end_index()),
                (mj.first, mj.end()),
                "{context}: bounds of {id:?}"
            );
            assert_eq!(
                j.metadata().unwrap(),
                mj.metadata.as_deref(),
                "{context}: metadata of {id:?}"
            );
            let bytes: u64 = mj.entries.iter().map(|e| e.len() as u64).sum();
            assert_eq!(j.entry_bytes(), bytes, "{context}: entry bytes of {id:?}");
            let entries: Vec<(u64, &[u8])> = j.entries(..).map(|e| e.unwrap()).collect();
            assert_eq!(
                entries.len() as u64,
                mj.entries.len() as u64,
                "{context}: len of {id:?}"
            );
            for (k, (index, bytes)) in entries.iter().enumerate() {
                assert_eq!(*index, mj.first + k as u64, "{context}: index in {id:?}");
                assert_eq!(
                    *bytes,
                    &mj.entries[k][..],
                    "{context}: entry {index} of {id:?}"
                );
            }
        }
    }
}

/// Builds the WriteBatch for `ops`.
pub fn to_batch(ops: &[Op]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for op in ops {
        match op {
            Op::Append(id, None, v) => b.append(id, v),
            Op::Append(id, Some(at), v) => b.append_at(id, *at, v),
            Op::SetMetadata(id, v) => b.set_metadata(id, v),
            Op::ClearMetadata(id) => b.clear_metadata(id),
            Op::Trim(id, t) => b.trim_prefix(id, *t),
            Op::Truncate(id, t) => b.truncate(id, *t),
            Op::Delete(id) => b.delete_journal(id),
        };
    }
    b
}

/// A random batch over `journals` ids, mostly valid, sometimes not.
pub fn random_batch(rng: &mut Rng, model: &Model, journals: u64, max_value: usize) -> Vec<Op> {
    let n = 1 + rng.below(6);
    let mut ops = Vec::new();
    for _ in 0..n {
        let id = format!("j{}", rng.below(journals)).into_bytes();
        let state = model.journals.get(&id);
        let (first, end) = state.map_or((0, 0), |j| (j.first, j.end()));
        let op = match rng.below(100) {
            0..=44 => Op::Append(id, None, rng.bytes(max_value)),
            45..=54 => {
                let at = if rng.chance(90) {
                    end
                } else {
                    end + 1 + rng.below(3)
                };
                Op::Append(id, Some(at), rng.bytes(max_value))
            }
            55..=63 => Op::SetMetadata(id, rng.bytes(max_value.min(64))),
            64..=66 => Op::ClearMetadata(id),
            67..=77 => {
                // Mostly inside the journal; sometimes past its end (the
                // journal continues there, or is created there if missing).
                let t = if rng.chance(80) {
                    first + rng.below(end - first + 2)
                } else {
                    end + rng.below(1000)
                };
                Op::Trim(id, t)
            }
            78..=91 => {
                // Mostly inside the journal; sometimes below its first
                // index (the journal continues there) or past its end.
                let t = if end > first && rng.chance(90) {
                    first + rng.below(end - first + 1)
                } else if rng.chance(50) {
                    first.saturating_sub(1 + rng.below(3))
                } else {
                    end + rng.below(3)
                };
                Op::Truncate(id, t)
            }
            _ => Op::Delete(id),
        };
        ops.push(op);
    }
    ops
}

/// A journal as a concurrent test's writer tracks it: (first index, entries).
pub type Tracked = (u64, Vec<Vec<u8>>);

/// Adds to `batch` a reset of `id` (a truncate to a random length up to its
/// current one) and applies it to `state`.
pub fn random_reset(rng: &mut Rng, batch: &mut WriteBatch, id: &[u8], state: &mut Tracked) {
    let keep = rng.below(state.1.len() as u64 + 1) as usize;
    batch.truncate(id, state.0 + keep as u64);
    state.1.truncate(keep);
}

/// Adds to `batch` a trim of a random number of `id`'s oldest entries (up
/// to all of them) and applies it to `state`.
pub fn random_trim(rng: &mut Rng, batch: &mut WriteBatch, id: &[u8], state: &mut Tracked) {
    let drop_n = rng.below(state.1.len() as u64 + 1) as usize;
    batch.trim_prefix(id, state.0 + drop_n as u64);
    state.1.drain(..drop_n);
    state.0 += drop_n as u64;
}

/// The metadata the read-skew checks store with every change: the bounds
/// plus a digest of every entry, so a reader can tell whether metadata and
/// entries come from the same moment.
pub fn digest(first: u64, entries: &[Vec<u8>]) -> String {
    let mut h = crc32fast::Hasher::new();
    for e in entries {
        h.update(&(e.len() as u64).to_le_bytes());
        h.update(e);
    }
    format!(
        "first={first} end={} crc={:08x}",
        first + entries.len() as u64,
        h.finalize()
    )
}

/// Ids of the segment files in `dir`.
pub fn files_on_disk(dir: &std::path::Path) -> std::collections::BTreeSet<u32> {
    journalstore::inspect::segment_files(dir)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Ids of the segments the current generation of `dir` lists.
pub fn listed(dir: &std::path::Path) -> std::collections::BTreeSet<u32> {
    use journalstore::inspect::{manifest_path, read_manifest};
    let stored = read_manifest(&manifest_path(dir)).unwrap();
    // While a roll's seal is pending, its generation is in `MANIFEST.next`
    // (the one open would adopt after a process crash).
    let next = read_manifest(&dir.join("MANIFEST.next"))
        .ok()
        .filter(|next| next.generation == stored.generation + 1);
    next.unwrap_or(stored)
        .segments
        .iter()
        .map(|s| s.id)
        .collect()
}

/// Reads journal `id` of `snap` into a [`ModelJournal`], checking that its
/// indexes and bounds agree; panics (with `ctx`) on any read error.
pub fn read_journal(snap: &Snapshot, id: &[u8], ctx: &str) -> ModelJournal {
    let j = snap.journal(id).expect("listed by journal_ids");
    let metadata = j
        .metadata()
        .unwrap_or_else(|e| panic!("{ctx}: metadata of {id:?}: {e}"))
        .map(<[u8]>::to_vec);
    let mut entries = Vec::new();
    for (k, item) in j.entries(..).enumerate() {
        let (index, bytes) = item.unwrap_or_else(|e| panic!("{ctx}: entry of {id:?}: {e}"));
        assert_eq!(index, j.first_index() + k as u64, "{ctx}: index in {id:?}");
        entries.push(bytes.to_vec());
    }
    assert_eq!(
        j.first_index() + entries.len() as u64,
        j.end_index(),
        "{ctx}: bounds of {id:?} disagree with its entries"
    );
    ModelJournal {
        first: j.first_index(),
        entries,
        metadata,
    }
}

/// The journal whose metadata counts a writer's batches (`u64` little
/// endian): it tells which prefix of a history a recovered store holds.
pub const COUNTER: &[u8] = b"seq";

/// How many batches the [`COUNTER`] in `model` says were applied (0 if absent).
pub fn counter(model: &Model, ctx: &str) -> usize {
    match model.journals.get(COUNTER) {
        None => 0,
        Some(j) => {
            let bytes: [u8; 8] = j
                .metadata
                .as_deref()
                .unwrap_or_default()
                .try_into()
                .unwrap_or_else(|_| panic!("{ctx}: counter metadata {:?}", j.metadata));
            u64::from_le_bytes(bytes) as usize
        }
    }
}

/// Polls `store.stats()` every 10 ms until `done` holds or `deadline`
/// passes; returns the last figures (the caller asserts on them).
pub fn wait_for_stats(
    store: &journalstore::Store,
    deadline: std::time::Duration,
    done: impl Fn(&journalstore::Stats) -> bool,
) -> journalstore::Stats {
    let start = std::time::Instant::now();
    loop {
        let s = store.stats();
        if done(&s) || start.elapsed() > deadline {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Writes 40 batches to three journals (entries of 300 B to "keep", 900 B
/// to "dies", 1,500 B to "gone"), then deletes "gone". With 64 KiB
/// segments (about 23 batches fill one) one segment is sealed and the rest
/// is in the active one, and `compact()` has a run to rewrite.
pub fn fill_three_journals_and_delete_gone(store: &journalstore::Store) {
    for _ in 0..40 {
        let mut batch = WriteBatch::new();
        batch.append(b"keep", &[1; 300]);
        batch.append(b"dies", &[2; 900]);
        batch.append(b"gone", &[3; 1500]);
        store.write(&batch).unwrap();
    }
    let mut batch = WriteBatch::new();
    batch.delete_journal(b"gone");
    store.write(&batch).unwrap();
}
