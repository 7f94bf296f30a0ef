//! Checkpoint: a consistent, openable copy of the store as of one snapshot.
//!
//! The snapshot's generation says which segments hold its data. Sealed
//! segments never change again, so they are hard-linked (copied where the
//! file system cannot link); the active segment is copied up to the end of
//! the snapshot's records. The manifest is written last, through the usual
//! atomic swap, so a checkpoint interrupted by a crash has no manifest and is
//! recognisably incomplete; the source store is never touched. Writes go on
//! meanwhile: they only append beyond what the snapshot covers.

use std::path::Path;
use std::sync::Arc;

use zerocopy::IntoBytes;

use crate::error::{Error, Result};
use crate::io::{FileSystem, OpenMode};
use crate::manifest::{ListedSegment, Manifest};
use crate::record::{RecordHeader, RECORD_HEADER_LEN};
use crate::segment::segment_file_name;
use crate::version::Version;

/// What [`Store::checkpoint`](crate::Store::checkpoint) wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CheckpointReport {
    /// The LSN the checkpoint holds everything up to (its snapshot's).
    pub lsn: u64,
    /// The manifest generation it copies.
    pub generation: u64,
    /// Segment files in the checkpoint.
    pub segments: usize,
    /// Bytes copied from the active segment.
    pub bytes_copied: u64,
}

/// Writes the checkpoint of `version` into the empty (or new) directory `dest`.
pub(crate) fn write(
    version: &Version,
    fs: &Arc<dyn FileSystem>,
    src: &Path,
    dest: &Path,
) -> Result<CheckpointReport> {
    // Every level it creates is durable, and so is the entry of a `dest`
    // that existed unsynced: the checkpoint's files are synced into it.
    crate::io::create_dir_all_durably(&**fs, dest)
        .map_err(|e| Error::io("create checkpoint directory", dest, e))?;
    crate::io::sync_parent(&**fs, dest).map_err(|e| Error::io("sync parent directory", dest, e))?;
    let existing = fs
        .read_dir(dest)
        .map_err(|e| Error::io("list checkpoint directory", dest, e))?;
    if !existing.is_empty() {
        return Err(Error::InvalidOptions(format!(
            "checkpoint directory {} is not empty",
            dest.display()
        )));
    }
    let generation = &version.generation;
    let last = generation.segments.len().saturating_sub(1);
    let mut listed = Vec::with_capacity(generation.segments.len());
    let mut bytes_copied = 0;
    for (i, segment) in generation.segments.iter().enumerate() {
        let name = segment_file_name(segment.id);
        let to = dest.join(&name);
        if i < last {
            fs.link_or_copy(&src.join(&name), &to)
                .map_err(|e| Error::io("link segment into checkpoint", &to, e))?;
            listed.push(ListedSegment {
                id: segment.id,
                sealed_len: generation.sealed.get(i).copied().flatten(),
            });
            continue;
        }
        // The active segment: its bytes up to the snapshot's end are final.
        let io = |op| {
            let to = to.clone();
            move |e| Error::io(op, to, e)
        };
        let len = version.active_end as usize;
        segment.will_need(version.active_end);
        let bytes = segment.bytes(0, len).ok_or_else(|| {
            Error::corruption(&segment.path, 0, "active segment shorter than its data")
        })?;
        let file = fs
            .open(&to, OpenMode::CreateNew)
            .map_err(io("create checkpoint segment"))?;
        // Full length like the original, sparse beyond its data (as the
        // writer would leave it), and a sync mark after the data claiming
        // all of it (format-spec 4.4): nothing trusts these bytes before the
        // manifest, written after their sync, names the file.
        let mark_end = len as u64 + RECORD_HEADER_LEN as u64;
        let mark = (mark_end <= segment.capacity)
            .then(|| RecordHeader::sync_mark(version.lsn, len as u32));
        file.extend(segment.capacity)
            .and_then(|()| file.reserve(mark_end.min(segment.capacity)))
            .map_err(io("extend checkpoint segment"))?;
        file.write_at(0, bytes)
            .and_then(|()| match &mark {
                Some(mark) => file.write_at(len as u64, mark.as_bytes()),
                None => Ok(()),
            })
            .map_err(io("write checkpoint segment"))?;
        file.sync_data().map_err(io("sync checkpoint segment"))?;
        bytes_copied += len as u64;
        listed.push(ListedSegment::active(segment.id));
    }
    if listed.iter().take(last).any(|s| s.sealed_len.is_none()) {
        return Err(Error::corruption(
            src.join("MANIFEST"),
            0,
            "snapshot generation lacks a sealed length",
        ));
    }
    let manifest = Manifest {
        generation: generation.number,
        next_segment_id: generation
            .segments
            .iter()
            .map(|s| s.id)
            .max()
            .unwrap_or(0)
            .saturating_add(1),
        lsn_floor: version.lsn,
        segments: listed,
    };
    // Makes the segment names durable, then swaps the manifest in (which
    // syncs the directory again).
    fs.sync_dir(dest)
        .map_err(|e| Error::io("sync checkpoint directory", dest, e))?;
    manifest.store(&**fs, dest)?;
    Ok(CheckpointReport {
        lsn: version.lsn,
        generation: generation.number,
        segments: generation.segments.len(),
        bytes_copied,
    })
}
