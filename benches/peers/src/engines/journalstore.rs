//! journalstore itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use journalstore::{Options, Store, SyncMode, WriteBatch, WriteOptions};

use super::{consume, missing, Engine, Op};
use crate::Res;

/// journalstore with its defaults; `SyncMode::Always` (group commit) when
/// durable, `SyncMode::Never` (page cache; survives a process crash)
/// otherwise. Plus, for workload 6, a flusher thread like
/// `journalstore-openraft`'s (see [`Js::append_raft`]).
pub struct Js {
    store: Arc<Store>,
    /// Each group's log end after its last append, as the adapter's log
    /// store keeps it (read from a snapshot only when unknown).
    raft_ends: Mutex<HashMap<u64, u64>>,
    flusher: Mutex<Option<mpsc::Sender<Flush>>>,
    thread: Option<JoinHandle<()>>,
}

/// A request to the flusher: answer on `done` once `lsn` is durable.
struct Flush {
    lsn: u64,
    done: mpsc::SyncSender<journalstore::Result<()>>,
}

impl Js {
    pub fn open(dir: &Path, durable: bool) -> Res<Js> {
        let sync = if durable {
            SyncMode::Always
        } else {
            SyncMode::Never
        };
        let store = Arc::new(Store::open(
            dir,
            Options {
                sync,
                ..Options::default()
            },
        )?);
        let (tx, rx) = mpsc::channel::<Flush>();
        let thread = std::thread::spawn({
            let store = store.clone();
            // The adapter's flusher: take every request queued, one
            // `sync_to` for the greatest LSN, answer them all.
            move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    group.extend(rx.try_iter());
                    let lsn = group.iter().map(|f| f.lsn).max().unwrap_or(0);
                    let result = store.sync_to(lsn);
                    for f in group {
                        let _ = f.done.send(result.clone());
                    }
                }
            }
        });
        Ok(Js {
            store,
            raft_ends: Mutex::new(HashMap::new()),
            flusher: Mutex::new(Some(tx)),
            thread: Some(thread),
        })
    }
}

impl Drop for Js {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.flusher.lock() {
            tx.take();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
        self.store.write(&wb)?;
        Ok(())
    }

    fn read_journal(&self, journal: u64) -> Res<u64> {
        let snapshot = self.store.snapshot();
        let Some(j) = snapshot.journal(&journal.to_be_bytes()) else {
            return Ok(0);
        };
        let mut total = consume(j.metadata()?.unwrap_or_default());
        for item in j.entries(..) {
            total += consume(item?.1);
        }
        Ok(total)
    }

    /// As an application reads one entry: a snapshot, the journal, the
    /// entry (borrowed from the segment mapping, checksum-verified).
    fn read_entry(&self, journal: u64, index: u64) -> Res<u64> {
        let snapshot = self.store.snapshot();
        let entry = snapshot
            .journal(&journal.to_be_bytes())
            .ok_or_else(|| missing(journal, index))?
            .entry(index)?
            .ok_or_else(|| missing(journal, index))?;
        Ok(consume(entry))
    }

    fn sync(&self) -> Res<()> {
        Ok(self.store.sync()?)
    }

    /// What `journalstore-openraft`'s log store does for an append: the
    /// entry at its index of the group's journal (whose end it knows from
    /// its previous append), written visible but not
    /// synced, then handed to the flusher thread, which answers once a
    /// `sync_to` covering it returned (one sync serves the requests of all
    /// groups queued meanwhile).
    fn append_raft(&self, group: u64, index: u64, entry: &[u8]) -> Res<()> {
        let id = format!("raft/{group:020}/log");
        let mut wb = WriteBatch::new();
        // As the adapter: an empty log continues at the entry's index (a
        // Raft log starts at 1).
        let known = self
            .raft_ends
            .lock()
            .map_err(|_| "raft_ends lock poisoned")?
            .get(&group)
            .copied();
        let end = known.unwrap_or_else(|| {
            self.store
                .snapshot()
                .journal(id.as_bytes())
                .map_or(0, |j| j.end_index())
        });
        if index > end {
            wb.trim_prefix(id.as_bytes(), index);
        }
        wb.append_at(id.as_bytes(), index, entry);
        let lsn = self.store.write_with(&wb, WriteOptions { sync: false })?;
        self.raft_ends
            .lock()
            .map_err(|_| "raft_ends lock poisoned")?
            .insert(group, index + 1);
        let (done, answer) = mpsc::sync_channel(1);
        self.flusher
            .lock()
            .map_err(|_| "flusher lock poisoned")?
            .as_ref()
            .ok_or("flusher stopped")?
            .send(Flush { lsn, done })
            .map_err(|_| "flusher stopped")?;
        answer.recv().map_err(|_| "flusher stopped")??;
        Ok(())
    }
}
