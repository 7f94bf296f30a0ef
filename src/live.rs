//! Live-space accounting per segment, and the rule for freeing a segment.
//!
//! A segment may be freed when it holds no live item (entry, metadata,
//! anchor) *and* every segment holding an item that one of its operations
//! killed is already gone. The second half is what keeps recovery honest:
//! a dead record may only disappear together with, or after, the record
//! that killed it; otherwise a replay would resurrect it (a deleted journal
//! coming back). Killers are always newer than their victims, so the
//! dependencies point to older segments and freeing proceeds oldest first.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::index::{Liveness, Loc};

/// What one segment holds that is still live.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentUsage {
    /// Encoded bytes of live operations.
    pub live_bytes: u64,
    /// Number of live operations.
    pub live_items: u64,
    /// Older segments holding items that operations in this one killed.
    pub deps: BTreeSet<u32>,
    /// Written by compaction and nothing in it has died since: compacting
    /// it again would copy it unchanged, so it is no candidate.
    pub settled: bool,
    /// Compaction kept tombstones (trims, truncates, deletes) in it; they
    /// can go once no older segment holds a record of their journals.
    pub tombstones: bool,
    /// Hashes ([`journal_hash`]) of the journals with any operation in this
    /// segment, live or dead. A tombstone is needed only while an older
    /// segment holds a record of its journal; a collision only keeps one.
    pub journals: HashSet<u64>,
}

/// The hash of a journal id kept in [`SegmentUsage::journals`]: 64-bit
/// FNV-1a of the id's bytes. It is written into index checkpoints
/// (format-spec 13) and compared with hashes computed by later builds, so
/// it is fixed here rather than left to `std`'s hasher, whose algorithm
/// may change between toolchains.
pub(crate) fn journal_hash(id: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    id.iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Usage of every segment in the current generation.
#[derive(Clone, Debug, Default)]
pub(crate) struct Accounting {
    pub segments: BTreeMap<u32, SegmentUsage>,
    /// Set when something died; `freeable` has work only then.
    pub changed: bool,
    /// Encoded bytes of every operation that died since this accounting
    /// was made (replay included); only grows.
    pub dead_bytes: u64,
    /// Tells the store's compaction thread when enough died; `None` without
    /// background compaction (and during recovery).
    pub dead_trigger: Option<DeadTrigger>,
}

/// The writer's side of compaction pacing: compaction looks for work once
/// `Accounting::dead_bytes` reaches `due_at`. A [`Tracker`] compares once,
/// when it is dropped at the end of its record, and raises `flag` on the
/// crossing only; the store turns the flag into one wake-up of its
/// compaction thread after the write. Compaction re-arms it each time it
/// looks (see `Accounting::arm_dead_trigger`).
#[derive(Clone, Debug)]
pub(crate) struct DeadTrigger {
    /// `u64::MAX` while the flag is raised and compaction has not looked
    /// since, so that a crossing wakes the thread once.
    pub due_at: u64,
    pub flag: Arc<AtomicBool>,
}

impl Accounting {
    pub fn add_segment(&mut self, id: u32) {
        self.segments.entry(id).or_default();
    }

    /// Compaction looks now: it is due again once `threshold` more bytes
    /// die.
    pub fn arm_dead_trigger(&mut self, threshold: u64) {
        if let Some(t) = &mut self.dead_trigger {
            t.due_at = self.dead_bytes.saturating_add(threshold);
        }
    }

    pub fn total_live_bytes(&self) -> u64 {
        self.segments.values().map(|u| u.live_bytes).sum()
    }

    /// Segments that can be freed now, oldest first. `active` is never freed.
    pub fn freeable(&mut self, active: u32) -> Vec<u32> {
        if !self.changed {
            return Vec::new();
        }
        self.changed = false;
        self.freeable_among(active, |_| true)
    }

    /// Those of `candidates` that can be freed now, oldest first: the same
    /// rule as `freeable`, for segments found freeable earlier (a
    /// compaction switch since may have given them a dependency).
    pub fn still_freeable(&self, active: u32, candidates: &[u32]) -> Vec<u32> {
        self.freeable_among(active, |id| candidates.contains(&id))
    }

    fn freeable_among(&self, active: u32, candidate: impl Fn(u32) -> bool) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for (&id, usage) in &self.segments {
            if id == active || usage.live_items != 0 || !candidate(id) {
                continue;
            }
            let deps_gone = usage
                .deps
                .iter()
                .all(|d| !self.segments.contains_key(d) || out.contains(d));
            if deps_gone {
                out.push(id);
            }
        }
        out
    }

    pub fn remove(&mut self, ids: &[u32]) {
        for id in ids {
            self.segments.remove(id);
        }
    }

    /// A tracker that reads the sizes of dead operations with `size_of`.
    pub fn tracker<'a>(&'a mut self, size_of: &'a dyn Fn(Loc) -> u64) -> Tracker<'a> {
        Tracker {
            acct: self,
            size_of,
        }
    }
}

/// Applies [`Liveness`] events to an [`Accounting`].
pub(crate) struct Tracker<'a> {
    acct: &'a mut Accounting,
    size_of: &'a dyn Fn(Loc) -> u64,
}

impl Liveness for Tracker<'_> {
    fn live(&mut self, loc: Loc, len: u64) {
        let u = self.acct.segments.entry(loc.segment).or_default();
        u.live_bytes += len;
        u.live_items += 1;
    }

    fn dead(&mut self, killer: Loc, victim: Loc) -> u64 {
        let len = (self.size_of)(victim);
        if let Some(u) = self.acct.segments.get_mut(&victim.segment) {
            u.live_bytes = u.live_bytes.saturating_sub(len);
            u.live_items = u.live_items.saturating_sub(1);
            u.settled = false;
        }
        if killer.segment != victim.segment {
            self.acct
                .segments
                .entry(killer.segment)
                .or_default()
                .deps
                .insert(victim.segment);
        }
        self.acct.changed = true;
        self.acct.dead_bytes += len;
        len
    }

    fn seen(&mut self, segment: u32, id: &[u8]) {
        self.acct
            .segments
            .entry(segment)
            .or_default()
            .journals
            .insert(journal_hash(id));
    }
}

/// A tracker lives for one record (one batch, or a group's batches): the
/// dead-bytes trigger is checked here, once per record rather than once
/// per death.
impl Drop for Tracker<'_> {
    fn drop(&mut self) {
        let acct = &mut *self.acct;
        if let Some(t) = &mut acct.dead_trigger {
            if acct.dead_bytes >= t.due_at {
                t.due_at = u64::MAX;
                t.flag.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_waits_for_the_segments_it_killed_into() {
        let mut acct = Accounting::default();
        let size = |_: Loc| 10u64;
        let loc = |segment| Loc { segment, offset: 0 };
        {
            let mut t = acct.tracker(&size);
            t.live(loc(1), 10); // an entry in segment 1
            t.live(loc(1), 10); // another, still live
            t.live(loc(2), 10); // a delete's neighbour in segment 2
            t.dead(loc(2), loc(1)); // an op in 2 kills one entry of 1
            t.dead(loc(3), loc(2)); // an op in 3 kills the item of 2
        }
        acct.add_segment(3);
        // 2 is empty but killed into 1, which still has a live entry.
        assert_eq!(acct.freeable(3), Vec::<u32>::new());
        {
            let mut t = acct.tracker(&size);
            t.dead(loc(3), loc(1));
        }
        assert_eq!(acct.freeable(3), vec![1, 2]);
        assert_eq!(acct.segments[&1].live_bytes, 0);
    }

    #[test]
    fn the_dead_bytes_trigger_raises_its_flag_once_per_crossing() {
        let flag = Arc::new(AtomicBool::new(false));
        let mut acct = Accounting {
            dead_trigger: Some(DeadTrigger {
                due_at: 0,
                flag: flag.clone(),
            }),
            ..Accounting::default()
        };
        acct.arm_dead_trigger(25);
        let size = |_: Loc| 10u64;
        let loc = |segment| Loc { segment, offset: 0 };
        let kill = |acct: &mut Accounting, n: usize| {
            let mut t = acct.tracker(&size);
            for _ in 0..n {
                t.live(loc(1), 10);
                t.dead(loc(1), loc(1));
            }
        };
        kill(&mut acct, 2);
        assert!(!flag.load(Ordering::Relaxed), "20 of 25 bytes");
        kill(&mut acct, 1);
        assert!(flag.swap(false, Ordering::Relaxed), "30 of 25 bytes");
        kill(&mut acct, 10);
        assert!(!flag.load(Ordering::Relaxed), "raised once until re-armed");
        acct.arm_dead_trigger(25);
        kill(&mut acct, 3);
        assert!(flag.load(Ordering::Relaxed));
        assert_eq!(acct.dead_bytes, 160);
    }
}
