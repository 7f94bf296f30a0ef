//! The index checkpoint: the in-memory index and the live-space accounting
//! as of one point of the log, in a file, so that open replays only the
//! log after that point (format-spec section 13).
//!
//! A checkpoint file `index-<generation>.jidx` holds the state after the
//! records up to `active_end` of the manifest generation's active segment.
//! It is written at clean close and in the background every
//! `Options::index_checkpoint_bytes` appended, always after the data it
//! covers was synced, then synced itself and renamed into place: a
//! checkpoint that exists names only durable records.
//!
//! Invariants open relies on (`usable`):
//! - Later generations only add segments after the checkpoint's active one
//!   (rolls) and remove segments (frees); compaction, which puts a new
//!   segment in place of a run, makes every older checkpoint unusable. So
//!   the state is exact once the records after `active_end` (in the active
//!   segment and in every segment added after it) are replayed on top of
//!   it, as a full replay would have applied them.
//! - An entry the checkpoint holds in a segment freed since must have died
//!   in the replayed tail (a segment is freed only with nothing live); open
//!   checks it, and falls back to a full replay if not.
//! - Anything unexpected (a bad checksum, a length that does not add up, a
//!   layout the rules above exclude) makes open ignore the checkpoint and
//!   replay the whole log: a checkpoint can make open faster, never wrong.
//!
//! Open trusts the checkpoint for the records before `active_end`: their
//! checksums are not read at open. Every value's checksum is still checked
//! before its bytes are first handed out by a snapshot, and compaction
//! checks every record it copies.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::index::{Index, JournalKey, JournalState, Loc};
use crate::io::{FileSystem, Mapping, OpenMode};
use crate::live::{Accounting, SegmentUsage};
use crate::locs::Locs;
use crate::manifest::{ListedSegment, Manifest};
use crate::record::crc32;
use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First 8 bytes of an index checkpoint.
pub const INDEX_MAGIC: [u8; 8] = *b"JSTRIDX\0";

/// The index checkpoint's layout version.
pub const INDEX_VERSION: u32 = 1;

/// Size of the checkpoint header.
pub const INDEX_HEADER_LEN: usize = 64;

/// Where a checkpoint is written before it is renamed into place.
pub(crate) const INDEX_TMP_FILE: &str = "index.tmp";

/// The file name of the checkpoint taken at manifest generation `generation`.
pub(crate) fn file_name(generation: u64) -> String {
    format!("index-{generation:016x}.jidx")
}

/// The generation in a checkpoint file name, if `name` is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("index-")?.strip_suffix(".jidx")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The state after the records up to `active_end` of the last segment of
/// `segments` (the generation's active one).
#[derive(Clone, Debug)]
pub(crate) struct IndexCheckpoint {
    pub generation: u64,
    pub last_lsn: u64,
    pub active_end: u64,
    /// The generation's segments in manifest order (the last is active).
    pub segments: Vec<ListedSegment>,
    pub index: Index,
    pub acct: Accounting,
    /// `LogWriter::appended` when it was taken (not stored: the background
    /// writer's measure of what was written since).
    pub appended: u64,
}

/// The checkpoint header (format-spec 13.1), laid out by the compiler.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct IndexHeader {
    magic: [u8; 8],
    version: U32,
    header_len: U32,
    generation: U64,
    last_lsn: U64,
    active_end: U64,
    segment_count: U32,
    reserved: U32,
    journal_count: U64,
    reserved2: U32,
    /// CRC-32 of the 60 bytes before it.
    header_crc: U32,
}

/// Per-segment flags in the file.
const SEALED: u32 = 1;
const SETTLED: u32 = 2;
const TOMBSTONES: u32 = 4;

/// Per-journal flags in the file.
const HAS_METADATA: u8 = 1;
const HAS_ANCHOR: u8 = 2;

impl IndexCheckpoint {
    /// The file's bytes (format-spec 13).
    pub fn encode(&self) -> Vec<u8> {
        // The body is written after room for the header, which is filled
        // in once the body's counts are known: no second copy of the body.
        let mut body = vec![0u8; INDEX_HEADER_LEN];
        let empty = SegmentUsage::default();
        for s in &self.segments {
            let u = self.acct.segments.get(&s.id).unwrap_or(&empty);
            let mut flags = 0;
            if s.sealed_len.is_some() {
                flags |= SEALED;
            }
            if u.settled {
                flags |= SETTLED;
            }
            if u.tombstones {
                flags |= TOMBSTONES;
            }
            put_u32(&mut body, s.id);
            put_u32(&mut body, flags);
            put_u64(&mut body, s.sealed_len.unwrap_or(0));
            put_u64(&mut body, u.live_bytes);
            put_u64(&mut body, u.live_items);
            put_u32(&mut body, u.deps.len() as u32);
            put_u32(&mut body, u.journals.len() as u32);
            for d in &u.deps {
                put_u32(&mut body, *d);
            }
            let mut hashes: Vec<u64> = u.journals.iter().copied().collect();
            hashes.sort_unstable();
            for h in hashes {
                put_u64(&mut body, h);
            }
        }
        for (id, state) in self.index.iter() {
            body.push(id.len() as u8);
            body.extend_from_slice(id);
            let mut flags = 0;
            if state.metadata.is_some() {
                flags |= HAS_METADATA;
            }
            if state.anchor.is_some() {
                flags |= HAS_ANCHOR;
            }
            body.push(flags);
            put_u64(&mut body, state.first);
            put_u64(&mut body, state.entries.len() as u64);
            put_u64(&mut body, state.entry_bytes);
            for loc in state.metadata.iter().chain(state.anchor.iter()) {
                put_loc(&mut body, *loc);
            }
            for loc in state.entries.iter() {
                put_loc(&mut body, *loc);
            }
        }
        let body_len = (body.len() - INDEX_HEADER_LEN) as u64;
        let body_crc = crc32(&body[INDEX_HEADER_LEN..]);
        let mut header = IndexHeader {
            magic: INDEX_MAGIC,
            version: INDEX_VERSION.into(),
            header_len: (INDEX_HEADER_LEN as u32).into(),
            generation: self.generation.into(),
            last_lsn: self.last_lsn.into(),
            active_end: self.active_end.into(),
            segment_count: (self.segments.len() as u32).into(),
            reserved: 0.into(),
            journal_count: (self.index.len() as u64).into(),
            reserved2: 0.into(),
            header_crc: 0.into(),
        };
        header.header_crc = crc32(&header.as_bytes()[..INDEX_HEADER_LEN - 4]).into();
        let mut out = body;
        out[..INDEX_HEADER_LEN].copy_from_slice(header.as_bytes());
        put_u64(&mut out, body_len);
        put_u32(&mut out, body_crc);
        out
    }

    /// Decodes a checkpoint file. Every count is checked against the bytes
    /// left before anything is allocated for it, so a damaged or crafted
    /// file costs at most its own length in memory and time.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<IndexCheckpoint> {
        let bad = |offset: usize, reason: &str| Error::corruption(path, offset as u64, reason);
        if bytes.len() < INDEX_HEADER_LEN + 12 {
            return Err(bad(
                0,
                "index checkpoint shorter than its header and trailer",
            ));
        }
        let (h, _) = IndexHeader::read_from_prefix(bytes)
            .map_err(|_| bad(0, "index checkpoint shorter than its header"))?;
        if h.magic != INDEX_MAGIC {
            return Err(bad(0, "not an index checkpoint (bad magic)"));
        }
        if crc32(&h.as_bytes()[..INDEX_HEADER_LEN - 4]) != h.header_crc.get() {
            return Err(bad(60, "index checkpoint header checksum mismatch"));
        }
        if h.version.get() != INDEX_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_owned(),
                found: h.version.get(),
                supported: INDEX_VERSION,
            });
        }
        if h.header_len.get() as usize != INDEX_HEADER_LEN {
            return Err(bad(12, "index checkpoint header length"));
        }
        let generation = h.generation.get();
        let last_lsn = h.last_lsn.get();
        let active_end = h.active_end.get();
        let segment_count = h.segment_count.get() as usize;
        let journal_count = h.journal_count.get();
        if h.reserved.get() != 0 || h.reserved2.get() != 0 {
            return Err(bad(44, "reserved index checkpoint bytes not zero"));
        }
        let trailer = bytes.len() - 12;
        let body = &bytes[INDEX_HEADER_LEN..trailer];
        if u64_at(bytes, trailer) != body.len() as u64 {
            return Err(bad(trailer, "index checkpoint body length mismatch"));
        }
        if crc32(body) != u32_at(bytes, trailer + 8) {
            return Err(bad(trailer + 8, "index checkpoint body checksum mismatch"));
        }
        let mut r = Reader {
            bytes: &bytes[..trailer],
            pos: INDEX_HEADER_LEN,
            path,
        };
        // Each segment takes at least 40 bytes, each journal at least 34.
        if segment_count == 0 || segment_count > r.left() / 40 {
            return Err(bad(40, "index checkpoint segment count"));
        }
        let mut segments = Vec::with_capacity(segment_count);
        let mut acct = Accounting::default();
        for k in 0..segment_count {
            let id = r.u32()?;
            let flags = r.u32()?;
            let sealed_len = r.u64()?;
            let live_bytes = r.u64()?;
            let live_items = r.u64()?;
            let deps = r.u32()? as usize;
            let hashes = r.u32()? as usize;
            let last = k + 1 == segment_count;
            if flags & !(SEALED | SETTLED | TOMBSTONES) != 0 || (flags & SEALED == 0) != last {
                return Err(bad(r.pos, "index checkpoint segment flags"));
            }
            if deps > r.left() / 4 || hashes > r.left() / 8 || (last && sealed_len != 0) {
                return Err(bad(r.pos, "index checkpoint segment lists"));
            }
            let mut usage = SegmentUsage {
                live_bytes,
                live_items,
                deps: BTreeSet::new(),
                settled: flags & SETTLED != 0,
                tombstones: flags & TOMBSTONES != 0,
                journals: HashSet::with_capacity(hashes),
            };
            for _ in 0..deps {
                usage.deps.insert(r.u32()?);
            }
            let mut previous = None;
            for _ in 0..hashes {
                let hash = r.u64()?;
                if previous.is_some_and(|p| p >= hash) {
                    return Err(bad(r.pos, "index checkpoint journal hashes not ascending"));
                }
                previous = Some(hash);
                usage.journals.insert(hash);
            }
            if acct.segments.insert(id, usage).is_some() {
                return Err(bad(r.pos, "index checkpoint lists a segment twice"));
            }
            segments.push(ListedSegment {
                id,
                sealed_len: (flags & SEALED != 0).then_some(sealed_len),
            });
        }
        if journal_count > (r.left() / 34) as u64 {
            return Err(bad(48, "index checkpoint journal count"));
        }
        let listed: Vec<u32> = segments.iter().map(|s| s.id).collect();
        let mut counter = LocationCounter::new(&listed);
        let mut index = Index::default();
        let mut previous: Option<JournalKey> = None;
        for _ in 0..journal_count {
            let at = r.pos;
            let id_len = r.u8()? as usize;
            let id = r.take(id_len)?;
            if id.is_empty() || previous.as_deref().is_some_and(|p| p >= id) {
                return Err(bad(at, "index checkpoint journal ids not ascending"));
            }
            let flags = r.u8()?;
            if flags & !(HAS_METADATA | HAS_ANCHOR) != 0 {
                return Err(bad(at, "index checkpoint journal flags"));
            }
            let first = r.u64()?;
            let count = r.u64()?;
            let entry_bytes = r.u64()?;
            if count > (r.left() / 8) as u64
                || first
                    .checked_add(count)
                    .is_none_or(|e| e > crate::record::MAX_INDEX)
            {
                return Err(bad(at, "index checkpoint entry count"));
            }
            let outside = |at| bad(at, "index checkpoint location outside its segments");
            let mut one = |r: &mut Reader<'_>| -> Result<Loc> {
                let loc = Loc {
                    segment: r.u32()?,
                    offset: r.u32()?,
                };
                if !counter.count(loc) {
                    return Err(outside(r.pos));
                }
                Ok(loc)
            };
            let metadata = (flags & HAS_METADATA != 0)
                .then(|| one(&mut r))
                .transpose()?;
            let anchor = (flags & HAS_ANCHOR != 0).then(|| one(&mut r)).transpose()?;
            // The entries in one block: a bounds check for all of them, then
            // eight bytes each.
            let block_at = r.pos;
            let (block, _) = r.take(count as usize * 8)?.as_chunks::<8>();
            let mut entries = Vec::with_capacity(block.len());
            for (k, b) in block.iter().enumerate() {
                let loc = Loc {
                    segment: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    offset: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                };
                if !counter.count(loc) {
                    return Err(outside(block_at + 8 * (k + 1)));
                }
                entries.push(loc);
            }
            let key = JournalKey::from(id);
            index.insert(
                key.clone(),
                JournalState {
                    first,
                    entries: Locs::from_vec(entries),
                    metadata,
                    anchor,
                    entry_bytes,
                    entry_bytes_unknown: false,
                },
            );
            previous = Some(key);
        }
        if r.left() != 0 {
            return Err(bad(r.pos, "index checkpoint has bytes after its journals"));
        }
        let agree = listed.iter().all(|&id| {
            acct.segments
                .get(&id)
                .is_some_and(|usage| usage.live_items == counter.of(id))
        });
        if !agree {
            return Err(bad(
                INDEX_HEADER_LEN,
                "index checkpoint: live items disagree with the index",
            ));
        }
        Ok(IndexCheckpoint {
            generation,
            last_lsn,
            active_end,
            segments,
            index,
            acct,
            appended: 0,
        })
    }

    /// Whether the log described by `manifest` continues this checkpoint
    /// (see the module comment): its segments are this checkpoint's, some
    /// removed, in the same order and with the same sealed lengths, then
    /// segments created after it; the checkpoint's active segment is still
    /// there and holds at least `active_end` bytes of records. Returns the
    /// position in `manifest.segments` of that segment.
    pub fn continued_by(&self, manifest: &Manifest) -> Option<usize> {
        if self.generation > manifest.generation {
            return None;
        }
        let active = self.segments.last()?;
        let newest = self.segments.iter().map(|s| s.id).max()?;
        let ours: HashMap<u32, Option<u64>> =
            self.segments.iter().map(|s| (s.id, s.sealed_len)).collect();
        let mut order = self.segments.iter().map(|s| s.id);
        let mut active_at = None;
        for (k, s) in manifest.segments.iter().enumerate() {
            match ours.get(&s.id) {
                Some(sealed) => {
                    if active_at.is_some() || !order.any(|id| id == s.id) {
                        return None;
                    }
                    if s.id == active.id {
                        active_at = Some(k);
                        if s.sealed_len.is_some_and(|len| len < self.active_end) {
                            return None;
                        }
                    } else if *sealed != s.sealed_len {
                        return None;
                    }
                }
                None => {
                    if active_at.is_none() || s.id <= newest {
                        return None;
                    }
                }
            }
        }
        active_at
    }
}

/// Writes `checkpoint` durably as `dir/index-<generation>.jidx` (a tmp
/// file, synced, renamed, the directory synced), then removes the older
/// checkpoint files. The data it covers must be durable already. Returns
/// the file's size.
pub(crate) fn store(fs: &dyn FileSystem, dir: &Path, checkpoint: &IndexCheckpoint) -> Result<u64> {
    let tmp = dir.join(INDEX_TMP_FILE);
    let path = dir.join(file_name(checkpoint.generation));
    let steps = crate::io::ReplaceSteps {
        remove_stale: "remove stale index checkpoint",
        create: "create index checkpoint",
        write: "write index checkpoint",
        sync: "sync index checkpoint",
        rename: "rename index checkpoint",
    };
    let bytes = checkpoint.encode();
    crate::io::replace_durably(fs, dir, &tmp, &path, &bytes, &steps)?;
    // Older ones are never chosen over this one (open takes the newest
    // usable); removing them only saves space, so a failure is ignored.
    for (generation, old) in list(fs, dir) {
        if generation < checkpoint.generation {
            let _ = fs.remove_file(&old);
        }
    }
    Ok(bytes.len() as u64)
}

/// The checkpoint files in `dir`, newest generation first.
pub(crate) fn list(fs: &dyn FileSystem, dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = fs
        .read_dir(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| parse_file_name(&name).map(|g| (g, dir.join(name))))
        .collect();
    found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    found
}

/// The newest checkpoint in `dir` that `manifest` continues, with the
/// position of its active segment in `manifest.segments`; `None` if there
/// is none (a damaged or unusable one is skipped: open replays instead).
pub(crate) fn load(
    fs: &dyn FileSystem,
    dir: &Path,
    manifest: &Manifest,
    max_len: u64,
) -> Option<(IndexCheckpoint, usize)> {
    for (generation, path) in list(fs, dir) {
        if generation > manifest.generation {
            continue;
        }
        let Ok(map) = map_file(fs, &path, max_len) else {
            continue;
        };
        let Some(bytes) = map.slice(0, map.len()) else {
            continue;
        };
        let Ok(checkpoint) = IndexCheckpoint::decode(bytes, &path) else {
            continue;
        };
        if checkpoint.generation != generation {
            continue;
        }
        if let Some(at) = checkpoint.continued_by(manifest) {
            return Some((checkpoint, at));
        }
    }
    None
}

/// Counts a checkpoint's locations per segment while it is decoded, to
/// check against the accounting's live items: the accounting decides which
/// segments are freed, so a checkpoint whose two halves disagree is not
/// used. A location's segment is found by its id's offset from the lowest
/// listed id when the ids are close together (they are, but for a segment
/// kept long), else by halves in the sorted ids: a hash per location cost
/// more than the decoding around it, and a search as much.
struct LocationCounter {
    /// The lowest listed id.
    first_id: u32,
    /// With `sparse`, one count per listed id in its order; without, one
    /// per id from `first_id` to the highest listed, [`NOT_LISTED`] for an
    /// id the checkpoint does not list.
    counts: Vec<u64>,
    /// The listed ids, sorted, when they are too far apart for a count per
    /// id in their range.
    sparse: Option<Vec<u32>>,
}

/// A [`LocationCounter`] slot for an id that is not listed.
const NOT_LISTED: u64 = u64::MAX;

impl LocationCounter {
    /// A counter for the segment ids `listed`.
    fn new(listed: &[u32]) -> LocationCounter {
        let mut sorted = listed.to_vec();
        sorted.sort_unstable();
        let (first_id, last_id) = match (sorted.first(), sorted.last()) {
            (Some(&first), Some(&last)) => (first, last),
            _ => (0, 0),
        };
        let span = (last_id - first_id) as usize + 1;
        if span > 4 * sorted.len() + 64 {
            return LocationCounter {
                first_id,
                counts: vec![0; sorted.len()],
                sparse: Some(sorted),
            };
        }
        let mut counts = vec![NOT_LISTED; span];
        for id in sorted {
            if let Some(n) = counts.get_mut((id - first_id) as usize) {
                *n = 0;
            }
        }
        LocationCounter {
            first_id,
            counts,
            sparse: None,
        }
    }

    /// The count slot of segment `id`, if it is listed.
    fn slot(&self, id: u32) -> Option<usize> {
        match &self.sparse {
            None => id
                .checked_sub(self.first_id)
                .map(|k| k as usize)
                .filter(|&k| self.counts.get(k).is_some_and(|&n| n != NOT_LISTED)),
            Some(ids) => ids.binary_search(&id).ok(),
        }
    }

    /// Counts `loc`; `false` if it is not in a listed segment.
    fn count(&mut self, loc: Loc) -> bool {
        if loc.is_missing() {
            return false;
        }
        match self.slot(loc.segment).and_then(|k| self.counts.get_mut(k)) {
            Some(n) => {
                *n += 1;
                true
            }
            None => false,
        }
    }

    /// The locations counted in segment `id` (0 if it is not listed).
    fn of(&self, id: u32) -> u64 {
        self.slot(id)
            .and_then(|k| self.counts.get(k))
            .copied()
            .unwrap_or(0)
    }
}

/// Maps a whole file of at most `max_len` bytes, and asks the disk for all
/// of it: decoding then reads the page cache in place (a copy into a new
/// buffer cost as much as the decoding), and on a cold open overlaps the
/// disk's reads. A checkpoint file is written whole under another name and
/// renamed, never changed or shortened after, so the mapping's bytes stay.
fn map_file(fs: &dyn FileSystem, path: &Path, max_len: u64) -> Result<Arc<dyn Mapping>> {
    let file = fs
        .open(path, OpenMode::ReadOnly)
        .map_err(|e| Error::io("open index checkpoint", path, e))?;
    let len = file
        .len()
        .map_err(|e| Error::io("read index checkpoint", path, e))?;
    if len > max_len {
        return Err(Error::corruption(
            path,
            0,
            "index checkpoint implausibly large",
        ));
    }
    let map = file
        .map()
        .map_err(|e| Error::io("map index checkpoint", path, e))?;
    map.will_need(map.len());
    Ok(map)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_loc(out: &mut Vec<u8>, loc: Loc) {
    put_u32(out, loc.segment);
    put_u32(out, loc.offset);
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Reads little-endian fields with bounds checks (damage is an error).
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let out = self.bytes.get(self.pos..self.pos + n).ok_or_else(|| {
            Error::corruption(self.path, self.pos as u64, "index checkpoint cut short")
        })?;
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32_at(self.take(4)?, 0))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64_at(self.take(8)?, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(checkpoint: &IndexCheckpoint) -> IndexCheckpoint {
        IndexCheckpoint::decode(&checkpoint.encode(), Path::new("index")).unwrap()
    }

    fn sample() -> IndexCheckpoint {
        let mut index = Index::default();
        for (n, id) in [&b"a"[..], b"bb", b"c\xff"].iter().enumerate() {
            let entries: Vec<Loc> = (0..(n as u32 * 70))
                .map(|i| Loc {
                    segment: 1 + i % 2,
                    offset: 64 + 8 * i,
                })
                .collect();
            index.insert(
                JournalKey::from(*id),
                JournalState {
                    first: 5 * n as u64,
                    entries: Locs::from_vec(entries),
                    metadata: (n != 1).then_some(Loc {
                        segment: 2,
                        offset: 8,
                    }),
                    anchor: (n == 2).then_some(Loc {
                        segment: 1,
                        offset: 16,
                    }),
                    entry_bytes: 100 * n as u64,
                    entry_bytes_unknown: false,
                },
            );
        }
        let mut acct = Accounting::default();
        acct.segments.insert(
            1,
            SegmentUsage {
                live_bytes: 77,
                // Its locations below: 35 + 70 entries and one anchor.
                live_items: 106,
                deps: [0u32].into_iter().collect(),
                settled: true,
                tombstones: false,
                journals: [9u64, 3].into_iter().collect(),
            },
        );
        acct.add_segment(2);
        // 35 + 70 entries and two journals' metadata.
        acct.segments.get_mut(&2).unwrap().live_items = 107;
        IndexCheckpoint {
            generation: 7,
            last_lsn: 99,
            active_end: 4096,
            segments: vec![
                ListedSegment {
                    id: 1,
                    sealed_len: Some(5000),
                },
                ListedSegment::active(2),
            ],
            index,
            acct,
            appended: 0,
        }
    }

    /// What is encoded decodes to the same state, and every truncation or
    /// single flipped byte is an error, never a different state.
    #[test]
    fn header_size_matches_the_spec() {
        assert_eq!(std::mem::size_of::<IndexHeader>(), INDEX_HEADER_LEN);
    }

    #[test]
    fn roundtrip_and_damage() {
        let cp = sample();
        let back = roundtrip(&cp);
        assert_eq!(back.generation, 7);
        assert_eq!(back.segments, cp.segments);
        assert_eq!(back.acct.segments, cp.acct.segments);
        let ids: Vec<_> = back.index.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(ids.len(), 3);
        for (id, state) in cp.index.iter() {
            let got = back.index.get(id).unwrap();
            assert_eq!(got.first, state.first);
            assert_eq!(got.metadata, state.metadata);
            assert_eq!(got.anchor, state.anchor);
            assert_eq!(got.entry_bytes, state.entry_bytes);
            assert!(got.entries.iter().eq(state.entries.iter()));
        }
        let bytes = cp.encode();
        for cut in 0..bytes.len() {
            assert!(IndexCheckpoint::decode(&bytes[..cut], Path::new("i")).is_err());
        }
        for at in (0..bytes.len()).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(
                IndexCheckpoint::decode(&damaged, Path::new("i")).is_err(),
                "flip at {at}"
            );
        }
    }

    /// A checkpoint whose accounting counts a segment's live items other
    /// than its index's locations there is refused: the accounting decides
    /// which segments are freed.
    #[test]
    fn live_items_that_disagree_with_the_index_are_refused() {
        for (segment, off_by) in [(1u32, 1i64), (2, -1)] {
            let mut cp = sample();
            let usage = cp.acct.segments.get_mut(&segment).unwrap();
            usage.live_items = usage.live_items.wrapping_add_signed(off_by);
            let err = IndexCheckpoint::decode(&cp.encode(), Path::new("i")).unwrap_err();
            assert!(
                err.to_string().contains("live items disagree"),
                "segment {segment}: {err}"
            );
        }
    }

    /// Locations are counted in the listed segments only, whether the ids
    /// are close together (a count per id in their range) or far apart
    /// (searched by halves); a placeholder is never counted.
    #[test]
    fn locations_are_counted_per_listed_segment() {
        for listed in [vec![9u32, 5, 7, 6], vec![3, 1_000_000, 40, 7]] {
            let mut counter = LocationCounter::new(&listed);
            assert_eq!(counter.sparse.is_some(), listed.contains(&1_000_000));
            let loc = |segment| Loc {
                segment,
                offset: 64,
            };
            for (k, &id) in listed.iter().enumerate() {
                for _ in 0..=k {
                    assert!(counter.count(loc(id)), "{listed:?}: {id}");
                }
            }
            let min = *listed.iter().min().unwrap();
            let max = *listed.iter().max().unwrap();
            for id in [0, min - 1, 8, max + 1, u32::MAX] {
                assert!(!counter.count(loc(id)), "{listed:?}: {id} is not listed");
                assert_eq!(counter.of(id), 0);
            }
            assert!(!counter.count(Loc::MISSING));
            for (k, &id) in listed.iter().enumerate() {
                assert_eq!(counter.of(id), k as u64 + 1, "{listed:?}: {id}");
            }
        }
    }

    /// The layouts a later manifest may have: rolls and frees continue the
    /// checkpoint; a compaction, a reordering, a shorter active segment or
    /// an older generation do not.
    #[test]
    fn which_manifests_continue_a_checkpoint() {
        let cp = sample();
        let manifest = |generation, segments: Vec<ListedSegment>| Manifest {
            generation,
            next_segment_id: 10,
            lsn_floor: 0,
            segments,
        };
        let sealed = |id, len| ListedSegment {
            id,
            sealed_len: Some(len),
        };
        let same = manifest(7, cp.segments.clone());
        assert_eq!(cp.continued_by(&same), Some(1));
        let rolled = manifest(
            8,
            vec![sealed(1, 5000), sealed(2, 6000), ListedSegment::active(3)],
        );
        assert_eq!(cp.continued_by(&rolled), Some(1));
        let freed = manifest(9, vec![sealed(2, 6000), ListedSegment::active(3)]);
        assert_eq!(cp.continued_by(&freed), Some(0));
        let compacted = manifest(
            9,
            vec![sealed(4, 300), sealed(2, 6000), ListedSegment::active(5)],
        );
        assert_eq!(cp.continued_by(&compacted), None);
        let active_compacted = manifest(9, vec![sealed(1, 5000), ListedSegment::active(5)]);
        assert_eq!(cp.continued_by(&active_compacted), None);
        let cut = manifest(
            8,
            vec![sealed(1, 5000), sealed(2, 4000), ListedSegment::active(3)],
        );
        assert_eq!(cp.continued_by(&cut), None);
        let resealed = manifest(8, vec![sealed(1, 4999), ListedSegment::active(2)]);
        assert_eq!(cp.continued_by(&resealed), None);
        assert_eq!(cp.continued_by(&manifest(6, cp.segments.clone())), None);
    }
}
