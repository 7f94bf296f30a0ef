//! Reading a store's files into memory and decoding them without the
//! engine: the directory's segment files, the manifest, segment headers and
//! the records of a segment, with a resync past damage.
//!
//! Invariants:
//! - Read-only and lock-free: files are read whole into memory (bounded by
//!   the largest the engine writes: `MAX_MANIFEST_FILE_LEN`,
//!   `MAX_SEGMENT_FILE_LEN`), never written.
//! - Never panics: every length and offset read from a file is
//!   bounds-checked; damage is a [`ScanItem::Damaged`] or an error.
//! - The work of a scan is linear in the bytes scanned, whatever they hold
//!   (see [`SegmentFile::scan`]).
//! - The checks are the engine's own (`check_record`, `Manifest::decode`):
//!   a record the scan calls intact passes every check recovery makes on a
//!   record by itself (the order of LSNs along the log is the replay's).

use std::path::{Path, PathBuf};

use zerocopy::FromBytes;

use crate::error::{Error, Result};
use crate::io::read_bounded;
use crate::manifest::{ListedSegment, Manifest, MANIFEST_FILE, MANIFEST_TMP_FILE};
use crate::record::{
    crc32, OpIter, SegmentHeader, READABLE_VERSIONS, RECORD_ALIGN, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::segment::{
    check_record, parse_segment_file_name, segment_file_name, ScanStop, SegmentBytes,
};

/// First 8 bytes of a manifest file (`JSTRMAN\0`).
pub const MANIFEST_MAGIC: [u8; 8] = crate::manifest::MANIFEST_MAGIC;

/// File name of the current manifest in a store directory.
pub const MANIFEST_FILE_NAME: &str = MANIFEST_FILE;

/// File name a new manifest generation is written under before its rename.
pub const MANIFEST_TMP_FILE_NAME: &str = MANIFEST_TMP_FILE;

/// A decoded manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ManifestInfo {
    /// Manifest layout version ([`MANIFEST_VERSION`](crate::record::MANIFEST_VERSION);
    /// the segment format version is in each segment's header).
    pub version: u32,
    /// The generation number.
    pub generation: u64,
    /// The id the next new segment gets.
    pub next_segment_id: u32,
    /// Highest LSN assigned when this generation was written.
    pub lsn_floor: u64,
    /// Segments in manifest (replay) order; the last one is active.
    pub segments: Vec<ManifestSegment>,
}

/// One segment listed in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ManifestSegment {
    /// Segment id.
    pub id: u32,
    /// Its file name in the store directory.
    pub file_name: String,
    /// Length of valid data for a sealed segment; `None` for the active one.
    pub sealed_len: Option<u64>,
}

impl ManifestInfo {
    pub(super) fn from_manifest(m: &Manifest) -> ManifestInfo {
        ManifestInfo {
            version: crate::record::MANIFEST_VERSION,
            generation: m.generation,
            next_segment_id: m.next_segment_id,
            lsn_floor: m.lsn_floor,
            segments: m
                .segments
                .iter()
                .map(|&ListedSegment { id, sealed_len }| ManifestSegment {
                    id,
                    file_name: segment_file_name(id),
                    sealed_len,
                })
                .collect(),
        }
    }

    /// The entry of segment `id`, if this manifest lists it.
    pub fn segment(&self, id: u32) -> Option<&ManifestSegment> {
        self.segments.iter().find(|s| s.id == id)
    }
}

/// Reads a manifest file (`dir/MANIFEST` or any copy of one).
pub fn read_manifest(path: &Path) -> Result<ManifestInfo> {
    let bytes = read_bounded(path, "read manifest", MAX_MANIFEST_FILE_LEN)?;
    decode_manifest(&bytes, path)
}

/// Largest manifest file the engine would load (2^20 entries).
const MAX_MANIFEST_FILE_LEN: u64 = ((1 << 20) + 4) * 16;

/// Largest segment file the engine creates (`segment_size` < 4 GiB).
const MAX_SEGMENT_FILE_LEN: u64 = u32::MAX as u64;

/// Decodes the bytes of a manifest file; `path` names it in errors.
pub fn decode_manifest(bytes: &[u8], path: &Path) -> Result<ManifestInfo> {
    Manifest::decode(bytes, path).map(|m| ManifestInfo::from_manifest(&m))
}

/// The path of the manifest of the store in `dir`.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_FILE)
}

/// The id in a segment file name (`seg-0000002a.jseg` -> 42).
pub fn segment_id_from_file_name(name: &str) -> Option<u32> {
    parse_segment_file_name(name)
}

/// The file name of segment `id` (42 -> `seg-0000002a.jseg`).
pub fn segment_file_name_of(id: u32) -> String {
    segment_file_name(id)
}

/// The regular files in `dir` named like segment files, ascending by id.
///
/// Only exact names count (`seg-` + 8 lower-case hex digits + `.jseg`), as
/// for the engine; subdirectories are skipped even if named like one.
pub fn segment_files(dir: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let mut out: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("list store directory", dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let id = parse_segment_file_name(e.file_name().to_str()?)?;
            Some((id, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// A segment file's header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SegmentHeaderInfo {
    /// Format version.
    pub version: u32,
    /// Header length (64).
    pub header_len: u32,
    /// The id the header names.
    pub segment_id: u64,
    /// Preallocated size.
    pub capacity: u64,
    /// Lowest LSN a record of this segment may have.
    pub base_lsn: u64,
    /// The stored CRC of header bytes 0..60 (it matched).
    pub crc: u32,
}

/// One operation of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OpInfo {
    /// Byte offset of the op header in the file.
    pub offset: u64,
    /// `append`, `set_metadata`, `trim_prefix`, `truncate`, `delete_journal`
    /// or `clear_metadata`.
    pub kind: &'static str,
    /// The journal id.
    pub journal: Vec<u8>,
    /// The journal's `first_index` after the operation.
    pub first: u64,
    /// The journal's `end_index` after the operation.
    pub end: u64,
    /// Length of the entry or metadata value.
    pub value_len: u32,
    /// The stored CRC of the value.
    pub value_crc: u32,
    /// Whether the value matches its CRC.
    pub value_crc_ok: bool,
}

impl OpInfo {
    /// The journal index the operation names: the entry's index for an
    /// `append` (`end - 1`), the trim point (`first`) for a `trim_prefix`,
    /// the truncation point (`end`) for a `truncate`; `None` otherwise.
    pub fn index(&self) -> Option<u64> {
        match self.kind {
            "append" => self.end.checked_sub(1),
            "trim_prefix" => Some(self.first),
            "truncate" => Some(self.end),
            _ => None,
        }
    }
}

/// What a scan found at one offset of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum ScanItem {
    /// An intact record (both record checksums match).
    Record {
        /// Byte offset in the file.
        offset: u64,
        /// The batch's LSN.
        lsn: u64,
        /// Payload length.
        payload_len: u32,
        /// The writer's durable watermark when it wrote this record.
        synced_through: u32,
        /// Number of operations the header announces.
        op_count: u32,
        /// The stored header CRC (it matched).
        header_crc: u32,
        /// The stored payload CRC (it matched).
        payload_crc: u32,
        /// The operations that decode, in order.
        ops: Vec<OpInfo>,
        /// The first operation that does not decode: its file offset and
        /// why. Recovery reports such a record as corruption.
        op_error: Option<(u64, String)>,
    },
    /// Bytes that are not a valid record.
    Damaged {
        /// Byte offset in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A sync mark: the end of the data, with the writer's claim that the
    /// bytes below `synced_through` were durable. The scan's `End` follows
    /// at the same offset (the next record is written over the mark).
    SyncMark {
        /// Byte offset in the file.
        offset: u64,
        /// The newest batch written before the mark.
        lsn: u64,
        /// Every byte of the segment below this was durable.
        synced_through: u32,
    },
    /// The end of the data (all-zero header or the end of the range).
    End {
        /// Byte offset in the file.
        offset: u64,
    },
}

/// A segment file read into memory.
#[derive(Debug)]
pub struct SegmentFile {
    /// Where it was read from.
    pub path: PathBuf,
    bytes: Vec<u8>,
    header: std::result::Result<SegmentHeaderInfo, String>,
}

impl SegmentFile {
    /// Reads a segment file. Fails only if the file cannot be read or is
    /// longer than any segment (4 GiB - 1 bytes); a bad header is reported
    /// by [`SegmentFile::header`].
    pub fn read(path: &Path) -> Result<SegmentFile> {
        let bytes = read_bounded(path, "read segment", MAX_SEGMENT_FILE_LEN)?;
        Ok(SegmentFile::from_bytes(path, bytes))
    }

    /// Wraps bytes already read; `path` names them in reports.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> SegmentFile {
        let header = match SegmentHeader::read_from_prefix(&bytes) {
            Err(_) => Err("file shorter than a segment header".to_owned()),
            Ok((h, _)) if h.magic != crate::record::SEGMENT_MAGIC => {
                Err("bad magic: not a segment file".to_owned())
            }
            Ok((h, _)) if !h.crc_ok() => Err("segment header checksum mismatch".to_owned()),
            Ok((h, _)) => Ok(SegmentHeaderInfo {
                version: h.version.get(),
                header_len: h.header_len.get(),
                segment_id: h.segment_id.get(),
                capacity: h.capacity.get(),
                base_lsn: h.base_lsn.get(),
                crc: h.crc.get(),
            }),
        };
        SegmentFile {
            path: path.to_owned(),
            bytes,
            header,
        }
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The decoded header, or why it cannot be trusted.
    pub fn header(&self) -> std::result::Result<&SegmentHeaderInfo, &str> {
        self.header.as_ref().map_err(|e| e.as_str())
    }

    /// Why the engine would refuse to open this file as segment `id`, with
    /// the checks of `MappedSegment::check` in the same order; `None` if it would
    /// open it. The version check comes last here only in wording: a valid
    /// header of another version is reported as such.
    pub fn header_problem(&self, id: u32) -> Option<String> {
        let h = match self.header() {
            Ok(h) => h,
            Err(reason) => return Some(reason.to_owned()),
        };
        if !READABLE_VERSIONS.contains(&h.version) {
            return Some(format!(
                "format version {}; this build reads versions {READABLE_VERSIONS:?}",
                h.version
            ));
        }
        if h.segment_id != u64::from(id) || h.header_len as usize != SEGMENT_HEADER_LEN {
            return Some(format!(
                "header names segment {} (header_len {}), the file name segment {id}",
                h.segment_id, h.header_len
            ));
        }
        if h.capacity != self.len() {
            return Some(format!(
                "file is {} bytes but its header says {}",
                self.len(),
                h.capacity
            ));
        }
        None
    }

    /// The first offset at or after `from` (and below `limit`, default the
    /// file's end) holding a non-zero byte, if any.
    pub fn first_nonzero(&self, from: u64, limit: Option<u64>) -> Option<u64> {
        let limit = clamp_len(limit, self.bytes.len());
        let from = clamp_len(Some(from), limit);
        self.bytes[from..limit]
            .iter()
            .position(|&b| b != 0)
            .map(|p| (from + p) as u64)
    }

    /// Scans records from `from` (at least the header's end) to `limit` (or
    /// the end of the file).
    ///
    /// Without `resync` the scan stops at the first offset that is not a
    /// valid record, as recovery does: an all-zero header ends it with
    /// [`ScanItem::End`], anything else with [`ScanItem::Damaged`]. With
    /// `resync`, damage does not stop the scan: it resumes at the next
    /// 8-aligned offset that holds a valid record, as a salvage would, and
    /// an all-zero header is the end only if no valid record follows it
    /// (else it is reported as damage: zeros where a record should be).
    /// Bytes claimed by an invalid record whose header is intact (its own
    /// CRC holds: a damaged payload, an unknown kind) are part of that
    /// damage, and the resync resumes after them; this keeps the work
    /// linear in the bytes scanned, whatever they hold.
    /// Offsets increase; the last item is an `End`, or the `Damaged` that
    /// stopped a scan without `resync`.
    pub fn scan(&self, from: u64, limit: Option<u64>, resync: bool) -> Vec<ScanItem> {
        let source = SegmentBytes {
            bytes: &self.bytes,
            base_lsn: self.header.as_ref().map_or(0, |h| h.base_lsn),
        };
        let limit = clamp_len(limit, self.bytes.len());
        let start = clamp_len(Some(from), usize::MAX).max(SEGMENT_HEADER_LEN);
        let mut pos = align(start.min(limit.max(SEGMENT_HEADER_LEN)));
        let mut items = Vec::new();
        while pos + RECORD_HEADER_LEN <= limit {
            match check_record(&source, pos, limit, 0) {
                Ok(record) => {
                    let payload_at = (pos + RECORD_HEADER_LEN) as u64;
                    let mut ops = Vec::new();
                    let mut op_error = None;
                    for op in OpIter::new(record.payload) {
                        match op {
                            Ok(op) => ops.push(OpInfo {
                                offset: payload_at + op.offset as u64,
                                kind: op.kind.name(),
                                journal: op.id.to_vec(),
                                first: op.first,
                                end: op.end,
                                value_len: op.value.len() as u32,
                                value_crc: op.value_crc,
                                value_crc_ok: crc32(op.value) == op.value_crc,
                            }),
                            Err(e) => {
                                op_error =
                                    Some((payload_at + e.offset as u64, e.reason.to_owned()));
                            }
                        }
                    }
                    let h = &record.header;
                    items.push(ScanItem::Record {
                        offset: pos as u64,
                        lsn: h.lsn.get(),
                        payload_len: h.payload_len.get(),
                        synced_through: h.synced_through.get(),
                        op_count: h.op_count.get(),
                        header_crc: h.header_crc.get(),
                        payload_crc: h.payload_crc.get(),
                        ops,
                        op_error,
                    });
                    pos = record.next_offset();
                }
                Err(ScanStop::SyncMark {
                    offset,
                    lsn,
                    synced_through,
                }) => {
                    items.push(ScanItem::SyncMark {
                        offset: offset as u64,
                        lsn,
                        synced_through,
                    });
                    let after = offset + RECORD_HEADER_LEN;
                    match resync.then(|| next_valid(&source, after, limit)).flatten() {
                        Some(next) => {
                            items.push(ScanItem::Damaged {
                                offset: after as u64,
                                reason: "records follow a sync mark".to_owned(),
                            });
                            pos = next;
                        }
                        None => {
                            items.push(ScanItem::End {
                                offset: offset as u64,
                            });
                            return items;
                        }
                    }
                }
                Err(stop) => {
                    let (offset, reason) = match stop {
                        ScanStop::End { offset } => (offset, None),
                        ScanStop::Invalid { offset, reason } => (offset, Some(reason)),
                        ScanStop::SyncMark { offset, .. } => (offset, None),
                    };
                    let next = if resync {
                        next_valid(&source, resync_from(&source, offset, limit), limit)
                    } else {
                        None
                    };
                    match (reason, next) {
                        (None, None) => {
                            items.push(ScanItem::End {
                                offset: offset as u64,
                            });
                            return items;
                        }
                        (None, Some(_)) => items.push(ScanItem::Damaged {
                            offset: offset as u64,
                            reason: "zero bytes where a record should be (valid records follow)"
                                .to_owned(),
                        }),
                        (Some(reason), _) => items.push(ScanItem::Damaged {
                            offset: offset as u64,
                            reason: reason.to_owned(),
                        }),
                    }
                    match next {
                        Some(next) => pos = next,
                        None if resync => {
                            pos = limit;
                            break;
                        }
                        None => return items,
                    }
                }
            }
        }
        items.push(ScanItem::End {
            offset: pos.min(limit) as u64,
        });
        items
    }
}

/// `limit` as an index into a buffer of `len` bytes.
fn clamp_len(limit: Option<u64>, len: usize) -> usize {
    limit.map_or(len, |l| usize::try_from(l).unwrap_or(usize::MAX).min(len))
}

fn align(x: usize) -> usize {
    crate::record::align_up(x)
}

/// The first 8-aligned offset at or after `pos` holding a valid record that
/// ends by `limit`. Runs of zeros are skipped at memory speed: a record
/// header is never all zero, so it overlaps the next non-zero byte.
///
/// The work is linear in the bytes searched whatever they hold: a
/// candidate's header is checked on its own CRC (28 bytes) before anything
/// else, and a candidate whose header holds but which is not a valid record
/// owns the bytes it claims ([`resync_from`]), so the search resumes after
/// them and no byte is in two checksummed payloads. Without that, headers
/// every 32 bytes each claiming the rest of the file would have the rest
/// checksummed once per header.
fn next_valid(source: &SegmentBytes<'_>, mut pos: usize, limit: usize) -> Option<usize> {
    let bytes = source.bytes.get(..limit)?;
    while pos + RECORD_HEADER_LEN <= limit {
        let nonzero = pos + bytes.get(pos..)?.iter().position(|&b| b != 0)?;
        let candidate = nonzero.saturating_sub(RECORD_HEADER_LEN - 1) & !(RECORD_ALIGN - 1);
        pos = pos.max(candidate);
        if pos + RECORD_HEADER_LEN > limit {
            return None;
        }
        crate::work::resync_crc_bytes(RECORD_HEADER_LEN - 4);
        if intact_header(source, pos, limit).is_none() {
            pos += RECORD_ALIGN;
            continue;
        }
        if check_record(source, pos, limit, 0).is_ok() {
            return Some(pos);
        }
        pos = resync_from(source, pos, limit);
    }
    None
}

/// Where a search for records starts after the invalid record at `offset`.
/// A record header is written whole by one writer and carries its own CRC,
/// and records never overlap: if the header at `offset` holds and claims a
/// payload inside `limit`, those bytes are that record's (damaged, torn or
/// of an unknown kind), so the search starts past them; otherwise at the
/// next 8-aligned offset. The check that found the record invalid may have
/// checksummed that payload; it is counted here as resync work.
fn resync_from(source: &SegmentBytes<'_>, offset: usize, limit: usize) -> usize {
    match intact_header(source, offset, limit) {
        Some(payload_len) => {
            crate::work::resync_crc_bytes(RECORD_HEADER_LEN - 4 + payload_len);
            align(offset + RECORD_HEADER_LEN + payload_len)
        }
        None => offset + RECORD_ALIGN,
    }
}

/// The payload length the header at `offset` claims, if its CRC holds and
/// the record would end by `limit`.
fn intact_header(source: &SegmentBytes<'_>, offset: usize, limit: usize) -> Option<usize> {
    let end = offset.checked_add(RECORD_HEADER_LEN)?;
    let bytes = source.bytes.get(offset..end)?;
    let header = crate::record::RecordHeader::read_from_bytes(bytes).ok()?;
    let len = header.payload_len.get() as usize;
    (header.crc_ok() && end.checked_add(len)? <= limit).then_some(len)
}
