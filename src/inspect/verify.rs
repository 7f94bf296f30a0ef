//! Checking a store: [`verify`] lists every checksum or cross-reference
//! that does not hold, each with its file and offset.
//!
//! Invariants:
//! - Read-only and lock-free, like the rest of `inspect`.
//! - Damage does not stop the check: segments are scanned with resync
//!   past it, then the engine's replay ([`open_read_only`]) checks what
//!   only a replay can see (its first error).
//! - One problem per place (file, offset), in file and offset order.
//! - Damage is told apart from notes: what `Store::open` repairs silently
//!   (a torn tail, leftover files) and what an open store has on disk in
//!   the normal course (segment files of another manifest generation:
//!   compaction output not yet listed, segments only pinned snapshots
//!   still read) are [`VerifyReport::notes`], which do not fail the check.
//! - Safe on a store being written: the segments read are the ones the
//!   manifest generation read first names, and a check that found damage
//!   is run again while the store changes under it (the manifest changed
//!   during the run) and twice more when it did not; damage on disk does
//!   not go away, a race does. So a healthy running store verifies clean.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::read_only::open_read_only;
use super::scan::{
    manifest_path, read_manifest, segment_files, ManifestInfo, ScanItem, SegmentFile,
};
use crate::error::{DisplayChain, Error};
use crate::io::{FileSystem, RealFs};
use crate::manifest::{MANIFEST_NEXT_FILE, MANIFEST_TMP_FILE};
use crate::record::RECORD_HEADER_LEN;
use crate::recovery::check_sealed_len;

/// One thing [`verify`] found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct VerifyReport {
    /// Everything wrong, ordered by file and offset; empty if all holds.
    pub problems: Vec<Problem>,
    /// What is not damage but does not match the manifest either: a torn
    /// tail (open seals it off), leftover files (open removes them),
    /// segment files of another manifest generation (on an open store:
    /// compaction output not yet listed, or segments that only pinned
    /// snapshots still read), pinned snapshots the `STATUS` file reports.
    /// Each has `repaired_at_open` set when open would repair it.
    pub notes: Vec<Problem>,
    /// How many times the check ran: more than once when it found damage
    /// that might have been a race with a writer (see [`verify`]).
    pub attempts: u32,
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
                supported: _,
            } => Problem::new(
                path,
                8,
                format!(
                    "format version {found}; this build reads versions {:?}",
                    crate::record::READABLE_VERSIONS
                ),
            ),
            Error::Io { op, path, source } => Problem::new(path, 0, format!("{op}: {source}")),
            other => Problem::new(fallback, 0, DisplayChain(&other).to_string()),
        }
    }
}

/// Checks every checksum and every cross-reference of the store in `dir`,
/// read-only (no lock, no byte changed), and lists every problem with its
/// file and offset, and every note (see [`VerifyReport::notes`]).
///
/// On a store another process is writing, a check can see a moment that
/// never held on disk (a record half copied into the read, a segment freed
/// between reading the manifest and opening it). So a check that found
/// damage runs again: up to ten times in all while the manifest keeps
/// changing during a run, and up to three times in all when it did not
/// change; the last run's report is returned.
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
    let manifest_bytes = || std::fs::read(manifest_path(dir)).ok();
    let (mut changed, mut stable) = (0, 0);
    loop {
        let before = manifest_bytes();
        let mut report = verify_once(dir);
        let after = manifest_bytes();
        if before != after {
            changed += 1;
        } else {
            stable += 1;
        }
        report.attempts = changed + stable;
        if report.ok() || (before != after && changed >= 10) || (before == after && stable >= 3) {
            return report;
        }
    }
}

/// The generation open would use, given `MANIFEST`'s: the one in
/// `MANIFEST.next` if open would adopt it (a roll not yet swapped in, on an
/// open store or after a process crash), noted as repaired at open; a
/// `MANIFEST.next` open would ignore is noted too.
fn adopted_next(dir: &Path, stored: ManifestInfo, problems: &mut Vec<Problem>) -> ManifestInfo {
    let next_path = dir.join(MANIFEST_NEXT_FILE);
    if !next_path.exists() {
        return stored;
    }
    let fs: Arc<dyn FileSystem> = Arc::new(RealFs);
    let opened = crate::recovery::manifest_opened(&fs, dir).ok().flatten();
    let (chosen, note) = match opened {
        Some(m) if m.generation != stored.generation => (
            ManifestInfo::from_manifest(&m),
            format!(
                "generation {} of a roll not yet swapped in (on an open store: being \
                 written; after a crash: open adopts it and swaps it in)",
                m.generation
            ),
        ),
        _ => (
            stored,
            "not a roll open would adopt (stale, or what it seals did not survive); \
             open removes it"
                .to_owned(),
        ),
    };
    let mut p = Problem::new(&next_path, 0, note);
    p.repaired_at_open = true;
    problems.push(p);
    chosen
}

/// One run of the check.
fn verify_once(dir: &Path) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut problems = Vec::new();
    // The manifest first: the segments checked are those it names, and a
    // file a later generation added or freed is a note, not damage.
    let mpath = manifest_path(dir);
    let manifest = if mpath.exists() {
        match read_manifest(&mpath) {
            Ok(m) => Some(adopted_next(dir, m, &mut problems)),
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
    let files = match segment_files(dir) {
        Ok(files) => files,
        Err(e) => {
            report.problems.push(Problem::from_error(e, dir));
            return report;
        }
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
        let (sealed, active) = match (listed, &manifest) {
            (Some(listed), _) => listed,
            (None, Some(m)) => {
                // Dead data for this generation: report the file, not its
                // bytes (on an open store it may be written or freed now).
                let mut p = Problem::new(
                    path,
                    0,
                    format!(
                        "segment file not listed in manifest generation {} (on an open store: \
                         compaction output not yet listed, or a segment only pinned snapshots \
                         still read; after a crash: a leftover, which open removes)",
                        m.generation
                    ),
                );
                p.repaired_at_open = true;
                problems.push(p);
                continue;
            }
            // No manifest to say how far each segment's data goes: scan
            // every file whole.
            (None, None) => (None, false),
        };
        let file = match SegmentFile::read(path) {
            Ok(f) => f,
            Err(e) => {
                problems.push(Problem::from_error(e, path));
                continue;
            }
        };
        report.segments += 1;
        if let Some(reason) = file.header_problem(*id) {
            problems.push(Problem::new(path, 0, reason));
            continue;
        }
        if let Some(len) = sealed {
            if let Err(e) = check_sealed_len(dir, *id, len, file.len()) {
                problems.push(Problem::from_error(e, &mpath));
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
    let (notes, problems) = problems.into_iter().partition(|p| p.repaired_at_open);
    report.problems = problems;
    report.notes = notes;
    if let Ok(Some(status)) = crate::status::read_status(dir) {
        if status.open && status.pinned_snapshots > 0 {
            report.notes.push(Problem::new(
                dir.join(crate::status::STATUS_FILE),
                0,
                format!(
                    "the process that has the store open (pid {}) reported {} pinned snapshots, \
                     keeping {} bytes on disk only for them",
                    status.pid, status.pinned_snapshots, status.pinned_only_bytes
                ),
            ));
        }
    }
    report
}
