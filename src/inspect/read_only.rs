//! Opening a store read-only: [`open_read_only`] runs recovery's own
//! checks and replay (`recovery::open_segments`, `recovery::replay`) on
//! read-only mappings and returns a [`Snapshot`] of the state with
//! per-segment figures.
//!
//! Invariants:
//! - No lock is taken and no file is changed or created: the store may be
//!   open in another process meanwhile; an append in flight reads as a torn
//!   tail, which is left where it is and reported
//!   ([`ReadOnlyStore::torn_tail`]).
//! - Its checks are recovery's own, by the same functions
//!   (`MappedSegment::check`, the sealed lengths, the replay); what
//!   `Store::open` does beyond them (reserving LSNs for new writes, sealing
//!   a torn tail, removing leftovers) is left out.
//! - No descriptor is kept: the segments are held by their mappings.

use std::path::Path;
use std::sync::Arc;

use super::scan::{manifest_path, ManifestInfo};
use crate::error::{Error, Result};
use crate::io::{FileSystem, OpenMode, RealFs};
use crate::manifest::{Generation, Manifest};
use crate::pins::Pins;
use crate::record::SEGMENT_HEADER_LEN;
use crate::recovery::open_log;
use crate::segment::check_record;
use crate::snapshot::Snapshot;
use crate::version::Version;

/// Live space of one segment, as recovery computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SegmentLiveness {
    /// Segment id.
    pub id: u32,
    /// Preallocated size of the file.
    pub capacity: u64,
    /// End of its records (the sealed length, or the active segment's end
    /// of data); includes the 64-byte header.
    pub written: u64,
    /// Encoded bytes of live operations.
    pub live_bytes: u64,
    /// Number of live operations.
    pub live_items: u64,
}

/// A store opened read-only: a snapshot of its state plus per-segment figures.
#[derive(Debug)]
pub struct ReadOnlyStore {
    /// The state as recovery sees it now.
    pub snapshot: Snapshot,
    /// The manifest it was read from.
    pub manifest: ManifestInfo,
    /// Per-segment live space, in manifest order.
    pub segments: Vec<SegmentLiveness>,
    /// LSN of the oldest record still on disk (0 if none).
    pub oldest_lsn: u64,
    /// LSN of the newest valid record on disk (0 if none).
    pub newest_lsn: u64,
    /// End of valid data in the active segment.
    pub active_end: u64,
    /// Whether non-zero bytes follow the active segment's data: a torn tail,
    /// which `Store::open` would seal off.
    pub torn_tail: bool,
}

/// Opens the store in `dir` without locking it and without changing any
/// file: recovery's replay on read-only mappings. Works while another
/// process has the store open; an append in flight reads as a torn tail.
///
/// A store being written while it is read can look inconsistent for a
/// moment (a segment freed between reading the manifest and opening it, a
/// record seen half written and a later one complete), so a corruption is
/// reported only if it is still there when everything is read again (three
/// attempts in all); damage on disk does not go away.
pub fn open_read_only(dir: &Path) -> Result<ReadOnlyStore> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match open_read_only_once(dir) {
            Err(e) if attempts < 3 && e.is_corruption() => continue,
            other => return other,
        }
    }
}

fn open_read_only_once(dir: &Path) -> Result<ReadOnlyStore> {
    let fs: Arc<dyn FileSystem> = Arc::new(RealFs);
    let manifest = Manifest::load(&*fs, dir)?
        .ok_or_else(|| Error::corruption(manifest_path(dir), 0, "no manifest: not a store"))?;
    let (manifest, segments, replay) = open_log(&fs, dir, None, manifest, OpenMode::ReadOnly)?;
    let oldest_lsn = segments
        .iter()
        .filter_map(|s| {
            check_record(&**s, SEGMENT_HEADER_LEN, s.capacity as usize, 0)
                .ok()
                .map(|r| r.header.lsn.get())
        })
        .min()
        .unwrap_or(0);
    let liveness = segments
        .iter()
        .zip(&manifest.segments)
        .map(|(s, listed)| {
            let sealed = listed.sealed_len;
            let usage = replay.acct.segments.get(&s.id).cloned().unwrap_or_default();
            SegmentLiveness {
                id: s.id,
                capacity: s.capacity,
                written: sealed.unwrap_or(replay.active_end),
                live_bytes: usage.live_bytes,
                live_items: usage.live_items,
            }
        })
        .collect();
    let info = ManifestInfo::from_manifest(&manifest);
    let version = Arc::new(Version {
        lsn: replay.last_lsn.max(manifest.lsn_floor),
        index: replay.index,
        generation: Arc::new(Generation::new(manifest.generation, segments).with_sealed(&manifest)),
        active_end: replay.active_end,
    });
    Ok(ReadOnlyStore {
        snapshot: Snapshot::new(&version, &Pins::default()),
        manifest: info,
        segments: liveness,
        oldest_lsn,
        newest_lsn: replay.last_lsn,
        active_end: replay.active_end,
        torn_tail: replay.dirty_tail,
    })
}
