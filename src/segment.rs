//! One segment file: a memory-mapped run of records in a file created at
//! its full size (sparse, disk space reserved ahead of the data).
//!
//! A segment is created at its full size, so its mapping never has to grow,
//! and it is never shrunk. Records are appended with `write_at` (through the
//! I/O layer) and read through the mapping. When the last `Arc<Segment>` of a
//! segment that the manifest no longer lists drops, the file is removed: a
//! segment lives exactly as long as some generation or snapshot can reach it.
//!
//! Invariants:
//! - Only the store that owns the directory removes a segment file, while
//!   it holds the directory lock ([`DirOwner`]), and only the file the
//!   segment maps (same [`FileIdentity`]); anything else is left for the
//!   next open's orphan sweep.
//! - A segment keeps its file descriptor only while it may be written: a
//!   sealed segment keeps its mapping alone (see [`Segment::close_file`]).
//! - A value's checksum is checked before its bytes are first handed out
//!   by this `Segment`; a bit in its `verified` map then lets later reads
//!   skip it (see [`Segment::read_value`]). The bytes an index location
//!   points at never change while a `Segment` maps them (records are only
//!   appended, and no location points past what was written and
//!   published), so one check holds for the life of the mapping, short of
//!   the file being changed behind the store's back.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::error::{Error, Result};
use crate::io::{FileIdentity, FileSystem, LockGuard, Mapping, OpenMode, StorageFile};
use crate::mutex::lock;
use crate::record::{
    align_up, crc32, read_op_header, RecordHeader, SegmentHeader, FORMAT_VERSION, OP_HEADER_LEN,
    READABLE_VERSIONS, RECORD_HEADER_LEN, RECORD_KIND_BATCH, RECORD_KIND_SYNC_MARK,
    SEGMENT_HEADER_LEN, SEGMENT_MAGIC,
};

/// Bytes of segment per bit of a segment's `verified` map, as a shift.
///
/// An operation is its 32-byte header, a journal id of at least one byte
/// and its value, so two operations start at least `OP_HEADER_LEN + 1`
/// bytes apart and never in the same 32-byte granule: a bit stands for one
/// operation. The map costs `capacity / 256` bytes (256 KiB for a 64 MiB
/// segment).
const VERIFY_GRANULE_SHIFT: u32 = 5;
const _: () = assert!(1 << VERIFY_GRANULE_SHIFT <= OP_HEADER_LEN + 1);

/// A page of the usual file systems and of the page cache: what a fault on
/// a mapping reads where read-around is off (`Advice::Random`, io.rs).
const DISK_PAGE: usize = 4096;

/// Starts loading the cache line holding `p` (a no-op where no prefetch
/// instruction is wired up).
#[inline]
#[allow(unsafe_code)]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program can see
    // and never faults, whatever the address; the SSE feature it needs is
    // part of every x86_64 target.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

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

/// The open store's hold on its directory: the directory lock, from open
/// until close (or drop). Every segment the store opens or creates shares
/// it, and removes its file only under it (see `Segment`'s `Drop`): a
/// segment that outlives its store, pinned by a snapshot, must not remove a
/// file of whatever the directory holds by then (a new store's segment ids
/// start at 1 again; a restored checkpoint brings back the old names). What
/// is left over is the next open's orphan sweep.
#[derive(Debug)]
pub(crate) struct DirOwner {
    lock: Mutex<Option<Box<dyn LockGuard>>>,
}

impl DirOwner {
    /// The hold of a store that has just taken `lock`.
    pub fn new(lock: Box<dyn LockGuard>) -> Arc<DirOwner> {
        Arc::new(DirOwner {
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Runs `f` if the store still holds the directory; its release waits
    /// until `f` is done.
    fn while_owned(&self, f: impl FnOnce()) {
        let held = lock(&self.lock);
        if held.is_some() {
            f();
        }
        drop(held);
    }

    /// Gives the directory up and releases its lock: a removal under way
    /// finishes first, and none starts afterwards.
    pub fn release(&self) {
        let guard = lock(&self.lock).take();
        drop(guard);
    }
}

/// An open segment file and its mapping.
///
/// Only a segment that may still be written keeps its file open; a sealed
/// one keeps just its mapping, which stays valid after the descriptor is
/// closed, so a store holds one descriptor for its active segment however
/// many segments it maps (see [`Segment::close_file`]).
#[derive(Debug)]
pub(crate) struct Segment {
    pub id: u32,
    pub path: PathBuf,
    /// The open file until [`Segment::close_file`]; then `None` for good.
    file: Mutex<Option<Arc<dyn StorageFile>>>,
    /// How [`Segment::file`] opens the file again once it is closed.
    mode: OpenMode,
    /// The identity of the file mapped: a name that leads elsewhere is not
    /// this segment's (see `Drop`).
    identity: FileIdentity,
    map: Arc<dyn Mapping>,
    pub capacity: u64,
    pub base_lsn: u64,
    /// The format version in the header (one of [`READABLE_VERSIONS`]).
    pub version: u32,
    obsolete: AtomicBool,
    fs: Arc<dyn FileSystem>,
    /// The store that may remove the file; `None` for a read-only open,
    /// which never removes anything.
    owner: Option<Arc<DirOwner>>,
    /// Which operations' values passed their checksum.
    verified: VerifiedMap,
}

/// One bit per 32-byte granule of a segment (see [`VERIFY_GRANULE_SHIFT`]),
/// set once the value of the operation starting in it passed its checksum.
/// Allocated at the segment's first [`Segment::read_value`], so a segment
/// never read costs nothing; empty if that allocation failed (every read
/// is then checked).
#[derive(Default)]
struct VerifiedMap(OnceLock<Box<[AtomicU64]>>);

impl std::fmt::Debug for VerifiedMap {
    /// Its size, not its bits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words = self.0.get().map(|w| w.len());
        f.debug_struct("VerifiedMap")
            .field("words", &words)
            .finish()
    }
}

impl Segment {
    /// Creates segment `id` in `dir`: `capacity` bytes long, disk space
    /// reserved for its first `reserve` bytes (the rest is sparse until the
    /// writer reserves it), header written, and synced if `sync_header`
    /// (a caller that syncs the file itself before anything names it, like
    /// compaction, saves one sync). The file is `owner`'s to remove.
    ///
    /// On failure the file is removed again: a caller that retries (the
    /// compaction thread, with a new id each time) must not leave a file
    /// holding disk space per attempt on a full disk. If even the removal
    /// fails, the file is an orphan that the next open removes.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        owner: Option<&Arc<DirOwner>>,
        id: u32,
        capacity: u64,
        reserve: u64,
        base_lsn: u64,
        sync_header: bool,
    ) -> Result<Segment> {
        let path = dir.join(segment_file_name(id));
        let file = fs
            .open(&path, OpenMode::CreateNew)
            .map_err(|e| Error::io("create segment", &path, e))?;
        let made = Self::prepare(&file, &path, id, capacity, reserve, base_lsn, sync_header);
        let (map, identity) = match made {
            Ok(made) => made,
            Err(e) => {
                drop(file);
                // Created just now with `CreateNew` by the store holding the
                // directory lock: nothing else can have taken the name.
                let _ = fs.remove_file(&path);
                return Err(e);
            }
        };
        Ok(Segment {
            id,
            path,
            file: Mutex::new(Some(file)),
            mode: OpenMode::ReadWrite,
            identity,
            map,
            capacity,
            base_lsn,
            version: FORMAT_VERSION,
            obsolete: AtomicBool::new(false),
            fs: fs.clone(),
            owner: owner.cloned(),
            verified: VerifiedMap::default(),
        })
    }

    /// The steps of [`Segment::create`] after the file exists.
    #[allow(clippy::too_many_arguments)]
    fn prepare(
        file: &Arc<dyn StorageFile>,
        path: &Path,
        id: u32,
        capacity: u64,
        reserve: u64,
        base_lsn: u64,
        sync_header: bool,
    ) -> Result<(Arc<dyn Mapping>, FileIdentity)> {
        let io = |op| move |e| Error::io(op, path, e);
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
        let identity = file.identity().map_err(io("stat segment"))?;
        Ok((map, identity))
    }

    /// Opens an existing segment's file and maps it, and asks the disk for
    /// its header page without waiting for it: a caller opening many
    /// segments has their headers read side by side, then checks each with
    /// [`MappedSegment::check`]. The file stays open until
    /// [`Segment::close_file`]; a caller opening a sealed segment closes it
    /// at once.
    pub fn map_file(
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        id: u32,
        mode: OpenMode,
    ) -> Result<MappedSegment> {
        let path = dir.join(segment_file_name(id));
        let file = fs.open(&path, mode).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::corruption(&path, 0, "segment listed in the manifest is missing")
            } else {
                Error::io("open segment", &path, e)
            }
        })?;
        let identity = file
            .identity()
            .map_err(|e| Error::io("stat segment", &path, e))?;
        let map = file.map().map_err(|e| Error::io("map segment", &path, e))?;
        map.will_need_range(0, SEGMENT_HEADER_LEN);
        Ok(MappedSegment {
            id,
            path,
            file,
            identity,
            map,
            mode,
            fs: fs.clone(),
        })
    }
}

/// A segment file opened and mapped by [`Segment::map_file`], its header
/// not read yet.
pub(crate) struct MappedSegment {
    id: u32,
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    identity: FileIdentity,
    map: Arc<dyn Mapping>,
    mode: OpenMode,
    fs: Arc<dyn FileSystem>,
}

impl MappedSegment {
    /// Checks the header against the file's name and size, and makes the
    /// segment. Its file is `owner`'s to remove (`None`: never removed by
    /// this process, as in a read-only open).
    pub fn check(self, owner: Option<&Arc<DirOwner>>) -> Result<Segment> {
        let MappedSegment {
            id,
            path,
            file,
            identity,
            map,
            mode,
            fs,
        } = self;
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
        if !READABLE_VERSIONS.contains(&header.version.get()) {
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
            file: Mutex::new(Some(file)),
            mode: match mode {
                OpenMode::ReadOnly => OpenMode::ReadOnly,
                OpenMode::CreateNew | OpenMode::ReadWrite => OpenMode::ReadWrite,
            },
            identity,
            map,
            capacity,
            base_lsn: header.base_lsn.get(),
            version: header.version.get(),
            obsolete: AtomicBool::new(false),
            fs,
            owner: owner.cloned(),
            verified: VerifiedMap::default(),
        })
    }
}

impl Segment {
    /// The store this segment belongs to, if any: a new segment of the same
    /// store shares it.
    pub fn owner(&self) -> Option<&Arc<DirOwner>> {
        self.owner.as_ref()
    }

    /// The segment's open file, for writing, syncing or asking the file
    /// system about it. Costs a lock and an `Arc` clone while the file is
    /// open; after [`Segment::close_file`] (rare uses on a sealed segment)
    /// the file is opened again for the caller alone, and refused if its
    /// name no longer leads to the file mapped.
    pub fn file(&self) -> io::Result<Arc<dyn StorageFile>> {
        if let Some(file) = &*lock(&self.file) {
            return Ok(file.clone());
        }
        let file = self.fs.open(&self.path, self.mode)?;
        if file.identity()? != self.identity {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the segment's file name leads to another file",
            ));
        }
        Ok(file)
    }

    /// Closes the segment's file once it is sealed: the mapping (and every
    /// slice read from it) stays valid, and the descriptor is given back.
    /// A holder of an `Arc` from [`Segment::file`] keeps it until done.
    pub fn close_file(&self) {
        let file = lock(&self.file).take();
        drop(file);
    }

    /// The mapped bytes `offset .. offset + len`, if inside the file.
    pub fn bytes(&self, offset: usize, len: usize) -> Option<&[u8]> {
        self.map.slice(offset, len)
    }

    /// Starts reading the first `len` bytes from disk in the background
    /// (the scans of recovery, compaction and checkpoints; see
    /// [`Mapping::will_need`]).
    pub fn will_need(&self, len: u64) {
        self.map
            .will_need(usize::try_from(len).unwrap_or(usize::MAX));
    }

    /// Starts reading the operation at `offset` from disk in the background
    /// if its value has not been read since open (a value whose checksum
    /// passed was in memory then): the page it starts in, where a small
    /// value lies whole. No system call for a value read before, so warm
    /// reads pay nothing.
    pub fn will_need_op(&self, offset: u32) {
        if !self.is_verified(offset) {
            self.map.will_need_range(offset as usize, DISK_PAGE);
        }
    }

    /// Whether the value of the operation at `offset` passed its checksum
    /// since open.
    fn is_verified(&self, offset: u32) -> bool {
        self.verified_bit(offset)
            .is_some_and(|(word, mask)| word.load(Ordering::Relaxed) & mask != 0)
    }

    /// Lets the mapping's pages leave the process's resident set (recovery,
    /// after scanning a segment; see [`Mapping::release`]).
    pub fn release(&self) {
        self.map.release();
    }

    /// [`Segment::release`] for the pages wholly inside `offset..offset +
    /// len`.
    pub fn release_range(&self, offset: usize, len: usize) {
        self.map.release_range(offset, len);
    }

    /// Encoded size of the operation at `offset` (0 if it cannot be read).
    pub fn op_len(&self, offset: u32) -> u64 {
        self.bytes(offset as usize, OP_HEADER_LEN)
            .and_then(read_op_header)
            .map_or(0, |h| h.encoded_len() as u64)
    }

    /// Asks the CPU to start loading the operation at `offset` into its
    /// cache: its header and the journal id after it, which a read touches
    /// before the value (two lines when they straddle one). A hint, with no
    /// effect on what any read returns.
    pub fn prefetch(&self, offset: u32) {
        let head = OP_HEADER_LEN + 8;
        if let Some(bytes) = self.bytes(offset as usize, head) {
            prefetch_line(bytes.as_ptr());
            prefetch_line(bytes[head - 1..].as_ptr());
        }
    }

    /// The value (entry or metadata bytes) of the operation at `offset`.
    ///
    /// Its CRC is checked on the first read through this `Segment` (a
    /// flipped bit on disk is an error, never data); a check that passes
    /// sets the operation's `verified` bit, and later reads skip the CRC.
    /// A check that fails sets nothing, so damage is reported on every
    /// read. The operation header's bounds and journal id are checked on
    /// every read.
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
        let bit = self.verified_bit(offset);
        // The bit guards no bytes its setter wrote (the value was
        // published before either read), so the orderings only keep it
        // after the check that set it; on x86 they cost what Relaxed does.
        if bit.is_some_and(|(word, mask)| word.load(Ordering::Acquire) & mask != 0) {
            return Ok(value);
        }
        if len > DISK_PAGE {
            // Its first read since open, of more than a page: have the
            // pages read side by side (the mapping reads a page per fault).
            self.map.will_need_range(start, len);
        }
        if crc32(value) != header.value_crc.get() {
            return Err(corrupt("value checksum mismatch"));
        }
        if let Some((word, mask)) = bit {
            word.fetch_or(mask, Ordering::Release);
        }
        Ok(value)
    }

    /// The word and mask of the `verified` bit of the operation at
    /// `offset`; `None` (check every time) if the map could not be
    /// allocated or `offset` is outside the segment.
    fn verified_bit(&self, offset: u32) -> Option<(&AtomicU64, u64)> {
        let words = self.verified.0.get_or_init(|| {
            let granules = self.capacity.div_ceil(1 << VERIFY_GRANULE_SHIFT);
            usize::try_from(granules.div_ceil(64))
                .ok()
                .and_then(|n| <[AtomicU64]>::new_box_zeroed_with_elems(n).ok())
                .unwrap_or_default()
        });
        let granule = (offset >> VERIFY_GRANULE_SHIFT) as usize;
        let word = words.get(granule / 64)?;
        Some((word, 1 << (granule % 64)))
    }

    /// Gives back the disk space reserved past `end`, the end of the
    /// segment's records, once nothing more will be written there: from
    /// the first page after a sync mark that may follow them. Best effort
    /// (see `StorageFile::unreserve`); the bytes read as zeros either way.
    pub fn unreserve_after(&self, end: u64) {
        // 4 KiB: a page, and the block of the usual file systems (a hole
        // punched inside a block zeroes it, which past the data changes
        // nothing either).
        let from = (end + RECORD_HEADER_LEN as u64).next_multiple_of(4096);
        if let Ok(file) = self.file() {
            let _ = file.unreserve(from);
        }
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
        if !self.obsolete.load(Ordering::Acquire) {
            return;
        }
        let Some(owner) = &self.owner else {
            return;
        };
        // Only while the store that owns the directory holds its lock, and
        // only if the name still leads to the file this segment maps (the
        // mapping, alive until this returns, keeps its identity from being
        // given to another file). Otherwise, or if the removal fails, the
        // file is left for the next open's orphan sweep.
        owner.while_owned(|| {
            if self.fs.identity(&self.path).ok() == Some(self.identity) {
                let _ = self.fs.remove_file(&self.path);
            }
        });
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
