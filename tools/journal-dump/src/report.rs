//! What each command found, as data: the JSON shape (`--json`) and the
//! input of the text renderer. Field names are stable and documented in
//! the README; add fields, never rename or remove one.
//!
//! Builders never panic and never give up early: what cannot be read is
//! recorded as a [`ProblemOut`] and the rest is still reported.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use journalstore::inspect::{
    self, ManifestInfo, OpInfo, Problem, ScanItem, SegmentFile, SegmentHeaderInfo,
};
use journalstore::{DisplayChain, Error};
use serde::Serialize;

/// A journal id: `utf8` is the id as text when it is valid UTF-8 (else
/// null); `hex` is always the id's bytes in lower-case hex.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Id {
    pub utf8: Option<String>,
    pub hex: String,
}

impl Id {
    pub fn new(bytes: &[u8]) -> Id {
        Id {
            utf8: std::str::from_utf8(bytes).ok().map(str::to_owned),
            hex: hex(bytes),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// One thing found wrong, with its place.
#[derive(Serialize, Debug, Clone)]
pub struct ProblemOut {
    pub file: String,
    pub offset: u64,
    pub journal: Option<Id>,
    pub reason: String,
    /// `Store::open` would repair it silently (torn tail, leftover file).
    pub repaired_at_open: bool,
}

impl ProblemOut {
    pub fn new(file: &Path, offset: u64, reason: impl Into<String>) -> ProblemOut {
        ProblemOut {
            file: file.display().to_string(),
            offset,
            journal: None,
            reason: reason.into(),
            repaired_at_open: false,
        }
    }

    fn from_problem(p: &Problem) -> ProblemOut {
        ProblemOut {
            file: p.path.display().to_string(),
            offset: p.offset,
            journal: p.journal.as_deref().map(Id::new),
            reason: p.reason.clone(),
            repaired_at_open: p.repaired_at_open,
        }
    }

    /// An engine error as a problem; `fallback` names the place when the
    /// error carries none.
    pub fn from_error(e: &Error, fallback: &Path) -> ProblemOut {
        match e {
            Error::Corruption {
                path,
                offset,
                journal,
                reason,
            } => ProblemOut {
                file: if path.as_os_str().is_empty() {
                    fallback.display().to_string()
                } else {
                    path.display().to_string()
                },
                offset: *offset,
                journal: journal.as_deref().map(Id::new),
                reason: reason.clone(),
                repaired_at_open: false,
            },
            // The whole chain: an I/O error's own layer names the operation
            // and the file, its source the OS error.
            Error::UnsupportedVersion { path, .. } => {
                ProblemOut::new(path, 8, DisplayChain(e).to_string())
            }
            Error::Io { path, .. } => ProblemOut::new(path, 0, DisplayChain(e).to_string()),
            other => ProblemOut::new(fallback, 0, DisplayChain(other).to_string()),
        }
    }
}

/// Every command's output.
#[derive(Serialize, Debug)]
#[serde(untagged)]
pub enum Report {
    Summary(Summary),
    Segments(Segments),
    Manifest(Manifests),
    Journal(JournalOut),
    Verify(Verify),
    Salvage(Salvage),
    Journals(Journals),
    Transfer(Transfer),
    Index(IndexReport),
}

impl Report {
    pub fn ok(&self) -> bool {
        match self {
            Report::Summary(r) => r.ok,
            Report::Segments(r) => r.ok,
            Report::Manifest(r) => r.ok,
            Report::Journal(r) => r.ok,
            Report::Verify(r) => r.ok,
            Report::Salvage(r) => r.ok,
            Report::Journals(r) => r.ok,
            Report::Transfer(r) => r.ok,
            Report::Index(r) => r.ok,
        }
    }

    /// Whether the command failed only because what it was asked for does
    /// not exist (exit status 3): the journal of `journal`.
    pub fn not_found(&self) -> bool {
        matches!(self, Report::Journal(r) if !r.found && r.problems.len() == 1)
    }
}

// ---------------------------------------------------------------------------
// summary

#[derive(Serialize, Debug)]
pub struct Summary {
    pub command: &'static str,
    pub ok: bool,
    pub problems: Vec<ProblemOut>,
    pub dir: String,
    /// "replay" (the engine's read-only open succeeded) or "salvage_scan"
    /// (it failed; figures come from a scan of the intact records).
    pub source: &'static str,
    /// The newest segment format version among the segment headers read
    /// (the version a reader needs); `None` if no header could be read.
    /// Segment versions and the manifest's layout version are numbered
    /// apart: see `segment_versions` and `manifest_version`.
    pub format_version: Option<u32>,
    /// The manifest's layout version (format-spec section 6), if it decodes.
    pub manifest_version: Option<u32>,
    /// The distinct format versions of the segment headers read, ascending:
    /// `[1, 2]` for a store written before and after an upgrade.
    pub segment_versions: Vec<u32>,
    pub generation: Option<u64>,
    pub next_segment_id: Option<u32>,
    pub lsn_floor: Option<u64>,
    pub segments: Vec<SegmentSummary>,
    pub journals: u64,
    pub entries: u64,
    pub entry_bytes: u64,
    pub metadata_bytes: u64,
    pub oldest_lsn: Option<u64>,
    pub newest_lsn: Option<u64>,
    pub torn_tail: Option<bool>,
    /// The store's advisory `STATUS` file: what the process that has (or
    /// had) it open last reported, pinned snapshots included. Boxed: it
    /// is large next to the other reports.
    pub status: Box<StatusOut>,
}

/// The `STATUS` file as `summary` shows it. Advisory: it never makes the
/// report fail (`ok`), whatever state it is in.
#[derive(Serialize, Debug)]
pub struct StatusOut {
    /// Its path.
    pub file: String,
    /// "absent" (no file), "unreadable" (see `error`), "open" (written by
    /// an open store; `stale` says whether it is still being rewritten) or
    /// "closed" (written by `Store::close`).
    pub state: &'static str,
    pub error: Option<String>,
    pub pid: Option<u32>,
    pub written_unix_ms: Option<u64>,
    /// How long before this run it was written.
    pub age_ms: Option<u64>,
    pub interval_ms: Option<u64>,
    /// "open", but not rewritten for over three intervals: the process
    /// that wrote it died or hangs.
    pub stale: bool,
    pub writes_stopped: Option<bool>,
    pub generation: Option<u64>,
    pub lsn: Option<u64>,
    pub segments: Option<u64>,
    pub bytes_on_disk: Option<u64>,
    pub bytes_written: Option<u64>,
    pub live_bytes: Option<u64>,
    pub journals: Option<u64>,
    pub pinned_snapshots: Option<u64>,
    pub oldest_pinned_generation: Option<u64>,
    /// Age of the oldest pinned snapshot when the file was written.
    pub oldest_pinned_age_ms: Option<u64>,
    pub pinned_only_bytes: Option<u64>,
}

/// Slack on top of three intervals before an "open" status counts as
/// stale: a loaded machine can delay the status thread.
const STALE_SLACK_MS: u64 = 2000;

pub fn status(dir: &Path) -> StatusOut {
    let path = dir.join(inspect::STATUS_FILE_NAME);
    let mut out = StatusOut {
        file: path.display().to_string(),
        state: "absent",
        error: None,
        pid: None,
        written_unix_ms: None,
        age_ms: None,
        interval_ms: None,
        stale: false,
        writes_stopped: None,
        generation: None,
        lsn: None,
        segments: None,
        bytes_on_disk: None,
        bytes_written: None,
        live_bytes: None,
        journals: None,
        pinned_snapshots: None,
        oldest_pinned_generation: None,
        oldest_pinned_age_ms: None,
        pinned_only_bytes: None,
    };
    match inspect::read_status(dir) {
        Ok(None) => {}
        Err(e) => {
            out.state = "unreadable";
            out.error = Some(DisplayChain(&e).to_string());
        }
        Ok(Some(s)) => {
            let age_ms =
                u64::try_from(s.age(std::time::SystemTime::now()).as_millis()).unwrap_or(u64::MAX);
            out.state = if s.open { "open" } else { "closed" };
            out.stale = s.open
                && age_ms
                    > s.interval_ms
                        .saturating_mul(3)
                        .saturating_add(STALE_SLACK_MS);
            out.pid = Some(s.pid);
            out.written_unix_ms = Some(s.written_unix_ms);
            out.age_ms = Some(age_ms);
            out.interval_ms = Some(s.interval_ms);
            out.writes_stopped = Some(s.writes_stopped);
            out.generation = Some(s.generation);
            out.lsn = Some(s.lsn);
            out.segments = Some(s.segments);
            out.bytes_on_disk = Some(s.bytes_on_disk);
            out.bytes_written = Some(s.bytes_written);
            out.live_bytes = Some(s.live_bytes);
            out.journals = Some(s.journals);
            out.pinned_snapshots = Some(s.pinned_snapshots);
            out.oldest_pinned_generation = s.oldest_pinned_generation;
            out.oldest_pinned_age_ms = s.oldest_pinned_age_ms;
            out.pinned_only_bytes = Some(s.pinned_only_bytes);
        }
    }
    out
}

#[derive(Serialize, Debug)]
pub struct SegmentSummary {
    pub id: u32,
    pub file: String,
    /// "sealed", "active", or "unlisted" (a file the manifest does not list).
    pub state: &'static str,
    /// The file's size in bytes.
    pub size: u64,
    /// The format version in its header; `None` if the header cannot be
    /// read or fails its checks (magic, checksum).
    pub version: Option<u32>,
    /// End of its records (sealed length, or the active segment's end of
    /// data), header included.
    pub written: Option<u64>,
    pub live_bytes: Option<u64>,
    pub live_items: Option<u64>,
    /// `live_bytes / (written - 64)`: the share of record bytes still live.
    pub live_ratio: Option<f64>,
}

fn state_of(m: Option<&ManifestInfo>, id: u32) -> (&'static str, Option<u64>) {
    match m.and_then(|m| m.segment(id)) {
        Some(s) => match s.sealed_len {
            Some(len) => ("sealed", Some(len)),
            None => ("active", None),
        },
        None => ("unlisted", None),
    }
}

pub fn summary(dir: &Path) -> Report {
    let mut r = Summary {
        command: "summary",
        ok: true,
        problems: Vec::new(),
        dir: dir.display().to_string(),
        source: "replay",
        format_version: None,
        manifest_version: None,
        segment_versions: Vec::new(),
        generation: None,
        next_segment_id: None,
        lsn_floor: None,
        segments: Vec::new(),
        journals: 0,
        entries: 0,
        entry_bytes: 0,
        metadata_bytes: 0,
        oldest_lsn: None,
        newest_lsn: None,
        torn_tail: None,
        status: Box::new(status(dir)),
    };
    let files = match inspect::segment_files(dir) {
        Ok(files) => files,
        Err(e) => {
            r.problems.push(ProblemOut::from_error(&e, dir));
            r.ok = false;
            return Report::Summary(r);
        }
    };
    match inspect::open_read_only(dir) {
        Ok(store) => {
            let m = &store.manifest;
            r.manifest_version = Some(m.version);
            r.generation = Some(m.generation);
            r.next_segment_id = Some(m.next_segment_id);
            r.lsn_floor = Some(m.lsn_floor);
            r.oldest_lsn = Some(store.oldest_lsn);
            r.newest_lsn = Some(store.newest_lsn);
            r.torn_tail = Some(store.torn_tail);
            if let (true, Some(active)) = (store.torn_tail, m.segments.last()) {
                r.problems.push(ProblemOut {
                    repaired_at_open: true,
                    ..ProblemOut::new(
                        &dir.join(&active.file_name),
                        store.active_end,
                        "the active segment's data ends here and non-zero bytes follow: a torn tail (Store::open seals it off)",
                    )
                });
            }
            for s in &store.segments {
                let (state, _) = state_of(Some(m), s.id);
                let records = s.written.saturating_sub(64);
                r.segments.push(SegmentSummary {
                    id: s.id,
                    file: inspect::segment_file_name_of(s.id),
                    state,
                    size: s.capacity,
                    version: header_version(&dir.join(inspect::segment_file_name_of(s.id))),
                    written: Some(s.written),
                    live_bytes: Some(s.live_bytes),
                    live_items: Some(s.live_items),
                    live_ratio: (records > 0).then(|| s.live_bytes as f64 / records as f64),
                });
            }
            for (id, path) in files.iter().filter(|(id, _)| m.segment(*id).is_none()) {
                r.segments.push(SegmentSummary {
                    id: *id,
                    file: inspect::segment_file_name_of(*id),
                    state: "unlisted",
                    size: std::fs::metadata(path).map_or(0, |md| md.len()),
                    version: header_version(path),
                    written: None,
                    live_bytes: None,
                    live_items: None,
                    live_ratio: None,
                });
            }
            let snap = &store.snapshot;
            r.journals = snap.journal_count() as u64;
            for id in snap.journal_ids() {
                let Some(j) = snap.journal(id) else { continue };
                r.entries += j.len();
                match j.metadata() {
                    Ok(m) => r.metadata_bytes += m.map_or(0, <[u8]>::len) as u64,
                    Err(e) => r.problems.push(ProblemOut::from_error(&e, dir)),
                }
                for item in j.entries(..) {
                    match item {
                        Ok((_, bytes)) => r.entry_bytes += bytes.len() as u64,
                        Err(e) => r.problems.push(ProblemOut::from_error(&e, dir)),
                    }
                }
            }
        }
        Err(e) => {
            // Print what can be read: the manifest, the files, and the
            // state an intact-record scan rebuilds.
            r.source = "salvage_scan";
            r.problems.push(ProblemOut::from_error(&e, dir));
            let manifest = inspect::read_manifest(&inspect::manifest_path(dir)).ok();
            if let Some(m) = &manifest {
                r.manifest_version = Some(m.version);
                r.generation = Some(m.generation);
                r.next_segment_id = Some(m.next_segment_id);
                r.lsn_floor = Some(m.lsn_floor);
            }
            let (mut oldest, mut newest) = (None::<u64>, None::<u64>);
            // Manifest order (the log's order) first, then unlisted files.
            let mut ordered: Vec<&(u32, PathBuf)> = Vec::new();
            for s in manifest.iter().flat_map(|m| &m.segments) {
                ordered.extend(files.iter().find(|(id, _)| *id == s.id));
            }
            for f in &files {
                if !ordered.iter().any(|(id, _)| *id == f.0) {
                    ordered.push(f);
                }
            }
            for (id, path) in ordered {
                let (state, sealed) = state_of(manifest.as_ref(), *id);
                // A sealed segment's data ends where the manifest says; an
                // active one's where its intact records end.
                let mut written = sealed;
                let mut version = None;
                if let Ok(file) = SegmentFile::read(path) {
                    version = file.header().ok().map(|h| h.version);
                    for item in file.scan(0, sealed, true) {
                        match item {
                            ScanItem::Record { lsn, .. } => {
                                oldest = Some(oldest.map_or(lsn, |o| o.min(lsn)));
                                newest = Some(newest.map_or(lsn, |n| n.max(lsn)));
                            }
                            ScanItem::Damaged { offset, .. }
                            | ScanItem::SyncMark { offset, .. }
                            | ScanItem::End { offset } => written = written.or(Some(offset)),
                        }
                    }
                }
                r.segments.push(SegmentSummary {
                    id: *id,
                    file: inspect::segment_file_name_of(*id),
                    state,
                    size: std::fs::metadata(path).map_or(0, |md| md.len()),
                    version,
                    written,
                    live_bytes: None,
                    live_items: None,
                    live_ratio: None,
                });
            }
            r.oldest_lsn = oldest;
            r.newest_lsn = newest;
            match inspect::Salvaged::scan(dir) {
                Ok(s) => {
                    r.journals = s.report.journals;
                    for id in s.journal_ids() {
                        if let Some(j) = s.journal(&id) {
                            r.entries += j.entries.len() as u64;
                            r.entry_bytes += j.entries.iter().map(|e| e.len() as u64).sum::<u64>();
                            r.metadata_bytes += j.metadata.as_ref().map_or(0, |m| m.len() as u64);
                        }
                    }
                }
                Err(e) => r.problems.push(ProblemOut::from_error(&e, dir)),
            }
        }
    }
    let mut versions: Vec<u32> = r.segments.iter().filter_map(|s| s.version).collect();
    versions.sort_unstable();
    versions.dedup();
    r.format_version = versions.last().copied();
    r.segment_versions = versions;
    r.ok = r.problems.is_empty();
    Report::Summary(r)
}

/// The format version in the header of the segment file at `path`, read
/// from its first 64 bytes only (a segment may be gigabytes); `None` if
/// they cannot be read or are not a header (magic, checksum).
fn header_version(path: &Path) -> Option<u32> {
    use std::io::Read;
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(path)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .ok()?;
    let file = SegmentFile::from_bytes(path, head);
    file.header().ok().map(|h| h.version)
}

// ---------------------------------------------------------------------------
// segments

#[derive(Serialize, Debug)]
pub struct Segments {
    pub command: &'static str,
    pub ok: bool,
    pub problems: Vec<ProblemOut>,
    pub segments: Vec<SegmentOut>,
}

#[derive(Serialize, Debug)]
pub struct SegmentOut {
    pub file: String,
    /// The id in the file name, if it is a segment file name.
    pub id: Option<u32>,
    /// "sealed", "active", "unlisted", or "file" (read on its own).
    pub state: &'static str,
    pub sealed_len: Option<u64>,
    pub size: u64,
    pub header: Option<HeaderOut>,
    /// Why the header cannot be used, if so.
    pub header_error: Option<String>,
    /// Where the scan started and the offset it could not pass (the sealed
    /// length, or the file's size).
    pub scan_from: u64,
    pub scan_limit: u64,
    pub items: Vec<ItemOut>,
    /// Whether `--limit` cut the list of items.
    pub truncated: bool,
    /// First non-zero byte after the end of the data of an active or lone
    /// segment (a torn tail), if any.
    pub tail_nonzero_at: Option<u64>,
}

#[derive(Serialize, Debug)]
pub struct HeaderOut {
    pub version: u32,
    pub header_len: u32,
    pub segment_id: u64,
    pub capacity: u64,
    pub base_lsn: u64,
    pub crc: u32,
}

impl HeaderOut {
    fn new(h: &SegmentHeaderInfo) -> HeaderOut {
        HeaderOut {
            version: h.version,
            header_len: h.header_len,
            segment_id: h.segment_id,
            capacity: h.capacity,
            base_lsn: h.base_lsn,
            crc: h.crc,
        }
    }
}

#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ItemOut {
    Record {
        offset: u64,
        /// Always "batch" (the only record kind).
        kind: &'static str,
        lsn: u64,
        payload_len: u32,
        synced_through: u32,
        op_count: u32,
        header_crc: u32,
        payload_crc: u32,
        /// "ok" when every value CRC matches and every operation decodes
        /// (the record checksums always match for a record).
        checksums: &'static str,
        ops: Vec<OpOut>,
        op_error: Option<OpError>,
    },
    Damaged {
        offset: u64,
        reason: String,
    },
    /// The writer's proof that the bytes below `synced_through` were
    /// durable; the data ends here.
    SyncMark {
        offset: u64,
        lsn: u64,
        synced_through: u32,
    },
    End {
        offset: u64,
    },
}

#[derive(Serialize, Debug)]
pub struct OpError {
    pub offset: u64,
    pub reason: String,
}

#[derive(Serialize, Debug)]
pub struct OpOut {
    pub offset: u64,
    pub kind: &'static str,
    pub journal: Id,
    /// The index the operation names (see the README), if any.
    pub index: Option<u64>,
    pub first: u64,
    pub end: u64,
    pub value_len: u32,
    pub value_crc: u32,
    pub value_crc_ok: bool,
}

impl OpOut {
    fn new(op: &OpInfo) -> OpOut {
        OpOut {
            offset: op.offset,
            kind: op.kind,
            journal: Id::new(&op.journal),
            index: op.index(),
            first: op.first,
            end: op.end,
            value_len: op.value_len,
            value_crc: op.value_crc,
            value_crc_ok: op.value_crc_ok,
        }
    }
}

/// Which records `segments` and `segment` show: those with an LSN in
/// `lsns` and, with `journal`, an operation on that journal (then only
/// those operations are shown). Damaged places and the end of the data are
/// always shown, and every record is still checked.
#[derive(Clone, Debug)]
pub struct Filter {
    pub journal: Option<Vec<u8>>,
    pub lsns: Range<u64>,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            journal: None,
            lsns: 0..u64::MAX,
        }
    }
}

/// Reads and scans one segment file; problems go to `problems`.
#[allow(clippy::too_many_arguments)]
fn segment_out(
    path: &Path,
    id: Option<u32>,
    state: &'static str,
    sealed_len: Option<u64>,
    from: Option<u64>,
    limit: Option<usize>,
    filter: &Filter,
    problems: &mut Vec<ProblemOut>,
) -> SegmentOut {
    let mut out = SegmentOut {
        file: path.display().to_string(),
        id,
        state,
        sealed_len,
        size: 0,
        header: None,
        header_error: None,
        scan_from: 0,
        scan_limit: 0,
        items: Vec::new(),
        truncated: false,
        tail_nonzero_at: None,
    };
    let file = match SegmentFile::read(path) {
        Ok(f) => f,
        Err(e) => {
            problems.push(ProblemOut::from_error(&e, path));
            return out;
        }
    };
    out.size = file.len();
    match file.header() {
        Ok(h) => out.header = Some(HeaderOut::new(h)),
        Err(reason) => out.header_error = Some(reason.to_owned()),
    }
    let header_problem = match id {
        Some(id) => file.header_problem(id),
        None => file.header().err().map(str::to_owned),
    };
    if let Some(reason) = header_problem {
        problems.push(ProblemOut::new(path, 0, reason));
    }
    let scan_limit = sealed_len.map_or(file.len(), |l| l.min(file.len()));
    out.scan_from = from
        .unwrap_or(0)
        .max(64)
        .min(scan_limit.max(64))
        .next_multiple_of(8);
    out.scan_limit = scan_limit;
    let mut end_of_data = None;
    let mut mark_at = None;
    for (i, item) in file
        .scan(out.scan_from, Some(scan_limit), true)
        .into_iter()
        .enumerate()
    {
        // `--from` may point into the middle of a record: the dump then
        // starts at the next valid record, and the bytes skipped are not
        // damage.
        if i == 0 && out.scan_from > 64 && matches!(item, ScanItem::Damaged { .. }) {
            continue;
        }
        let shown = match &item {
            ScanItem::Record { lsn, ops, .. } => {
                filter.lsns.contains(lsn)
                    && filter
                        .journal
                        .as_ref()
                        .is_none_or(|j| ops.iter().any(|op| &op.journal == j))
            }
            _ => true,
        };
        if matches!(item, ScanItem::End { .. }) {
            // Always shown: where the data ends.
        } else if !shown {
            // Still checked below, not listed.
        } else if limit.is_some_and(|n| out.items.len() >= n) {
            out.truncated = true;
            continue;
        }
        out.items.push(match item {
            ScanItem::Record {
                offset,
                lsn,
                payload_len,
                synced_through,
                op_count,
                header_crc,
                payload_crc,
                ops,
                op_error,
            } => {
                for op in ops.iter().filter(|op| !op.value_crc_ok) {
                    problems.push(ProblemOut {
                        journal: Some(Id::new(&op.journal)),
                        ..ProblemOut::new(path, op.offset, "value checksum mismatch")
                    });
                }
                if let Some((at, reason)) = &op_error {
                    problems.push(ProblemOut::new(
                        path,
                        *at,
                        format!("undecodable operation: {reason}"),
                    ));
                } else if ops.len() as u64 != u64::from(op_count) {
                    problems.push(ProblemOut::new(
                        path,
                        offset,
                        format!(
                            "record holds {} operations, its header says {op_count}",
                            ops.len()
                        ),
                    ));
                }
                let intact = op_error.is_none()
                    && ops.len() as u64 == u64::from(op_count)
                    && ops.iter().all(|op| op.value_crc_ok);
                if !shown {
                    continue;
                }
                let ops: Vec<OpInfo> = match &filter.journal {
                    Some(j) => ops.into_iter().filter(|op| &op.journal == j).collect(),
                    None => ops,
                };
                ItemOut::Record {
                    offset,
                    kind: "batch",
                    lsn,
                    payload_len,
                    synced_through,
                    op_count,
                    header_crc,
                    payload_crc,
                    checksums: if intact { "ok" } else { "bad" },
                    ops: ops.iter().map(OpOut::new).collect(),
                    op_error: op_error.map(|(offset, reason)| OpError { offset, reason }),
                }
            }
            ScanItem::Damaged { offset, reason } => {
                problems.push(ProblemOut::new(path, offset, reason.clone()));
                ItemOut::Damaged { offset, reason }
            }
            ScanItem::SyncMark {
                offset,
                lsn,
                synced_through,
            } => {
                mark_at = Some(offset);
                ItemOut::SyncMark {
                    offset,
                    lsn,
                    synced_through,
                }
            }
            ScanItem::End { offset } => {
                end_of_data = Some(offset);
                if let Some(len) = sealed_len {
                    if offset != len && offset >= out.scan_from {
                        problems.push(ProblemOut::new(
                            path,
                            offset,
                            format!(
                                "sealed segment's records end at {offset}, the manifest says {len}"
                            ),
                        ));
                    }
                }
                ItemOut::End { offset }
            }
        });
    }
    if sealed_len.is_none() {
        if let Some(end) = end_of_data {
            // The bytes of a sync mark at the end of the data are not a tail.
            let zeros_from = if mark_at == Some(end) { end + 32 } else { end };
            out.tail_nonzero_at = file.first_nonzero(zeros_from, None);
            let damaged = out
                .items
                .iter()
                .any(|i| matches!(i, ItemOut::Damaged { .. }));
            if let (Some(at), false) = (out.tail_nonzero_at, damaged) {
                problems.push(ProblemOut::new(
                    path,
                    at,
                    format!("non-zero bytes after the end of the data (at {end}): a torn tail"),
                ));
            }
        }
    }
    out
}

pub fn segments_of_dir(
    dir: &Path,
    from: Option<u64>,
    limit: Option<usize>,
    filter: &Filter,
) -> Report {
    let mut problems = Vec::new();
    let mut segments = Vec::new();
    let manifest = match inspect::read_manifest(&inspect::manifest_path(dir)) {
        Ok(m) => Some(m),
        Err(e) => {
            problems.push(ProblemOut::from_error(&e, &inspect::manifest_path(dir)));
            None
        }
    };
    let files = inspect::segment_files(dir).unwrap_or_else(|e| {
        problems.push(ProblemOut::from_error(&e, dir));
        Vec::new()
    });
    let on_disk: HashSet<u32> = files.iter().map(|(id, _)| *id).collect();
    // Manifest order first (the order of the log), then unlisted files.
    let mut order: Vec<(u32, PathBuf)> = Vec::new();
    if let Some(m) = &manifest {
        for s in &m.segments {
            let path = dir.join(&s.file_name);
            if on_disk.contains(&s.id) {
                order.push((s.id, path));
            } else {
                problems.push(ProblemOut::new(
                    &path,
                    0,
                    "segment listed in the manifest is missing",
                ));
            }
        }
    }
    for (id, path) in &files {
        if !order.iter().any(|(o, _)| o == id) {
            order.push((*id, path.clone()));
        }
    }
    for (id, path) in order {
        let (state, sealed) = match &manifest {
            Some(m) => state_of(Some(m), id),
            None => ("file", None),
        };
        segments.push(segment_out(
            &path,
            Some(id),
            state,
            sealed,
            from,
            limit,
            filter,
            &mut problems,
        ));
    }
    Report::Segments(Segments {
        command: "segments",
        ok: problems.is_empty(),
        problems,
        segments,
    })
}

pub fn segment_file(
    path: &Path,
    from: Option<u64>,
    limit: Option<usize>,
    filter: &Filter,
) -> Report {
    let mut problems = Vec::new();
    let name = path.file_name().and_then(|n| n.to_str());
    let id = name.and_then(inspect::segment_id_from_file_name);
    // A file inside a store is read as the manifest describes it (a sealed
    // segment only up to its sealed length).
    let manifest = path
        .parent()
        .map(|dir| {
            inspect::manifest_path(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        })
        .filter(|m| m.is_file())
        .and_then(|m| inspect::read_manifest(&m).ok());
    let (state, sealed) = match (id, &manifest) {
        (Some(id), Some(m)) if m.segment(id).is_some() => state_of(Some(m), id),
        _ => ("file", None),
    };
    let segment = segment_out(path, id, state, sealed, from, limit, filter, &mut problems);
    Report::Segments(Segments {
        command: "segment",
        ok: problems.is_empty(),
        problems,
        segments: vec![segment],
    })
}

// ---------------------------------------------------------------------------
// manifest

#[derive(Serialize, Debug)]
pub struct Manifests {
    pub command: &'static str,
    pub ok: bool,
    pub problems: Vec<ProblemOut>,
    pub manifests: Vec<ManifestOut>,
}

#[derive(Serialize, Debug)]
pub struct ManifestOut {
    pub file: String,
    /// "current" (`MANIFEST`), "pending" (`MANIFEST.tmp`: a swap that did
    /// not finish; the engine never reads it) or "file" (given directly).
    pub role: &'static str,
    pub error: Option<String>,
    pub manifest: Option<ManifestBody>,
}

#[derive(Serialize, Debug)]
pub struct ManifestBody {
    pub version: u32,
    pub generation: u64,
    pub next_segment_id: u32,
    pub lsn_floor: u64,
    pub segments: Vec<ManifestSegmentOut>,
}

#[derive(Serialize, Debug)]
pub struct ManifestSegmentOut {
    pub id: u32,
    pub file: String,
    /// Null for the active segment.
    pub sealed_len: Option<u64>,
    pub active: bool,
}

fn manifest_out(path: &Path, role: &'static str, problems: &mut Vec<ProblemOut>) -> ManifestOut {
    match inspect::read_manifest(path) {
        Ok(m) => ManifestOut {
            file: path.display().to_string(),
            role,
            error: None,
            manifest: Some(ManifestBody {
                version: m.version,
                generation: m.generation,
                next_segment_id: m.next_segment_id,
                lsn_floor: m.lsn_floor,
                segments: m
                    .segments
                    .iter()
                    .map(|s| ManifestSegmentOut {
                        id: s.id,
                        file: s.file_name.clone(),
                        sealed_len: s.sealed_len,
                        active: s.sealed_len.is_none(),
                    })
                    .collect(),
            }),
        },
        Err(e) => {
            let p = ProblemOut::from_error(&e, path);
            let reason = format!("{} (at offset {})", p.reason, p.offset);
            // A torn `MANIFEST.tmp` is a normal leftover: open removes it.
            problems.push(ProblemOut {
                repaired_at_open: role == "pending",
                ..p
            });
            ManifestOut {
                file: path.display().to_string(),
                role,
                error: Some(reason),
                manifest: None,
            }
        }
    }
}

pub fn manifest(path: &Path) -> Report {
    let mut problems = Vec::new();
    let mut manifests = Vec::new();
    if path.is_dir() {
        manifests.push(manifest_out(
            &inspect::manifest_path(path),
            "current",
            &mut problems,
        ));
        let tmp = path.join(inspect::MANIFEST_TMP_FILE_NAME);
        if tmp.exists() {
            manifests.push(manifest_out(&tmp, "pending", &mut problems));
        }
    } else {
        manifests.push(manifest_out(path, "file", &mut problems));
    }
    Report::Manifest(Manifests {
        command: "manifest",
        ok: problems.is_empty(),
        problems,
        manifests,
    })
}

// ---------------------------------------------------------------------------
// journal

/// How values are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 text when the value is valid UTF-8, else hex.
    Auto,
    /// Always hex.
    Hex,
    /// Always text, invalid bytes replaced by U+FFFD.
    Utf8,
}

#[derive(Serialize, Debug)]
pub struct ValueOut {
    pub len: u64,
    /// "utf8" or "hex": how `value` is written.
    pub encoding: &'static str,
    pub value: String,
}

impl ValueOut {
    fn new(bytes: &[u8], encoding: Encoding) -> ValueOut {
        let (encoding, value) = match (encoding, std::str::from_utf8(bytes)) {
            (Encoding::Hex, _) => ("hex", hex(bytes)),
            (_, Ok(s)) => ("utf8", s.to_owned()),
            (Encoding::Utf8, Err(_)) => ("utf8", String::from_utf8_lossy(bytes).into_owned()),
            (Encoding::Auto, Err(_)) => ("hex", hex(bytes)),
        };
        ValueOut {
            len: bytes.len() as u64,
            encoding,
            value,
        }
    }
}

#[derive(Serialize, Debug)]
pub struct EntryOut {
    pub index: u64,
    /// Null when the entry could not be read (see `error`).
    pub value: Option<ValueOut>,
    pub error: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct JournalOut {
    pub command: &'static str,
    pub ok: bool,
    pub problems: Vec<ProblemOut>,
    pub dir: String,
    pub journal: Id,
    /// "replay" or "salvage_scan" (the store does not open; the journal as
    /// a scan of the intact records rebuilds it).
    pub source: &'static str,
    pub found: bool,
    pub first_index: Option<u64>,
    pub end_index: Option<u64>,
    pub len: Option<u64>,
    /// `None` when the journal has no metadata (never set, or removed by
    /// `clear_metadata`) and when it could not be read (`metadata_error`);
    /// metadata set to an empty value is `Some`, of length 0.
    pub metadata: Option<ValueOut>,
    /// Why the metadata could not be read, if it could not.
    pub metadata_error: Option<String>,
    /// The index range asked for (`--range`), end exclusive.
    pub range_start: u64,
    pub range_end: u64,
    pub entries: Vec<EntryOut>,
    /// Text only: `--hex` asks for hexdumps.
    #[serde(skip)]
    pub hexdump: bool,
}

pub fn journal(dir: &Path, id: &[u8], encoding: Encoding, range: Range<u64>) -> Report {
    let mut r = JournalOut {
        command: "journal",
        ok: true,
        problems: Vec::new(),
        dir: dir.display().to_string(),
        journal: Id::new(id),
        source: "replay",
        found: false,
        first_index: None,
        end_index: None,
        len: None,
        metadata: None,
        metadata_error: None,
        range_start: range.start,
        range_end: range.end,
        entries: Vec::new(),
        hexdump: encoding == Encoding::Hex,
    };
    match inspect::open_read_only(dir) {
        Ok(store) => {
            if let Some(j) = store.snapshot.journal(id) {
                r.found = true;
                r.first_index = Some(j.first_index());
                r.end_index = Some(j.end_index());
                r.len = Some(j.len());
                match j.metadata() {
                    Ok(m) => r.metadata = m.map(|m| ValueOut::new(m, encoding)),
                    Err(e) => {
                        let p = ProblemOut::from_error(&e, dir);
                        r.metadata_error = Some(p.reason.clone());
                        r.problems.push(p);
                    }
                }
                let indexes = j.first_index().max(range.start)..;
                for (index, item) in indexes.zip(j.entries(range.clone())) {
                    r.entries.push(match item {
                        Ok((index, bytes)) => EntryOut {
                            index,
                            value: Some(ValueOut::new(bytes, encoding)),
                            error: None,
                        },
                        Err(e) => {
                            let p = ProblemOut::from_error(&e, dir);
                            let error = Some(p.reason.clone());
                            r.problems.push(p);
                            EntryOut {
                                index,
                                value: None,
                                error,
                            }
                        }
                    });
                }
            }
        }
        Err(e) => {
            r.source = "salvage_scan";
            r.problems.push(ProblemOut::from_error(&e, dir));
            match inspect::Salvaged::scan(dir) {
                Ok(s) => {
                    if let Some(j) = s.journal(id) {
                        r.found = true;
                        r.first_index = Some(j.first);
                        r.end_index = Some(j.end);
                        r.len = Some(j.end - j.first);
                        r.metadata = j.metadata.as_deref().map(|m| ValueOut::new(m, encoding));
                        if j.metadata_lost {
                            let reason = "the metadata value fails its checksum".to_owned();
                            r.metadata_error = Some(reason.clone());
                            r.problems.push(ProblemOut::new(dir, 0, reason));
                        }
                        for (i, bytes) in j.entries.iter().enumerate() {
                            let index = j.first + i as u64;
                            if range.contains(&index) {
                                r.entries.push(EntryOut {
                                    index,
                                    value: Some(ValueOut::new(bytes, encoding)),
                                    error: None,
                                });
                            }
                        }
                        let kept = j.first + j.entries.len() as u64;
                        if kept < j.end && kept < range.end {
                            r.problems.push(ProblemOut::new(
                                dir,
                                0,
                                format!("entries {kept}..{} could not be recovered", j.end),
                            ));
                        }
                    }
                }
                Err(e) => r.problems.push(ProblemOut::from_error(&e, dir)),
            }
        }
    }
    if !r.found {
        r.problems.push(ProblemOut::new(
            dir,
            0,
            format!("no journal {}", journalstore::DisplayId(id)),
        ));
    }
    r.ok = r.problems.is_empty();
    Report::Journal(r)
}

// ---------------------------------------------------------------------------
// verify

#[derive(Serialize, Debug)]
pub struct Verify {
    pub command: &'static str,
    pub ok: bool,
    pub problems: Vec<ProblemOut>,
    pub dir: String,
    pub generation: Option<u64>,
    pub segments: u64,
    pub records: u64,
    pub ops: u64,
    pub journals: u64,
    pub values: u64,
    /// Not damage: torn tail, leftovers, segments of another manifest
    /// generation, pinned snapshots (Problem shape).
    pub notes: Vec<ProblemOut>,
    /// Runs of the check (more than one when damage was checked again).
    pub attempts: u32,
}

pub fn verify(dir: &Path) -> Report {
    let v = inspect::verify(dir);
    let mut notes: Vec<ProblemOut> = v.notes.iter().map(ProblemOut::from_problem).collect();
    notes.extend(index_checkpoint_notes(dir, v.manifest.as_ref()));
    Report::Verify(Verify {
        command: "verify",
        ok: v.ok(),
        problems: v.problems.iter().map(ProblemOut::from_problem).collect(),
        dir: dir.display().to_string(),
        generation: v.manifest.as_ref().map(|m| m.generation),
        segments: v.segments,
        records: v.records,
        ops: v.ops,
        journals: v.journals,
        values: v.values,
        notes,
        attempts: v.attempts,
    })
}

/// The notes `verify` gives about index checkpoints (format-spec 13):
/// one that does not decode, and one the current manifest does not
/// continue. Neither is damage: open ignores such a file and replays the
/// whole log, so the store's data is not at stake.
fn index_checkpoint_notes(dir: &Path, manifest: Option<&ManifestInfo>) -> Vec<ProblemOut> {
    let mut notes = Vec::new();
    for cp in index_checkpoints(dir, manifest).checkpoints {
        let path = dir.join(&cp.file);
        if let Some(e) = &cp.error {
            let mut note = ProblemOut::new(&path, cp.error_offset.unwrap_or(0), "");
            note.reason = format!(
                "index checkpoint unusable (open ignores it and replays the whole log): {e}"
            );
            notes.push(note);
        } else if cp.continued == Some(false) {
            notes.push(ProblemOut::new(
                &path,
                0,
                format!(
                    "stale index checkpoint: the manifest (generation {}) does not continue it, so open ignores it and replays the whole log",
                    manifest.map_or(0, |m| m.generation)
                ),
            ));
        }
    }
    notes
}

// ---------------------------------------------------------------------------
// index

/// `index DIR`: the index checkpoint files of a store.
#[derive(Serialize, Debug)]
pub struct IndexReport {
    pub command: &'static str,
    pub ok: bool,
    pub problems: Vec<ProblemOut>,
    pub dir: String,
    /// The current manifest's generation; `None` if it does not decode.
    pub generation: Option<u64>,
    /// Newest generation first, as open tries them.
    pub checkpoints: Vec<IndexCheckpointOut>,
}

/// One index checkpoint file.
#[derive(Serialize, Debug)]
pub struct IndexCheckpointOut {
    /// Its file name in the store directory.
    pub file: String,
    /// The generation its file name gives.
    pub generation: u64,
    pub last_lsn: Option<u64>,
    pub active_end: Option<u64>,
    /// Its segments in manifest order (the last is its active one).
    pub segments: Option<Vec<IndexSegmentOut>>,
    pub journals: Option<u64>,
    pub entries: Option<u64>,
    /// Whether the current manifest continues it (open's rule); `None` when
    /// it does not decode or the manifest does not.
    pub continued: Option<bool>,
    /// Why it does not decode, if it does not (open then ignores it).
    pub error: Option<String>,
    /// The offset `error` names.
    #[serde(skip)]
    pub error_offset: Option<u64>,
}

/// A segment as an index checkpoint lists it.
#[derive(Serialize, Debug)]
pub struct IndexSegmentOut {
    pub id: u32,
    /// `None` for its active segment.
    pub sealed_len: Option<u64>,
}

/// The generation in `name` if it is an index checkpoint's file name: the
/// engine's own spelling of that generation, and no other.
fn index_checkpoint_generation(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("index-")?.strip_suffix(".jidx")?;
    let generation = u64::from_str_radix(hex, 16).ok()?;
    (inspect::index_checkpoint_file_name(generation) == name).then_some(generation)
}

/// Every index checkpoint file in `dir`, newest first, decoded and checked
/// against `manifest`. A directory that cannot be listed is the one
/// problem; a file that does not decode is described, not a problem.
fn index_checkpoints(dir: &Path, manifest: Option<&ManifestInfo>) -> IndexReport {
    let mut problems = Vec::new();
    let mut found: Vec<(u64, String)> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                Some((index_checkpoint_generation(&name)?, name))
            })
            .collect(),
        Err(e) => {
            problems.push(ProblemOut::new(dir, 0, format!("cannot list: {e}")));
            Vec::new()
        }
    };
    found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    let checkpoints = found
        .into_iter()
        .map(|(generation, file)| {
            let path = dir.join(&file);
            let mut out = IndexCheckpointOut {
                file,
                generation,
                last_lsn: None,
                active_end: None,
                segments: None,
                journals: None,
                entries: None,
                continued: None,
                error: None,
                error_offset: None,
            };
            let decoded = std::fs::read(&path)
                .map_err(|e| (0, format!("cannot read: {e}")))
                .and_then(|bytes| {
                    inspect::decode_index_checkpoint(&bytes, &path).map_err(|e| {
                        let p = ProblemOut::from_error(&e, &path);
                        (p.offset, p.reason)
                    })
                })
                .and_then(|info| {
                    if info.generation == generation {
                        Ok(info)
                    } else {
                        let reason = format!(
                            "its header names generation {}, its file name {generation}",
                            info.generation
                        );
                        Err((16, reason))
                    }
                });
            match decoded {
                Ok(info) => {
                    out.last_lsn = Some(info.last_lsn);
                    out.active_end = Some(info.active_end);
                    out.segments = Some(
                        info.segments
                            .iter()
                            .map(|&(id, sealed_len)| IndexSegmentOut { id, sealed_len })
                            .collect(),
                    );
                    out.journals = Some(info.journals);
                    out.entries = Some(info.entries);
                    out.continued = manifest.map(|m| info.continued_by(m));
                }
                Err((offset, reason)) => {
                    out.error = Some(reason);
                    out.error_offset = Some(offset);
                }
            }
            out
        })
        .collect();
    IndexReport {
        command: "index",
        ok: problems.is_empty(),
        problems,
        dir: dir.display().to_string(),
        generation: manifest.map(|m| m.generation),
        checkpoints,
    }
}

/// `index DIR`. The manifest must decode (else a problem: `continued` is
/// unknown); a checkpoint file that does not decode is shown with its
/// `error` but is no problem: open ignores it.
pub fn index(dir: &Path) -> Report {
    let manifest = inspect::read_manifest(&inspect::manifest_path(dir));
    let mut report = index_checkpoints(dir, manifest.as_ref().ok());
    if let Err(e) = &manifest {
        report
            .problems
            .insert(0, ProblemOut::from_error(e, &inspect::manifest_path(dir)));
        report.ok = false;
    }
    Report::Index(report)
}

// ---------------------------------------------------------------------------
// salvage

#[derive(Serialize, Debug)]
pub struct Salvage {
    pub command: &'static str,
    pub ok: bool,
    /// Damaged places skipped (and any error that stopped the salvage).
    pub problems: Vec<ProblemOut>,
    pub dir: String,
    pub out: String,
    /// Whether a store was written to `out`.
    pub written: bool,
    /// "keep" or "drop": what was done with suspect journals.
    pub suspect_policy: &'static str,
    pub records: u64,
    pub journals: u64,
    pub entries: u64,
    /// Why the manifest could not be used (every file was read whole).
    pub manifest_error: Option<String>,
    pub torn: Vec<Place>,
    pub unlisted: Vec<String>,
    /// Listed segment files that are missing or unreadable.
    pub missing: Vec<String>,
    pub lost: Vec<Lost>,
    /// Every place that could not be read, with the LSNs it may have held.
    pub lost_ranges: Vec<LostRangeOut>,
    /// Some lost batch's journals are unknown: any journal may differ.
    pub all_suspect: bool,
    /// Journals whose salvaged state may differ from the last good state.
    pub suspect: Vec<SuspectOut>,
}

#[derive(Serialize, Debug)]
pub struct Place {
    pub file: String,
    pub offset: u64,
}

#[derive(Serialize, Debug)]
pub struct Lost {
    pub journal: Id,
    pub from_index: u64,
    pub count: u64,
}

#[derive(Serialize, Debug)]
pub struct LostRangeOut {
    pub file: String,
    /// Null for a whole file (missing, unreadable header).
    pub offset: Option<u64>,
    pub reason: String,
    /// Inclusive bounds of the LSNs the lost bytes may hold; null when
    /// nothing bounds them on that side.
    pub first_lsn: Option<u64>,
    pub last_lsn: Option<u64>,
    /// The journals the lost batch touched, null when unknown.
    pub journals: Option<Vec<Id>>,
}

#[derive(Serialize, Debug)]
pub struct SuspectOut {
    pub journal: Id,
    pub reasons: Vec<String>,
    /// Left out of the new store (`--suspect drop`).
    pub dropped: bool,
}

/// Whether `inner` is `outer` or inside it (both canonicalized as far as
/// they exist).
fn is_within(inner: &Path, outer: &Path) -> bool {
    let outer = outer.canonicalize().unwrap_or_else(|_| outer.to_owned());
    // `inner` may not exist yet: canonicalize its nearest existing ancestor.
    let mut existing = inner.to_owned();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                existing = if parent.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    parent.to_owned()
                };
            }
            _ => break,
        }
    }
    let mut full = existing.canonicalize().unwrap_or(existing);
    full.extend(rest.iter().rev());
    full.starts_with(outer)
}

pub fn salvage(
    dir: &Path,
    out: &Path,
    policy: inspect::SuspectPolicy,
    progress: &mut dyn FnMut(inspect::SalvageProgress),
) -> Report {
    let mut r = Salvage {
        command: "salvage",
        ok: false,
        problems: Vec::new(),
        dir: dir.display().to_string(),
        out: out.display().to_string(),
        written: false,
        suspect_policy: match policy {
            inspect::SuspectPolicy::Drop => "drop",
            _ => "keep",
        },
        records: 0,
        journals: 0,
        entries: 0,
        manifest_error: None,
        torn: Vec::new(),
        unlisted: Vec::new(),
        missing: Vec::new(),
        lost: Vec::new(),
        lost_ranges: Vec::new(),
        all_suspect: false,
        suspect: Vec::new(),
    };
    if !dir.is_dir() {
        r.problems.push(ProblemOut::new(
            dir,
            0,
            "not a directory: nothing to salvage",
        ));
        return Report::Salvage(r);
    }
    if is_within(out, dir) {
        r.problems.push(ProblemOut::new(
            out,
            0,
            "the output directory must be outside the store directory (which salvage leaves untouched)",
        ));
        return Report::Salvage(r);
    }
    let mut options = inspect::SalvageOptions::default();
    options.suspect = policy;
    match inspect::salvage_with(dir, out, options, progress) {
        Ok(s) => {
            r.written = true;
            r.records = s.records;
            r.journals = s.journals;
            r.entries = s.entries;
            r.manifest_error = s.manifest_error.clone();
            if let Some(e) = &s.manifest_error {
                r.problems.push(ProblemOut::new(
                    &inspect::manifest_path(dir),
                    0,
                    format!("manifest unusable ({e}): every segment file was read whole"),
                ));
            }
            r.problems.extend(
                s.damaged
                    .iter()
                    .map(|(path, offset, reason)| ProblemOut::new(path, *offset, reason.clone())),
            );
            r.problems.extend(
                s.missing
                    .iter()
                    .map(|path| ProblemOut::new(path, 0, "segment file missing or unreadable")),
            );
            r.torn = s
                .torn
                .iter()
                .map(|(path, offset)| Place {
                    file: path.display().to_string(),
                    offset: *offset,
                })
                .collect();
            r.unlisted = s.unlisted.iter().map(|p| p.display().to_string()).collect();
            r.missing = s.missing.iter().map(|p| p.display().to_string()).collect();
            r.lost = s
                .lost
                .iter()
                .map(|(id, from_index, count)| Lost {
                    journal: Id::new(id),
                    from_index: *from_index,
                    count: *count,
                })
                .collect();
            r.lost_ranges = s
                .lost_ranges
                .iter()
                .map(|l| LostRangeOut {
                    file: l.path.display().to_string(),
                    offset: l.offset,
                    reason: l.reason.clone(),
                    first_lsn: l.first_lsn,
                    last_lsn: l.last_lsn,
                    journals: l
                        .journals
                        .as_ref()
                        .map(|ids| ids.iter().map(|id| Id::new(id)).collect()),
                })
                .collect();
            r.all_suspect = s.all_suspect;
            r.suspect = s
                .suspect
                .iter()
                .map(|j| SuspectOut {
                    journal: Id::new(&j.id),
                    reasons: j.reasons.clone(),
                    dropped: j.dropped,
                })
                .collect();
            r.ok = s.ok();
        }
        Err(e) => r.problems.push(ProblemOut::from_error(&e, dir)),
    }
    Report::Salvage(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// An engine error in a report names every layer of its chain once, so
    /// the OS error of an `Error::Io` is shown.
    #[test]
    fn problem_from_error_shows_every_layer_once() {
        let os = std::io::Error::from_raw_os_error(5);
        let os_text = os.to_string();
        let io = Error::Io {
            op: "sync segment",
            path: Path::new("/data/seg-00000001.jseg").to_owned(),
            source: Arc::new(os),
        };
        let p = ProblemOut::from_error(&io, Path::new("/data"));
        assert_eq!(p.file, "/data/seg-00000001.jseg");
        assert_eq!(p.reason, format!("{io}: {os_text}"));

        let stopped = Error::WritesStopped {
            cause: Arc::new(io.clone()),
        };
        let p = ProblemOut::from_error(&stopped, Path::new("/data"));
        assert_eq!(p.file, "/data");
        for layer in [stopped.to_string(), io.to_string(), os_text] {
            assert_eq!(p.reason.matches(&layer).count(), 1, "{layer:?} in {p:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// journals

#[derive(Serialize, Debug)]
pub struct Journals {
    pub command: &'static str,
    pub ok: bool,
    pub problems: Vec<ProblemOut>,
    pub dir: String,
    pub prefix: Option<Id>,
    /// "id" (all, ascending by id), "bytes" or "entries" (`--top N`, the
    /// N largest, descending; ties by id).
    pub order: &'static str,
    /// Journals matching the prefix (before `--top`).
    pub matched: u64,
    pub journals: Vec<JournalRow>,
}

#[derive(Serialize, Debug)]
pub struct JournalRow {
    pub id: Id,
    pub first_index: u64,
    pub end_index: u64,
    pub entries: u64,
    /// Sum of the entries' lengths.
    pub entry_bytes: u64,
    /// Length of the metadata value; null when there is none.
    pub metadata_bytes: Option<u64>,
}

/// What `journals --top N` ranks by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopBy {
    Bytes,
    Entries,
}

pub fn journals(dir: &Path, prefix: Option<&[u8]>, top: Option<(usize, TopBy)>) -> Report {
    let mut r = Journals {
        command: "journals",
        ok: true,
        problems: Vec::new(),
        dir: dir.display().to_string(),
        prefix: prefix.map(Id::new),
        order: match top {
            None => "id",
            Some((_, TopBy::Bytes)) => "bytes",
            Some((_, TopBy::Entries)) => "entries",
        },
        matched: 0,
        journals: Vec::new(),
    };
    match inspect::open_read_only(dir) {
        Ok(store) => {
            let snap = &store.snapshot;
            for id in snap.journal_ids_with_prefix(prefix.unwrap_or(&[])) {
                let Some(j) = snap.journal(id) else { continue };
                let metadata_bytes = match j.metadata() {
                    Ok(m) => m.map(|m| m.len() as u64),
                    Err(e) => {
                        r.problems.push(ProblemOut::from_error(&e, dir));
                        None
                    }
                };
                r.journals.push(JournalRow {
                    id: Id::new(id),
                    first_index: j.first_index(),
                    end_index: j.end_index(),
                    entries: j.len(),
                    entry_bytes: j.entry_bytes(),
                    metadata_bytes,
                });
            }
        }
        Err(e) => r.problems.push(ProblemOut::from_error(&e, dir)),
    }
    r.matched = r.journals.len() as u64;
    if let Some((n, by)) = top {
        let key = |j: &JournalRow| match by {
            TopBy::Bytes => j.entry_bytes,
            TopBy::Entries => j.entries,
        };
        // Stable: equal keys keep id order.
        r.journals.sort_by_key(|j| std::cmp::Reverse(key(j)));
        r.journals.truncate(n);
    }
    r.ok = r.problems.is_empty();
    Report::Journals(r)
}

// ---------------------------------------------------------------------------
// export and import

/// One line of an export file: a JSON object. The first line is a header
/// (`{"format": "journal-dump-export", "version": 1, ...}`); every other
/// line is one batch re-creating one journal, or a part of it:
/// `{"journal": HEX, "first": u64, "metadata": HEX|null, "entries": [HEX]}`
/// for the first line of a journal (it creates the journal empty at
/// `first`, then appends `entries` and sets `metadata`), and
/// `{"journal": HEX, "entries": [HEX]}` for a continuation. Values are
/// lower-case hex. The file names no format version of the store: it is
/// what the public API reads, so it loads into a store of any version.
#[derive(Serialize, serde::Deserialize, Debug)]
pub struct ExportLine {
    pub journal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
    /// Present (possibly null) on a journal's first line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Option<String>>,
    pub entries: Vec<String>,
}

#[derive(Serialize, serde::Deserialize, Debug)]
pub struct ExportHeader {
    pub format: String,
    pub version: u32,
    pub lsn: u64,
    pub journals: u64,
}

pub const EXPORT_FORMAT: &str = "journal-dump-export";

/// Most bytes of entries on one export line (and so in one imported batch).
const EXPORT_LINE_BYTES: u64 = 1 << 20;

#[derive(Serialize, Debug)]
pub struct Transfer {
    pub command: &'static str,
    pub ok: bool,
    pub problems: Vec<ProblemOut>,
    pub dir: String,
    pub file: String,
    /// Lines (batches) written or read, the header excluded.
    pub batches: u64,
    pub journals: u64,
    pub entries: u64,
    pub bytes: u64,
}

pub fn export(dir: &Path, file: &Path) -> Report {
    use std::io::Write as _;
    let mut r = Transfer {
        command: "export",
        ok: false,
        problems: Vec::new(),
        dir: dir.display().to_string(),
        file: file.display().to_string(),
        batches: 0,
        journals: 0,
        entries: 0,
        bytes: 0,
    };
    let store = match inspect::open_read_only(dir) {
        Ok(s) => s,
        Err(e) => {
            r.problems.push(ProblemOut::from_error(&e, dir));
            return Report::Transfer(r);
        }
    };
    let result = (|| -> Result<(), String> {
        let to_stdout = file.as_os_str() == "-";
        let sink: Box<dyn std::io::Write> = if to_stdout {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(file)
                    .map_err(|e| format!("create {}: {e}", file.display()))?,
            )
        };
        let mut w = std::io::BufWriter::new(sink);
        let snap = &store.snapshot;
        let header = ExportHeader {
            format: EXPORT_FORMAT.into(),
            version: 1,
            lsn: snap.lsn(),
            journals: snap.journal_count() as u64,
        };
        let io = |e: std::io::Error| format!("write {}: {e}", file.display());
        serde_json::to_writer(&mut w, &header).map_err(|e| e.to_string())?;
        writeln!(w).map_err(io)?;
        for id in snap.journal_ids() {
            let Some(j) = snap.journal(id) else { continue };
            let metadata = j
                .metadata()
                .map_err(|e| DisplayChain(&e).to_string())?
                .map(hex);
            let mut line = ExportLine {
                journal: hex(id),
                first: Some(j.first_index()),
                metadata: Some(metadata),
                entries: Vec::new(),
            };
            let mut bytes = 0;
            r.journals += 1;
            for item in j.entries(..) {
                let (_, value) = item.map_err(|e| DisplayChain(&e).to_string())?;
                if bytes + value.len() as u64 > EXPORT_LINE_BYTES && !line.entries.is_empty() {
                    serde_json::to_writer(&mut w, &line).map_err(|e| e.to_string())?;
                    writeln!(w).map_err(io)?;
                    r.batches += 1;
                    line = ExportLine {
                        journal: hex(id),
                        first: None,
                        metadata: None,
                        entries: Vec::new(),
                    };
                    bytes = 0;
                }
                bytes += value.len() as u64;
                r.entries += 1;
                r.bytes += value.len() as u64;
                line.entries.push(hex(value));
            }
            serde_json::to_writer(&mut w, &line).map_err(|e| e.to_string())?;
            writeln!(w).map_err(io)?;
            r.batches += 1;
        }
        w.flush().map_err(io)?;
        Ok(())
    })();
    if let Err(e) = result {
        r.problems.push(ProblemOut::new(file, 0, e));
    }
    r.ok = r.problems.is_empty();
    Report::Transfer(r)
}

/// Loads an export file into a new store in `dir` through the public
/// `Store` API: one batch per line, one sync at the end.
pub fn import(file: &Path, dir: &Path) -> Report {
    use std::io::BufRead as _;
    let mut r = Transfer {
        command: "import",
        ok: false,
        problems: Vec::new(),
        dir: dir.display().to_string(),
        file: file.display().to_string(),
        batches: 0,
        journals: 0,
        entries: 0,
        bytes: 0,
    };
    if inspect::manifest_path(dir).exists() {
        r.problems.push(ProblemOut::new(
            dir,
            0,
            "already holds a store; import writes only to a new one",
        ));
        return Report::Transfer(r);
    }
    let input: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                r.problems
                    .push(ProblemOut::new(file, 0, format!("open: {e}")));
                return Report::Transfer(r);
            }
        }
    };
    let options = journalstore::Options {
        sync: journalstore::SyncMode::Never,
        ..journalstore::Options::default()
    };
    let store = match journalstore::Store::open(dir, options) {
        Ok(s) => s,
        Err(e) => {
            r.problems.push(ProblemOut::from_error(&e, dir));
            return Report::Transfer(r);
        }
    };
    let mut lines = input.lines();
    let result = (|| -> Result<(), (u64, String)> {
        let header = lines
            .next()
            .ok_or((1, "empty file".to_owned()))?
            .map_err(|e| (1, e.to_string()))?;
        let header: ExportHeader =
            serde_json::from_str(&header).map_err(|e| (1, format!("bad header: {e}")))?;
        if header.format != EXPORT_FORMAT || header.version != 1 {
            return Err((
                1,
                format!(
                    "not a {EXPORT_FORMAT} file of version 1 (format {:?}, version {})",
                    header.format, header.version
                ),
            ));
        }
        let unhex =
            |n: u64, s: &str| hex::decode(s).map_err(|e| (n, format!("bad hex {s:?}: {e}")));
        for (i, line) in lines.by_ref().enumerate() {
            let n = i as u64 + 2;
            let line = line.map_err(|e| (n, e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let line: ExportLine =
                serde_json::from_str(&line).map_err(|e| (n, format!("bad line: {e}")))?;
            let id = unhex(n, &line.journal)?;
            let mut batch = journalstore::WriteBatch::new();
            if let Some(first) = line.first {
                // Creates the journal, empty, at `first`.
                batch.trim_prefix(&id, first);
                r.journals += 1;
            }
            let mut values = Vec::with_capacity(line.entries.len());
            for e in &line.entries {
                values.push(unhex(n, e)?);
            }
            for v in &values {
                batch.append(&id, v);
                r.entries += 1;
                r.bytes += v.len() as u64;
            }
            if let Some(Some(m)) = &line.metadata {
                batch.set_metadata(&id, &unhex(n, m)?);
            }
            store
                .write_with(&batch, journalstore::WriteOptions { sync: false })
                .map_err(|e| (n, DisplayChain(&e).to_string()))?;
            r.batches += 1;
        }
        Ok(())
    })();
    if let Err((line, e)) = result {
        r.problems
            .push(ProblemOut::new(file, 0, format!("line {line}: {e}")));
    }
    if let Err(e) = store.sync().and_then(|()| store.close()) {
        r.problems.push(ProblemOut::from_error(&e, dir));
    }
    r.ok = r.problems.is_empty();
    Report::Transfer(r)
}
