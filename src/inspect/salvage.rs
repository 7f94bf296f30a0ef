//! Salvage: rebuilding what the intact records of a damaged store say
//! ([`Salvaged::scan`]) and copying it into a new store ([`salvage`]).
//!
//! Invariants:
//! - The source store is only read (no lock, no byte changed); [`salvage`]
//!   writes only to a new directory, and refuses one that holds a store.
//! - No byte the source's checksums reject is copied: records are replayed
//!   only if intact, values only if their CRC matches, and each journal
//!   keeps its entries up to the first one lost.
//! - What recovery would drop as a torn tail is dropped here too (see
//!   [`Salvaged::scan`]). The [`SalvageReport`] lists what is left out:
//!   damaged ranges, torn records, unlisted files, entries lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::scan::{manifest_path, read_manifest, segment_files, ScanItem, SegmentFile};
use crate::error::{Error, Result};
use crate::index::{Index, Liveness, Loc};
use crate::record::{crc32, OpIter, OpKind, PlannedOp, RECORD_HEADER_LEN};
use crate::segment::{check_record, SegmentBytes};
use crate::{Options, Store};

/// What [`salvage`] or [`Salvaged::scan`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
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
            fn dead(&mut self, _: Loc, _: Loc) -> u64 {
                0
            }
        }
        let mut index = Index::default();
        for &(i, offset) in records.values() {
            let (id, file, _) = &files[i];
            let source = SegmentBytes {
                bytes: file.bytes(),
                base_lsn: 0,
            };
            let Ok(record) = check_record(&source, offset as usize, file.bytes().len(), 0) else {
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
        let op = crate::record::decode_op(file.bytes(), loc.offset as usize).ok()?;
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
