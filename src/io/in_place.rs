//! Writes through a shared writable mapping of a file: the real file
//! system's [`StorageFile::write_in_place`](super::StorageFile::write_in_place).
//!
//! A buffered write copies its record into the page cache with a `memcpy`
//! instead of a `pwrite`: no system call, and no inode lock (ext4 takes it
//! exclusively for every buffered `pwrite`, so writers of one file would
//! queue in the kernel however the engine lets them copy side by side).
//! The bytes land in the same page cache a `pwrite` fills, so what a
//! process crash keeps, what `fdatasync` makes durable and what the
//! read-only mappings show are the same. The engine chooses per record
//! (`Reservation::in_place`): a lone writer of longer records pays more
//! in page faults here than a `pwrite` costs.
//!
//! Invariants:
//! - Bytes are copied only below `reserved`: disk space the file system
//!   has reserved (`fallocate`), so that a page fault never allocates a
//!   block, and a full disk cannot strike as a SIGBUS where `pwrite` would
//!   have returned an error. Writes above it go through `pwrite`. Giving
//!   space back (`unreserve`) lowers `reserved` first.
//! - Few pages stay mapped: the chunk of the newest write, the one before
//!   it and the two populated ahead. Every page mapped writable is
//!   write-protected again by writeback at each `fdatasync` (a TLB
//!   shootdown per page on a multi-core machine) and counts in the
//!   process's RSS, so the chunks behind are released (their page table
//!   entries dropped; the pages, dirty or not, stay in the page cache). A
//!   write still under way in a released chunk faults its page back in.
//! - The two chunks after the newest write's are populated ahead
//!   (`MADV_POPULATE_WRITE`), within `reserved`, so writers rarely fault
//!   (a fault on a page another thread is populating waits for it, in the
//!   kernel). The writer that comes within a chunk of the populated end
//!   does it, after its record counts as written
//!   ([`InPlaceWrites::after_write`]), so that the writers of the records
//!   after it, waiting to be acknowledged in order, do not wait for the
//!   page faults too; a populate and a lowering of `reserved` exclude each
//!   other.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use memmap2::{Advice, MmapRaw, UncheckedAdvice};

use crate::mutex::lock;

/// Pages are populated ahead of and released behind the writes in chunks of
/// this many bytes (a multiple of every page size in use).
const CHUNK: u64 = 64 << 10;

/// A file's writable mapping and the bounds of where it may be written.
#[derive(Debug, Default)]
pub(crate) struct InPlaceWrites {
    /// Made at the first write in place; `None` if it could not be made
    /// (a file opened read-only, an empty file).
    map: OnceLock<Option<MmapRaw>>,
    /// Disk space is reserved below this offset.
    reserved: AtomicU64,
    /// Pages below this offset were released (see the module comment).
    released_below: AtomicU64,
    /// Held while pages are populated ahead and while `reserved` is
    /// lowered: a populate that read `reserved` before `unreserve` lowered
    /// it would otherwise fault blocks back into the space given back.
    populating: Mutex<()>,
    /// Pages below this offset (and above `released_below`) were populated
    /// ahead; raised under `populating`.
    populated_to: AtomicU64,
}

impl InPlaceWrites {
    /// Disk space is now reserved below `upto`.
    pub fn reserved_to(&self, upto: u64) {
        self.reserved.fetch_max(upto, Ordering::AcqRel);
    }

    /// Disk space from `from` on is given back: nothing more is copied
    /// there, and the mapping's pages are released.
    pub fn unreserved_from(&self, from: u64) {
        let _populating = lock(&self.populating);
        self.reserved.fetch_min(from, Ordering::AcqRel);
        self.populated_to.fetch_min(from, Ordering::AcqRel);
        if let Some(Some(map)) = self.map.get() {
            release(map, 0, map.len());
        }
    }

    /// Copies `buf` to `offset` through the mapping; `false` (nothing
    /// written) where it may not: above the reserved space, or without a
    /// mapping. The caller writes no range that another write or a read
    /// may reach at the same time (see `StorageFile::write_in_place`).
    #[allow(unsafe_code)]
    pub fn write(&self, file: &File, offset: u64, buf: &[u8]) -> bool {
        let reserved = self.reserved.load(Ordering::Acquire);
        let Some(end) = offset.checked_add(buf.len() as u64) else {
            return false;
        };
        if end > reserved || buf.is_empty() {
            return false;
        }
        let Some(map) = self.map.get_or_init(|| MmapRaw::map_raw(file).ok()) else {
            return false;
        };
        if end > map.len() as u64 {
            return false;
        }
        // SAFETY: `offset..end` lies within the mapping (checked above),
        // which lives as long as `self`, and is a shared writable mapping
        // of a file opened for writing (`map_raw` fails otherwise), which
        // the engine never shrinks. No Rust reference covers these bytes
        // while they are copied: the caller reserved the range for this
        // write alone (the engine's readers take slices only of records a
        // published version shows, never written again), so the copy races
        // with nothing; `buf` is the caller's own memory, apart from the
        // mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                buf.as_ptr(),
                map.as_mut_ptr().add(offset as usize),
                buf.len(),
            );
        }
        true
    }

    /// After a write of `len` bytes at `offset` (in place or not):
    /// populates the pages ahead, through the two chunks after the one the
    /// write ended in, once the write comes within a chunk of the populated
    /// end; and, if the write entered a new chunk, releases the chunks
    /// before the previous one. Separate from [`write`](Self::write) so that
    /// the writer does it after its record counts as written: those waiting
    /// for the record do not wait for the page faults too.
    pub fn after_write(&self, offset: u64, len: usize) {
        let Some(end) = offset.checked_add(len as u64).filter(|_| len > 0) else {
            return;
        };
        let Some(Some(map)) = self.map.get() else {
            return;
        };
        let map_len = map.len() as u64;
        let populated = self.populated_to.load(Ordering::Acquire);
        let limit = self.reserved.load(Ordering::Acquire).min(map_len);
        // One writer populates at a time; the others go on (and fault
        // their page themselves if they get there first).
        let populating = (end + CHUNK > populated && populated < limit)
            .then(|| self.populating.try_lock().ok())
            .flatten();
        if populating.is_some() {
            // Under the lock: `reserved` is not lowered meanwhile.
            let limit = self.reserved.load(Ordering::Acquire).min(map_len);
            let chunk_start = end / CHUNK * CHUNK;
            let from = self.populated_to.load(Ordering::Acquire).max(chunk_start);
            let upto = (chunk_start + 3 * CHUNK).min(limit);
            if upto > from {
                // A hint: an old kernel refuses it (EINVAL), and the
                // writes then fault their pages in themselves.
                let _ =
                    map.advise_range(Advice::PopulateWrite, from as usize, (upto - from) as usize);
                self.populated_to.store(upto, Ordering::Release);
            }
        }
        drop(populating);
        if offset.is_multiple_of(CHUNK) || offset / CHUNK != (end - 1) / CHUNK {
            let keep_from = ((end - 1) / CHUNK).saturating_sub(1) * CHUNK;
            let from = self.released_below.fetch_max(keep_from, Ordering::AcqRel);
            if from < keep_from {
                release(map, from as usize, (keep_from - from) as usize);
            }
        }
    }
}

/// Drops the page table entries of `len` bytes of `map` from `offset`.
#[allow(unsafe_code)]
fn release(map: &MmapRaw, offset: usize, len: usize) {
    let len = len.min(map.len().saturating_sub(offset));
    if len == 0 {
        return;
    }
    // SAFETY: `MADV_DONTNEED` on a shared file mapping drops only the page
    // table entries: a dirty page stays dirty in the page cache, and the
    // next access faults the same page back in, so no byte written or
    // still being written changes (unlike a private mapping, whose
    // anonymous copies it would throw away). A failure only leaves the
    // pages mapped.
    let _ = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, offset, len) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn file(len: u64) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        file.set_len(len).unwrap();
        (dir, file)
    }

    fn read(file: &File, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        file.read_exact_at(&mut out, offset).unwrap();
        out
    }

    #[test]
    fn writes_land_in_the_file_only_below_the_reserved_space() {
        let (_dir, file) = file(8 * CHUNK);
        let writes = InPlaceWrites::default();
        assert!(!writes.write(&file, 0, b"nothing reserved"));
        writes.reserved_to(4 * CHUNK);
        // Across chunk boundaries, with the chunks behind released.
        let mut expect = vec![0u8; (4 * CHUNK) as usize];
        let mut at = 0u64;
        let mut n = 0u8;
        while at + 300 <= 4 * CHUNK {
            let record = vec![n.wrapping_add(1); 300];
            assert!(writes.write(&file, at, &record), "at {at}");
            writes.after_write(at, record.len());
            expect[at as usize..at as usize + 300].copy_from_slice(&record);
            at += 300;
            n = n.wrapping_add(1);
        }
        assert_eq!(read(&file, 0, expect.len()), expect);
        assert!(writes.released_below.load(Ordering::Acquire) >= 2 * CHUNK);
        // Populated ahead up to the reserved end, not past it.
        assert_eq!(writes.populated_to.load(Ordering::Acquire), 4 * CHUNK);
        // Past the reserved space, and past the file, nothing is written.
        assert!(!writes.write(&file, 4 * CHUNK - 10, &[7; 20]));
        writes.reserved_to(16 * CHUNK);
        assert!(!writes.write(&file, 8 * CHUNK - 10, &[7; 20]));
        assert_eq!(read(&file, 8 * CHUNK - 10, 10), vec![0; 10]);
        // Given back: refused from there on, kept below.
        writes.unreserved_from(2 * CHUNK);
        assert_eq!(writes.populated_to.load(Ordering::Acquire), 2 * CHUNK);
        assert!(!writes.write(&file, 2 * CHUNK, b"x"));
        assert!(writes.write(&file, 2 * CHUNK - 1, b"y"));
        assert_eq!(read(&file, 2 * CHUNK - 1, 1), b"y");
        assert_eq!(read(&file, 0, 300), expect[..300]);
    }

    #[test]
    fn a_file_opened_read_only_is_never_written_in_place() {
        let (dir, file) = file(CHUNK);
        drop(file);
        let file = File::open(dir.path().join("f")).unwrap();
        let writes = InPlaceWrites::default();
        writes.reserved_to(CHUNK);
        assert!(!writes.write(&file, 0, b"refused"));
    }
}
