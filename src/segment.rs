//! One segment file: a memory-mapped run of records in a file created at
//! its full size (sparse, disk space reserved ahead of the data).
//!
//! A segment is created at its full size, so its mapping never has to grow,
//! and it is never shrunk. Records are appended with `write_at` (through the
//! I/O layer) and read through the mapping. When the last `Arc<Segment>` of a
//! segment that the manifest no longer lists drops, the file is removed: a
//! segment lives exactly as long as some generation or snapshot can reach it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::error::{Error, Result};
use crate::io::{FileSystem, Mapping, OpenMode, StorageFile};
use crate::record::{
    align_up, crc32, read_op_header, RecordHeader, SegmentHeader, FORMAT_VERSION, OP_HEADER_LEN,
    RECORD_HEADER_LEN, RECORD_KIND_BATCH, RECORD_KIND_SYNC_MARK, SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};

/// File name of segment `id`.
pub(crate) fn segment_file_name(id: u32) -> String {
    format!("seg-{id:08x}.jseg")
}

/// The id in a segment file name, if `name` is one.
///
/// Only the exact name [`segment_file_name`] gives is accepted (8 lower-case
/// hex digits): callers act on the file under that canonical name, so a
/// second spelling of an id (`seg-0000000A.jseg`, `seg-+000000a.jseg`) must
/// be foreign, not an alias.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u32> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".jseg")?;
    if hex.len() != 8 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// An open segment file and its mapping.
#[derive(Debug)]
pub(crate) struct Segment {
    pub id: u32,
    pub path: PathBuf,
    pub file: Arc<dyn StorageFile>,
    map: Arc<dyn Mapping>,
    pub capacity: u64,
    pub base_lsn: u64,
    obsolete: AtomicBool,
    fs: Arc<dyn FileSystem>,
}

impl Segment {
    /// Creates segment `id` in `dir`: `capacity` bytes long, disk space
    /// reserved for its first `reserve` bytes (the rest is sparse until the
    /// writer reserves it), header written, and synced if `sync_header`
    /// (a caller that syncs the file itself before anything names it, like
    /// compaction, saves one sync).
    pub fn create(
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        id: u32,
        capacity: u64,
        reserve: u64,
        base_lsn: u64,
        sync_header: bool,
    ) -> Result<Segment> {
        let path = dir.join(segment_file_name(id));
        let io = |op| {
            let path = path.clone();
            move |e| Error::io(op, path, e)
        };
        let file = fs
            .open(&path, OpenMode::CreateNew)
            .map_err(io("create segment"))?;
        file.extend(capacity).map_err(io("extend segment"))?;
        file.reserve(reserve.min(capacity))
            .map_err(io("reserve segment space"))?;
        let header = SegmentHeader::new(u64::from(id), capacity, base_lsn);
        file.write_at(0, header.as_bytes())
            .map_err(io("write segment header"))?;
        if sync_header {
            file.sync_data().map_err(io("sync segment"))?;
        }
        let map = file.map().map_err(io("map segment"))?;
        Ok(Segment {
            id,
            path,
            file,
            map,
            capacity,
            base_lsn,
            obsolete: AtomicBool::new(false),
            fs: fs.clone(),
        })
    }

    /// Opens an existing segment and checks its header.
    pub fn open(fs: &Arc<dyn FileSystem>, dir: &Path, id: u32, mode: OpenMode) -> Result<Segment> {
        let path = dir.join(segment_file_name(id));
        let file = fs.open(&path, mode).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::corruption(&path, 0, "segment listed in the manifest is missing")
            } else {
                Error::io("open segment", &path, e)
            }
        })?;
        let map = file.map().map_err(|e| Error::io("map segment", &path, e))?;
        let header = map
            .slice(0, SEGMENT_HEADER_LEN)
            .and_then(|b| SegmentHeader::read_from_bytes(b).ok())
            .ok_or_else(|| Error::corruption(&path, 0, "segment file shorter than its header"))?;
        if header.magic != SEGMENT_MAGIC {
            return Err(Error::corruption(
                &path,
                0,
                "not a segment file (bad magic)",
            ));
        }
        if !header.crc_ok() {
            return Err(Error::corruption(
                &path,
                0,
                "segment header checksum mismatch",
            ));
        }
        if header.version.get() != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path,
                found: header.version.get(),
                supported: FORMAT_VERSION,
            });
        }
        if header.segment_id.get() != u64::from(id)
            || header.header_len.get() as usize != SEGMENT_HEADER_LEN
        {
            return Err(Error::corruption(
                &path,
                0,
                "segment header does not match its file name",
            ));
        }
        let capacity = header.capacity.get();
        if capacity != map.len() as u64 {
            return Err(Error::corruption(
                &path,
                0,
                format!(
                    "segment file is {} bytes but its header says {capacity}",
                    map.len()
                ),
            ));
        }
        Ok(Segment {
            id,
            path,
            file,
            map,
            capacity,
            base_lsn: header.base_lsn.get(),
            obsolete: AtomicBool::new(false),
            fs: fs.clone(),
        })
    }

    /// The mapped bytes `offset .. offset + len`, if inside the file.
    pub fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        self.map.slice(offset, len)
    }

    /// Starts reading the first `len` bytes from disk in the background
    /// (recovery, for the segment it scans next; see [`Mapping::will_need`]).
    pub fn will_need(&self, len: u64) {
        self.map
            .will_need(usize::try_from(len).unwrap_or(usize::MAX));
    }

    /// Lets the mapping's pages leave the process's resident set (recovery,
    /// after scanning a segment; see [`Mapping::release`]).
    pub fn release(&self) {
        self.map.release();
    }

    /// Encoded size of the operation at `offset` (0 if it cannot be read).
    pub fn op_len(&self, offset: u32) -> u64 {
        self.bytes(offset as usize, OP_HEADER_LEN)
            .and_then(read_op_header)
            .map_or(0, |h| {
                (OP_HEADER_LEN + h.id_len as usize + h.value_len.get() as usize) as u64
            })
    }

    /// The value (entry or metadata bytes) of the operation at `offset`,
    /// after checking its CRC: a flipped bit on disk is an error, never data.
    pub fn read_value(&self, offset: u32, journal: &[u8]) -> Result<&[u8]> {
        let corrupt = |reason: &str| Error::Corruption {
            path: self.path.clone(),
            offset: u64::from(offset),
            journal: Some(journal.to_vec()),
            reason: reason.to_owned(),
        };
        let header = self
            .bytes(offset as usize, OP_HEADER_LEN)
            .and_then(read_op_header)
            .ok_or_else(|| corrupt("operation header outside the segment"))?;
        let id_len = header.id_len as usize;
        let start = offset as usize + OP_HEADER_LEN + id_len;
        let len = header.value_len.get() as usize;
        let id = self.bytes(offset as usize + OP_HEADER_LEN, id_len);
        if id != Some(journal) {
            return Err(corrupt("operation does not belong to this journal"));
        }
        let value = self
            .bytes(start, len)
            .ok_or_else(|| corrupt("value runs past the end of the segment"))?;
        if crc32(value) != header.value_crc.get() {
            return Err(corrupt("value checksum mismatch"));
        }
        Ok(value)
    }

    /// Marks the segment for removal once its last reference drops.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }

    /// Undoes [`Segment::mark_obsolete`]: a manifest names the segment now.
    pub fn keep(&self) {
        self.obsolete.store(false, Ordering::Release);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            // Failure leaves an orphan file that the next open removes.
            let _ = self.fs.remove_file(&self.path);
        }
    }
}

/// One record found by a scan.
#[derive(Debug)]
pub(crate) struct RecordRef<'a> {
    pub offset: usize,
    pub header: RecordHeader,
    pub payload: &'a [u8],
}

impl RecordRef<'_> {
    /// Offset just after this record (aligned), where the next one starts.
    pub fn next_offset(&self) -> usize {
        align_up(self.offset + RECORD_HEADER_LEN + self.payload.len())
    }
}

/// Why a scan stopped before `limit`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanStop {
    /// An all-zero header: the end of the data in a preallocated file.
    End { offset: usize },
    /// Bytes that are not a valid record.
    Invalid { offset: usize, reason: &'static str },
    /// A valid sync mark: the end of the data, with the writer's proof that
    /// the bytes below `synced_through` were durable.
    SyncMark {
        offset: usize,
        lsn: u64,
        synced_through: u32,
    },
}

/// Bytes that records can be read from: a mapped [`Segment`], or a copy of
/// a segment file read by a tool.
pub(crate) trait RecordSource {
    /// The bytes `offset .. offset + len`, if inside.
    fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]>;
    /// Every record must have an LSN at least this.
    fn base_lsn(&self) -> u64;
}

impl RecordSource for Segment {
    fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        Segment::bytes(self, offset, len)
    }
    fn base_lsn(&self) -> u64 {
        self.base_lsn
    }
}

/// A segment file's bytes held in memory, with its header's base LSN.
pub(crate) struct SegmentBytes<'a> {
    pub bytes: &'a [u8],
    pub base_lsn: u64,
}

impl RecordSource for SegmentBytes<'_> {
    fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        self.bytes.get(offset..offset.checked_add(len)?)
    }
    fn base_lsn(&self) -> u64 {
        self.base_lsn
    }
}

/// Decodes and fully verifies the record at `offset`.
pub(crate) fn check_record<S: RecordSource + ?Sized>(
    segment: &S,
    offset: usize,
    limit: usize,
    prev_lsn: u64,
) -> std::result::Result<RecordRef<'_>, ScanStop> {
    let invalid = |reason| ScanStop::Invalid { offset, reason };
    let header_bytes = segment
        .bytes(offset, RECORD_HEADER_LEN)
        .filter(|_| offset + RECORD_HEADER_LEN <= limit)
        .ok_or(invalid("record header runs past the end"))?;
    if header_bytes.iter().all(|&b| b == 0) {
        return Err(ScanStop::End { offset });
    }
    let mut header = RecordHeader::new_zeroed();
    header.as_mut_bytes().copy_from_slice(header_bytes);
    if !header.crc_ok() {
        return Err(invalid("record header checksum mismatch"));
    }
    if header.kind.get() == RECORD_KIND_SYNC_MARK
        && header.flags.get() == 0
        && header.payload_len.get() == 0
        && header.op_count.get() == 0
        && header.payload_crc.get() == crc32(&[])
    {
        return Err(ScanStop::SyncMark {
            offset,
            lsn: header.lsn.get(),
            synced_through: header.synced_through.get(),
        });
    }
    if header.kind.get() != RECORD_KIND_BATCH || header.flags.get() != 0 {
        return Err(invalid("unknown record kind"));
    }
    if header.lsn.get() <= prev_lsn || header.lsn.get() < segment.base_lsn() {
        return Err(invalid("record LSN does not increase"));
    }
    let len = header.payload_len.get() as usize;
    let start = offset + RECORD_HEADER_LEN;
    let payload = segment
        .bytes(start, len)
        .filter(|_| start + len <= limit)
        .ok_or(invalid("record payload runs past the end"))?;
    if crc32(payload) != header.payload_crc.get() {
        return Err(invalid("record payload checksum mismatch"));
    }
    Ok(RecordRef {
        offset,
        header,
        payload,
    })
}
