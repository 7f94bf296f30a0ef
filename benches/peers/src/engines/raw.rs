//! The raw baseline (`raw`, workloads 1 and 2): each writer thread writes
//! its payloads with `pwrite` into a file of its own, plus `fdatasync` after
//! each write when durable. No framing, no index, no group commit: the
//! device's per-thread limit for the write size. Not an [`Engine`]: there is
//! nothing shared between the threads to open, so the append workload
//! gives each thread its own [`RawFile`].
//!
//! [`Engine`]: super::Engine

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::Res;

/// Length of each thread's file, written round robin.
const FILE_LEN: u64 = 16 << 20;

/// One writer thread's preallocated file (a file that grows needs a
/// metadata update per `fdatasync`, which an engine with preallocated
/// segments avoids too).
pub struct RawFile {
    file: File,
    offset: u64,
}

impl RawFile {
    /// Creates `raw-{thread}` in `dir`, filled with zeros and synced.
    pub fn create(dir: &Path, thread: u64) -> Res<RawFile> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join(format!("raw-{thread}")))?;
        let zeros = vec![0u8; 1 << 20];
        for i in 0..FILE_LEN >> 20 {
            file.write_all_at(&zeros, i << 20)?;
        }
        file.sync_all()?;
        Ok(RawFile { file, offset: 0 })
    }

    /// Writes `entry` at the next offset, then `fdatasync`s if `durable`.
    #[inline]
    pub fn write(&mut self, entry: &[u8], durable: bool) -> Res<()> {
        self.file.write_all_at(entry, self.offset)?;
        if durable {
            self.file.sync_data()?;
        }
        self.offset = (self.offset + entry.len() as u64) % FILE_LEN;
        Ok(())
    }
}
