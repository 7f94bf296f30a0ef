//! Store options.

use std::sync::Arc;
use std::time::Duration;

use crate::io::{FileSystem, RealFs};
use crate::record::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::{Error, Result};

/// When `Store::write` returns relative to the data reaching the disk.
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

/// Options for [`Store::open`](crate::Store::open).
#[derive(Clone, Debug)]
pub struct Options {
    /// Durability of each write. Default: [`SyncMode::Always`].
    pub sync: SyncMode,
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
    /// Space amplification compaction aims for: when the sealed segments
    /// hold more than this many times their live bytes (plus a slack of one
    /// segment, or of a tenth of the live bytes plus 1 MiB if that is less),
    /// compaction also rewrites segments above `compaction_threshold`, the
    /// oldest and emptiest first, until they do not (segments over 80 %
    /// live are left alone, so a target below about 1.2 is not reached).
    /// Default 1.25; `f64::INFINITY` turns it off.
    pub max_space_amplification: f64,
    /// The write stall: when the sealed segments hold more than this many
    /// times their live bytes (plus the same slack), a write that seals a
    /// segment runs compaction steps itself before it returns, until the
    /// store is back under this or compaction has nothing left to do. It
    /// keeps disk usage bounded when writes outpace the compaction thread
    /// (a slow `fsync`, a busy machine), like RocksDB's write stalls:
    /// writers slow down to the rate compaction keeps up with (with a
    /// `compaction_rate_limit`, to that rate). Only with
    /// `background_compaction`. Default 1.4, between the compaction target
    /// (`max_space_amplification`) and 1.5; `None` turns it off.
    pub stall_space_amplification: Option<f64>,
    /// Whether a background thread compacts on its own. Default true;
    /// [`Store::compact`](crate::Store::compact) works either way.
    pub background_compaction: bool,
    /// Most bytes per second compaction writes; `None` (default) for no limit.
    pub compaction_rate_limit: Option<u64>,
    /// How often the open store rewrites its advisory `STATUS` file (its
    /// [`Stats`](crate::Stats), pinned snapshots included, as `key=value`
    /// lines that other processes can read: see
    /// [`inspect::read_status`](crate::inspect::read_status)). It is also
    /// written at open and at close. `None` writes no status file (and
    /// leaves an existing one alone). Default: every 10 seconds.
    pub status_interval: Option<Duration>,
    /// The I/O layer. Default: the real file system. Tests pass a
    /// [`SimFs`](crate::io::SimFs) to inject faults and power loss.
    pub fs: Arc<dyn FileSystem>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncMode::Always,
            segment_size: 64 << 20,
            max_entry_size: 32 << 20,
            max_metadata_size: 64 << 10,
            compaction_threshold: 0.5,
            max_space_amplification: 1.25,
            stall_space_amplification: Some(1.4),
            background_compaction: true,
            compaction_rate_limit: None,
            status_interval: Some(Duration::from_secs(10)),
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
        if self.status_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidOptions(
                "status_interval needs a non-zero duration (None turns the status file off)".into(),
            ));
        }
        Ok(())
    }
}
