//! The published state that snapshots pin, and the retiring of replaced
//! versions outside the locks.
//!
//! A [`Version`] is immutable: the writer publishes a new one after each
//! commit (or lazily, in the buffered modes) and snapshots clone the `Arc`.
//! Dropping the last reference to a replaced version may free index nodes
//! or unlink a segment file, which no lock holder should wait for: replaced
//! versions go into a [`Retired`] declared before the guards it must
//! outlive, so that they drop after those guards are released.

use std::sync::Arc;

use crate::index::Index;
use crate::manifest::Generation;

/// What a snapshot pins: an index version, the generation of segments its
/// locations point into, and the LSN of the last batch it contains.
#[derive(Debug)]
pub(crate) struct Version {
    pub lsn: u64,
    pub index: Index,
    pub generation: Arc<Generation>,
    /// End of the records of this version in the active segment (what a
    /// checkpoint copies of it).
    pub active_end: u64,
}

/// Versions replaced while a lock was held, dropped when this is.
///
/// Declare it before the lock guard: locals drop in reverse order, so the
/// guard is released first and the versions are dropped after it.
#[derive(Debug, Default)]
#[must_use = "retired versions are dropped when this drops"]
pub(crate) struct Retired(Vec<Arc<Version>>);

impl Retired {
    /// Keeps `versions` (none, one or several) until this drops.
    pub fn push(&mut self, versions: impl IntoIterator<Item = Arc<Version>>) {
        self.0.extend(versions);
    }
}
