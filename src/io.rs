//! The narrow I/O layer every byte the engine writes goes through.
//!
//! The engine never calls `std::fs` directly: it asks a [`FileSystem`] for
//! [`StorageFile`]s and mappings. [`RealFs`] is the operating system;
//! [`SimFs`] keeps the same files on disk but also tracks what
//! would survive a power loss, can inject I/O errors, and can "crash" the
//! directory back to its durable image (see `sim.rs`).
//!
//! Invariant the engine relies on: a [`Mapping`] covers the file as it was
//! when mapped, and the engine never shrinks a file that is mapped, so a read
//! through a mapping never faults (SIGBUS).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;

mod in_place;
mod sim;
#[doc(hidden)]
pub use sim::{CrashMode, Fault, SimFs, SyncHold};

/// How [`FileSystem::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new, empty file for reading and writing; fails if it exists.
    CreateNew,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Open an existing file for reading only.
    ReadOnly,
}

/// A read-only view of a file's bytes, usually a memory mapping.
pub trait Mapping: Send + Sync + fmt::Debug {
    /// Length of the view in bytes.
    fn len(&self) -> usize;

    /// Whether the view is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes `offset .. offset + len`, or `None` when the range is not
    /// inside the view.
    ///
    /// Callers only ask for ranges that no writer is changing: bytes below the
    /// published write position of a segment, which are never written again.
    fn slice(&self, offset: usize, len: usize) -> Option<&[u8]>;

    /// A hint that the view's pages will not be needed soon: they may leave
    /// the process's resident set (they stay in the page cache). The bytes
    /// the view shows do not change.
    fn release(&self) {}

    /// Like [`release`](Self::release), for the pages wholly inside `len`
    /// bytes from `offset`: a scan gives back what it has read as it goes.
    fn release_range(&self, _offset: usize, _len: usize) {}

    /// A hint that the first `len` bytes of the view will be read soon:
    /// the system may start reading them from disk now, so that a scan that
    /// gets there later finds them in memory.
    fn will_need(&self, _len: usize) {}

    /// Like [`will_need`](Self::will_need), for `len` bytes from `offset`:
    /// a reader that knows where it goes next (a journal's next entries)
    /// has them read from disk side by side instead of one fault at a time.
    fn will_need_range(&self, _offset: usize, _len: usize) {}
}

/// What a file is, independently of the names it has: on the real file
/// system its device and inode numbers. Two open files or paths with the
/// same identity are the same file. An identity is not reused while the
/// file is open or mapped (the engine keeps every segment it may remove
/// mapped until then), so a name that shows a segment's identity still
/// leads to that segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// The device the file is on.
    pub device: u64,
    /// The file's number on that device.
    pub inode: u64,
}

/// One open file of the store.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Current length of the file in bytes.
    fn len(&self) -> io::Result<u64>;
    /// The identity of this open file (see [`FileIdentity`]).
    fn identity(&self) -> io::Result<FileIdentity>;
    /// Grow the file to at least `len` bytes, reserving disk space where the
    /// file system supports it. Never shrinks the file.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Grow the file to at least `len` bytes without reserving disk space
    /// for the growth: a sparse extension that reads back as zeros, for
    /// [`reserve`](Self::reserve) to back as data approaches. Never shrinks.
    fn extend(&self, len: u64) -> io::Result<()>;
    /// Reserve disk space for the first `upto` bytes of the file (within its
    /// length) where the file system supports it, so that writes there
    /// cannot fail for lack of space.
    fn reserve(&self, upto: u64) -> io::Result<()>;
    /// Give back the disk space of the file from `from` to its end, keeping
    /// its length, where the file system supports it (a hole, which reads
    /// as zeros): for a range that holds no data, so that nothing a read
    /// sees changes. Best effort: a file system that cannot keeps the
    /// blocks, and that is not an error.
    fn unreserve(&self, _from: u64) -> io::Result<()> {
        Ok(())
    }
    /// Write all of `buf` at `offset`.
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Like [`write_at`](Self::write_at), where the implementation can,
    /// by copying into a shared writable mapping of the file (the real file
    /// system does, within disk space [`reserve`](Self::reserve) or
    /// [`allocate`](Self::allocate) reserved): no system call, and writers
    /// of disjoint ranges of one file do not queue on its inode lock. The
    /// bytes are in the page cache when it returns, as after `write_at`.
    /// The caller writes no range that another write or a read may reach
    /// at the same time, and none that [`unreserve`](Self::unreserve) gave
    /// back. The default is `write_at`.
    fn write_in_place(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.write_at(offset, buf)
    }
    /// A hint after [`write_in_place`](Self::write_in_place) of `len`
    /// bytes at `offset` returned and the write counts as done: the
    /// implementation may ready the space after it for the next writes (the
    /// real file system populates the pages ahead and releases the pages
    /// mapped behind). Called outside every lock, so that nobody waiting
    /// for the write waits for this too. The default does nothing.
    fn after_write_in_place(&self, offset: u64, len: usize) {
        let _ = (offset, len);
    }
    /// Fill `buf` from `offset`; fails with `UnexpectedEof` past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Make every write to this file so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Map the whole file (its current length) read-only.
    fn map(&self) -> io::Result<Arc<dyn Mapping>>;
    /// The next range at or after `from` that may hold written bytes, or
    /// `None` if the rest of the file is a hole (never written, reads as
    /// zeros). A file system that cannot tell answers with the rest of the
    /// file, which is always correct, only slower to check.
    fn next_data(&self, from: u64) -> io::Result<Option<std::ops::Range<u64>>> {
        let len = self.len()?;
        Ok((from < len).then_some(from..len))
    }
}

/// The file-system operations the engine uses.
pub trait FileSystem: Send + Sync + fmt::Debug + 'static {
    /// Create one directory, whose parent exists: fails with `AlreadyExists`
    /// if `path` exists, `NotFound` if its parent does not. Durable only
    /// after [`FileSystem::sync_dir`] of the parent.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Open a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// The identity of the file `path` names now, without following a
    /// symbolic link (see [`FileIdentity`]).
    fn identity(&self, path: &Path) -> io::Result<FileIdentity>;
    /// Remove a file. Durable only after [`FileSystem::sync_dir`] of its parent.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically replace `to` by `from`. Durable only after
    /// [`FileSystem::sync_dir`] of the parent.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the regular files in a directory.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Make creations, renames and removals in a directory durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Give the file at `from` a second name `to` (a hard link). The default
    /// copies the bytes instead, through this trait, and syncs the copy;
    /// the real file system links and falls back to copying (another device,
    /// no link support). Durable after [`FileSystem::sync_dir`] of `to`'s parent.
    fn link_or_copy(&self, from: &Path, to: &Path) -> io::Result<()> {
        copy_file(self, from, to)
    }

    /// Take an exclusive advisory lock on `path` (created if missing), held
    /// until the returned guard drops. Fails with `WouldBlock` when another
    /// holder (this process or another) has it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;
}

/// Syncs the directory that holds `path`, so that `path`'s own entry (a
/// directory just created) is durable.
pub(crate) fn sync_parent<F: FileSystem + ?Sized>(fs: &F, path: &Path) -> io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs.sync_dir(parent)
}

/// Creates directory `path` and every missing ancestor, and makes each new
/// level durable: once it returns, a power loss keeps the whole path. A
/// plain `create_dir_all` followed by a sync of the last parent would leave
/// the upper new levels' entries in their parents unsynced, and with them
/// everything below.
///
/// Walks up from `path` to the first level that exists, creates the
/// missing levels top down, then syncs the parent of each level it created
/// (so the level that existed, and every new level but the last). A level
/// another process creates meanwhile counts as existing.
pub(crate) fn create_dir_all_durably<F: FileSystem + ?Sized>(
    fs: &F,
    path: &Path,
) -> io::Result<()> {
    // Levels still to create, deepest first.
    let mut missing: Vec<&Path> = Vec::new();
    let mut at = path;
    let mut created: Vec<&Path> = Vec::new();
    loop {
        match fs.create_dir(at) {
            Ok(()) => {
                created.push(at);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(at);
                at = match at.parent().filter(|p| !p.as_os_str().is_empty()) {
                    Some(parent) => parent,
                    // A relative path's first level is missing: its parent
                    // is the working directory, which exists.
                    None => return Err(e),
                };
            }
            Err(e) => return Err(e),
        }
    }
    while let Some(level) = missing.pop() {
        match fs.create_dir(level) {
            Ok(()) => created.push(level),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    for level in created {
        sync_parent(fs, level)?;
    }
    Ok(())
}

/// Copies `from` to a new file `to` through `fs`, in 1 MiB chunks, and syncs it.
pub(crate) fn copy_file<F: FileSystem + ?Sized>(fs: &F, from: &Path, to: &Path) -> io::Result<()> {
    let src = fs.open(from, OpenMode::ReadOnly)?;
    let dst = fs.open(to, OpenMode::CreateNew)?;
    let len = src.len()?;
    dst.allocate(len)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        src.read_at(at, &mut buf[..n])?;
        dst.write_at(at, &buf[..n])?;
        at += n as u64;
    }
    dst.sync_data()
}

/// The `op` names of the steps of [`replace_durably`], for its errors.
pub(crate) struct ReplaceSteps {
    pub remove_stale: &'static str,
    pub create: &'static str,
    pub write: &'static str,
    pub sync: &'static str,
    pub rename: &'static str,
}

/// Makes `bytes` the content of `path` atomically and durably: written to
/// `tmp` (a stale one removed first), synced, renamed over `path`, the
/// directory `dir` synced. A crash at any step leaves `path` as it was or
/// as written, never partly written.
pub(crate) fn replace_durably(
    fs: &dyn FileSystem,
    dir: &Path,
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    steps: &ReplaceSteps,
) -> crate::error::Result<()> {
    use crate::error::Error;
    match fs.remove_file(tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(Error::io(steps.remove_stale, tmp, e));
        }
        _ => {}
    }
    let file = fs
        .open(tmp, OpenMode::CreateNew)
        .map_err(|e| Error::io(steps.create, tmp, e))?;
    file.write_at(0, bytes)
        .map_err(|e| Error::io(steps.write, tmp, e))?;
    file.sync_data()
        .map_err(|e| Error::io(steps.sync, tmp, e))?;
    drop(file);
    fs.rename(tmp, path)
        .map_err(|e| Error::io(steps.rename, path, e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Reads a whole regular file of the real file system (not through a
/// [`FileSystem`]: for tools that read a store from outside), refusing one
/// longer than `max` bytes: a file longer than any the engine writes is
/// damage, not a reason to allocate. Special files (`/dev/zero` never ends)
/// are refused, and at most `max + 1` bytes are read in case the file grows
/// meanwhile. `op` names the operation in I/O errors.
pub(crate) fn read_bounded(
    path: &Path,
    op: &'static str,
    max: u64,
) -> crate::error::Result<Vec<u8>> {
    use crate::error::Error;
    use std::io::Read;
    let file = File::open(path).map_err(|e| Error::io(op, path, e))?;
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

/// Holds a lock taken with [`FileSystem::lock`] until dropped.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// The operating system's file system: `std::fs`, `memmap2` and `fs4`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile {
    file: File,
    /// `write_in_place`'s mapping, and where it may write.
    in_place: in_place::InPlaceWrites,
}

#[derive(Debug)]
struct RealMapping {
    // `None` for an empty file: mapping zero bytes is an error on Linux.
    mmap: Option<memmap2::Mmap>,
}

#[derive(Debug)]
struct RealLock {
    _file: File,
}

impl LockGuard for RealLock {}

/// The longest range one `MADV_WILLNEED` asks for (see
/// [`RealMapping::will_need_range`]).
const WILL_NEED_PIECE: usize = 128 << 10;

impl Mapping for RealMapping {
    fn len(&self) -> usize {
        self.mmap.as_ref().map_or(0, |m| m.len())
    }

    #[allow(unsafe_code)]
    fn release(&self) {
        if let Some(mmap) = &self.mmap {
            // SAFETY: MADV_DONTNEED on a shared, read-only file mapping only
            // drops the page table entries: the next access faults the same
            // bytes back in from the page cache or the file, so slices
            // borrowed from the mapping keep seeing the same contents (the
            // danger memmap2 warns of is for private or anonymous mappings,
            // whose contents it resets). A failure only leaves pages resident.
            let _ = unsafe { mmap.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        }
    }

    #[allow(unsafe_code)]
    fn release_range(&self, offset: usize, len: usize) {
        let Some(mmap) = &self.mmap else {
            return;
        };
        // Whole pages only: `madvise` takes a page-aligned start, and a
        // page partly outside the range may hold bytes still in use.
        let page = rustix::param::page_size();
        let start = offset.div_ceil(page) * page;
        let end = offset.saturating_add(len).min(mmap.len()) / page * page;
        if start < end {
            // SAFETY: as in `release`: dropping the page table entries of a
            // shared, read-only file mapping leaves the bytes it shows as
            // they were. A failure only leaves pages resident.
            let _ = unsafe {
                mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }

    fn will_need(&self, len: usize) {
        self.will_need_range(0, len);
    }

    fn will_need_range(&self, offset: usize, len: usize) {
        let Some(mmap) = &self.mmap else {
            return;
        };
        let Some(room) = mmap.len().checked_sub(offset) else {
            return;
        };
        // Linux reads at most the device's read-ahead window (or its
        // largest request, if larger) per `MADV_WILLNEED` and ignores the
        // rest of the range, so a long range is asked for in pieces no
        // longer than the smallest window in use (128 KiB, the default).
        let end = offset + len.min(room);
        let mut at = offset;
        while at < end {
            let piece = (end - at).min(WILL_NEED_PIECE);
            // A failure only means no read-ahead.
            let _ = mmap.advise_range(memmap2::Advice::WillNeed, at, piece);
            at += piece;
        }
    }

    #[allow(unsafe_code)]
    fn slice(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let mmap = self.mmap.as_ref()?;
        let end = offset.checked_add(len)?;
        if end > mmap.len() {
            return None;
        }
        // SAFETY: `offset .. end` lies inside the mapping (checked above), and
        // the mapping lives as long as `&self`. We build a slice of just that
        // range rather than dereferencing the whole `Mmap`, so no reference
        // covers bytes that a writer may still be changing through `pwrite`:
        // the engine only asks for ranges below a segment's published write
        // position, which are never written again, and never shrinks a mapped
        // file (so the pages stay backed and cannot raise SIGBUS).
        Some(unsafe { std::slice::from_raw_parts(mmap.as_ptr().add(offset), len) })
    }
}

/// The identity `metadata` describes.
fn identity_of(metadata: &std::fs::Metadata) -> FileIdentity {
    use std::os::unix::fs::MetadataExt;
    FileIdentity {
        device: metadata.dev(),
        inode: metadata.ino(),
    }
}

impl StorageFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn identity(&self) -> io::Result<FileIdentity> {
        Ok(identity_of(&self.file.metadata()?))
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if self.len()? >= len {
            return Ok(());
        }
        // fallocate reserves the blocks so that a later write cannot fail with
        // ENOSPC halfway through a segment; file systems without it get a
        // sparse extension, which reads back as zeros all the same.
        // fs4 leaves the size alone when the blocks are already there, so
        // the length is set explicitly afterwards.
        // Other failures (EOPNOTSUPP on some file systems) fall back to a
        // sparse extension; a full disk is reported.
        match fs4::FileExt::allocate(&self.file, len) {
            Ok(()) => self.in_place.reserved_to(len),
            Err(e) if e.kind() == io::ErrorKind::StorageFull => return Err(e),
            Err(_) => {}
        }
        if self.len()? < len {
            self.file.set_len(len)?;
        }
        Ok(())
    }

    fn extend(&self, len: u64) -> io::Result<()> {
        if self.len()? < len {
            self.file.set_len(len)?;
        }
        Ok(())
    }

    fn reserve(&self, upto: u64) -> io::Result<()> {
        // fs4 returns at once when the file's blocks already cover `upto`;
        // within the file's length it allocates without changing the size.
        // As in `allocate`, only a full disk is an error.
        let upto = upto.min(self.len()?);
        match fs4::FileExt::allocate(&self.file, upto) {
            Ok(()) => {
                self.in_place.reserved_to(upto);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::StorageFull => Err(e),
            Err(_) => Ok(()),
        }
    }

    fn unreserve(&self, from: u64) -> io::Result<()> {
        use rustix::fs::{fallocate, FallocateFlags};
        // Before the hole: no copy in place may fault a block back in.
        self.in_place.unreserved_from(from);
        let len = self.len()?;
        if from >= len {
            return Ok(());
        }
        // A punched hole keeps the length and reads back as zeros. Where
        // unsupported (EOPNOTSUPP), the blocks stay: not an error.
        match fallocate(
            &self.file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            from,
            len - from,
        ) {
            Err(rustix::io::Errno::OPNOTSUPP) => Ok(()),
            other => other.map_err(io::Error::from),
        }
    }

    fn next_data(&self, from: u64) -> io::Result<Option<std::ops::Range<u64>>> {
        use rustix::fs::{seek, SeekFrom};
        let len = self.len()?;
        if from >= len {
            return Ok(None);
        }
        // SEEK_DATA / SEEK_HOLE (Linux ext4, xfs, btrfs, tmpfs): ranges the
        // file system never wrote, including reserved but unwritten ones,
        // are holes. Where unsupported, the whole rest is data.
        let start = match seek(&self.file, SeekFrom::Data(from)) {
            Ok(start) => start,
            Err(rustix::io::Errno::NXIO) => return Ok(None),
            Err(_) => return Ok(Some(from..len)),
        };
        let end = seek(&self.file, SeekFrom::Hole(start)).unwrap_or(len);
        Ok(Some(start..end.clamp(start, len)))
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }

    fn write_in_place(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.in_place.write(&self.file, offset, buf) {
            return Ok(());
        }
        self.write_at(offset, buf)
    }

    fn after_write_in_place(&self, offset: u64, len: usize) {
        self.in_place.after_write(offset, len);
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    #[allow(unsafe_code)]
    fn map(&self) -> io::Result<Arc<dyn Mapping>> {
        if self.len()? == 0 {
            return Ok(Arc::new(RealMapping { mmap: None }));
        }
        // SAFETY: memmap2 requires that the file is not truncated or modified
        // in ways that break Rust's aliasing rules while mapped. The engine
        // never shrinks a mapped file, takes an exclusive lock on the store
        // directory so no other journalstore writer touches it, and hands out
        // only slices of ranges that are no longer written (see `slice`).
        let mmap = unsafe { memmap2::Mmap::map(&self.file)? };
        // A segment is read by location (a journal's entries, one entry),
        // not from end to end: a page fault reads that page, not the
        // device's read-ahead window around it (up to megabytes, most of
        // it other journals' records). The sequential readers (recovery,
        // compaction's copy, a checkpoint's copy) ask for their read-ahead
        // with `will_need`. A failure only leaves the kernel's default.
        let _ = mmap.advise(memmap2::Advice::Random);
        Ok(Arc::new(RealMapping { mmap: Some(mmap) }))
    }
}

impl FileSystem for RealFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }

    fn identity(&self, path: &Path) -> io::Result<FileIdentity> {
        Ok(identity_of(&std::fs::symlink_metadata(path)?))
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::ReadOnly => options.read(true),
        };
        Ok(Arc::new(RealFile {
            file: options.open(path)?,
            in_place: in_place::InPlaceWrites::default(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            // Only files can be the store's own; a directory named like one
            // is somebody else's and left alone.
            if !entry.file_type()?.is_file() {
                continue;
            }
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn link_or_copy(&self, from: &Path, to: &Path) -> io::Result<()> {
        match std::fs::hard_link(from, to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
            Err(_) => copy_file(self, from, to),
        }
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "lock is held by another open store",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
