//! journalstore itself.

use std::path::Path;

use journalstore::{Options, Store, SyncMode, WriteBatch, WriteOptions};

use super::{consume, Engine, Op};
use crate::Res;

/// journalstore with its defaults; `SyncMode::Always` (group commit) when
/// durable, `SyncMode::Never` (page cache; survives a process crash)
/// otherwise.
pub struct Js(Store);

impl Js {
    pub fn open(dir: &Path, durable: bool) -> Res<Js> {
        let sync = if durable {
            SyncMode::Always
        } else {
            SyncMode::Never
        };
        Ok(Js(Store::open(
            dir,
            Options {
                sync,
                ..Options::default()
            },
        )?))
    }
}

impl Engine for Js {
    fn write(&self, ops: &[Op<'_>]) -> Res<()> {
        let mut wb = WriteBatch::new();
        for op in ops {
            match *op {
                Op::Append {
                    journal,
                    index,
                    value,
                } => {
                    wb.append_at(&journal.to_be_bytes(), index, value);
                }
                Op::Meta { journal, value } => {
                    wb.set_metadata(&journal.to_be_bytes(), value);
                }
                Op::Truncate { journal, from, .. } => {
                    wb.truncate(&journal.to_be_bytes(), from);
                }
                Op::Delete { journal, .. } => {
                    wb.delete_journal(&journal.to_be_bytes());
                }
            }
        }
        self.0.write(&wb)?;
        Ok(())
    }

    fn read_journal(&self, journal: u64) -> Res<u64> {
        let snapshot = self.0.snapshot();
        let Some(j) = snapshot.journal(&journal.to_be_bytes()) else {
            return Ok(0);
        };
        let mut total = consume(j.metadata()?.unwrap_or_default());
        for item in j.entries(..) {
            total += consume(item?.1);
        }
        Ok(total)
    }

    fn sync(&self) -> Res<()> {
        Ok(self.0.sync()?)
    }

    /// What `journalstore-openraft`'s log store does for an append: the
    /// entry at its index of the group's journal, written visible but not
    /// synced, then `sync_to` its LSN (the adapter hands that to its
    /// flusher thread; concurrent `sync_to` calls share one fdatasync
    /// either way, across groups).
    fn append_raft(&self, group: u64, index: u64, entry: &[u8]) -> Res<()> {
        let id = format!("raft/{group:020}/log");
        let mut wb = WriteBatch::new();
        // As the adapter: an empty log continues at the entry's index (a
        // Raft log starts at 1).
        let end = self
            .0
            .snapshot()
            .journal(id.as_bytes())
            .map_or(0, |j| j.end_index());
        if index > end {
            wb.trim_prefix(id.as_bytes(), index);
        }
        wb.append_at(id.as_bytes(), index, entry);
        let lsn = self.0.write_with(&wb, WriteOptions { sync: false })?;
        self.0.sync_to(lsn)?;
        Ok(())
    }
}
