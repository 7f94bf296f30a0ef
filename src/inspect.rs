//! Read-only inspection of a store's files, for tools such as `journal-dump`.
//!
//! Nothing here takes the store's lock or writes a byte to the store, so it
//! works on a store that another process has open: segment files are read
//! into memory (or mapped read-only for [`open_read_only`]) and a record that
//! is being written at that moment looks like a torn tail, as after a crash.
//! [`salvage`] is the one function that writes, and only to a new directory.
//!
//! Nothing here panics on any input: every length and offset read from a
//! file is bounds-checked, as in the engine.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zerocopy::FromBytes;

use crate::error::{Error, Result};
use crate::index::{Index, Liveness, Loc};
use crate::io::{FileSystem, OpenMode, RealFs};
use crate::manifest::{Generation, Manifest, MANIFEST_FILE, MANIFEST_TMP_FILE};
use crate::record::PlannedOp;
use crate::record::{
    crc32, OpIter, OpKind, SegmentHeader, FORMAT_VERSION, RECORD_ALIGN, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::segment::{
    check_record, parse_segment_file_name, segment_file_name, ScanStop, Segment, SegmentBytes,
};
use crate::snapshot::{Pins, Snapshot};
use crate::version::Version;
use crate::{Options, Store};

/// First 8 bytes of a manifest file (`JSTRMAN\0`).
pub const MANIFEST_MAGIC: [u8; 8] = crate::manifest::MANIFEST_MAGIC;

/// File name of the current manifest in a store directory.
pub const MANIFEST_FILE_NAME: &str = MANIFEST_FILE;

/// File name a new manifest generation is written under before its rename.
pub const MANIFEST_TMP_FILE_NAME: &str = MANIFEST_TMP_FILE;

/// A decoded manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestInfo {
    /// Format version (decoding accepts only [`FORMAT_VERSION`]).
    pub version: u32,
    /// The generation number.
    pub generation: u64,
    /// The id the next new segment gets.
    pub next_segment_id: u32,
    /// Highest LSN assigned when this generation was written.
    pub lsn_floor: u64,
    /// Segments in id order; the last one is active.
    pub segments: Vec<ManifestSegment>,
}

/// One segment listed in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestSegment {
    /// Segment id.
    pub id: u32,
    /// Its file name in the store directory.
    pub file_name: String,
    /// Length of valid data for a sealed segment; `None` for the active one.
    pub sealed_len: Option<u64>,
}

impl ManifestInfo {
    fn from_manifest(m: &Manifest) -> ManifestInfo {
        ManifestInfo {
            version: FORMAT_VERSION,
            generation: m.generation,
            next_segment_id: m.next_segment_id,
            lsn_floor: m.lsn_floor,
            segments: m
                .segments
                .iter()
                .map(|&(id, sealed_len)| ManifestSegment {
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

/// Reads a whole regular file, refusing one longer than `max` bytes: a file
/// longer than any the engine writes is damage, not a reason to allocate.
/// Special files (`/dev/zero` never ends) are refused, and at most `max + 1`
/// bytes are read in case the file grows meanwhile.
fn read_bounded(path: &Path, op: &'static str, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(op, path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(op, path, e))?;
    if !meta.is_file() {
        return Err(Error::corruption(path, 0, "not a regular file"));
    }
    if meta.len() > max {
        return Err(Error::corruption(
            path,
            max,
            format!("file is longer than {max} bytes, more than the engine ever writes"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(op, path, e))?;
    if bytes.len() as u64 > max {
        return Err(Error::corruption(
            path,
            max,
            format!("file is longer than {max} bytes, more than the engine ever writes"),
        ));
    }
    Ok(bytes)
}

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
pub struct OpInfo {
    /// Byte offset of the op header in the file.
    pub offset: u64,
    /// `append`, `set_metadata`, `trim_prefix`, `truncate` or `delete_journal`.
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
    /// the checks of `Segment::open` in the same order; `None` if it would
    /// open it. The version check comes last here only in wording: a valid
    /// header of another version is reported as such.
    pub fn header_problem(&self, id: u32) -> Option<String> {
        let h = match self.header() {
            Ok(h) => h,
            Err(reason) => return Some(reason.to_owned()),
        };
        if h.version != FORMAT_VERSION {
            return Some(format!(
                "format version {}; this build reads version {FORMAT_VERSION}",
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

/// Live space of one segment, as recovery computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    let segments = manifest
        .segments
        .iter()
        .map(|&(id, _)| {
            // The mappings are all a read-only store needs (the active
            // segment's tail check opens the file again for a moment).
            let segment = Segment::open(&fs, dir, None, id, OpenMode::ReadOnly)?;
            segment.close_file();
            Ok(Arc::new(segment))
        })
        .collect::<Result<Vec<_>>>()?;
    for (segment, &(id, sealed)) in segments.iter().zip(&manifest.segments) {
        if let Some(len) = sealed {
            if len < SEGMENT_HEADER_LEN as u64 || len > segment.capacity {
                return Err(Error::corruption(
                    manifest_path(dir),
                    0,
                    format!("sealed length {len} of segment {id} is outside the file"),
                ));
            }
        }
    }
    let replay = crate::recovery::replay(&segments, &manifest)?;
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
        .map(|(s, &(_, sealed))| {
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
        snapshot: Snapshot::new(version, Arc::new(Pins::default())),
        manifest: info,
        segments: liveness,
        oldest_lsn,
        newest_lsn: replay.last_lsn,
        active_end: replay.active_end,
        torn_tail: replay.dirty_tail,
    })
}

// ---------------------------------------------------------------------------
// verify

/// One thing [`verify`] found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file that holds it (the store directory for a listing failure).
    pub path: PathBuf,
    /// Byte offset in that file.
    pub offset: u64,
    /// The journal concerned, when known.
    pub journal: Option<Vec<u8>>,
    /// What is wrong.
    pub reason: String,
    /// Whether `Store::open` would repair it silently: a torn tail (sealed
    /// off), a segment file the manifest does not list or a leftover
    /// `MANIFEST.tmp` (removed). Such leftovers are normal after a crash
    /// but are still reported: the files do not match the manifest.
    pub repaired_at_open: bool,
}

/// What [`verify`] checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Everything wrong, ordered by file and offset; empty if all holds.
    pub problems: Vec<Problem>,
    /// The manifest, if it decodes.
    pub manifest: Option<ManifestInfo>,
    /// Segment files read (listed and unlisted).
    pub segments: u64,
    /// Intact records scanned.
    pub records: u64,
    /// Operations decoded.
    pub ops: u64,
    /// Journals in the replayed state.
    pub journals: u64,
    /// Live entry and metadata values read back through a snapshot (each
    /// checked against its CRC).
    pub values: u64,
}

impl VerifyReport {
    /// Whether every check held.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Problem {
    fn new(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            offset,
            journal: None,
            reason: reason.into(),
            repaired_at_open: false,
        }
    }

    fn from_error(e: Error, fallback: &Path) -> Problem {
        match e {
            Error::Corruption {
                path,
                offset,
                journal,
                reason,
            } => Problem {
                path: if path.as_os_str().is_empty() {
                    fallback.to_owned()
                } else {
                    path
                },
                offset,
                journal,
                reason,
                repaired_at_open: false,
            },
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => Problem::new(
                path,
                8,
                format!("format version {found}; this build reads version {supported}"),
            ),
            Error::Io { op, path, source } => Problem::new(path, 0, format!("{op}: {source}")),
            other => Problem::new(fallback, 0, other.to_string()),
        }
    }
}

/// Checks every checksum and every cross-reference of the store in `dir`,
/// read-only (no lock, no byte changed), and lists every problem with its
/// file and offset.
///
/// Checked: the manifest (magic, version, CRC, layout); that every segment
/// it lists exists and its header is what the engine accepts, and that no
/// other segment file is present; every record of every segment, scanned
/// with resync so that each damaged place is reported (header CRC, payload
/// CRC, kind, LSN not below the segment's base LSN, every operation
/// decoding, the operation count, every value CRC, dead or alive); that no
/// byte after the active segment's data is non-zero (a torn tail); then the
/// engine's full replay ([`open_read_only`]: sealed lengths, LSNs increasing
/// along the whole log, the bounds of every journal and the continuity of
/// its indexes), and
/// every live metadata and entry value read back through a snapshot.
pub fn verify(dir: &Path) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut problems = Vec::new();
    let files = match segment_files(dir) {
        Ok(files) => files,
        Err(e) => {
            report.problems.push(Problem::from_error(e, dir));
            return report;
        }
    };
    let mpath = manifest_path(dir);
    let manifest = if mpath.exists() {
        match read_manifest(&mpath) {
            Ok(m) => Some(m),
            Err(e) => {
                problems.push(Problem::from_error(e, &mpath));
                None
            }
        }
    } else {
        problems.push(Problem::new(
            &mpath,
            0,
            "no manifest: not a store (or the store's creation was interrupted)",
        ));
        None
    };
    let tmp = dir.join(MANIFEST_TMP_FILE);
    if tmp.exists() {
        let mut p = Problem::new(
            &tmp,
            0,
            "leftover of an interrupted manifest swap (never read; open removes it)",
        );
        p.repaired_at_open = true;
        problems.push(p);
    }
    let on_disk: HashSet<u32> = files.iter().map(|(id, _)| *id).collect();
    if let Some(m) = &manifest {
        for s in &m.segments {
            if !on_disk.contains(&s.id) {
                problems.push(Problem::new(
                    dir.join(&s.file_name),
                    0,
                    "segment listed in the manifest is missing",
                ));
            }
        }
    }
    // Each file's damage, found by scanning; the active segment's is
    // classified once the replay has said whether it is a torn tail.
    let mut active_damage = Vec::new();
    for (id, path) in &files {
        let listed = manifest.as_ref().and_then(|m| {
            let last = m.segments.last().map(|s| s.id);
            m.segment(*id).map(|s| (s.sealed_len, last == Some(*id)))
        });
        let file = match SegmentFile::read(path) {
            Ok(f) => f,
            Err(e) => {
                problems.push(Problem::from_error(e, path));
                continue;
            }
        };
        report.segments += 1;
        let (sealed, active) = match (listed, &manifest) {
            (Some(listed), _) => listed,
            (None, Some(_)) => {
                // Dead data by definition: report the file, not its bytes.
                let mut p = Problem::new(
                    path,
                    0,
                    "segment file not listed in the manifest (a leftover; open removes it)",
                );
                p.repaired_at_open = true;
                problems.push(p);
                continue;
            }
            // No manifest to say how far each segment's data goes: scan
            // every file whole.
            (None, None) => (None, false),
        };
        if let Some(reason) = file.header_problem(*id) {
            problems.push(Problem::new(path, 0, reason));
            continue;
        }
        if let Some(len) = sealed {
            if len < SEGMENT_HEADER_LEN as u64 || len > file.len() {
                problems.push(Problem::new(
                    &mpath,
                    0,
                    format!("sealed length {len} of segment {id} is outside the file"),
                ));
                continue;
            }
        }
        let mut damage = Vec::new();
        let mut mark_at = None;
        for item in file.scan(0, sealed, true) {
            match item {
                ScanItem::SyncMark { offset, .. } => mark_at = Some(offset),
                ScanItem::Record {
                    offset,
                    op_count,
                    ops,
                    op_error,
                    ..
                } => {
                    report.records += 1;
                    report.ops += ops.len() as u64;
                    for op in ops.iter().filter(|op| !op.value_crc_ok) {
                        problems.push(Problem {
                            journal: Some(op.journal.clone()),
                            ..Problem::new(path, op.offset, "value checksum mismatch")
                        });
                    }
                    if let Some((at, reason)) = op_error {
                        problems.push(Problem::new(
                            path,
                            at,
                            format!("undecodable operation: {reason}"),
                        ));
                    } else if ops.len() as u64 != u64::from(op_count) {
                        problems.push(Problem::new(
                            path,
                            offset,
                            format!(
                                "record holds {} operations, its header says {op_count}",
                                ops.len()
                            ),
                        ));
                    }
                }
                ScanItem::Damaged { offset, reason } => {
                    damage.push(Problem::new(path, offset, reason))
                }
                ScanItem::End { offset } => match sealed {
                    Some(len) if offset != len => damage.push(Problem::new(
                        path,
                        offset,
                        format!(
                            "sealed segment's records end at {offset}, the manifest says {len}"
                        ),
                    )),
                    Some(_) => {}
                    None => {
                        // A sync mark at the end is data's end, not garbage.
                        let zeros_from = match mark_at {
                            Some(mark) if mark == offset => offset + RECORD_HEADER_LEN as u64,
                            _ => offset,
                        };
                        if let Some(at) = file.first_nonzero(zeros_from, None) {
                            if damage.is_empty() {
                                damage.push(Problem::new(
                                    path,
                                    at,
                                    format!(
                                        "non-zero bytes after the end of the data (at {offset})"
                                    ),
                                ));
                            }
                        }
                    }
                },
            }
        }
        if active {
            active_damage = damage;
        } else {
            problems.extend(damage);
        }
    }
    report.manifest = manifest;
    match open_read_only(dir) {
        Ok(store) => {
            // Replay accepted the active segment: its damage is a torn tail.
            for mut p in active_damage {
                p.reason = format!("{} (a torn tail: open seals it off)", p.reason);
                p.repaired_at_open = true;
                problems.push(p);
            }
            let snap = &store.snapshot;
            report.journals = snap.journal_count() as u64;
            for id in snap.journal_ids() {
                let Some(journal) = snap.journal(id) else {
                    continue;
                };
                let mut values = vec![journal.metadata().map(|_| ())];
                values.extend(journal.entries(..).map(|r| r.map(|_| ())));
                for r in values {
                    report.values += 1;
                    if let Err(e) = r {
                        problems.push(Problem::from_error(e, dir));
                    }
                }
            }
        }
        Err(e) => {
            problems.extend(active_damage);
            problems.push(Problem::from_error(e, dir));
        }
    }
    // One report per place: the scan and the replay often see the same
    // damage; the scan's wording (first) is the more precise.
    let mut seen = HashSet::new();
    problems.retain(|p| seen.insert((p.path.clone(), p.offset)));
    problems.sort_by(|a, b| (&a.path, a.offset).cmp(&(&b.path, b.offset)));
    report.problems = problems;
    report
}

// ---------------------------------------------------------------------------
// salvage

/// What [`salvage`] or [`Salvaged::scan`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SalvageReport {
    /// Intact records replayed.
    pub records: u64,
    /// Damaged byte ranges skipped: (file, offset, reason).
    pub damaged: Vec<(PathBuf, u64, String)>,
    /// Intact records left out as part of a torn tail (never acknowledged
    /// under `SyncMode::Always`; recovery drops them too): (file, offset).
    pub torn: Vec<(PathBuf, u64)>,
    /// Segment files left out because the manifest does not list them.
    pub unlisted: Vec<PathBuf>,
    /// Journals recovered (written to the new store by [`salvage`]).
    pub journals: u64,
    /// Entries recovered.
    pub entries: u64,
    /// Entries lost: (journal, first index not recovered, entries dropped).
    pub lost: Vec<(Vec<u8>, u64, u64)>,
}

/// The state rebuilt from the intact records of a store's files, without
/// the engine's consistency checks: what [`salvage`] copies.
#[derive(Debug)]
pub struct Salvaged {
    files: Vec<(u32, SegmentFile)>,
    index: Index,
    /// What the scan found.
    pub report: SalvageReport,
}

/// One journal of a [`Salvaged`] state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SalvagedJournal<'a> {
    /// Its id.
    pub id: &'a [u8],
    /// Its `first_index`.
    pub first: u64,
    /// Its `end_index` as the records say; entries from the first one lost
    /// on are not recovered.
    pub end: u64,
    /// The metadata value, if set and intact.
    pub metadata: Option<&'a [u8]>,
    /// Entries `first..`, up to (not including) the first one lost.
    pub entries: Vec<&'a [u8]>,
}

impl Salvaged {
    /// Scans every segment file of `src` and replays its intact records in
    /// LSN order, read-only.
    ///
    /// When the manifest decodes, only the segments it lists are read, each
    /// sealed one up to its sealed length (bytes after it may be a torn tail
    /// that was sealed off); otherwise every segment file is read whole.
    /// Damaged places are skipped and reported. After damage in the active
    /// segment (or, without a manifest, in any segment), intact records are
    /// kept only if recovery would call the damage damage rather than a torn
    /// tail: a later record says, in `synced_through`, that the damaged
    /// bytes had been synced. Otherwise the records after it belong to the
    /// same unsynced writes and are dropped as a torn tail, as recovery
    /// drops them.
    pub fn scan(src: &Path) -> Result<Salvaged> {
        let mut report = SalvageReport::default();
        let manifest = read_manifest(&manifest_path(src)).ok();
        let mut files = Vec::new();
        for (id, path) in segment_files(src)? {
            let sealed = match &manifest {
                Some(m) => match m.segment(id) {
                    Some(s) => s.sealed_len,
                    None => {
                        report.unlisted.push(path);
                        continue;
                    }
                },
                None => None,
            };
            let file = SegmentFile::read(&path)?;
            if let Err(reason) = file.header() {
                report.damaged.push((path, 0, reason.to_owned()));
                continue;
            }
            files.push((id, file, sealed));
        }
        let mut records: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
        for (i, (_, file, sealed)) in files.iter().enumerate() {
            let items = file.scan(0, *sealed, true);
            let first_damage = items.iter().find_map(|item| match item {
                ScanItem::Damaged { offset, .. } => Some(*offset),
                _ => None,
            });
            let proven_synced = |end: u64| {
                items.iter().any(|item| {
                    matches!(item, ScanItem::Record { offset, synced_through, .. }
                        | ScanItem::SyncMark { offset, synced_through, .. }
                        if *offset > end && u64::from(*synced_through) > end)
                })
            };
            let torn_from = match (sealed, first_damage) {
                (None, Some(end)) if !proven_synced(end) => Some(end),
                _ => None,
            };
            for item in items {
                match item {
                    ScanItem::Record { offset, .. } if torn_from.is_some_and(|t| offset > t) => {
                        report.torn.push((file.path.clone(), offset))
                    }
                    ScanItem::Record {
                        offset,
                        lsn,
                        op_error: None,
                        ..
                    } => {
                        // A later file's record wins a duplicate LSN.
                        records.insert(lsn, (i, offset));
                    }
                    ScanItem::Record {
                        op_error: Some((at, reason)),
                        ..
                    } => report.damaged.push((file.path.clone(), at, reason)),
                    ScanItem::Damaged { offset, reason } => {
                        report.damaged.push((file.path.clone(), offset, reason))
                    }
                    ScanItem::SyncMark { .. } | ScanItem::End { .. } => {}
                }
            }
        }
        struct Ignore;
        impl Liveness for Ignore {
            fn live(&mut self, _: Loc, _: u64) {}
            fn dead(&mut self, _: Loc, _: Loc) {}
        }
        let mut index = Index::default();
        for &(i, offset) in records.values() {
            let (id, file, _) = &files[i];
            let source = SegmentBytes {
                bytes: &file.bytes,
                base_lsn: 0,
            };
            let Ok(record) = check_record(&source, offset as usize, file.bytes.len(), 0) else {
                continue;
            };
            report.records += 1;
            let payload_at = offset as usize + RECORD_HEADER_LEN;
            for op in OpIter::new(record.payload).map_while(|op| op.ok()) {
                let loc = Loc {
                    segment: *id,
                    offset: (payload_at + op.offset) as u32,
                };
                // An operation that does not fit what survived is skipped; the
                // bounds of later operations put the journal right again.
                let _ = index.apply(&op, loc, &mut Ignore);
            }
        }
        let mut salvaged = Salvaged {
            files: files.into_iter().map(|(id, f, _)| (id, f)).collect(),
            index,
            report,
        };
        let mut lost = Vec::new();
        let (mut journals, mut entries) = (0, 0);
        for id in salvaged.journal_ids() {
            if let Some(j) = salvaged.journal(&id) {
                journals += 1;
                entries += j.entries.len() as u64;
                let kept_end = j.first + j.entries.len() as u64;
                if kept_end < j.end {
                    lost.push((id.clone(), kept_end, j.end - kept_end));
                }
            }
        }
        salvaged.report.lost = lost;
        salvaged.report.journals = journals;
        salvaged.report.entries = entries;
        Ok(salvaged)
    }

    /// Ids of the journals recovered, ascending bytewise.
    pub fn journal_ids(&self) -> Vec<Vec<u8>> {
        self.index.iter().map(|(k, _)| k.to_vec()).collect()
    }

    /// The journal `id` as recovered.
    pub fn journal(&self, id: &[u8]) -> Option<SalvagedJournal<'_>> {
        let (key, state) = self.index.get_key_value(id)?;
        let entries = state
            .entries
            .iter()
            .map_while(|loc| (!loc.is_missing()).then(|| self.value_at(*loc)).flatten())
            .collect();
        Some(SalvagedJournal {
            id: key,
            first: state.first,
            end: state.end(),
            metadata: state.metadata.and_then(|loc| self.value_at(loc)),
            entries,
        })
    }

    /// The value of the operation at `loc`, if its CRC matches.
    fn value_at(&self, loc: Loc) -> Option<&[u8]> {
        let (_, file) = self.files.iter().find(|(id, _)| *id == loc.segment)?;
        let op = crate::record::decode_op(&file.bytes, loc.offset as usize).ok()?;
        (crc32(op.value) == op.value_crc).then_some(op.value)
    }
}

/// Copies every intact batch of the store in `src` into a new store in
/// `out`, leaving `src` untouched.
///
/// The records are found and replayed as [`Salvaged::scan`] describes.
/// Each journal keeps its bounds and its entries up to the first one that
/// could not be recovered; what is dropped is reported. `out` must not hold
/// a store already.
pub fn salvage(src: &Path, out: &Path) -> Result<SalvageReport> {
    if manifest_path(out).exists() {
        return Err(Error::InvalidOptions(format!(
            "{} already holds a store; salvage writes only to a new one",
            out.display()
        )));
    }
    let salvaged = Salvaged::scan(src)?;
    let store = Store::open(out, Options::default())?;
    let committer = store.committer();
    let chunk_bytes = (Options::default().segment_size / 4) as usize;
    for id in salvaged.journal_ids() {
        let Some(journal) = salvaged.journal(&id) else {
            continue;
        };
        let first = journal.first;
        let mut ops = vec![PlannedOp {
            kind: OpKind::Truncate,
            id: &id,
            value: &[],
            value_crc: 0,
            first,
            end: first,
        }];
        let mut bytes = 0;
        let mut end = first;
        for value in &journal.entries {
            end += 1;
            ops.push(PlannedOp {
                kind: OpKind::Append,
                id: &id,
                value,
                value_crc: crc32(value),
                first,
                end,
            });
            bytes += value.len() + id.len() + 32;
            if bytes >= chunk_bytes {
                committer.write_trusted(&ops)?;
                ops.clear();
                bytes = 0;
            }
        }
        if let Some(value) = journal.metadata {
            ops.push(PlannedOp {
                kind: OpKind::SetMetadata,
                id: &id,
                value,
                value_crc: crc32(value),
                first,
                end,
            });
        }
        if !ops.is_empty() {
            committer.write_trusted(&ops)?;
        }
    }
    store.close()?;
    Ok(salvaged.report)
}

/// File name of the advisory status file in a store directory (see
/// [`read_status`]).
pub const STATUS_FILE_NAME: &str = crate::status::STATUS_FILE;

/// The advisory status file an open store rewrites every
/// [`Options::status_interval`](crate::Options::status_interval), and at open
/// and close: its [`Stats`](crate::Stats) as of `written_unix_ms`, for
/// processes that cannot ask it (format: `format-spec/README.md`, section 12).
///
/// It says what the writing process saw, not what is on disk now; a file
/// with `open` true whose age is well past `interval_ms` was left by a
/// process that died or hangs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusInfo {
    /// Format version of the file (reading accepts only 1).
    pub version: u32,
    /// Id of the process that wrote it.
    pub pid: u32,
    /// When it was written, in milliseconds since the Unix epoch.
    pub written_unix_ms: u64,
    /// How often the writer rewrites it while the store is open.
    pub interval_ms: u64,
    /// `false` when written by `Store::close` (or drop): the last word of
    /// that process.
    pub open: bool,
    /// An earlier write or sync had failed: the store was refusing writes.
    pub writes_stopped: bool,
    /// [`Stats::generation`](crate::Stats::generation).
    pub generation: u64,
    /// [`Stats::lsn`](crate::Stats::lsn).
    pub lsn: u64,
    /// [`Stats::segments`](crate::Stats::segments).
    pub segments: u64,
    /// [`Stats::bytes_on_disk`](crate::Stats::bytes_on_disk).
    pub bytes_on_disk: u64,
    /// [`Stats::bytes_written`](crate::Stats::bytes_written).
    pub bytes_written: u64,
    /// [`Stats::live_bytes`](crate::Stats::live_bytes).
    pub live_bytes: u64,
    /// [`Stats::journals`](crate::Stats::journals).
    pub journals: u64,
    /// [`Stats::pinned_snapshots`](crate::Stats::pinned_snapshots).
    pub pinned_snapshots: u64,
    /// [`Stats::oldest_pinned_generation`](crate::Stats::oldest_pinned_generation).
    pub oldest_pinned_generation: Option<u64>,
    /// [`Stats::oldest_pinned_age`](crate::Stats::oldest_pinned_age) in
    /// milliseconds, as of `written_unix_ms`.
    pub oldest_pinned_age_ms: Option<u64>,
    /// [`Stats::pinned_only_bytes`](crate::Stats::pinned_only_bytes).
    pub pinned_only_bytes: u64,
}

impl StatusInfo {
    /// How long before `now` the file was written (zero if its time is
    /// ahead of `now`).
    pub fn age(&self, now: std::time::SystemTime) -> std::time::Duration {
        let now = crate::status::unix_ms(now);
        std::time::Duration::from_millis(now.saturating_sub(self.written_unix_ms))
    }
}

/// Reads the status file of the store in `dir`: `Ok(None)` when there is
/// none (the store was never opened by a build that writes it, or with
/// `status_interval: None`), [`Error::Corruption`] when it is not a
/// complete version 1 file (e.g. cut short by a power loss), and
/// [`Error::UnsupportedVersion`] for another version. Never panics.
pub fn read_status(dir: &Path) -> Result<Option<StatusInfo>> {
    let path = dir.join(STATUS_FILE_NAME);
    match read_bounded(
        &path,
        "read status file",
        crate::status::MAX_STATUS_FILE_LEN,
    ) {
        Ok(bytes) => crate::status::parse(&bytes, &path).map(Some),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
