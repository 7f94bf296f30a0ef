//! [`Stats`]: the figures an open store reports about itself.
//!
//! A plain value type, so that both the store that computes it
//! ([`Store::stats`](crate::Store::stats)) and the status file that writes it
//! for other processes (`status.rs`) can name it without depending on each
//! other.
//!
//! Invariant: one `Stats` is taken at one point, under the writer's lock;
//! its figures never mix two moments.

use std::time::Duration;

/// Figures about a store, from [`Store::stats`](crate::Store::stats).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Stats {
    /// Current manifest generation.
    pub generation: u64,
    /// LSN of the last published batch.
    pub lsn: u64,
    /// Number of segment files in the current generation.
    pub segments: usize,
    /// Bytes of segment files in the current generation: their lengths,
    /// which for the active segment is its whole capacity, although only
    /// its data plus up to 1 MiB is allocated on disk.
    pub bytes_on_disk: u64,
    /// Bytes written to segments of the current generation (records).
    pub bytes_written: u64,
    /// Encoded bytes of live operations (entries, metadata, anchors).
    pub live_bytes: u64,
    /// Number of journals.
    pub journals: usize,
    /// Snapshots alive (including clones).
    pub pinned_snapshots: usize,
    /// Generation pinned by the oldest snapshot alive.
    pub oldest_pinned_generation: Option<u64>,
    /// How long the oldest snapshot alive has been held: alarm on it to
    /// find a forgotten reader. Snapshots one thread takes of one version
    /// are counted from the first of them while any is alive, so a thread
    /// that keeps overlapping snapshots of one version shows as holding it
    /// since the first.
    pub oldest_pinned_age: Option<Duration>,
    /// Bytes of segment files that no longer belong to the current
    /// generation and are kept only because snapshots pin them.
    pub pinned_only_bytes: u64,
    /// Bytes of records appended by writes since open.
    pub bytes_appended: u64,
    /// Bytes of records compaction copied since open: with
    /// `bytes_appended`, the write amplification compaction adds.
    pub compaction_bytes_copied: u64,
    /// Runs of segments compaction rewrote since open.
    pub compaction_runs: u64,
}
