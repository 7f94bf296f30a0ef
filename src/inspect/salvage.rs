//! Salvage: rebuilding what the intact records of a damaged store say
//! ([`Salvaged::scan`]) and copying it into a new store ([`salvage`],
//! [`salvage_with`]).
//!
//! Invariants:
//! - The source store is only read (no lock, no byte changed); [`salvage`]
//!   writes only to a new directory, and refuses one that holds a store.
//! - No byte the source's checksums reject is copied: records are replayed
//!   only if intact, values only if their CRC matches, and each journal
//!   keeps its entries up to the first one lost.
//! - What recovery would drop as a torn tail is dropped here too (see
//!   [`Salvaged::scan`]).
//! - Nothing lost is left unsaid: every place that could not be read is a
//!   [`LostRange`] (with the LSNs it held, as far as its neighbours bound
//!   them), and every journal whose salvaged state may differ from the last
//!   good one is a [`SuspectJournal`]; [`SalvageReport::ok`] is false if
//!   anything at all was unreadable, the manifest included.
//! - Memory is bounded by one segment file plus the index: segments are
//!   read one at a time to find their intact records (kept as LSN and
//!   offset, 16 bytes a record), and the replay and the copy read each
//!   record and value back with positioned reads.
//! - The new store is written without a sync per batch and synced once at
//!   the end (plus the syncs that sealing a full segment makes).

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::scan::{manifest_path, read_manifest, segment_files, ScanItem, SegmentFile};
use crate::error::{Error, Result};
use crate::index::{Index, Liveness, Loc};
use crate::record::{crc32, OpIter, RecordHeader, RECORD_HEADER_LEN};
use crate::segment::{check_record, SegmentBytes};
use crate::{Options, Store, SyncMode, WriteBatch, WriteOptions};

/// LSNs that could not be read: a damaged place, a missing or unreadable
/// segment file, or a segment cut short.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct LostRange {
    /// The file concerned.
    pub path: PathBuf,
    /// Where in it, when the place is known (`None` for a whole file).
    pub offset: Option<u64>,
    /// What is wrong.
    pub reason: String,
    /// The lowest LSN the lost bytes may hold: one above the intact record
    /// before them in the same file; `None` when nothing bounds it.
    pub first_lsn: Option<u64>,
    /// The highest LSN the lost bytes may hold: one below the intact record
    /// after them in the same file; `None` when nothing bounds it. A range
    /// with `first_lsn > last_lsn` held no batch of its own (junk bytes
    /// between two consecutive batches).
    pub last_lsn: Option<u64>,
    /// The journals the lost batch touched, when they are known: the
    /// record's own header checksum holds, every operation of its payload
    /// decodes, and each id they name is one that intact records also name.
    /// `None` otherwise: any journal may have been touched.
    pub journals: Option<Vec<Vec<u8>>>,
}

/// A journal whose salvaged state may differ from its last good state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SuspectJournal {
    /// The journal id.
    pub id: Vec<u8>,
    /// Why: touched by a lost batch, a later batch that does not fit what
    /// survived, entries or metadata that could not be read.
    pub reasons: Vec<String>,
    /// Whether it was left out of the new store ([`SuspectPolicy::Drop`]).
    pub dropped: bool,
}

/// What [`salvage`] does with a [`SuspectJournal`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum SuspectPolicy {
    /// Copy it as salvaged (its bounds, its entries up to the first one
    /// lost, its metadata if readable) and name it in the report.
    #[default]
    Keep,
    /// Leave it out of the new store and name it in the report: the new
    /// store then holds only journals whose state is the last good one
    /// (unless [`SalvageReport::all_suspect`], when no journal is known
    /// to be safe and every one is dropped).
    Drop,
}

/// How [`salvage_with`] works.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct SalvageOptions {
    /// What to do with journals whose state may differ from the last good
    /// state.
    pub suspect: SuspectPolicy,
}

/// How far a salvage has got, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageProgress {
    /// `"scan"` (reading segment files; units are bytes), `"replay"`
    /// (records; units are records) or `"write"` (journals).
    pub phase: &'static str,
    /// Units done in this phase.
    pub done: u64,
    /// Units in this phase.
    pub total: u64,
}

/// What [`salvage`] or [`Salvaged::scan`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SalvageReport {
    /// Intact records replayed.
    pub records: u64,
    /// Why the manifest could not be used, if it could not (missing or
    /// damaged): every segment file was then read whole.
    pub manifest_error: Option<String>,
    /// Damaged byte ranges skipped: (file, offset, reason).
    pub damaged: Vec<(PathBuf, u64, String)>,
    /// Intact records left out as part of a torn tail (never acknowledged
    /// under `SyncMode::Always`; recovery drops them too): (file, offset).
    pub torn: Vec<(PathBuf, u64)>,
    /// Segment files left out because the manifest does not list them.
    pub unlisted: Vec<PathBuf>,
    /// Segment files the manifest lists that are missing or unreadable.
    pub missing: Vec<PathBuf>,
    /// Every place that could not be read, with the LSNs it may have held.
    pub lost_ranges: Vec<LostRange>,
    /// Whether some lost batch's journals are unknown: then any journal
    /// may differ from its last good state, and journals created by that
    /// batch alone cannot be named at all.
    pub all_suspect: bool,
    /// Journals whose salvaged state may differ from the last good state,
    /// ascending by id. With [`all_suspect`](Self::all_suspect) every
    /// journal is listed.
    pub suspect: Vec<SuspectJournal>,
    /// Journals recovered (written to the new store by [`salvage`]).
    pub journals: u64,
    /// Entries recovered.
    pub entries: u64,
    /// Entries lost: (journal, first index not recovered, entries dropped).
    pub lost: Vec<(Vec<u8>, u64, u64)>,
}

impl SalvageReport {
    /// Whether everything was read: no damage, no missing file, no lost
    /// entry or value, a usable manifest. Torn tails count as unreadable
    /// too (their bytes are damaged), although recovery drops them.
    pub fn ok(&self) -> bool {
        self.manifest_error.is_none()
            && self.damaged.is_empty()
            && self.missing.is_empty()
            && self.lost_ranges.is_empty()
            && self.suspect.is_empty()
            && self.lost.is_empty()
            && !self.all_suspect
    }
}

/// The state rebuilt from the intact records of a store's files, without
/// the engine's consistency checks: what [`salvage`] copies.
#[derive(Debug)]
pub struct Salvaged {
    /// Each segment read: its open file and its length when scanned (no
    /// read back goes past it, whatever a changed file now says).
    files: BTreeMap<u32, (File, u64)>,
    index: Index,
    suspect: BTreeMap<Vec<u8>, Vec<String>>,
    /// What the scan found.
    pub report: SalvageReport,
}

/// One journal of a [`Salvaged`] state.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvagedJournal<'a> {
    /// Its id.
    pub id: &'a [u8],
    /// Its `first_index`.
    pub first: u64,
    /// Its `end_index` as the records say; entries from the first one lost
    /// on are not recovered.
    pub end: u64,
    /// The metadata value, if set and intact.
    pub metadata: Option<Vec<u8>>,
    /// Whether metadata was set but its value could not be read.
    pub metadata_lost: bool,
    /// Entries `first..`, up to (not including) the first one lost.
    pub entries: Vec<Vec<u8>>,
}

/// One segment's intact records, for the replay: (LSN, offset), in file
/// order.
struct SegmentRecords {
    id: u32,
    records: Vec<(u64, u32)>,
}

struct Ignore;
impl Liveness for Ignore {
    fn live(&mut self, _: Loc, _: u64) {}
    fn dead(&mut self, _: Loc, _: Loc) -> u64 {
        0
    }
}

/// Reads exactly `len` bytes at `offset`, or fails.
fn read_at(file: &File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// The journal ids a damaged place names, if they can be trusted (see
/// [`LostRange::journals`]); the check against the ids of intact records
/// is made once all are known.
fn ids_of_damaged(file: &SegmentFile, offset: u64) -> Option<Vec<Vec<u8>>> {
    use zerocopy::FromBytes;
    let bytes = file.bytes();
    let at = usize::try_from(offset).ok()?;
    let header =
        RecordHeader::read_from_bytes(bytes.get(at..at.checked_add(RECORD_HEADER_LEN)?)?).ok()?;
    if !header.crc_ok() {
        return None;
    }
    let start = at + RECORD_HEADER_LEN;
    let payload = bytes.get(start..start.checked_add(header.payload_len.get() as usize)?)?;
    let mut ids = Vec::new();
    for op in OpIter::new(payload) {
        ids.push(op.ok()?.id.to_vec());
    }
    (ids.len() == header.op_count.get() as usize).then_some(ids)
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
        Salvaged::scan_with(src, &mut |_| {})
    }

    /// [`Salvaged::scan`], reporting its progress to `progress`.
    pub fn scan_with(src: &Path, progress: &mut dyn FnMut(SalvageProgress)) -> Result<Salvaged> {
        let mut report = SalvageReport::default();
        let mpath = manifest_path(src);
        let manifest = match read_manifest(&mpath) {
            Ok(m) => Some(m),
            Err(e) => {
                report.manifest_error = Some(if mpath.exists() {
                    crate::error::DisplayChain(&e).to_string()
                } else {
                    "no manifest".to_owned()
                });
                None
            }
        };
        let on_disk = segment_files(src)?;
        // (id, path, sealed length) of each file to read, ascending by id.
        let mut to_read: Vec<(u32, PathBuf, Option<u64>)> = Vec::new();
        match &manifest {
            Some(m) => {
                for s in &m.segments {
                    let path = src.join(&s.file_name);
                    if on_disk.iter().any(|(id, _)| *id == s.id) {
                        to_read.push((s.id, path, s.sealed_len));
                    } else {
                        report.missing.push(path.clone());
                        report.lost_ranges.push(LostRange {
                            path,
                            offset: None,
                            reason: "segment listed in the manifest is missing".into(),
                            first_lsn: None,
                            last_lsn: None,
                            journals: None,
                        });
                    }
                }
                for (id, path) in &on_disk {
                    if m.segment(*id).is_none() {
                        report.unlisted.push(path.clone());
                    }
                }
            }
            None => to_read.extend(on_disk.iter().map(|(id, p)| (*id, p.clone(), None))),
        }
        let total_bytes: u64 = to_read
            .iter()
            .map(|(_, p, _)| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        let mut done_bytes = 0;
        let mut files = BTreeMap::new();
        let mut segments = Vec::new();
        let mut known_ids: BTreeSet<Vec<u8>> = BTreeSet::new();
        for (id, path, sealed) in to_read {
            let unreadable = |report: &mut SalvageReport, reason: String| {
                report.missing.push(path.clone());
                report.lost_ranges.push(LostRange {
                    path: path.clone(),
                    offset: None,
                    reason,
                    first_lsn: None,
                    last_lsn: None,
                    journals: None,
                });
            };
            // One segment in memory at a time.
            let file = match SegmentFile::read(&path) {
                Ok(f) => f,
                Err(e) => {
                    unreadable(&mut report, crate::error::DisplayChain(&e).to_string());
                    continue;
                }
            };
            done_bytes += file.len();
            progress(SalvageProgress {
                phase: "scan",
                done: done_bytes,
                total: total_bytes,
            });
            if let Err(reason) = file.header() {
                report.damaged.push((path.clone(), 0, reason.to_owned()));
                unreadable(&mut report, reason.to_owned());
                continue;
            }
            let handle = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    unreadable(&mut report, format!("open: {e}"));
                    continue;
                }
            };
            let items = file.scan(0, sealed, true);
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
            let mut records = Vec::new();
            // The LSN of the intact record before the current place, and
            // the lost ranges still waiting for the record after them.
            let mut prev_lsn: Option<u64> = None;
            let mut open: Vec<LostRange> = Vec::new();
            let base_first = file.header().ok().map(|h| h.base_lsn.max(1));
            for item in items {
                match item {
                    ScanItem::Record { offset, .. } if torn_from.is_some_and(|t| offset > t) => {
                        report.torn.push((path.clone(), offset))
                    }
                    ScanItem::Damaged { offset, reason }
                        if torn_from.is_some_and(|t| offset >= t) =>
                    {
                        // Unacknowledged writes, as recovery sees them: not
                        // a loss, but unreadable bytes all the same.
                        let reason = format!("{reason} (a torn tail: recovery drops it too)");
                        report.damaged.push((path.clone(), offset, reason));
                    }
                    ScanItem::Record {
                        offset,
                        lsn,
                        op_error,
                        ops,
                        ..
                    } => {
                        for r in open.drain(..) {
                            report.lost_ranges.push(LostRange {
                                last_lsn: Some(lsn.saturating_sub(1)),
                                ..r
                            });
                        }
                        for op in &ops {
                            known_ids.insert(op.journal.clone());
                        }
                        match op_error {
                            None => records.push((lsn, offset as u32)),
                            Some((at, reason)) => {
                                report.damaged.push((path.clone(), at, reason.clone()));
                                report.lost_ranges.push(LostRange {
                                    path: path.clone(),
                                    offset: Some(offset),
                                    reason: format!("undecodable operation: {reason}"),
                                    first_lsn: Some(lsn),
                                    last_lsn: Some(lsn),
                                    journals: None,
                                });
                            }
                        }
                        prev_lsn = Some(lsn);
                    }
                    ScanItem::Damaged { offset, reason } => {
                        report.damaged.push((path.clone(), offset, reason.clone()));
                        open.push(LostRange {
                            path: path.clone(),
                            offset: Some(offset),
                            reason,
                            first_lsn: prev_lsn.map(|l| l.saturating_add(1)).or(base_first),
                            last_lsn: None,
                            journals: ids_of_damaged(&file, offset),
                        });
                    }
                    ScanItem::End { offset } => {
                        if let Some(len) = sealed.filter(|&len| len > offset) {
                            // A sealed segment whose records stop short of
                            // its sealed length: cut short, or zeroed.
                            let reason = if file.len() < len {
                                format!(
                                    "file is {} bytes; the manifest says its records end at {len}",
                                    file.len()
                                )
                            } else {
                                format!("records end at {offset}; the manifest says {len}")
                            };
                            report.damaged.push((path.clone(), offset, reason.clone()));
                            open.push(LostRange {
                                path: path.clone(),
                                offset: Some(offset),
                                reason,
                                first_lsn: prev_lsn.map(|l| l.saturating_add(1)).or(base_first),
                                last_lsn: None,
                                journals: None,
                            });
                        }
                    }
                    ScanItem::SyncMark { .. } => {}
                }
            }
            report.lost_ranges.append(&mut open);
            segments.push(SegmentRecords { id, records });
            files.insert(id, (handle, file.len()));
        }
        // Ids named by damaged records count only if intact records name
        // them too: a flipped bit in an id must not pass for a real one.
        for r in &mut report.lost_ranges {
            if r.journals
                .as_ref()
                .is_some_and(|ids| ids.iter().any(|id| !known_ids.contains(id)))
            {
                r.journals = None;
            }
        }
        drop(known_ids);

        let mut salvaged = Salvaged {
            files,
            index: Index::default(),
            suspect: BTreeMap::new(),
            report,
        };
        salvaged.replay(segments, progress);
        salvaged.judge();
        Ok(salvaged)
    }

    /// Applies the intact records in LSN order (a k-way merge of the
    /// segments' lists; a later file's record wins a duplicate LSN).
    fn replay(&mut self, segments: Vec<SegmentRecords>, progress: &mut dyn FnMut(SalvageProgress)) {
        let total: u64 = segments.iter().map(|s| s.records.len() as u64).sum();
        // Min-heap on (LSN, reversed segment position): pops a duplicate
        // LSN's later file first.
        let mut heap = BinaryHeap::new();
        let mut cursors = vec![0usize; segments.len()];
        for (i, s) in segments.iter().enumerate() {
            if let Some(&(lsn, _)) = s.records.first() {
                heap.push(std::cmp::Reverse((lsn, usize::MAX - i)));
            }
        }
        let mut last_lsn = None;
        let mut done = 0;
        while let Some(std::cmp::Reverse((lsn, rev))) = heap.pop() {
            let i = usize::MAX - rev;
            let seg = &segments[i];
            let (_, offset) = seg.records[cursors[i]];
            cursors[i] += 1;
            if let Some(&(next, _)) = seg.records.get(cursors[i]) {
                heap.push(std::cmp::Reverse((next, rev)));
            }
            done += 1;
            if done % 4096 == 0 {
                progress(SalvageProgress {
                    phase: "replay",
                    done,
                    total,
                });
            }
            if last_lsn == Some(lsn) {
                continue;
            }
            last_lsn = Some(lsn);
            self.apply_record(seg.id, offset);
        }
        progress(SalvageProgress {
            phase: "replay",
            done,
            total,
        });
    }

    /// Reads the record at `offset` of segment `id` back and applies its
    /// operations; one that does not fit marks its journal suspect.
    fn apply_record(&mut self, id: u32, offset: u32) {
        let Some((file, file_len)) = self.files.get(&id) else {
            return;
        };
        let Ok(head) = read_at(file, u64::from(offset), RECORD_HEADER_LEN) else {
            return;
        };
        let len = u64::from(u32::from_le_bytes([head[16], head[17], head[18], head[19]]));
        let total = RECORD_HEADER_LEN as u64 + len;
        if u64::from(offset) + total > *file_len {
            return;
        }
        let Ok(bytes) = read_at(file, u64::from(offset), total as usize) else {
            return;
        };
        let source = SegmentBytes {
            bytes: &bytes,
            base_lsn: 0,
        };
        // Checked again: the file may have changed since the scan.
        let Ok(record) = check_record(&source, 0, bytes.len(), 0) else {
            return;
        };
        self.report.records += 1;
        let payload_at = offset as usize + RECORD_HEADER_LEN;
        for op in OpIter::new(record.payload).map_while(|op| op.ok()) {
            let loc = Loc {
                segment: id,
                offset: (payload_at + op.offset) as u32,
            };
            if let Err(why) = self.index.apply(&op, loc, &mut Ignore) {
                self.suspect
                    .entry(op.id.to_vec())
                    .or_default()
                    .push(format!(
                    "a later batch does not fit what survived ({why}): it depends on a lost batch"
                ));
            }
        }
    }

    /// Counts what was recovered and names the journals that may differ
    /// from their last good state.
    fn judge(&mut self) {
        for r in &self.report.lost_ranges {
            match &r.journals {
                Some(ids) => {
                    for id in ids {
                        let why = match (r.first_lsn, r.last_lsn) {
                            (Some(a), Some(b)) if a == b => format!("touched by lost batch {a}"),
                            _ => "touched by a lost batch".to_owned(),
                        };
                        self.suspect.entry(id.clone()).or_default().push(why);
                    }
                }
                None => self.report.all_suspect = true,
            }
        }
        let mut lost = Vec::new();
        let mut why = Vec::new();
        let (mut journals, mut entries) = (0, 0);
        for id in self.journal_ids() {
            if let Some(j) = self.journal(&id) {
                journals += 1;
                entries += j.entries.len() as u64;
                let kept_end = j.first + j.entries.len() as u64;
                if kept_end < j.end {
                    lost.push((id.clone(), kept_end, j.end - kept_end));
                    why.push((
                        id.clone(),
                        format!("entries {kept_end}..{} could not be read", j.end),
                    ));
                }
                if j.metadata_lost {
                    why.push((id.clone(), "its metadata value could not be read".into()));
                }
            }
        }
        for (id, reason) in why {
            self.suspect.entry(id).or_default().push(reason);
        }
        if self.report.all_suspect {
            for id in self.journal_ids() {
                self.suspect
                    .entry(id)
                    .or_default()
                    .push("a lost batch's journals are unknown".into());
            }
        }
        self.report.lost = lost;
        self.report.journals = journals;
        self.report.entries = entries;
        self.report.suspect = self
            .suspect
            .iter()
            .map(|(id, reasons)| SuspectJournal {
                id: id.clone(),
                reasons: reasons.clone(),
                dropped: false,
            })
            .collect();
    }

    /// Ids of the journals recovered, ascending bytewise.
    pub fn journal_ids(&self) -> Vec<Vec<u8>> {
        self.index.iter().map(|(k, _)| k.to_vec()).collect()
    }

    /// Whether journal `id` may differ from its last good state.
    pub fn is_suspect(&self, id: &[u8]) -> bool {
        self.report.all_suspect || self.suspect.contains_key(id)
    }

    /// The journal `id` as recovered, its values read back from the files.
    pub fn journal(&self, id: &[u8]) -> Option<SalvagedJournal<'_>> {
        let (key, state) = self.index.get_key_value(id)?;
        let entries = state
            .entries
            .iter()
            .map_while(|loc| (!loc.is_missing()).then(|| self.value_at(*loc)).flatten())
            .collect();
        let metadata = state.metadata.and_then(|loc| self.value_at(loc));
        Some(SalvagedJournal {
            id: key,
            first: state.first,
            end: state.end(),
            metadata_lost: state.metadata.is_some() && metadata.is_none(),
            metadata,
            entries,
        })
    }

    /// The value of the operation at `loc`, if it decodes and its CRC
    /// matches.
    fn value_at(&self, loc: Loc) -> Option<Vec<u8>> {
        use zerocopy::FromBytes;
        let (file, file_len) = self.files.get(&loc.segment)?;
        let at = u64::from(loc.offset);
        let head = read_at(file, at, crate::record::OP_HEADER_LEN).ok()?;
        let (h, _) = crate::record::OpHeader::read_from_prefix(&head).ok()?;
        let len = crate::record::OP_HEADER_LEN as u64
            + u64::from(h.id_len)
            + u64::from(h.value_len.get());
        if at + len > *file_len {
            return None;
        }
        let bytes = read_at(file, at, len as usize).ok()?;
        let op = crate::record::decode_op(&bytes, 0).ok()?;
        (crc32(op.value) == op.value_crc).then(|| op.value.to_vec())
    }
}

/// Copies every intact batch of the store in `src` into a new store in
/// `out`, leaving `src` untouched, with the default [`SalvageOptions`]
/// (suspect journals kept).
pub fn salvage(src: &Path, out: &Path) -> Result<SalvageReport> {
    salvage_with(src, out, SalvageOptions::default(), &mut |_| {})
}

/// Most bytes of values in one batch written to the new store.
const CHUNK_BYTES: usize = 4 << 20;

/// Copies every intact batch of the store in `src` into a new store in
/// `out`, leaving `src` untouched; reports its progress to `progress`.
///
/// The records are found and replayed as [`Salvaged::scan`] describes.
/// Each journal keeps its bounds and its entries up to the first one that
/// could not be recovered; suspect journals are kept or left out as
/// `options.suspect` says. Everything left out or unreadable is reported.
/// `out` must not hold a store already. The new store is written through
/// the public [`Store`] API without a sync per batch, and synced once.
pub fn salvage_with(
    src: &Path,
    out: &Path,
    options: SalvageOptions,
    progress: &mut dyn FnMut(SalvageProgress),
) -> Result<SalvageReport> {
    if manifest_path(out).exists() {
        return Err(Error::InvalidOptions(format!(
            "{} already holds a store; salvage writes only to a new one",
            out.display()
        )));
    }
    let mut salvaged = Salvaged::scan_with(src, progress)?;
    // One segment for all that is copied (up to the largest the engine
    // makes): a roll would sync the segment it seals, the manifest and the
    // directory, and the copy is synced once, at its end. What is copied
    // never exceeds what was scanned: the same encoding, fewer records.
    let scanned: u64 = salvaged.files.values().map(|(_, len)| *len).sum();
    let segment_size = (scanned + scanned / 16 + (1 << 20))
        .clamp(Options::default().segment_size, u64::from(u32::MAX));
    let store = Store::open(
        out,
        Options {
            sync: SyncMode::Never,
            segment_size,
            background_compaction: false,
            status_interval: None,
            ..Options::default()
        },
    )?;
    let ids = salvaged.journal_ids();
    let total = ids.len() as u64;
    let mut batch = WriteBatch::new();
    let mut bytes = 0;
    let no_sync = WriteOptions { sync: false };
    let (mut journals, mut entries) = (0, 0);
    for (n, id) in ids.iter().enumerate() {
        if options.suspect == SuspectPolicy::Drop && salvaged.is_suspect(id) {
            if let Some(s) = salvaged.report.suspect.iter_mut().find(|s| &s.id == id) {
                s.dropped = true;
            }
            continue;
        }
        let Some(journal) = salvaged.journal(id) else {
            continue;
        };
        journals += 1;
        entries += journal.entries.len() as u64;
        // Creates the journal, empty, at its first index.
        batch.trim_prefix(id, journal.first);
        for value in &journal.entries {
            batch.append(id, value);
            bytes += value.len() + id.len() + 32;
            if bytes >= CHUNK_BYTES {
                store.write_with(&batch, no_sync)?;
                batch.clear();
                bytes = 0;
            }
        }
        if let Some(value) = &journal.metadata {
            batch.set_metadata(id, value);
            bytes += value.len() + id.len() + 32;
        }
        if bytes >= CHUNK_BYTES {
            store.write_with(&batch, no_sync)?;
            batch.clear();
            bytes = 0;
        }
        if n % 256 == 0 {
            progress(SalvageProgress {
                phase: "write",
                done: n as u64,
                total,
            });
        }
    }
    if !batch.is_empty() {
        store.write_with(&batch, no_sync)?;
    }
    progress(SalvageProgress {
        phase: "write",
        done: total,
        total,
    });
    store.sync()?;
    store.close()?;
    salvaged.report.journals = journals;
    salvaged.report.entries = entries;
    Ok(salvaged.report)
}
