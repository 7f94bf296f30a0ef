//! The raw baselines with group commit (`raw-group` and `raw-group-fresh`,
//! workloads 1 and 2).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use super::{Engine, Op};
use crate::Res;

const FILE_LEN: u64 = 64 << 20;

struct State {
    /// Bytes of batches queued since the last write.
    pending: Vec<u8>,
    /// Batches queued so far / written (and synced) so far.
    queued: u64,
    done: u64,
    /// Whether a writer is writing (and syncing) a group now.
    leader: bool,
    offset: u64,
}

/// Where a [`RawGroup`] writes its groups.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Blocks {
    /// `raw-group`: one 64 MiB file, zeroed and synced at open, written
    /// round robin, so every write overwrites blocks written before: the
    /// limit for a log whose files are written in place again (recycled).
    Rewritten,
    /// `raw-group-fresh`: a new file that grows with every group, so every
    /// write lands on blocks never written before, as in a log that keeps
    /// what it writes: the file system allocates them and a sync commits
    /// that allocation, and a virtual disk may allocate them on its host
    /// too.
    Fresh,
}

/// The raw baseline with group commit: the payload bytes only, no framing,
/// no index, in one file (see [`Blocks`]). Concurrent writers queue their
/// bytes; one of them writes the whole queue with one `pwrite` (+ one
/// `fdatasync` when durable) while the next group queues up. The physical
/// limit for an engine that group-commits into one log.
pub struct RawGroup {
    file: File,
    durable: bool,
    blocks: Blocks,
    state: Mutex<State>,
    cond: Condvar,
}

impl RawGroup {
    pub fn open(dir: &Path, durable: bool, blocks: Blocks) -> Res<RawGroup> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join("raw-group"))?;
        if blocks == Blocks::Rewritten {
            let zeros = vec![0u8; 1 << 20];
            for i in 0..FILE_LEN >> 20 {
                file.write_all_at(&zeros, i << 20)?;
            }
        }
        file.sync_all()?;
        Ok(RawGroup {
            file,
            durable,
            blocks,
            state: Mutex::new(State {
                pending: Vec::new(),
                queued: 0,
                done: 0,
                leader: false,
                offset: 0,
            }),
            cond: Condvar::new(),
        })
    }
}

impl Engine for RawGroup {
    fn write(&self, ops: &[Op<'_>]) -> Res<()> {
        let mut st = self.state.lock().map_err(|_| "poisoned")?;
        for op in ops {
            if let Op::Append { value, .. } = op {
                st.pending.extend_from_slice(value);
            }
        }
        st.queued += 1;
        let me = st.queued;
        loop {
            if st.done >= me {
                return Ok(());
            }
            if st.leader {
                st = self.cond.wait(st).map_err(|_| "poisoned")?;
                continue;
            }
            st.leader = true;
            let buf = std::mem::take(&mut st.pending);
            let upto = st.queued;
            let mut offset = st.offset;
            if self.blocks == Blocks::Rewritten && offset + buf.len() as u64 > FILE_LEN {
                offset = 0;
            }
            st.offset = offset + buf.len() as u64;
            drop(st);
            let result = self.file.write_all_at(&buf, offset).and_then(|()| {
                if self.durable {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            });
            st = self.state.lock().map_err(|_| "poisoned")?;
            st.leader = false;
            st.done = upto;
            self.cond.notify_all();
            result?;
        }
    }

    fn read_journal(&self, _journal: u64) -> Res<u64> {
        Err("raw-group has no reads".into())
    }

    fn read_entry(&self, _journal: u64, _index: u64) -> Res<u64> {
        Err("raw-group has no reads".into())
    }

    fn sync(&self) -> Res<()> {
        Ok(self.file.sync_data()?)
    }
}
