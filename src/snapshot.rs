//! The read path: `Snapshot` and its `Journal` views.
//!
//! A snapshot is an `Arc` of one published [`Version`]: an index version,
//! the manifest generation its locations point into, and its LSN. Taking one
//! clones that `Arc` (O(1)); reading never takes a lock. Values are borrowed
//! straight from the segment mappings, which the snapshot keeps alive, and
//! each value's CRC is checked before it is handed out.

use std::collections::HashMap;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::index::{JournalState, Loc};
use crate::manifest::Generation;
use crate::mutex::lock;
use crate::version::Version;

/// The snapshots alive, for `Store::stats`: when each was taken and the
/// generation it pins. Registering is one short lock that no writer takes.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    next: AtomicU64,
    pub live: Mutex<HashMap<u64, (Instant, Arc<Generation>)>>,
}

impl Pins {
    fn register(&self, generation: &Arc<Generation>) -> u64 {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.live).insert(serial, (Instant::now(), generation.clone()));
        serial
    }
}

/// A consistent, immutable view of the store at one LSN.
///
/// Everything read through a snapshot (metadata, bounds, entries) comes from
/// the same point in time, whatever writes, trims, truncates, deletes or
/// segment rolls happen meanwhile. Segment files it can reach are kept until
/// it (and every clone) is dropped. `Send + Sync + 'static` and cheap to clone.
#[derive(Debug)]
pub struct Snapshot {
    version: Arc<Version>,
    pins: Arc<Pins>,
    serial: u64,
}

impl Snapshot {
    pub(crate) fn new(version: Arc<Version>, pins: Arc<Pins>) -> Snapshot {
        let serial = pins.register(&version.generation);
        Snapshot {
            version,
            pins,
            serial,
        }
    }

    /// The LSN of the last batch this snapshot contains (0 for an empty store).
    pub fn lsn(&self) -> u64 {
        self.version.lsn
    }

    /// The manifest generation this snapshot pins.
    pub fn generation(&self) -> u64 {
        self.version.generation.number
    }

    /// The journal `id`, if it exists at this snapshot.
    pub fn journal(&self, id: &[u8]) -> Option<Journal<'_>> {
        let (key, state) = self.version.index.get_key_value(id)?;
        Some(Journal {
            snapshot: self,
            id: key,
            state,
        })
    }

    /// Ids of all journals, ascending bytewise.
    pub fn journal_ids(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.version.index.iter().map(|(k, _)| &k[..])
    }

    /// Number of journals.
    pub fn journal_count(&self) -> usize {
        self.version.index.len()
    }

    fn read(&self, loc: Loc, journal: &[u8]) -> Result<&[u8]> {
        let segment = self
            .version
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
        Snapshot::new(self.version.clone(), self.pins.clone())
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        lock(&self.pins.live).remove(&self.serial);
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

    /// The metadata (empty if never set). Checksum-verified.
    pub fn metadata(&self) -> Result<&'a [u8]> {
        match self.state.metadata {
            Some(loc) => self.snapshot.read(loc, self.id),
            None => Ok(&[]),
        }
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

    /// Iterates over `(index, entry)` for the indexes of `range` that exist.
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
        Entries {
            snapshot: self.snapshot,
            id: self.id,
            next: start,
            locs,
        }
    }
}

/// Iterator returned by [`Journal::entries`].
pub struct Entries<'a> {
    snapshot: &'a Snapshot,
    id: &'a [u8],
    next: u64,
    locs: crate::locs::LocsIter<'a>,
}

impl std::fmt::Debug for Entries<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entries")
            .field("journal", &crate::DisplayId(self.id))
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(u64, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let loc = *self.locs.next()?;
        let index = self.next;
        self.next += 1;
        Some(self.snapshot.read(loc, self.id).map(|bytes| (index, bytes)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.locs.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_static<T: Send + Sync + 'static>() {}

    #[test]
    fn snapshot_is_send_sync_static() {
        assert_send_sync_static::<Snapshot>();
    }
}
