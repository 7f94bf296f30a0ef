//! Opening a store: lock, read the manifest, replay every segment, cut a torn
//! tail, clean up what a crash left behind.
//!
//! Nothing on disk is changed until the whole store has been read and found
//! consistent, so a store that fails to open is left exactly as it was.
//!
//! Rules (argued case by case in `format-spec/README.md`):
//! - A sealed segment must hold valid records exactly up to the length the
//!   manifest gives; anything else is corruption.
//! - In the active segment, the first invalid record or a sync mark ends the
//!   data. If a header after it (a record's or a sync mark's, trusted on its
//!   header CRC) claims (`synced_through`) that the bad bytes had been
//!   synced, they were damaged after the fact: corruption. Otherwise the
//!   bad bytes are a torn tail of writes that never became durable; they are
//!   left where they are, the segment is sealed before them and writing goes
//!   on in a new segment, so new records never sit in front of garbage.
//! - `MANIFEST.next`, the generation of a roll whose manifest swap was
//!   interrupted, replaces `MANIFEST` if it seals exactly its active segment
//!   where that segment's valid records end and the new segment opens
//!   (`open_log`); otherwise it is ignored. It is removed either way.
//! - Files named like segments that the manifest does not list are leftovers
//!   of an interrupted roll or free, and are removed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::index::{Index, JournalKey, Loc};
use crate::index_checkpoint::{self, IndexCheckpoint};
use crate::io::{FileSystem, OpenMode};
use crate::live::Accounting;
use crate::log_writer::LogWriter;
use crate::manifest::{
    Generation, ListedSegment, Manifest, MANIFEST_FILE, MANIFEST_NEXT_FILE, MANIFEST_TMP_FILE,
};
use crate::options::Options;
use crate::record::{
    OpIter, OpKind, RecordHeader, FORMAT_VERSION, RECORD_ALIGN, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::segment::{
    check_record, parse_segment_file_name, DirOwner, MappedSegment, ScanStop, Segment,
};
use zerocopy::FromBytes;

/// Name of the lock file in the store directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// Retries of a lock that another holder has (see `open`).
const LOCK_RETRIES: u32 = 20;

/// Opens (or creates) the store in `dir`, returning the writer state and the
/// store's hold on the directory (its lock; see [`DirOwner`]).
pub(crate) fn open(dir: &Path, options: &Options) -> Result<(LogWriter, Arc<DirOwner>)> {
    options.validate()?;
    let fs = options.fs.clone();
    if !options.create_if_missing {
        // Before anything is created, the lock file included.
        let has_manifest = match fs.read_dir(dir) {
            Ok(names) => names.iter().any(|n| n == MANIFEST_FILE),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io("list store directory", dir, e)),
        };
        if !has_manifest {
            return Err(Error::NotFound {
                path: dir.to_owned(),
            });
        }
    }
    crate::io::create_dir_all_durably(&*fs, dir)
        .map_err(|e| Error::io("create store directory", dir, e))?;
    let lock_path = dir.join(LOCK_FILE);
    // The lock is a `flock`, which a child process forked by the host
    // inherits until it calls `exec`: a store closed while another thread
    // forks can look locked for that moment. A few short retries ride that
    // out; a store really open elsewhere still fails within ~100 ms.
    let mut retries = 0;
    let lock = loop {
        match fs.lock(&lock_path) {
            Ok(lock) => break lock,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if retries == LOCK_RETRIES {
                    return Err(Error::Locked {
                        path: lock_path.clone(),
                    });
                }
                retries += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(Error::io("lock store directory", &lock_path, e)),
        }
    };
    let owner = DirOwner::new(lock);
    let names = fs
        .read_dir(dir)
        .map_err(|e| Error::io("list store directory", dir, e))?;
    let on_disk: Vec<u32> = names
        .iter()
        .filter_map(|n| parse_segment_file_name(n))
        .collect();

    let Some(manifest) = Manifest::load(&*fs, dir)? else {
        if !options.create_if_missing {
            // The manifest went away between the look above and the lock.
            return Err(Error::NotFound {
                path: dir.to_owned(),
            });
        }
        return create(dir, options, &on_disk, &owner).map(|log| (log, owner));
    };

    let stored_generation = manifest.generation;
    let (manifest, segments, replay) =
        open_log(&fs, dir, Some(&owner), manifest, OpenMode::ReadWrite)?;
    // New LSNs go above every LSN replayed, the manifest's floor, and the
    // active segment's base LSN (a record below it would be rejected as a
    // torn tail at the next open: an acknowledged write lost). Checked here,
    // before anything is changed, since a crafted store can exhaust them.
    let active_base = segments.last().map_or(0, |s| s.base_lsn);
    let next_lsn = replay
        .last_lsn
        .max(manifest.lsn_floor)
        .max(active_base.saturating_sub(1))
        .checked_add(1)
        .ok_or_else(|| Error::corruption(dir.join(MANIFEST_FILE), 0, "LSNs exhausted"))?;

    // The store is consistent: from here on, tidy up and start writing.
    // After a process crash the directory may hold renames and creations
    // (a manifest swap, a new segment) that are visible but not yet durable;
    // what this process writes builds on them, so make them durable first.
    fs.sync_dir(dir)
        .map_err(|e| Error::io("sync store directory", dir, e))?;
    let listed: std::collections::HashSet<u32> = manifest.segments.iter().map(|s| s.id).collect();
    for id in on_disk.iter().filter(|id| !listed.contains(id)) {
        let path = dir.join(crate::segment::segment_file_name(*id));
        fs.remove_file(&path)
            .map_err(|e| Error::io("remove orphan segment", path.clone(), e))?;
        trace_event!(INFO, path = %path.display(), "removed a segment file the manifest does not list (orphan) at open");
    }
    if names.iter().any(|n| n == MANIFEST_TMP_FILE) {
        let path = dir.join(MANIFEST_TMP_FILE);
        fs.remove_file(&path)
            .map_err(|e| Error::io("remove stale manifest", path.clone(), e))?;
        trace_event!(INFO, path = %path.display(), "removed the leftover of an interrupted manifest swap at open");
    }

    if manifest.generation != stored_generation {
        // Adopted from `MANIFEST.next`: the segment it seals and the new
        // one may be in the page cache only. Durable before the manifest
        // naming them, and that before anything else is written.
        for segment in segments.iter().rev().take(2) {
            segment
                .file()
                .and_then(|f| f.sync_data())
                .map_err(|e| Error::io("sync segment", &segment.path, e))?;
        }
        manifest.store(&*fs, dir)?;
    }
    // Only once the generation it held (if adopted) is stored: an open that
    // fails before that must find it again.
    if names.iter().any(|n| n == MANIFEST_NEXT_FILE) {
        let path = dir.join(MANIFEST_NEXT_FILE);
        fs.remove_file(&path)
            .map_err(|e| Error::io("remove next manifest", path.clone(), e))?;
    }
    let generation =
        Arc::new(Generation::new(manifest.generation, segments).with_sealed(&manifest));
    let mut log = LogWriter::new(
        dir.to_owned(),
        fs.clone(),
        options.sync,
        options.segment_size,
        manifest,
        generation,
        replay.active_end,
        next_lsn,
        replay.index,
        replay.acct,
    );
    let older_version = log.active().version != FORMAT_VERSION;
    if replay.dirty_tail || older_version {
        // Seal the segment before the torn bytes; bytes that survived a
        // process crash may still be only in the page cache, so sync first.
        // A segment of an older format version is sealed as well: new
        // records may use what only the current version defines.
        log.seal_and_roll()?;
    } else {
        // Likewise, the records recovered from the active segment may be in
        // the page cache only; the writer takes them as synced (new records
        // claim them in `synced_through`) and the free below may drop
        // segments that only they made dead, so make them durable first.
        let active = log.active().clone();
        active
            .file()
            .and_then(|f| f.sync_data())
            .map_err(|e| Error::io("sync segment", &active.path, e))?;
    }
    log.acct.changed = true;
    log.free_segments()?;
    Ok((log, owner))
}

/// Creates an empty store: segment 1, then the manifest naming it.
fn create(
    dir: &Path,
    options: &Options,
    on_disk: &[u32],
    owner: &Arc<DirOwner>,
) -> Result<LogWriter> {
    let fs = &options.fs;
    // Segment files without a manifest are only acceptable as leftovers of
    // an interrupted creation: segments that hold no record. Creation
    // sizes the file, then writes the header, so a leftover may be empty, all
    // zeros, or have a torn header; what decides is that the place of the
    // first record holds no byte (records are only written after the
    // manifest naming the segment exists).
    for &id in on_disk {
        let path = dir.join(crate::segment::segment_file_name(id));
        let file = fs
            .open(&path, OpenMode::ReadOnly)
            .map_err(|e| Error::io("open segment", &path, e))?;
        let len = file
            .len()
            .map_err(|e| Error::io("read segment", &path, e))?;
        let want = (SEGMENT_HEADER_LEN + RECORD_HEADER_LEN) as u64;
        let mut head = vec![0u8; len.min(want) as usize];
        file.read_at(0, &mut head)
            .map_err(|e| Error::io("read segment", &path, e))?;
        let empty = head
            .get(SEGMENT_HEADER_LEN..)
            .is_none_or(|b| b.iter().all(|&x| x == 0));
        if !empty {
            return Err(Error::corruption(
                dir.join(MANIFEST_FILE),
                0,
                "the manifest is missing but segment files hold data",
            ));
        }
    }
    for &id in on_disk {
        let path = dir.join(crate::segment::segment_file_name(id));
        fs.remove_file(&path)
            .map_err(|e| Error::io("remove orphan segment", path.clone(), e))?;
        trace_event!(INFO, path = %path.display(), "removed an empty segment file of an interrupted creation at open");
    }
    // The directory's entry in its parent must be durable before anything
    // in it can be: `open` made the levels it created durable, but the
    // directory may have existed unsynced (made by the caller, or by an
    // open interrupted before its sync).
    crate::io::sync_parent(&**fs, dir).map_err(|e| Error::io("sync parent directory", dir, e))?;
    let segment = Arc::new(Segment::create(
        fs,
        dir,
        Some(owner),
        1,
        options.segment_size,
        crate::log_writer::RESERVE_STEP,
        1,
        true,
    )?);
    let manifest = Manifest {
        generation: 1,
        next_segment_id: 2,
        lsn_floor: 0,
        segments: vec![ListedSegment::active(1)],
    };
    manifest.store(&**fs, dir)?;
    let mut acct = Accounting::default();
    acct.add_segment(1);
    let generation = Arc::new(Generation::new(1, vec![segment]).with_sealed(&manifest));
    Ok(LogWriter::new(
        dir.to_owned(),
        fs.clone(),
        options.sync,
        options.segment_size,
        manifest,
        generation,
        SEGMENT_HEADER_LEN as u64,
        1,
        Index::default(),
        acct,
    ))
}

/// Opens the segments `manifest` lists, in its order, each checked by
/// [`MappedSegment::check`] and, if sealed, by [`check_sealed_len`]; the first
/// failure is returned and nothing is changed.
///
/// A sealed segment keeps only its mapping (see `Segment::close_file`): a
/// store of many segments would otherwise run out of descriptors while
/// opening them. The active segment (the last) keeps its file when opened
/// for writing (`mode` is [`OpenMode::ReadWrite`]); a read-only open needs
/// the mappings only (the active segment's tail check opens the file again
/// for a moment) and keeps no descriptor. `owner` is the directory lock of
/// the store that will own the segments, `None` for a read-only open.
pub(crate) fn open_segments(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    owner: Option<&Arc<DirOwner>>,
    manifest: &Manifest,
    mode: OpenMode,
) -> Result<Vec<Arc<Segment>>> {
    let mut segments = Vec::with_capacity(manifest.segments.len());
    // A window of files is opened and mapped with their headers asked of
    // the disk together (a cold open otherwise waits for one header read
    // per segment in turn), then checked in order. The window bounds the
    // descriptors held at once.
    for window in manifest.segments.chunks(OPEN_WINDOW) {
        let mapped: Vec<Result<MappedSegment>> = window
            .iter()
            .map(|listed| Segment::map_file(fs, dir, listed.id, mode))
            .collect();
        for (m, &ListedSegment { id, sealed_len }) in mapped.into_iter().zip(window) {
            let segment = m?.check(owner)?;
            if sealed_len.is_some() || mode != OpenMode::ReadWrite {
                segment.close_file();
            }
            if let Some(len) = sealed_len {
                check_sealed_len(dir, id, len, segment.capacity)?;
            }
            segments.push(Arc::new(segment));
        }
    }
    Ok(segments)
}

/// Bytes of records replay reads before it gives their pages back (see
/// `Mapping::release_range`): its peak resident set stays this much above
/// the index's, where a whole segment's pages were held until its end.
const RELEASE_STEP: usize = 4 << 20;

/// A forward scan of a segment's mapping that gives back the pages it has
/// read every [`RELEASE_STEP`] bytes (`Segment::release_range`).
struct GiveBack<'a> {
    segment: &'a Segment,
    /// Where the pages read and not yet given back start.
    from: usize,
}

impl<'a> GiveBack<'a> {
    /// A scan of `segment` starting at `from`.
    fn starting_at(segment: &'a Segment, from: usize) -> GiveBack<'a> {
        GiveBack { segment, from }
    }

    /// The scan has read everything before `pos`.
    fn reached(&mut self, pos: usize) {
        if pos.saturating_sub(self.from) >= RELEASE_STEP {
            self.segment.release_range(self.from, pos - self.from);
            self.from = pos;
        }
    }
}

/// Segment files [`open_segments`] holds open at once.
const OPEN_WINDOW: usize = 32;

/// Opens and replays the log `manifest` describes or, if `MANIFEST.next`
/// holds the generation a roll made after it (`Manifest::rolled_to`) and
/// the log it describes replays (the sealed segment's records end exactly
/// at the length it gives, and the new segment opens), that generation:
/// a process crash came between the roll and its manifest swap, and the
/// records written to the new segment meanwhile are kept. After a power
/// loss that took part of the sealed segment, or the new one's header,
/// `MANIFEST.next` does not replay, and the log is `manifest`'s (records
/// of the new segment were never acknowledged as durable: see
/// `SyncGate`). Returns the manifest chosen, its segments and the replay.
pub(crate) fn open_log(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    owner: Option<&Arc<DirOwner>>,
    manifest: Manifest,
    mode: OpenMode,
) -> Result<(Manifest, Vec<Arc<Segment>>, Replay)> {
    if let Some(next) = Manifest::load_next(&**fs, dir) {
        if manifest.rolled_to(&next) {
            let opened = open_segments(fs, dir, owner, &next, mode)
                .and_then(|segments| Ok((replay(&**fs, dir, &segments, &next)?, segments)));
            if let Ok((replay, segments)) = opened {
                return Ok((next, segments, replay));
            }
        }
    }
    let segments = open_segments(fs, dir, owner, &manifest, mode)?;
    let replay = replay(&**fs, dir, &segments, &manifest)?;
    Ok((manifest, segments, replay))
}

/// Which manifest open would use in `dir` (see [`open_log`]): `MANIFEST`'s
/// generation, or the one in `MANIFEST.next` that open would adopt;
/// `None` without a `MANIFEST`. Reads only; replays the log to decide.
pub(crate) fn manifest_opened(fs: &Arc<dyn FileSystem>, dir: &Path) -> Result<Option<Manifest>> {
    let Some(manifest) = Manifest::load(&**fs, dir)? else {
        return Ok(None);
    };
    // A log that does not replay under either: `MANIFEST`'s, as open would
    // report it.
    Ok(Some(
        match open_log(fs, dir, None, manifest.clone(), OpenMode::ReadOnly) {
            Ok((opened, _, _)) => opened,
            Err(_) => manifest,
        },
    ))
}

/// Fails with a corruption of the manifest in `dir` unless `len`, the
/// sealed length it gives segment `id`, lies inside that segment's file of
/// `capacity` bytes and not inside its header.
pub(crate) fn check_sealed_len(dir: &Path, id: u32, len: u64, capacity: u64) -> Result<()> {
    if len < SEGMENT_HEADER_LEN as u64 || len > capacity {
        return Err(Error::corruption(
            dir.join(MANIFEST_FILE),
            0,
            format!("sealed length {len} of segment {id} is outside the file"),
        ));
    }
    Ok(())
}

/// What replaying the segments produced.
pub(crate) struct Replay {
    pub index: Index,
    pub acct: Accounting,
    pub last_lsn: u64,
    /// End of valid data in the active segment.
    pub active_end: u64,
    /// Whether non-zero bytes follow `active_end` (a torn tail).
    pub dirty_tail: bool,
}

/// Replays the log into an index: from an index checkpoint that
/// `manifest` continues if `dir` holds one (`index_checkpoint.rs`),
/// otherwise, or if replaying from it fails, every record of `segments`.
pub(crate) fn replay(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: &[Arc<Segment>],
    manifest: &Manifest,
) -> Result<Replay> {
    // A checkpoint is at most a few words per entry of the whole store.
    let max_len = segments.iter().map(|s| s.capacity).sum::<u64>() + (1 << 20);
    if let Some(start) = index_checkpoint::load(fs, dir, manifest, max_len) {
        if let Ok(replay) = replay_from(segments, manifest, Some(start)) {
            crate::work::index_checkpoint_loaded();
            return Ok(replay);
        }
    }
    replay_from(segments, manifest, None)
}

/// Replays `segments` (in manifest order) into an index, starting from
/// `start` (a checkpoint and the position of its active segment in
/// `manifest.segments`) or from nothing.
fn replay_from(
    segments: &[Arc<Segment>],
    manifest: &Manifest,
    start: Option<(IndexCheckpoint, usize)>,
) -> Result<Replay> {
    let mut index = Index::default();
    let mut acct = Accounting::default();
    // Each journal's bounds as the latest operation replayed recorded them.
    // A checkpoint's journals that no replayed operation touches need no
    // entry: their bounds are their entries' and they hold no placeholder.
    let mut latest: HashMap<JournalKey, (u64, u64)> = HashMap::new();
    let mut last_lsn = 0u64;
    let mut active_end = SEGMENT_HEADER_LEN as u64;
    // Where replay begins: segment `first_segment` at `first_pos`.
    let (mut first_segment, mut first_pos) = (0, SEGMENT_HEADER_LEN);
    // Segments the checkpoint knew that were freed since: no location may
    // point into them once the tail is replayed.
    let mut freed = HashSet::new();
    if let Some((checkpoint, at)) = start {
        let listed: HashSet<u32> = manifest.segments.iter().map(|s| s.id).collect();
        freed = checkpoint
            .segments
            .iter()
            .map(|s| s.id)
            .filter(|id| !listed.contains(id))
            .collect();
        index = checkpoint.index;
        acct = checkpoint.acct;
        acct.remove(&freed.iter().copied().collect::<Vec<_>>());
        last_lsn = checkpoint.last_lsn;
        first_segment = at;
        first_pos = usize::try_from(checkpoint.active_end)
            .map_err(|_| Error::corruption(dir_of(segments), 0, "index checkpoint position"))?;
    }
    let mut dirty_tail = false;
    let by_id: HashMap<u32, &Arc<Segment>> = segments.iter().map(|s| (s.id, s)).collect();
    let size_of = |loc: Loc| -> u64 { by_id.get(&loc.segment).map_or(0, |s| s.op_len(loc.offset)) };
    // Reading ahead: the disk reads the next segment while this one is
    // replayed (a cold open is otherwise one page fault's read at a time).
    let read_ahead = |k: usize| {
        // Not the active segment: mostly holes, its tail checked sparsely.
        let sealed = manifest.segments.get(k).and_then(|l| l.sealed_len);
        if let (Some(s), Some(sealed)) = (segments.get(k), sealed) {
            s.will_need(sealed);
        }
    };
    // Only what is replayed: a checkpoint's open reads none of the segments
    // before `first_segment`.
    read_ahead(first_segment);
    for (k, (segment, listed)) in segments.iter().zip(&manifest.segments).enumerate() {
        if k < first_segment {
            continue;
        }
        let sealed = listed.sealed_len;
        read_ahead(k + 1);
        acct.add_segment(segment.id);
        let limit = sealed.unwrap_or(segment.capacity) as usize;
        let mut pos = if k == first_segment {
            first_pos
        } else {
            SEGMENT_HEADER_LEN
        };
        if pos < SEGMENT_HEADER_LEN || pos % RECORD_ALIGN != 0 || pos > limit {
            return Err(Error::corruption(
                &segment.path,
                pos as u64,
                "replay starts outside the segment's records",
            ));
        }
        let mut stop = None;
        let mut read = GiveBack::starting_at(segment, pos);
        while pos + RECORD_HEADER_LEN <= limit {
            let record = match check_record(&**segment, pos, limit, last_lsn) {
                Ok(record) => record,
                Err(e) => {
                    stop = Some(e);
                    break;
                }
            };
            let payload_offset = record.offset + RECORD_HEADER_LEN;
            let mut tracker = acct.tracker(&size_of);
            let mut ops = 0u32;
            for op in OpIter::new(record.payload) {
                let op = op.map_err(|e| {
                    Error::corruption(
                        &segment.path,
                        (payload_offset + e.offset) as u64,
                        format!("undecodable operation: {}", e.reason),
                    )
                })?;
                let loc = Loc {
                    segment: segment.id,
                    offset: (payload_offset + op.offset) as u32,
                };
                index
                    .apply(&op, loc, &mut tracker)
                    .map_err(|reason| Error::Corruption {
                        path: segment.path.clone(),
                        offset: loc.offset as u64,
                        journal: Some(op.id.to_vec()),
                        reason: reason.into(),
                    })?;
                if op.kind == OpKind::Delete {
                    latest.remove(op.id);
                } else if let Some(bounds) = latest.get_mut(op.id) {
                    *bounds = (op.first, op.end);
                } else {
                    latest.insert(JournalKey::from(op.id), (op.first, op.end));
                }
                ops += 1;
            }
            if ops != record.header.op_count.get() {
                return Err(Error::corruption(
                    &segment.path,
                    record.offset as u64,
                    "record holds a different number of operations than its header says",
                ));
            }
            last_lsn = record.header.lsn.get();
            pos = record.next_offset();
            crate::work::records_replayed(1);
            read.reached(pos);
        }
        match sealed {
            Some(len) => {
                if let Some(ScanStop::Invalid { offset, reason }) = stop {
                    return Err(Error::corruption(&segment.path, offset as u64, reason));
                }
                if pos as u64 != len {
                    return Err(Error::corruption(
                        &segment.path,
                        pos as u64,
                        format!("sealed segment's records end at {pos}, the manifest says {len}"),
                    ));
                }
            }
            None => {
                // Where the data ends, and where bytes that must be zeros
                // start: after a sync mark, which the next record overwrites.
                let (end, zeros_from) = match stop {
                    Some(ScanStop::End { offset } | ScanStop::Invalid { offset, .. }) => {
                        (offset, offset)
                    }
                    Some(ScanStop::SyncMark {
                        offset,
                        synced_through,
                        ..
                    }) => {
                        if synced_through as usize > offset {
                            return Err(Error::corruption(
                                &segment.path,
                                offset as u64,
                                format!(
                                    "sync mark says the bytes up to {synced_through} had been synced, but the records end at {offset}"
                                ),
                            ));
                        }
                        (offset, offset + RECORD_HEADER_LEN)
                    }
                    None => (pos, pos),
                };
                // The last record's padding may reach past a capacity that
                // is not a multiple of 8 (a damaged or crafted header): then
                // nothing follows it.
                dirty_tail = tail_is_dirty(segment, zeros_from);
                if dirty_tail {
                    check_tail(segment, end, last_lsn)?;
                }
                active_end = end as u64;
            }
        }
        // Recovery reads every record once; readers fault back in what they
        // read later. Without this the process would hold the whole store
        // in its resident set after an open; without the releases every
        // `RELEASE_STEP` above, a whole segment at its peak.
        segment.release();
    }
    if !freed.is_empty() {
        index.recount_entry_bytes(&size_of);
        let dangling = index.iter().find(|(_, state)| {
            state
                .entries
                .stored()
                .chain(state.metadata.iter())
                .chain(state.anchor.iter())
                .any(|loc| !loc.is_missing() && freed.contains(&loc.segment))
        });
        if let Some((journal, _)) = dangling {
            return Err(Error::Corruption {
                path: dir_of(segments),
                offset: 0,
                journal: Some(journal.to_vec()),
                reason: "the index checkpoint holds a location in a freed segment".into(),
            });
        }
    }
    if let Some((journal, missing)) = index.find_missing(&latest) {
        return Err(Error::Corruption {
            path: segments.last().map(|s| s.path.clone()).unwrap_or_default(),
            offset: 0,
            journal: Some(journal.to_vec()),
            reason: format!(
                "entry {missing} is referenced but no segment holds it (a segment was lost)"
            ),
        });
    }
    Ok(Replay {
        index,
        acct,
        last_lsn,
        active_end,
        dirty_tail,
    })
}

/// The store directory, for errors about the store as a whole.
fn dir_of(segments: &[Arc<Segment>]) -> PathBuf {
    segments
        .last()
        .and_then(|s| s.path.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Whether any byte of the active segment after `end` is not zero. Only
/// the ranges the file system says may hold data are read: after a clean
/// close the rest of a segment is a hole, and reading it through the
/// mapping would page in up to a whole segment of zeros.
fn tail_is_dirty(segment: &Segment, end: usize) -> bool {
    let capacity = segment.capacity as usize;
    let mut at = end;
    while at < capacity {
        let range = match segment.file().and_then(|f| f.next_data(at as u64)) {
            Ok(Some(r)) => (r.start as usize).max(at)..(r.end as usize).min(capacity),
            Ok(None) => return false,
            // Cannot tell: read everything left.
            Err(_) => at..capacity,
        };
        if range.is_empty() {
            return false;
        }
        // In pieces, each given back once read: the range may be all the
        // space reserved ahead of the data.
        let mut read = GiveBack::starting_at(segment, range.start);
        let mut piece = range.start;
        while piece < range.end {
            let len = (range.end - piece).min(RELEASE_STEP);
            if segment.bytes(piece, len).is_some_and(|b| !all_zero(b)) {
                return true;
            }
            piece += len;
            read.reached(piece);
        }
        at = range.end;
    }
    false
}

/// `bytes.iter().all(|&b| b == 0)`, in 64-byte blocks the compiler turns
/// into vector ORs instead of a byte-by-byte early exit.
fn all_zero(bytes: &[u8]) -> bool {
    let blocks = bytes.chunks_exact(64);
    let rest = blocks.remainder();
    blocks
        .map(|c| c.iter().fold(0u8, |a, &b| a | b))
        .all(|x| x == 0)
        && rest.iter().all(|&b| b == 0)
}

/// Fails if a header after the invalid bytes at `end` says they had been
/// synced. Every 8-aligned offset after `end` is read as a 32-byte header of
/// any kind (a batch record's or a sync mark's) and trusted on its own CRC:
/// the claim lives in the header, so payloads are never checksummed and the
/// work is linear in the tail's length whatever it holds (28 checksummed
/// bytes per 8-byte step at most, counted in `work`). Runs of zeros are
/// passed over at memory speed: a header is never all zero, so only the
/// offsets whose 32 bytes reach a non-zero byte are tried. A claim counts
/// only from a header whose LSN is not below the last valid record's (a
/// header written after it).
fn check_tail(segment: &Segment, end: usize, last_lsn: u64) -> Result<()> {
    let capacity = segment.capacity as usize;
    let mut pos = end + RECORD_ALIGN;
    let mut read = GiveBack::starting_at(segment, pos);
    while pos + RECORD_HEADER_LEN <= capacity {
        read.reached(pos);
        let Some(bytes) = segment.bytes(pos, RECORD_HEADER_LEN) else {
            break;
        };
        if all_zero(bytes) {
            let Some(nonzero) = next_nonzero(segment, pos + RECORD_HEADER_LEN, capacity) else {
                break;
            };
            // The first 8-aligned header that holds it, past `pos`.
            pos = crate::record::align_up(nonzero - (RECORD_HEADER_LEN - 1));
            continue;
        }
        crate::work::resync_crc_bytes(RECORD_HEADER_LEN - 4);
        if let Ok(header) = RecordHeader::read_from_bytes(bytes) {
            let claim = header.synced_through.get() as usize;
            if header.crc_ok() && header.lsn.get() >= last_lsn && claim > end {
                return Err(Error::corruption(
                    &segment.path,
                    end as u64,
                    format!(
                        "invalid record, but the header at {pos} says the bytes up to {claim} had been synced"
                    ),
                ));
            }
        }
        pos += RECORD_ALIGN;
    }
    Ok(())
}

/// The first offset in `from..limit` of `segment` holding a non-zero byte.
/// Reads blocks that double from 64 bytes to 4 KiB ([`all_zero`] each), so
/// the bytes read are at most twice the distance plus 64: a byte close by
/// is found without reading a whole block.
fn next_nonzero(segment: &Segment, from: usize, limit: usize) -> Option<usize> {
    let mut at = from;
    let mut block = 64;
    while at < limit {
        let len = block.min(limit - at);
        let bytes = segment.bytes(at, len)?;
        if !all_zero(bytes) {
            return bytes.iter().position(|&b| b != 0).map(|k| at + k);
        }
        at += len;
        block = (block * 2).min(4096);
    }
    None
}
