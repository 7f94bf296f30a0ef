//! Store options.

use std::sync::Arc;
use std::time::Duration;

use crate::io::{FileSystem, RealFs};
use crate::record::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::{Error, Result};

/// When `Store::write` returns relative to the data reaching the disk.
///
/// One write can choose otherwise with
/// [`Store::write_with`](crate::Store::write_with); batches written without
/// a sync are made durable by [`Store::sync_to`](crate::Store::sync_to) or
/// [`Store::sync`](crate::Store::sync) in every mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `write` returns after the batch is fdatasync'ed. Concurrent writers
    /// share one sync (group commit). Survives power loss.
    Always,
    /// `write` returns once the batch is in the OS page cache. Survives a
    /// process crash; after a power loss the store holds a prefix of the
    /// batches in LSN order.
    Never,
    /// Like `Never`, plus a background thread syncs at this interval.
    Interval(Duration),
}

/// How one write is made durable: the argument of
/// [`Store::write_with`](crate::Store::write_with).
///
/// - `sync: true`: the batch is durable when the write returns `Ok`, under
///   any [`SyncMode`]. Concurrent writers with `sync: true` share one
///   fdatasync (group commit). A snapshot shows the batch only once it is
///   durable.
/// - `sync: false`: the write returns once the batch is written (in the OS
///   page cache) and visible to new snapshots, not yet durable: a power
///   loss may take it back (with every later batch: what survives is a
///   prefix in LSN order). [`Store::sync_to`](crate::Store::sync_to) makes
///   it durable later.
///
/// [`Store::write`](crate::Store::write) is `write_with` with `sync: true`
/// under [`SyncMode::Always`] and `sync: false` under `Never` and
/// `Interval`. The default here is `sync: true`, the safe choice.
///
/// ```
/// # fn main() -> journalstore::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// use journalstore::{Store, WriteBatch, WriteOptions};
///
/// let store = Store::open(tmp.path(), Default::default())?;
/// let mut batch = WriteBatch::new();
/// batch.append(b"raft-log", b"entry 1");
/// // Visible now, durable later: e.g. a Raft leader appends, sends the
/// // entry to its followers, and syncs meanwhile.
/// let lsn = store.write_with(&batch, WriteOptions { sync: false })?;
/// assert!(store.snapshot().lsn() >= lsn);
/// store.sync_to(lsn)?;
/// assert!(store.durable_lsn() >= lsn);
/// assert!(WriteOptions::default().sync);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOptions {
    /// Whether the write returns only once the batch is durable.
    pub sync: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { sync: true }
    }
}

/// Options for [`Store::open`](crate::Store::open).
#[derive(Clone, Debug)]
pub struct Options {
    /// Durability of each write. Default: [`SyncMode::Always`].
    pub sync: SyncMode,
    /// Whether `Store::open` creates a store where there is none (the
    /// directory too). Default true; with false, a path without a store
    /// fails with [`Error::NotFound`] and nothing is created, so a
    /// mistyped path is an error rather than a new empty store.
    pub create_if_missing: bool,
    /// Size of each segment file in bytes. Files are created at this size
    /// but sparse: disk space is reserved 1 MiB ahead of the data.
    /// Default 64 MiB; at most 4 GiB - 1.
    pub segment_size: u64,
    /// Largest entry accepted, in bytes. Default 32 MiB.
    pub max_entry_size: u64,
    /// Largest metadata value accepted, in bytes. Default 64 KiB.
    pub max_metadata_size: u64,
    /// A sealed segment whose live bytes fall below this fraction of its
    /// data is rewritten by compaction. Default 0.5.
    pub compaction_threshold: f64,
    /// Space amplification (sealed bytes / live bytes, plus a slack)
    /// compaction aims for, rewriting segments above `compaction_threshold`
    /// too while over it (README, "Compaction"). Default 1.25;
    /// `f64::INFINITY` turns it off.
    pub max_space_amplification: f64,
    /// The write stall: over this space amplification, a write that seals a
    /// segment compacts before it returns, so writers slow to the rate
    /// compaction keeps up with (README, "Compaction"). Only with
    /// `background_compaction`; at least `max_space_amplification`.
    /// Default 1.4; `None` turns it off.
    pub stall_space_amplification: Option<f64>,
    /// Whether a background thread compacts on its own. Default true;
    /// [`Store::compact`](crate::Store::compact) works either way.
    pub background_compaction: bool,
    /// Compaction is paced by work: with `background_compaction`, its
    /// thread looks for work each time this many bytes of records have
    /// died (superseded metadata, trimmed, truncated and deleted entries)
    /// since it last looked, and each time a write seals a segment.
    /// `None` (default): a quarter of the live bytes, at least 256 KiB and
    /// at most a quarter of `segment_size` (README, "Compaction").
    pub compaction_dead_bytes: Option<u64>,
    /// How often the compaction thread also looks for work when nothing
    /// wakes it (a fallback: it retries a failed compaction and picks up a
    /// store reopened with dead records). Default 1 second; `None` looks
    /// only when dead bytes or a seal call for it.
    pub compaction_interval: Option<Duration>,
    /// Most bytes per second compaction writes; `None` (default) for no limit.
    pub compaction_rate_limit: Option<u64>,
    /// Whether close compacts until the store meets
    /// `max_space_amplification` within 64 KiB, rather than with the slack
    /// a running store is allowed (README, "Compaction"), sealing the
    /// active segment if dead records in it are over the target. It copies at most about one
    /// `segment_size` of live data, so a close takes at most that copy and
    /// its syncs longer. Only with `background_compaction` (without it,
    /// compaction runs only when [`Store::compact`](crate::Store::compact)
    /// is called). Default true.
    pub compact_on_close: bool,
    /// How often the open store rewrites its advisory `STATUS` file, which
    /// other processes read with
    /// [`inspect::read_status`](crate::inspect::read_status) (also written
    /// at open and close). Default every 10 seconds; `None` writes none.
    pub status_interval: Option<Duration>,
    /// Index checkpoints: the in-memory index written to a file at clean
    /// close, and in the background once this many bytes were appended
    /// since the last one (and at least 8 times that one's size, so that
    /// writing a large index never costs more than an eighth of what is
    /// appended), so that open replays only the log written after the
    /// newest one instead of the whole store (README, "Open"). Open does
    /// not checksum the records a checkpoint covers: their values are
    /// checked on their first read, their headers when compaction copies
    /// them (README, "What is checked, and when").
    ///
    /// Default 64 MiB, one default segment: after a crash, open replays
    /// about that much log beyond the newest checkpoint (~15 ms with a warm
    /// page cache, where a full replay takes ~0.25 s per GiB), while a
    /// checkpoint (~8 bytes per live entry plus each journal's id and
    /// bounds) stays small next to the bytes between two. `None` writes
    /// none (open still uses one it finds): every open then replays and
    /// checksums every record.
    pub index_checkpoint_bytes: Option<u64>,
    /// How often the index checkpoint thread also looks whether a
    /// checkpoint is due when no write sealed a segment (a write that
    /// seals one wakes it). Default 1 second; `None` looks only at seals.
    pub index_checkpoint_interval: Option<Duration>,
    /// The I/O layer. Default: the real file system.
    pub fs: Arc<dyn FileSystem>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncMode::Always,
            create_if_missing: true,
            segment_size: 64 << 20,
            max_entry_size: 32 << 20,
            max_metadata_size: 64 << 10,
            compaction_threshold: 0.5,
            max_space_amplification: 1.25,
            stall_space_amplification: Some(1.4),
            background_compaction: true,
            compaction_dead_bytes: None,
            compaction_interval: Some(Duration::from_secs(1)),
            compaction_rate_limit: None,
            compact_on_close: true,
            status_interval: Some(Duration::from_secs(10)),
            index_checkpoint_bytes: Some(64 << 20),
            index_checkpoint_interval: Some(Duration::from_secs(1)),
            fs: Arc::new(RealFs),
        }
    }
}

impl Options {
    /// Checks that the options can work together.
    pub(crate) fn validate(&self) -> Result<()> {
        let min = (SEGMENT_HEADER_LEN + RECORD_HEADER_LEN + 4096) as u64;
        if self.segment_size < min || self.segment_size > u64::from(u32::MAX) {
            return Err(Error::InvalidOptions(format!(
                "segment_size must be between {min} and {} bytes, got {}",
                u32::MAX,
                self.segment_size
            )));
        }
        if !(0.0..=1.0).contains(&self.compaction_threshold) {
            return Err(Error::InvalidOptions(format!(
                "compaction_threshold must be between 0 and 1, got {}",
                self.compaction_threshold
            )));
        }
        if self.max_space_amplification.is_nan() || self.max_space_amplification < 1.0 {
            return Err(Error::InvalidOptions(format!(
                "max_space_amplification must be at least 1, got {}",
                self.max_space_amplification
            )));
        }
        if let Some(stall) = self.stall_space_amplification {
            if stall.is_nan() || stall < self.max_space_amplification {
                return Err(Error::InvalidOptions(format!(
                    "stall_space_amplification must be at least max_space_amplification \
                     ({}), got {stall}",
                    self.max_space_amplification
                )));
            }
        }
        if let SyncMode::Interval(d) = self.sync {
            if d.is_zero() {
                return Err(Error::InvalidOptions(
                    "SyncMode::Interval needs a non-zero duration".into(),
                ));
            }
        }
        if self.compaction_dead_bytes == Some(0) {
            return Err(Error::InvalidOptions(
                "compaction_dead_bytes needs a non-zero size (None picks one from the live bytes)"
                    .into(),
            ));
        }
        if self.compaction_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidOptions(
                "compaction_interval needs a non-zero duration (None turns the fallback off)"
                    .into(),
            ));
        }
        if self.index_checkpoint_bytes == Some(0) {
            return Err(Error::InvalidOptions(
                "index_checkpoint_bytes needs a non-zero size (None turns index checkpoints off)"
                    .into(),
            ));
        }
        if self.index_checkpoint_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidOptions(
                "index_checkpoint_interval needs a non-zero duration (None looks only at seals)"
                    .into(),
            ));
        }
        if self.status_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidOptions(
                "status_interval needs a non-zero duration (None turns the status file off)".into(),
            ));
        }
        Ok(())
    }
}
