//! Compaction: rewriting a run of mostly dead segments into one new segment.
//!
//! Recovery replays segments in manifest order, and every operation on disk
//! carries its journal's bounds, so the log stays correct if dead operations
//! are removed from it, as long as (a) the order of what remains of each
//! journal is kept and (b) an operation that killed something still on
//! disk stays. Compaction
//! therefore picks a *contiguous run* of sealed segments in manifest order
//! and copies into one new segment only
//!
//! - the operations that are live (entries, metadata, anchors), and
//! - trims, truncates, metadata clears and deletes (tombstones), unless the run starts at the
//!   oldest segment: then nothing older exists for them to act on,
//!
//! grouped by journal, each journal's operations in log order (an operation
//! applies to its own journal alone, so (a) holds per journal, which is
//! what replay needs; see `lay_out_by_journal`): a journal's live entries
//! end up next to each other. It swaps in a manifest generation where the
//! new segment takes the run's place. The copy runs without the writer's lock; only the switch (moving
//! index locations, the manifest swap) takes it, for a time proportional to
//! the number of live items moved. Readers never wait: snapshots taken before
//! keep the old segments alive (they are unlinked when the last one drops).
//!
//! Crash safety: the new segment is fully written and synced before the
//! manifest names it; a crash before the swap leaves an orphan file that the
//! next open removes, a crash after it leaves the old segments as orphans.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zerocopy::IntoBytes;

use crate::commit::Committer;
use crate::error::{Error, Result};
use crate::index::{JournalKey, Loc};
use crate::io::FileSystem;
use crate::live::{journal_hash, SegmentUsage};
use crate::log_writer::LogWriter;
use crate::manifest::ListedSegment;
use crate::mutex::lock;
use crate::record::{
    align_up, OpIter, OpKind, RecordHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::segment::{check_record, Segment};
use crate::version::{Retired, Version};

/// What [`Store::compact`](crate::Store::compact) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CompactionReport {
    /// Runs of segments rewritten.
    pub runs: u64,
    /// Old segments replaced.
    pub segments_rewritten: u64,
    /// New segments written.
    pub segments_written: u64,
    /// Bytes of records copied into new segments.
    pub bytes_copied: u64,
    /// Bytes of segment files the rewritten segments occupied.
    pub bytes_released: u64,
    /// Longest time the writer's lock was held by one switch.
    pub max_pause: Duration,
}

/// Which item of a journal a live location is.
#[derive(Clone, Copy, Debug)]
enum Role {
    Entry(u64),
    Metadata,
    Anchor,
}

/// A live item the copy moved: its journal, role, old and new location.
type Move = (JournalKey, Role, Loc, Loc);

/// A run chosen under the writer's lock.
pub(crate) struct Plan {
    /// The run, in manifest order, with their sealed lengths.
    victims: Vec<(Arc<Segment>, u64)>,
    /// Whether the run starts at the oldest segment.
    at_oldest: bool,
    /// Journals with records in segments older than the run: only their
    /// tombstones must be kept.
    older: HashSet<u64>,
    /// Id reserved for the new segment.
    new_id: u32,
    /// The published version when the run was chosen; it keeps the victims
    /// mapped and says which of their items were live.
    version: Arc<Version>,
    /// How many of `victims` the copy took: it ends the run early when the
    /// next segment's share would not fit (see `copy`).
    used: Cell<usize>,
}

impl Plan {
    /// The victims the copy took.
    fn run(&self) -> &[(Arc<Segment>, u64)] {
        &self.victims[..self.used.get()]
    }

    pub(crate) fn victim_count(&self) -> u64 {
        self.run().len() as u64
    }

    pub(crate) fn victim_bytes(&self) -> u64 {
        self.run().iter().map(|(s, _)| s.capacity).sum()
    }
}

/// The copy, made without the lock.
pub(crate) struct Output {
    /// The new segment, or `None` when nothing had to be kept.
    segment: Option<Arc<Segment>>,
    /// Length of the new segment's data (header included).
    sealed_len: u64,
    moves: Vec<Move>,
    /// Whether tombstones were kept.
    tombstones: bool,
    /// Hashes of the journals of the operations kept.
    journals: HashSet<u64>,
    pub bytes_copied: u64,
}

/// What compaction aims for, from [`Options`](crate::Options).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// A sealed segment whose live ratio is below this is always rewritten
    /// (once old enough, with `wait_for_young`).
    pub threshold: f64,
    /// Background compaction: below `threshold` alone is not enough for a
    /// segment until as many bytes were written after it as it holds or
    /// [`YOUNG_MAX_AGE`] passed since its seal (see `plan_compaction`).
    /// `Store::compact` and the write stall do not wait.
    pub wait_for_young: bool,
    /// When the sealed segments hold more than this many times their live
    /// bytes, segments above `threshold` are rewritten too.
    pub max_space_amplification: f64,
    /// `Options::compaction_dead_bytes`: how many bytes die between looks
    /// (`None`: see `LogWriter::dead_bytes_between_looks`).
    pub dead_bytes: Option<u64>,
    /// The pass at close (`Options::compact_on_close`): the space target
    /// with [`CLOSE_SLACK`] instead of `space_slack`, and the active
    /// segment sealed whatever it holds once dead bytes in it take the
    /// store over that. `space_slack` spares a running store seals and
    /// rewrites that its next writes would soon call for anyway; a closed
    /// store would keep that slack on disk.
    pub at_close: bool,
}

/// Segments at or above this live ratio are never rewritten to bring the
/// space amplification down: the copy would free under a fifth of them
/// (record headers count as dead, so a fresh copy is at about 0.9), and
/// rewriting the same data again and again is what a target that cannot be
/// met would otherwise cause.
const REWRITE_MAX_RATIO: f64 = 0.8;

/// A sealed segment counts as old for background compaction once this long
/// has passed since its seal, however little was written after it (see
/// `plan_compaction`): a store whose writes stopped still gets its dead
/// bytes back, a little later.
pub(crate) const YOUNG_MAX_AGE: Duration = Duration::from_secs(1);

/// The active segment is sealed early (see `should_seal_active`) only once
/// it holds this much data, and this much is the least slack of the space
/// target (`space_slack`).
const EARLY_SEAL_MIN: u64 = 1 << 20;

/// The active segment is sealed early only once this much was written to
/// it: a seal, and the compaction and free that follow it, cost several
/// syncs and manifest swaps whatever the amount of data, so a writer whose
/// live set is tiny would otherwise pay them every MiB it writes.
const EARLY_SEAL_MIN_WRITTEN: u64 = 4 << 20;

/// The slack of the space target for the pass at close: a store whose
/// dead bytes exceed the target by less keeps them, so a small store that
/// is opened and closed often does not seal and rewrite its segment at
/// every close for a few records.
const CLOSE_SLACK: u64 = 64 << 10;

/// The write stall starts only this far past the stall limit (on top of
/// `space_slack`), or one segment if that is less: below it the background
/// thread is left to catch up, rather than the writer paying a compaction
/// cycle's syncs for every MiB the thread is behind. Two early seals' worth
/// of data: a cycle (the seal's syncs and manifest swap, then the free or
/// rewrite of the sealed segment, each with its own) takes several syncs,
/// during which an unpaced writer adds up to one more early seal's worth;
/// with less, a store whose live set is small next to
/// [`EARLY_SEAL_MIN_WRITTEN`] would stall in every cycle although the
/// thread keeps up.
const STALL_SLACK: u64 = 2 * EARLY_SEAL_MIN_WRITTEN;

/// The least the automatic `dead_bytes_between_looks` waits for: below it
/// the thread would wake for amounts no seal or rewrite is triggered by
/// (sealing early needs [`EARLY_SEAL_MIN_WRITTEN`] of data).
const DEAD_BYTES_MIN: u64 = 256 << 10;

impl LogWriter {
    /// Bytes that must die before compaction looks again:
    /// `policy.dead_bytes`, or a quarter of the live bytes, at least
    /// [`DEAD_BYTES_MIN`] and at most a quarter of `segment_size`. A look
    /// finds work only once the dead bytes pass the space target's slack
    /// (`max_space_amplification`, 1.25 by default, plus `space_slack`):
    /// a quarter of the live bytes is about that far, so looks come when
    /// work may be there, and the store overshoots its target by at most
    /// about a quarter of the live bytes before one. Tied to the live
    /// bytes, the cost of looking (a wake-up, a scan of the segment list
    /// under the writer's lock) stays a small, fixed share of the writes
    /// whatever the store's size; the cap keeps a large store looking at
    /// least once per quarter segment of deaths, as a seal would.
    pub(crate) fn dead_bytes_between_looks(&self, policy: Policy) -> u64 {
        policy.dead_bytes.unwrap_or_else(|| {
            (self.acct.total_live_bytes() / 4)
                .max(DEAD_BYTES_MIN)
                .min(self.segment_size / 4)
        })
    }

    /// Whether to seal the active segment before it is full, so that
    /// compaction can reclaim it: it holds at least [`EARLY_SEAL_MIN_WRITTEN`] of
    /// data, less than `policy.threshold` of it live or more dead bytes
    /// than `space_slack` allows, and the store is over
    /// `policy.max_space_amplification` (with 1 MiB of slack). Without this
    /// a store whose live data is small next to `segment_size` (journals
    /// created and deleted at a high rate) keeps up to a whole segment of
    /// dead records on disk, out of compaction's reach. With
    /// `policy.at_close`, any dead byte in it and the store over the target
    /// by [`CLOSE_SLACK`] are enough.
    pub(crate) fn should_seal_active(&self, policy: Policy) -> bool {
        let active = self.active();
        let written = self.write_pos.saturating_sub(SEGMENT_HEADER_LEN as u64);
        let (min_written, seal_slack) = if policy.at_close {
            (1, CLOSE_SLACK as f64)
        } else {
            (EARLY_SEAL_MIN_WRITTEN, EARLY_SEAL_MIN as f64)
        };
        if written < min_written {
            return false;
        }
        let active_live = self
            .acct
            .segments
            .get(&active.id)
            .map_or(0, |u| u.live_bytes);
        let live = self.acct.total_live_bytes();
        let dead = written.saturating_sub(active_live);
        if dead == 0
            || (active_live as f64 >= policy.threshold * written as f64
                && (dead as f64) < self.target_slack(policy, live))
        {
            return false;
        }
        (self.sealed_data(false) + written) as f64
            > policy.max_space_amplification * live as f64 + seal_slack
    }

    /// The slack of the space target under `policy`: `space_slack`, or
    /// [`CLOSE_SLACK`] for the pass at close.
    fn target_slack(&self, policy: Policy, live: u64) -> f64 {
        if policy.at_close {
            CLOSE_SLACK as f64
        } else {
            self.space_slack(live)
        }
    }

    /// How far the sealed data may exceed `amplification x live` before the
    /// space target (or the write stall) counts as missed: one segment, but
    /// at most a tenth of the live bytes plus [`EARLY_SEAL_MIN`]. With
    /// segments much larger than the data (the default 64 MiB for a few MiB
    /// of live journals) a whole segment of slack would let dead records
    /// grow to several times the live bytes before compaction looked.
    pub(crate) fn space_slack(&self, live: u64) -> f64 {
        (self.segment_size as f64).min(live as f64 / 10.0 + EARLY_SEAL_MIN as f64)
    }

    /// Bytes of data (records, past the headers) in the sealed segments,
    /// with or without those already found freeable (`pending_free`): they
    /// go without a copy, so sealing early to reach them is pointless, but
    /// they are on disk until the compaction thread frees them, and the
    /// write stall counts them (the writer's own compaction step frees them
    /// first).
    pub(crate) fn sealed_data(&self, with_pending_frees: bool) -> u64 {
        self.manifest
            .segments
            .iter()
            .filter(|s| with_pending_frees || !self.pending_free.contains(&s.id))
            .filter_map(|s| s.sealed_len)
            .map(|len| len.saturating_sub(SEGMENT_HEADER_LEN as u64))
            .sum()
    }

    /// Picks a run of sealed segments to rewrite, or `None`:
    ///
    /// 1. the oldest segment whose live ratio is below `policy.threshold`
    ///    and, with `policy.wait_for_young`, old enough: at least as many
    ///    bytes were written after it as it holds, or sealed at least
    ///    [`YOUNG_MAX_AGE`] ago (or before this open). Data that dies young
    ///    (journals trimmed behind their writers) would otherwise be copied
    ///    only to die in the copy; a store whose writes stopped gets the
    ///    space back once the time has passed (`young_until` tells the
    ///    thread when to look again). Only the newest sealed segments can be
    ///    young, so this leaves about a segment of dead data at most;
    /// 2. else, if the sealed segments hold more than
    ///    `policy.max_space_amplification` times their live bytes (plus the
    ///    slack of `space_slack`, or [`CLOSE_SLACK`] at close), the segment
    ///    below [`REWRITE_MAX_RATIO`] with the best benefit/cost in the
    ///    sense of Rosenblum and Ousterhout's log-structured file system:
    ///    `(1 - u) * age / (1 + u)` for live
    ///    ratio `u`, where age is the bytes written after it. Old segments
    ///    first, since young ones are still dying on their own; with
    ///    `policy.wait_for_young`, those not old enough (as in 1.) are left.
    ///
    /// The run then grows over neighbours below the same limit while its
    /// live bytes fit in about half a segment, so small compacted segments
    /// merge instead of piling up.
    pub(crate) fn plan_compaction(
        &mut self,
        policy: Policy,
        version: Arc<Version>,
    ) -> Option<Plan> {
        let young_until = Cell::new(None);
        let plan = self.plan_run(policy, version, &young_until);
        self.young_until = young_until.get();
        plan
    }

    /// `plan_compaction`, which sets `young_until` to when the youngest
    /// segment it left for being young will be old.
    fn plan_run(
        &mut self,
        policy: Policy,
        version: Arc<Version>,
        young_until: &Cell<Option<Instant>>,
    ) -> Option<Plan> {
        let segments = &self.generation.segments;
        let sealed = &self.manifest.segments;
        let budget = (self.segment_size as usize - SEGMENT_HEADER_LEN) / 2;
        // The active segment is the last; per sealed segment before it:
        // (data bytes, live bytes, whether a candidate).
        let last = segments.len().checked_sub(1)?;
        let usage: Vec<(u64, u64, bool)> = (0..last)
            .map(|i| {
                let data = sealed[i]
                    .sealed_len
                    .unwrap_or(0)
                    .saturating_sub(SEGMENT_HEADER_LEN as u64)
                    .max(1);
                match self.acct.segments.get(&segments[i].id) {
                    Some(u) => {
                        let candidate = !(u.settled && !(i == 0 && u.tombstones));
                        (data, u.live_bytes, candidate)
                    }
                    None => (data, 0, false),
                }
            })
            .collect();
        let ratio = |i: usize| -> Option<f64> {
            let (data, live, candidate) = usage[i];
            candidate.then(|| live as f64 / data as f64)
        };
        let below = |i: usize, limit: f64| ratio(i).is_some_and(|r| r < limit);
        // Bytes written after each sealed segment, the active one's included.
        let mut written_after = vec![0u64; last];
        let mut after = self.write_pos.saturating_sub(SEGMENT_HEADER_LEN as u64);
        for i in (0..last).rev() {
            written_after[i] = after;
            after += usage[i].0;
        }
        let now = Instant::now();
        let old_enough = |i: usize| {
            if !policy.wait_for_young || written_after[i] >= usage[i].0 {
                return true;
            }
            match self.sealed_at.get(&segments[i].id) {
                Some(&at) if now < at + YOUNG_MAX_AGE => {
                    let until = at + YOUNG_MAX_AGE;
                    young_until.set(Some(young_until.get().map_or(until, |u| u.min(until))));
                    false
                }
                _ => true,
            }
        };
        let (start, limit) = match (0..last).find(|&i| below(i, policy.threshold) && old_enough(i))
        {
            Some(i) => (i, policy.threshold),
            None => {
                let data: u64 = usage.iter().map(|u| u.0).sum();
                let live: u64 = usage.iter().map(|u| u.1).sum();
                let allowed =
                    policy.max_space_amplification * live as f64 + self.target_slack(policy, live);
                if (data as f64) <= allowed {
                    return None;
                }
                let mut best: Option<(f64, usize)> = None;
                let mut age = 0u64;
                for i in (0..last).rev() {
                    if !old_enough(i) {
                        age += usage[i].0;
                        continue;
                    }
                    if let Some(u) = ratio(i).filter(|&u| u < REWRITE_MAX_RATIO) {
                        let score = (1.0 - u) * age as f64 / (1.0 + u);
                        if best.is_none_or(|(b, _)| score > b) {
                            best = Some((score, i));
                        }
                    }
                    age += usage[i].0;
                }
                (best?.1, REWRITE_MAX_RATIO)
            }
        };
        let (mut start, mut end) = (start, start + 1);
        let mut live = usage[start].1 as usize;
        let fits = |live: usize, i: usize| live + usage[i].1 as usize <= budget;
        while start > 0 && below(start - 1, limit) && fits(live, start - 1) {
            start -= 1;
            live += usage[start].1 as usize;
        }
        while end < last && below(end, limit) && fits(live, end) {
            live += usage[end].1 as usize;
            end += 1;
        }
        let mut older = HashSet::new();
        for s in &segments[..start] {
            if let Some(u) = self.acct.segments.get(&s.id) {
                older.extend(u.journals.iter().copied());
            }
        }
        let new_id = self.manifest.next_segment_id;
        self.manifest.next_segment_id = new_id.checked_add(1)?;
        Some(Plan {
            older,
            victims: (start..end)
                .map(|i| (segments[i].clone(), sealed[i].sealed_len.unwrap_or(0)))
                .collect(),
            at_oldest: start == 0,
            new_id,
            version,
            used: Cell::new(end - start),
        })
    }

    /// Switches the index and the manifest over to a finished copy. Returns
    /// `false` (and changes nothing) if the run changed meanwhile.
    pub(crate) fn finish_compaction(&mut self, plan: &Plan, output: Output) -> Result<bool> {
        // The copy left out what the plan's version had killed, maybe by
        // records not yet synced (`SyncMode::Never`/`Interval`). They must be
        // durable before a durable manifest forgets the old segments: else a
        // power loss keeps the new manifest, loses those records, and the
        // state they superseded is gone (as in `free_segments`). The caller
        // syncs them without the lock first; this covers a caller that did
        // not.
        if self.progress.durable() < plan.version.lsn {
            self.flush()?;
            self.sync_active()?;
        }
        let ids: Vec<u32> = plan.run().iter().map(|(s, _)| s.id).collect();
        let segments = &self.generation.segments;
        let Some(start) = segments.iter().position(|s| s.id == ids[0]) else {
            if let Some(s) = &output.segment {
                s.mark_obsolete();
            }
            return Ok(false);
        };
        let still_a_run = ids
            .iter()
            .enumerate()
            .all(|(k, id)| segments.get(start + k).is_some_and(|s| s.id == *id));
        if !still_a_run || start + ids.len() >= segments.len() {
            if let Some(s) = &output.segment {
                s.mark_obsolete();
            }
            return Ok(false);
        }

        // Move what is still live; what died meanwhile stays dead in the copy.
        let mut usage = SegmentUsage::default();
        let copied_items = output.moves.len() as u64;
        for (key, role, old, new) in output.moves {
            let Some(state) = self.index.get_mut(&key) else {
                continue;
            };
            let slot = match role {
                Role::Entry(i) => i
                    .checked_sub(state.first)
                    .and_then(|k| state.entries.get_mut(k as usize)),
                Role::Metadata => state.metadata.as_mut(),
                Role::Anchor => state.anchor.as_mut(),
            };
            if let Some(loc) = slot.filter(|loc| **loc == old) {
                *loc = new;
                usage.live_items += 1;
                usage.live_bytes += output.segment.as_ref().map_or(0, |s| s.op_len(new.offset));
            }
        }
        let victims: BTreeSet<u32> = ids.iter().copied().collect();
        let mut dropped_journals = HashSet::new();
        for id in &ids {
            if let Some(old) = self.acct.segments.remove(id) {
                if !plan.at_oldest {
                    usage.deps.extend(old.deps.difference(&victims));
                }
                dropped_journals.extend(old.journals);
            }
        }
        // Journals of which this run held records and the copy holds none:
        // tombstones for them kept in later compacted segments may have
        // guarded just those records, so let those segments be reconsidered.
        let gone: HashSet<u64> = dropped_journals
            .difference(&output.journals)
            .copied()
            .collect();
        for s in &segments[start + ids.len()..] {
            if let Some(u) = self.acct.segments.get_mut(&s.id) {
                if u.settled && u.tombstones && !u.journals.is_disjoint(&gone) {
                    u.settled = false;
                }
            }
        }
        // Items killed after the copy was planned may now lie dead in the
        // new segment; their killers must outlive it.
        let new_id = output.segment.as_ref().map(|s| s.id);
        for u in self.acct.segments.values_mut() {
            let before = u.deps.len();
            u.deps.retain(|d| !victims.contains(d));
            if u.deps.len() != before {
                if let Some(id) = new_id {
                    u.deps.insert(id);
                }
            }
        }
        if let Some(id) = new_id {
            // Settled only if nothing it holds died during the copy: that
            // dead copy has no later death to unsettle the segment, so it
            // would stay out of compaction's reach for good.
            usage.settled = usage.live_items == copied_items;
            usage.tombstones = output.tombstones;
            usage.journals = output.journals;
            self.acct.segments.insert(id, usage);
        }
        self.acct.changed = true;

        let mut manifest = self.manifest.clone();
        let tail = manifest.segments.split_off(start);
        manifest.segments.extend(new_id.map(|id| ListedSegment {
            id,
            sealed_len: Some(output.sealed_len),
        }));
        manifest.segments.extend(tail.into_iter().skip(ids.len()));
        let replacement = output.segment.clone();
        // From the rename on, a manifest on disk may name the new segment:
        // it must not be removed even if the swap fails after that.
        if let Some(s) = &replacement {
            s.keep();
        }
        // Deferred with background compaction: the caller stores it
        // without the lock (`Committer::finish_pending`).
        self.swap_or_defer(manifest, |segments| {
            segments
                .splice(start..start + ids.len(), replacement)
                .collect()
        })?;
        for id in &ids {
            self.sealed_at.remove(id);
        }
        Ok(true)
    }
}

/// Copies the live content of the plan's run into a new segment.
/// An operation a compaction keeps, read from the run.
struct Kept {
    journal: JournalKey,
    /// Its bytes in the copy's buffer of kept operations.
    bytes: std::ops::Range<usize>,
    /// Its role and location, if it is live (else it is a tombstone).
    moved: Option<(Role, Loc)>,
}

/// The records of a compacted segment: the kept operations grouped by
/// journal (journals in the order of their first kept operation, each
/// journal's operations in log order), so that a journal's live entries
/// lie next to each other and a whole-journal read touches consecutive
/// pages (format-spec 7.4). `first ..= last` are the LSNs of the first and
/// the last record that kept anything.
///
/// Replay gives the same state: only the order between operations of
/// different journals changes, and an operation applies to its own
/// journal alone. The records take the LSNs `last - (R - 1) ..= last`, in
/// order, for `R` records: one per journal, or fewer (consecutive journals
/// sharing a record) where the run's LSNs leave too few numbers; so LSNs
/// still increase along the log and the run's last LSN is kept.
///
/// Returns the records (to follow the segment header), each live
/// operation's move, and the segment's `base_lsn`.
fn lay_out_by_journal(
    new_id: u32,
    kept: &[Kept],
    kept_bytes: &[u8],
    first: u64,
    last: u64,
) -> (Vec<u8>, Vec<Move>, u64) {
    let mut group_of: HashMap<&JournalKey, usize> = HashMap::new();
    let mut groups: Vec<Vec<&Kept>> = Vec::new();
    for k in kept {
        let g = *group_of.entry(&k.journal).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(k);
    }
    let lsn_count = usize::try_from(last - first + 1).unwrap_or(usize::MAX);
    let records = groups.len().min(lsn_count);
    let mut buf = Vec::with_capacity(kept_bytes.len() + records * (RECORD_HEADER_LEN + 7));
    let mut moves = Vec::new();
    for r in 0..records {
        let record_start = buf.len();
        buf.resize(record_start + RECORD_HEADER_LEN, 0);
        let mut count = 0u32;
        let journals = r * groups.len() / records..(r + 1) * groups.len() / records;
        for k in groups[journals].iter().flatten() {
            // The new segment holds `buf` right after its header.
            let new = Loc {
                segment: new_id,
                offset: (SEGMENT_HEADER_LEN + buf.len()) as u32,
            };
            if let Some((role, old)) = k.moved {
                moves.push((k.journal.clone(), role, old, new));
            }
            buf.extend_from_slice(&kept_bytes[k.bytes.clone()]);
            count += 1;
        }
        // `synced_through` 0: the segment is written and synced whole
        // before any manifest names it (format-spec 7.4).
        let lsn = last - (records - 1 - r) as u64;
        let header = RecordHeader::batch(lsn, &buf[record_start + RECORD_HEADER_LEN..], 0, count);
        buf[record_start..record_start + RECORD_HEADER_LEN].copy_from_slice(header.as_bytes());
        let len = align_up(buf.len());
        buf.resize(len, 0);
    }
    (buf, moves, last - (records as u64 - 1))
}

pub(crate) fn copy(
    plan: &Plan,
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    segment_size: u64,
    rate_limit: Option<u64>,
) -> Result<Output> {
    // Which locations of the run were live when it was chosen.
    let victims: BTreeSet<u32> = plan.victims.iter().map(|(s, _)| s.id).collect();
    let mut live: HashMap<Loc, (JournalKey, Role)> = HashMap::new();
    for (key, state) in plan.version.index.iter() {
        for (k, loc) in state.entries.iter().enumerate() {
            if victims.contains(&loc.segment) {
                live.insert(*loc, (key.clone(), Role::Entry(state.first + k as u64)));
            }
        }
        for (loc, role) in [
            (state.metadata, Role::Metadata),
            (state.anchor, Role::Anchor),
        ] {
            if let Some(loc) = loc.filter(|l| victims.contains(&l.segment)) {
                live.insert(loc, (key.clone(), role));
            }
        }
    }

    // What the run keeps, in log order: the operations' bytes in
    // `kept_bytes`, and for each its journal, record LSN and role.
    let mut kept: Vec<Kept> = Vec::new();
    let mut kept_bytes = Vec::new();
    // The output's size were it laid out in log order (record headers and
    // padding included): the budget below, and about what the regrouped
    // layout takes.
    let mut size = 0usize;
    let mut lsns: Option<(u64, u64)> = None;
    let mut tombstones = false;
    // A superset is fine: an extra hash only keeps a tombstone longer.
    let mut journals = HashSet::new();
    let started = Instant::now();
    let mut used = 0;
    for (segment, sealed_len) in &plan.victims {
        // The planner budgets a run by its live bytes, but tombstones are
        // kept too (unless at the oldest segment): if this segment's share
        // does not fit beside the earlier ones, the run ends before it.
        let mark = (kept.len(), kept_bytes.len(), lsns, tombstones);
        // Read end to end: ask for it ahead (mappings fault page by page).
        segment.will_need(*sealed_len);
        let limit = *sealed_len as usize;
        let mut pos = SEGMENT_HEADER_LEN;
        while pos + RECORD_HEADER_LEN <= limit {
            let record = check_record(&**segment, pos, limit, 0).map_err(|_| {
                Error::corruption(
                    &segment.path,
                    pos as u64,
                    "record fails its checksum during compaction",
                )
            })?;
            let payload_at = pos + RECORD_HEADER_LEN;
            let lsn = record.header.lsn.get();
            let mut record_bytes = 0;
            for op in OpIter::new(record.payload) {
                let op = op.map_err(|e| {
                    Error::corruption(&segment.path, (payload_at + e.offset) as u64, e.reason)
                })?;
                let old = Loc {
                    segment: segment.id,
                    offset: (payload_at + op.offset) as u32,
                };
                let tombstone = matches!(
                    op.kind,
                    OpKind::Delete | OpKind::TrimPrefix | OpKind::Truncate | OpKind::ClearMetadata
                );
                let role = live.get(&old);
                let keep_tombstone = tombstone && plan.older.contains(&journal_hash(op.id));
                if role.is_none() && !keep_tombstone {
                    continue;
                }
                tombstones |= role.is_none();
                let at = kept_bytes.len();
                kept_bytes.extend_from_slice(&record.payload[op.offset..op.offset + op.len]);
                kept.push(Kept {
                    journal: JournalKey::from(op.id),
                    bytes: at..kept_bytes.len(),
                    moved: role.map(|&(_, role)| (role, old)),
                });
                journals.insert(journal_hash(op.id));
                record_bytes += op.len;
            }
            if record_bytes > 0 {
                size += align_up(RECORD_HEADER_LEN + record_bytes);
                lsns = Some(lsns.map_or((lsn, lsn), |(first, _)| (first, lsn)));
            }
            pos = record.next_offset();
        }
        // The copy read the whole segment through its mapping; readers
        // fault back in what they need (see `Mapping::release`).
        segment.release();
        if used > 0 && (SEGMENT_HEADER_LEN + size) as u64 > segment_size {
            kept.truncate(mark.0);
            kept_bytes.truncate(mark.1);
            (lsns, tombstones) = (mark.2, mark.3);
            break;
        }
        used += 1;
    }
    let (buf, moves, base_lsn) = match lsns {
        Some((first, last)) => lay_out_by_journal(plan.new_id, &kept, &kept_bytes, first, last),
        None => (Vec::new(), Vec::new(), 1),
    };
    plan.used.set(used);
    if buf.is_empty() {
        return Ok(Output {
            segment: None,
            sealed_len: 0,
            moves,
            tombstones: false,
            journals: HashSet::new(),
            bytes_copied: 0,
        });
    }
    // One segment's records only shrink, so this fails only for a segment
    // bigger than the offsets of locations can address.
    if SEGMENT_HEADER_LEN + buf.len() > u32::MAX as usize {
        return Err(Error::InvalidOptions(
            "compaction output does not fit in one segment".into(),
        ));
    }
    // Sized to its data, not to `segment_size`: a compacted segment is
    // sealed from birth and never appended to, and it holds at most about
    // half a segment (the planner's budget), so a file of a whole segment
    // would keep up to twice the live bytes on disk.
    let len = (SEGMENT_HEADER_LEN + buf.len()) as u64;
    // Synced once, below, with its data.
    // Owned by the store the run's segments belong to.
    let owner = plan.victims.first().and_then(|(s, _)| s.owner());
    let segment = Segment::create(fs, dir, owner, plan.new_id, len, len, base_lsn, false)?;
    // Until the manifest names it, the new segment is removed when dropped
    // (an error below, or an abandoned run); `finish` clears that.
    segment.mark_obsolete();
    let io = |e| Error::io("write compacted segment", &segment.path, e);
    let file = segment.file().map_err(io)?;
    // Written in chunks so that a rate limit can pace it.
    const CHUNK: usize = 1 << 20;
    for (k, chunk) in buf.chunks(CHUNK).enumerate() {
        file.write_at((SEGMENT_HEADER_LEN + k * CHUNK) as u64, chunk)
            .map_err(io)?;
        if let Some(rate) = rate_limit.filter(|&r| r > 0) {
            let due =
                Duration::from_secs_f64(((k + 1) * CHUNK).min(buf.len()) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    file.sync_data().map_err(io)?;
    drop(file);
    // Sealed from birth: its mapping is all it needs from here on.
    segment.close_file();
    Ok(Output {
        segment: Some(Arc::new(segment)),
        sealed_len: (SEGMENT_HEADER_LEN + buf.len()) as u64,
        moves,
        tombstones,
        journals,
        bytes_copied: buf.len() as u64,
    })
}

impl Committer {
    /// Whether the segments, the active one included, hold more data than
    /// `limit` times the live bytes, plus some slack (`space_slack` and
    /// [`STALL_SLACK`] or a segment; see
    /// `Options::stall_space_amplification`). The active segment counts:
    /// when the live set is small next to `segment_size`, dead records pile
    /// up there between seals, and compaction can reach them only by
    /// sealing it early (`should_seal_active`).
    pub fn over_space_limit(&self, limit: f64) -> bool {
        let log = lock(&self.log);
        let live = log.acct.total_live_bytes();
        let active = log.write_pos.saturating_sub(SEGMENT_HEADER_LEN as u64);
        (log.sealed_data(true) + active) as f64
            > limit * live as f64 + log.space_slack(live) + STALL_SLACK.min(log.segment_size) as f64
    }

    /// Frees the segments writes left to compaction
    /// (`LogWriter::pending_free`) and any others freeable now. The records
    /// that left them dead are made durable first, and the manifest swap
    /// that frees them after, both without the writer's lock; only the
    /// switch in memory takes it. Returns whether segments were freed.
    fn free_dead(&self) -> Result<bool> {
        let (ids, lsn) = {
            let mut log = lock(&self.log);
            let mut ids = log.freeable();
            ids.extend_from_slice(&log.pending_free);
            ids.sort_unstable();
            ids.dedup();
            if ids.is_empty() {
                return Ok(false);
            }
            (ids, log.next_lsn - 1)
        };
        // Every record that killed something in `ids` is at or below `lsn`.
        self.sync_to(lsn)?;
        self.finish_pending()?;
        let mut retired = Retired::default();
        let mut log = lock(&self.log);
        // The switch runs under the lock: publish first (see `current`).
        retired.push(self.publish_dirty(&mut log));
        let freed = match log.free_durable(&ids, lsn) {
            Ok(freed) => freed,
            Err(e) => {
                self.stop(&e);
                return Err(e);
            }
        };
        if freed {
            retired.push(self.publish_change(&mut log));
        }
        drop(log);
        // The manifest swap the free left pending, without the lock.
        self.finish_pending()?;
        Ok(freed)
    }

    /// How long until a segment the last plan left for being young is old
    /// by time (see `plan_compaction`), if one was left.
    pub fn young_left_for(&self) -> Option<Duration> {
        let until = lock(&self.log).young_until?;
        Some(until.saturating_duration_since(Instant::now()))
    }

    /// Runs one compaction step: `Ok(None)` when no run of segments is worth
    /// rewriting under `policy`. The copy runs without the writer's lock;
    /// the switch (manifest swap, publish, free) takes it.
    pub fn compact_once(
        &self,
        policy: Policy,
        rate_limit: Option<u64>,
    ) -> Result<Option<CompactionReport>> {
        let _one_at_a_time = lock(&self.compacting);
        self.check_stopped()?;
        // A seal left pending by a write's roll: its syncs and manifest
        // swap without the writer's lock, before a swap here needs them.
        self.finish_pending()?;
        if self.free_dead()? {
            return Ok(Some(CompactionReport::default()));
        }
        let (plan, fs, dir, segment_size) = {
            let mut retired = Retired::default();
            let mut log = lock(&self.log);
            // Looking now: the next look is due once that many more die.
            let between = log.dead_bytes_between_looks(policy);
            log.acct.arm_dead_trigger(between);
            if log.should_seal_active(policy) {
                // Publish first: the roll creates files under the lock.
                retired.push(self.publish_dirty(&mut log));
                if let Err(e) = log.roll() {
                    self.stop(&e);
                    return Err(e);
                }
                retired.push(self.publish_change(&mut log));
                drop(log);
                // The seal's syncs and manifest swap, without the lock.
                self.finish_pending()?;
                // The sealed segment is now a candidate like any other.
                return Ok(Some(CompactionReport::default()));
            }
            // The plan reads what is live from the working state, not from
            // the published version: that may lag behind groups written and
            // not yet synced (see `Committer`), whose records in a segment a
            // roll sealed would be left out of the copy while the index
            // still points at them. The copy may thus hold records not yet
            // durable; the switch syncs them before the manifest names it.
            let version = log.version();
            match log.plan_compaction(policy, version) {
                Some(plan) => (plan, log.fs.clone(), log.dir.clone(), log.segment_size),
                None => return Ok(None),
            }
        };
        let output = match copy(&plan, &fs, &dir, segment_size, rate_limit) {
            Ok(output) => output,
            Err(e) => {
                trace_event!(
                    WARN,
                    error = %crate::error::DisplayChain(&e),
                    segments = plan.victim_count(),
                    "compaction copy failed; the store stays writable"
                );
                return Err(e);
            }
        };
        let mut report = CompactionReport {
            bytes_copied: output.bytes_copied,
            segments_written: u64::from(output.bytes_copied > 0),
            ..Default::default()
        };
        // What the copy left out as dead was killed by records at or below
        // the plan's LSN: durable before the switch (see
        // `finish_compaction`), synced here without the writer's lock.
        self.sync_to(plan.version.lsn)?;
        // A roll meanwhile: its swap goes first, here rather than under the lock.
        self.finish_pending()?;
        let mut retired = Retired::default();
        let mut log = lock(&self.log);
        let started = Instant::now();
        // The switch may store the manifest under the lock (without
        // background compaction): publish first (see `current`).
        retired.push(self.publish_dirty(&mut log));
        let switched = log.finish_compaction(&plan, output).and_then(|switched| {
            if switched {
                retired.push(self.publish_change(&mut log));
                // With `defers_frees`, the next step frees (`free_dead`),
                // syncing without the lock.
                if !log.defers_frees() && log.free_segments()? {
                    retired.push(self.publish_change(&mut log));
                }
            }
            Ok(switched)
        });
        report.max_pause = started.elapsed();
        let result = match switched {
            Ok(true) => {
                log.compacted += report.bytes_copied;
                log.compaction_runs += 1;
                report.runs = 1;
                report.segments_rewritten = plan.victim_count();
                report.bytes_released = plan.victim_bytes();
                trace_event!(
                    DEBUG,
                    segments_rewritten = report.segments_rewritten,
                    bytes_copied = report.bytes_copied,
                    bytes_released = report.bytes_released,
                    pause_ms = report.max_pause.as_secs_f64() * 1e3,
                    "compaction run"
                );
                Ok(Some(report))
            }
            // The run changed meanwhile (a segment was freed): try again.
            Ok(false) => Ok(Some(CompactionReport::default())),
            Err(e) => {
                trace_event!(
                    ERROR,
                    error = %crate::error::DisplayChain(&e),
                    "compaction switch failed; writes are stopped"
                );
                self.stop(&e);
                Err(e)
            }
        };
        drop(log);
        if result.is_ok() {
            // The switch's manifest swap, left pending, without the lock.
            self.finish_pending()?;
        }
        result
    }
}
