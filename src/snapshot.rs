//! The read path: `Snapshot` and its `Journal` views.
//!
//! A snapshot holds one published [`Version`]: an index version, the
//! manifest generation its locations point into, and its LSN. It holds it
//! through a pin of its thread's (`pins.rs`), so taking and dropping one
//! write nothing other reader threads read; reading takes no lock at all.
//! Values are borrowed
//! straight from the segment mappings, which the snapshot keeps alive, and
//! each value's CRC is checked before it is handed out.

use std::mem::ManuallyDrop;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::index::{JournalState, Loc};
use crate::locs::LocsIter;
use crate::pins::{self, Pin, Pins};
use crate::version::Version;

/// A consistent, immutable view of the store at one LSN.
///
/// Everything read through a snapshot (metadata, bounds, entries) comes from
/// the same point in time, whatever writes, trims, truncates, deletes or
/// segment rolls happen meanwhile. Segment files it can reach are kept until
/// it (and every clone) is dropped. `Send + Sync + 'static` and cheap to clone.
#[derive(Debug)]
pub struct Snapshot {
    /// Given back by `Drop` (`pins::unpin`), and only there.
    pin: ManuallyDrop<Arc<Pin>>,
}

impl Snapshot {
    /// A snapshot of `version`, pinned in `pins`.
    pub(crate) fn new(version: &Arc<Version>, pins: &Pins) -> Snapshot {
        Snapshot {
            pin: ManuallyDrop::new(pins.pin(version)),
        }
    }

    fn version(&self) -> &Version {
        &self.pin.version
    }

    /// The LSN of the last batch this snapshot contains (0 for an empty store).
    pub fn lsn(&self) -> u64 {
        self.version().lsn
    }

    /// The manifest generation this snapshot pins.
    pub fn generation(&self) -> u64 {
        self.version().generation.number
    }

    /// The journal `id`, if it exists at this snapshot.
    pub fn journal(&self, id: &[u8]) -> Option<Journal<'_>> {
        let (key, state) = self.version().index.get_key_value(id)?;
        Some(Journal {
            snapshot: self,
            id: key,
            state,
        })
    }

    /// Ids of all journals, ascending bytewise.
    pub fn journal_ids(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.version().index.iter().map(|(k, _)| &k[..])
    }

    /// Ids of the journals at or after `start`, ascending bytewise: a page
    /// of ids resumes after the last one seen with `journal_ids_from(last)`
    /// (skipping `last` itself).
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// # let mut b = journalstore::WriteBatch::new();
    /// # b.append(b"a", b"").append(b"b", b"").append(b"c", b"");
    /// # store.write(&b)?;
    /// let snap = store.snapshot();
    /// let ids: Vec<&[u8]> = snap.journal_ids_from(b"b").collect();
    /// assert_eq!(ids, [&b"b"[..], b"c"]);
    /// # Ok(()) }
    /// ```
    pub fn journal_ids_from<'a>(&'a self, start: &[u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.version().index.ids_from(start).map(|k| &k[..])
    }

    /// Ids of the journals whose id starts with `prefix`, ascending bytewise
    /// (a range scan: it reads no other id).
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// # let mut b = journalstore::WriteBatch::new();
    /// # b.append(b"inv/1", b"").append(b"inv/2", b"").append(b"raft/1", b"");
    /// # store.write(&b)?;
    /// let snap = store.snapshot();
    /// let ids: Vec<&[u8]> = snap.journal_ids_with_prefix(b"inv/").collect();
    /// assert_eq!(ids, [&b"inv/1"[..], b"inv/2"]);
    /// # Ok(()) }
    /// ```
    pub fn journal_ids_with_prefix<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.journal_ids_from(prefix)
            .take_while(move |id| id.starts_with(prefix))
    }

    /// Number of journals.
    pub fn journal_count(&self) -> usize {
        self.version().index.len()
    }

    /// Starts loading the operation header at `loc` into the CPU's cache
    /// (see [`Segment::prefetch`](crate::segment::Segment::prefetch)).
    fn prefetch(&self, loc: Loc) {
        if let Some(segment) = self.version().generation.segment(loc.segment) {
            segment.prefetch(loc.offset);
        }
    }

    /// Starts reading the operation at `loc` from disk if it may not be in
    /// memory (see [`Segment::will_need_op`](crate::segment::Segment::will_need_op)).
    fn will_need(&self, loc: Loc) {
        if let Some(segment) = self.version().generation.segment(loc.segment) {
            segment.will_need_op(loc.offset);
        }
    }

    fn read(&self, loc: Loc, journal: &[u8]) -> Result<&[u8]> {
        let segment = self
            .version()
            .generation
            .segment(loc.segment)
            .ok_or_else(|| Error::Corruption {
                path: Default::default(),
                offset: u64::from(loc.offset),
                journal: Some(journal.to_vec()),
                reason: format!("segment {} is not in this generation", loc.segment),
            })?;
        segment.read_value(loc.offset, journal)
    }
}

impl Clone for Snapshot {
    fn clone(&self) -> Self {
        Snapshot {
            pin: self.pin.clone(),
        }
    }
}

impl Drop for Snapshot {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: `self.pin` is taken once, here, and never used after.
        let pin = unsafe { ManuallyDrop::take(&mut self.pin) };
        pins::unpin(pin);
    }
}

/// One journal as seen by a [`Snapshot`].
#[derive(Clone, Copy, Debug)]
pub struct Journal<'a> {
    snapshot: &'a Snapshot,
    id: &'a [u8],
    state: &'a JournalState,
}

impl<'a> Journal<'a> {
    /// The journal's id.
    pub fn id(&self) -> &'a [u8] {
        self.id
    }

    /// Index of the first entry kept.
    pub fn first_index(&self) -> u64 {
        self.state.first
    }

    /// One past the last entry: the index the next append gets.
    pub fn end_index(&self) -> u64 {
        self.state.end()
    }

    /// Number of entries (`end_index - first_index`).
    pub fn len(&self) -> u64 {
        self.state.entries.len() as u64
    }

    /// Whether the journal holds no entries.
    pub fn is_empty(&self) -> bool {
        self.state.entries.is_empty()
    }

    /// The metadata: `None` if never set (or cleared since), `Some(b"")`
    /// if set to empty. Checksum-verified.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.append(b"a", b"e0").set_metadata(b"b", b"");
    /// store.write(&batch)?;
    /// let snap = store.snapshot();
    /// assert_eq!(snap.journal(b"a").unwrap().metadata()?, None);
    /// assert_eq!(snap.journal(b"b").unwrap().metadata()?, Some(&b""[..]));
    /// # Ok(()) }
    /// ```
    pub fn metadata(&self) -> Result<Option<&'a [u8]>> {
        match self.state.metadata {
            Some(loc) => self.snapshot.read(loc, self.id).map(Some),
            None => Ok(None),
        }
    }

    /// Total length in bytes of the entries held: the sum of their lengths,
    /// without metadata or the framing each entry has on disk. O(1): kept
    /// up to date as entries are appended and dropped.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.append(b"j", b"abc").append(b"j", b"de").set_metadata(b"j", b"meta");
    /// store.write(&batch)?;
    /// assert_eq!(store.snapshot().journal(b"j").unwrap().entry_bytes(), 5);
    /// # Ok(()) }
    /// ```
    pub fn entry_bytes(&self) -> u64 {
        self.state.entry_bytes
    }

    /// The entry at `index`, or `None` outside `first_index..end_index`.
    /// Borrowed from the segment mapping; checksum-verified.
    pub fn entry(&self, index: u64) -> Result<Option<&'a [u8]>> {
        let Some(pos) = index.checked_sub(self.state.first) else {
            return Ok(None);
        };
        match self.state.entries.get(pos as usize) {
            Some(&loc) => self.snapshot.read(loc, self.id).map(Some),
            None => Ok(None),
        }
    }

    /// The last entry and its index, or `None` for an empty journal.
    /// Checksum-verified.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// # let mut b = journalstore::WriteBatch::new();
    /// # b.append(b"raft-1", b"e0").append(b"raft-1", b"e1");
    /// # store.write(&b)?;
    /// let snap = store.snapshot();
    /// let journal = snap.journal(b"raft-1").unwrap();
    /// assert_eq!(journal.last()?, Some((1, &b"e1"[..])));
    /// # Ok(()) }
    /// ```
    pub fn last(&self) -> Result<Option<(u64, &'a [u8])>> {
        let Some(index) = self.end_index().checked_sub(1).filter(|_| !self.is_empty()) else {
            return Ok(None);
        };
        Ok(self.entry(index)?.map(|bytes| (index, bytes)))
    }

    /// Iterates over `(index, entry)` for the indexes of `range` that exist,
    /// from either end (`.rev()` reads newest first).
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// # let mut b = journalstore::WriteBatch::new();
    /// # b.append(b"j", b"a").append(b"j", b"b").append(b"j", b"c");
    /// # store.write(&b)?;
    /// let snap = store.snapshot();
    /// let newest_first: Vec<u64> = snap
    ///     .journal(b"j")
    ///     .unwrap()
    ///     .entries(1..)
    ///     .rev()
    ///     .map(|e| e.map(|(index, _)| index))
    ///     .collect::<journalstore::Result<_>>()?;
    /// assert_eq!(newest_first, [2, 1]);
    /// # Ok(()) }
    /// ```
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Entries<'a> {
        let (first, end) = (self.state.first, self.state.end());
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => first,
        }
        .clamp(first, end);
        let stop = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => end,
        }
        .clamp(start, end);
        let locs = self
            .state
            .entries
            .range((start - first) as usize..(stop - first) as usize);
        let mut prefetch = locs.clone();
        prefetch.next();
        Entries {
            snapshot: self.snapshot,
            id: self.id,
            state: self.state,
            next: start,
            end: stop,
            prefetched: start.saturating_add(1).min(stop),
            prefetch,
            advised: start,
            disk: locs.clone(),
            locs,
        }
    }
}

/// Iterator returned by [`Journal::entries`].
///
/// Reads forward through a cursor over the entry locations and backward by
/// position; the two ends meet and never yield an entry twice.
pub struct Entries<'a> {
    snapshot: &'a Snapshot,
    id: &'a [u8],
    state: &'a JournalState,
    /// The index the front yields next.
    next: u64,
    /// One past the index the back yields next.
    end: u64,
    /// Locations from `next` on (only the front advances it).
    locs: LocsIter<'a>,
    /// The front has prefetched the entries below this index...
    prefetched: u64,
    /// ...and `prefetch` holds the locations from there on.
    prefetch: LocsIter<'a>,
    /// The front has asked the disk for the entries below this index...
    advised: u64,
    /// ...and `disk` holds the locations from there on.
    disk: LocsIter<'a>,
}

impl std::fmt::Debug for Entries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("journal", &crate::DisplayId(self.id))
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// How many entries ahead [`Entries`] prefetches into the CPU's cache.
const PREFETCH_AHEAD: u64 = 4;

/// How many entries ahead [`Entries`] asks the disk for, when they were not
/// read since open: a journal's entries lie in different places of the
/// log, and reading them one page fault at a time leaves the disk idle
/// between faults, where asking for the next ones keeps it busy with many.
const DISK_AHEAD: u64 = 32;

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(u64, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let loc = *self.locs.next()?;
        let index = self.next;
        self.next += 1;
        // The cursors ahead run over the same locations as `locs`, never
        // behind it: they start with it and move at least as far per call.
        let disk_ahead = self.end.min(index + DISK_AHEAD);
        while self.advised < disk_ahead {
            let Some(&loc) = self.disk.next() else { break };
            self.snapshot.will_need(loc);
            self.advised += 1;
        }
        // Each entry's first touch (its operation header) is a cache miss
        // when the journal is not in the cache: the loads of the next
        // `PREFETCH_AHEAD` entries are under way while this one is read.
        let ahead = self.end.min(index + 1 + PREFETCH_AHEAD);
        while self.prefetched < ahead {
            let Some(&loc) = self.prefetch.next() else {
                break;
            };
            self.snapshot.prefetch(loc);
            self.prefetched += 1;
        }
        Some(self.snapshot.read(loc, self.id).map(|bytes| (index, bytes)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.end - self.next).unwrap_or(usize::MAX);
        (left, Some(left))
    }
}

impl DoubleEndedIterator for Entries<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let index = self.end - 1;
        let loc = *self
            .state
            .entries
            .get((index - self.state.first) as usize)?;
        self.end = index;
        Some(self.snapshot.read(loc, self.id).map(|bytes| (index, bytes)))
    }
}

impl ExactSizeIterator for Entries<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_static<T: Send + Sync + 'static>() {}

    #[test]
    fn snapshot_is_send_sync_static() {
        assert_send_sync_static::<Snapshot>();
    }
}
