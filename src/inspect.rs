//! Read-only inspection of a store's files, for tools such as `journal-dump`.
//!
//! Nothing here takes the store's lock or writes a byte to the store, so it
//! works on a store that another process has open: segment files are read
//! into memory (or mapped read-only for [`open_read_only`]) and a record that
//! is being written at that moment looks like a torn tail, as after a crash.
//! [`salvage`] is the one function that writes, and only to a new directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zerocopy::FromBytes;

use crate::commit::{PlannedOp, Version};
use crate::error::{Error, Result};
use crate::index::{Index, Liveness, Loc};
use crate::io::{FileSystem, OpenMode, RealFs};
use crate::manifest::{Generation, Manifest, MANIFEST_FILE};
use crate::record::{
    crc32, OpIter, OpKind, SegmentHeader, RECORD_ALIGN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use crate::segment::{
    check_record, parse_segment_file_name, segment_file_name, ScanStop, Segment, SegmentBytes,
};
use crate::snapshot::{Pins, Snapshot};
use crate::{Options, Store};

/// A decoded manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestInfo {
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

/// Reads a manifest file (`dir/MANIFEST` or any copy of one).
pub fn read_manifest(path: &Path) -> Result<ManifestInfo> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read manifest", path, e))?;
    decode_manifest(&bytes, path)
}

/// Decodes the bytes of a manifest file; `path` names it in errors.
pub fn decode_manifest(bytes: &[u8], path: &Path) -> Result<ManifestInfo> {
    let m = Manifest::decode(bytes, path)?;
    Ok(ManifestInfo {
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
    })
}

/// The path of the manifest of the store in `dir`.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST_FILE)
}

/// The id in a segment file name (`seg-0000002a.jseg` -> 42).
pub fn segment_id_from_file_name(name: &str) -> Option<u32> {
    parse_segment_file_name(name)
}

/// A segment file's header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeaderInfo {
    /// Format version.
    pub version: u32,
    /// The id the header names.
    pub segment_id: u64,
    /// Preallocated size.
    pub capacity: u64,
    /// Lowest LSN a record of this segment may have.
    pub base_lsn: u64,
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
    /// Whether the value matches its CRC.
    pub value_crc_ok: bool,
}

/// What a scan found at one offset of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanItem {
    /// An intact record (both checksums match).
    Record {
        /// Byte offset in the file.
        offset: u64,
        /// The batch's LSN.
        lsn: u64,
        /// Payload length.
        payload_len: u32,
        /// The writer's durable watermark when it wrote this record.
        synced_through: u32,
        /// The operations.
        ops: Vec<OpInfo>,
    },
    /// Bytes that are not a valid record.
    Damaged {
        /// Byte offset in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
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
    /// Reads a segment file. Fails only if the file cannot be read; a bad
    /// header is reported by [`SegmentFile::header`].
    pub fn read(path: &Path) -> Result<SegmentFile> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read segment", path, e))?;
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
                segment_id: h.segment_id.get(),
                capacity: h.capacity.get(),
                base_lsn: h.base_lsn.get(),
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

    /// The decoded header, or why it cannot be trusted.
    pub fn header(&self) -> std::result::Result<&SegmentHeaderInfo, &str> {
        self.header.as_ref().map_err(|e| e.as_str())
    }

    /// Scans records from `from` (at least the header's end) to `limit` (or
    /// the end of the file). With `resync`, a damaged record does not stop
    /// the scan: it resumes at the next aligned offset that holds a valid
    /// record, as a salvage would.
    pub fn scan(&self, from: u64, limit: Option<u64>, resync: bool) -> Vec<ScanItem> {
        let source = SegmentBytes {
            bytes: &self.bytes,
            base_lsn: self.header.as_ref().map_or(0, |h| h.base_lsn),
        };
        let limit = limit.map_or(self.bytes.len(), |l| (l as usize).min(self.bytes.len()));
        let mut pos = align(from.max(SEGMENT_HEADER_LEN as u64) as usize);
        let mut items = Vec::new();
        while pos + RECORD_HEADER_LEN <= limit {
            match check_record(&source, pos, limit, 0) {
                Ok(record) => {
                    let payload_at = (pos + RECORD_HEADER_LEN) as u64;
                    let ops = OpIter::new(record.payload)
                        .map_while(|op| op.ok())
                        .map(|op| OpInfo {
                            offset: payload_at + op.offset as u64,
                            kind: op.kind.name(),
                            journal: op.id.to_vec(),
                            first: op.first,
                            end: op.end,
                            value_len: op.value.len() as u32,
                            value_crc_ok: crc32(op.value) == op.value_crc,
                        })
                        .collect();
                    items.push(ScanItem::Record {
                        offset: pos as u64,
                        lsn: record.header.lsn.get(),
                        payload_len: record.header.payload_len.get(),
                        synced_through: record.header.synced_through.get(),
                        ops,
                    });
                    pos = record.next_offset();
                }
                Err(ScanStop::End { offset }) if !resync => {
                    items.push(ScanItem::End {
                        offset: offset as u64,
                    });
                    return items;
                }
                Err(stop) => {
                    if let ScanStop::Invalid { offset, reason } = stop {
                        items.push(ScanItem::Damaged {
                            offset: offset as u64,
                            reason: reason.to_owned(),
                        });
                        if !resync {
                            return items;
                        }
                    }
                    // Resume at the next offset holding a valid record.
                    pos += RECORD_ALIGN;
                    while pos + RECORD_HEADER_LEN <= limit
                        && check_record(&source, pos, limit, 0).is_err()
                    {
                        pos += RECORD_ALIGN;
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

fn align(x: usize) -> usize {
    crate::record::align_up(x)
}

/// Live space of one segment, as recovery computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentLiveness {
    /// Segment id.
    pub id: u32,
    /// Preallocated size of the file.
    pub capacity: u64,
    /// Bytes of records in it (the sealed length, or the active segment's end of data).
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
    /// Per-segment live space.
    pub segments: Vec<SegmentLiveness>,
    /// LSN of the oldest record still on disk (0 if none).
    pub oldest_lsn: u64,
}

/// Opens the store in `dir` without locking it and without changing any
/// file: recovery's replay on read-only mappings. Works while another
/// process has the store open; an append in flight reads as a torn tail.
pub fn open_read_only(dir: &Path) -> Result<ReadOnlyStore> {
    let fs: Arc<dyn FileSystem> = Arc::new(RealFs);
    // A concurrent writer may free a segment between reading the manifest
    // and opening the files; a fresh manifest then no longer lists it.
    let mut attempts = 0;
    let (manifest, segments) = loop {
        attempts += 1;
        let manifest = Manifest::load(&*fs, dir)?
            .ok_or_else(|| Error::corruption(manifest_path(dir), 0, "no manifest: not a store"))?;
        let opened: Result<Vec<Arc<Segment>>> = manifest
            .segments
            .iter()
            .map(|&(id, _)| Segment::open(&fs, dir, id, OpenMode::ReadOnly).map(Arc::new))
            .collect();
        match opened {
            Ok(segments) => break (manifest, segments),
            Err(e) if attempts < 3 && e.is_corruption() => continue,
            Err(e) => return Err(e),
        }
    };
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
    let info = read_manifest(&manifest_path(dir)).or_else(|_| {
        // The manifest was swapped meanwhile; describe the one replayed.
        Ok::<_, Error>(ManifestInfo {
            generation: manifest.generation,
            next_segment_id: manifest.next_segment_id,
            lsn_floor: manifest.lsn_floor,
            segments: Vec::new(),
        })
    })?;
    let version = Arc::new(Version {
        lsn: replay.last_lsn.max(manifest.lsn_floor),
        index: replay.index,
        generation: Arc::new(Generation::new(manifest.generation, segments)),
    });
    Ok(ReadOnlyStore {
        snapshot: Snapshot::new(version, Arc::new(Pins::default())),
        manifest: info,
        segments: liveness,
        oldest_lsn,
    })
}

/// What [`salvage`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SalvageReport {
    /// Intact records replayed.
    pub records: u64,
    /// Damaged byte ranges skipped: (file, offset, reason).
    pub damaged: Vec<(PathBuf, u64, String)>,
    /// Journals written to the new store.
    pub journals: u64,
    /// Entries written to the new store.
    pub entries: u64,
    /// Entries lost: (journal, first index not recovered, entries dropped).
    pub lost: Vec<(Vec<u8>, u64, u64)>,
}

/// Copies every intact batch of the store in `src` into a new store in
/// `out`, leaving `src` untouched.
///
/// Every segment file in `src` is scanned (the manifest is not needed);
/// damaged bytes are skipped and reported, and the intact records are
/// replayed in LSN order. Each journal keeps its bounds and its entries up
/// to the first one that could not be recovered; what is dropped is reported.
/// `out` must not hold a store already.
pub fn salvage(src: &Path, out: &Path) -> Result<SalvageReport> {
    if manifest_path(out).exists() {
        return Err(Error::InvalidOptions(format!(
            "{} already holds a store; salvage writes only to a new one",
            out.display()
        )));
    }
    let mut report = SalvageReport::default();
    let mut names: Vec<(u32, String)> = std::fs::read_dir(src)
        .map_err(|e| Error::io("list store directory", src, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            Some((parse_segment_file_name(&name)?, name))
        })
        .collect();
    names.sort();
    // Intact values by (segment, offset), and records by LSN.
    let mut files = Vec::new();
    for (id, name) in &names {
        let file = SegmentFile::read(&src.join(name))?;
        if let Err(reason) = file.header() {
            report
                .damaged
                .push((file.path.clone(), 0, reason.to_owned()));
            continue;
        }
        files.push((*id, file));
    }
    let mut records: BTreeMap<u64, (usize, u64)> = BTreeMap::new();
    for (i, (_, file)) in files.iter().enumerate() {
        for item in file.scan(0, None, true) {
            match item {
                ScanItem::Record { offset, lsn, .. } => {
                    records.insert(lsn, (i, offset));
                }
                ScanItem::Damaged { offset, reason } => {
                    report.damaged.push((file.path.clone(), offset, reason))
                }
                ScanItem::End { .. } => {}
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
        let (id, file) = &files[i];
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

    let value_at = |loc: Loc| -> Option<&[u8]> {
        let (_, file) = files.iter().find(|(id, _)| *id == loc.segment)?;
        let op = crate::record::decode_op(&file.bytes, loc.offset as usize).ok()?;
        (crc32(op.value) == op.value_crc).then_some(op.value)
    };
    let store = Store::open(out, Options::default())?;
    let committer = store.committer();
    let chunk_bytes = (Options::default().segment_size / 4) as usize;
    for (id, state) in index.iter() {
        let mut ops = vec![PlannedOp {
            kind: OpKind::Truncate,
            id,
            value: &[],
            value_crc: 0,
            first: state.first,
            end: state.first,
        }];
        let mut bytes = 0;
        let mut end = state.first;
        for loc in state.entries.iter() {
            let Some(value) = (!loc.is_missing()).then(|| value_at(*loc)).flatten() else {
                report.lost.push((id.to_vec(), end, state.end() - end));
                break;
            };
            end += 1;
            ops.push(PlannedOp {
                kind: OpKind::Append,
                id,
                value,
                value_crc: crc32(value),
                first: state.first,
                end,
            });
            bytes += value.len() + id.len() + 32;
            if bytes >= chunk_bytes {
                committer.write_trusted(&ops)?;
                ops.clear();
                bytes = 0;
            }
        }
        if let Some(value) = state.metadata.and_then(value_at) {
            ops.push(PlannedOp {
                kind: OpKind::SetMetadata,
                id,
                value,
                value_crc: crc32(value),
                first: state.first,
                end,
            });
        }
        committer.write_trusted(&ops)?;
        report.journals += 1;
        report.entries += end - state.first;
    }
    store.close()?;
    Ok(report)
}
