//! Group commit: the queue of writers and the published version.
//!
//! Under `SyncMode::Always`, writers queue their batches; the writer at the
//! head of the queue becomes the leader and commits every queued batch as
//! one group (LevelDB style), so that one fdatasync serves them all
//! (`LogWriter::commit_group`), then publishes a new [`Version`] that
//! snapshots pick up. Followers wait on a condition variable and return the
//! leader's verdict. Under `Never` and `Interval` there is no sync to share,
//! and handing a batch to a leader would cost a sleep and a wake-up per
//! batch: each writer commits its own batch as a group of one under the
//! writer's lock, applies it to the index only once its write succeeded, and
//! does not publish a version: `Committer::current` makes one when a
//! snapshot finds the published version older than the newest acknowledged
//! batch. A published version makes the writer copy the index nodes it
//! touches next, which is most of a small buffered batch's cost.
//!
//! Invariants:
//! - A version is published only after its records are written (and synced
//!   under `SyncMode::Always`): a snapshot never shows what a power loss
//!   could take back from an acknowledged write.
//! - After a failed write or sync, writes stop (`Error::WritesStopped`) until
//!   reopen, checked under the writer's lock; the last published version
//!   stays readable.
//! - Replaced versions are dropped after the locks are released
//!   ([`Retired`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::log_writer::{LogWriter, MAX_GROUP_BYTES};
use crate::mutex::lock;
use crate::options::SyncMode;
use crate::record::{record_len, PlannedOp, OP_HEADER_LEN};
use crate::sync_gate::SyncGate;
use crate::version::{Retired, Version};

/// Most batches committed as one group.
const MAX_GROUP_BATCHES: usize = 512;

/// One writer waiting in the queue.
#[derive(Debug)]
struct Waiter {
    batch: WriteBatch,
    result: Mutex<Option<Result<u64>>>,
}

/// Group commit: the queue, the leader's state and the published version.
#[derive(Debug)]
pub(crate) struct Committer {
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    cv: Condvar,
    pub(crate) log: Mutex<LogWriter>,
    /// The version snapshots start from. Its lock is held only to swap or
    /// clone the `Arc`, never across I/O.
    pub(crate) current: Mutex<Arc<Version>>,
    /// Records why writes stopped (after an I/O failure) and serialises the
    /// active segment's syncs; the same gate as `LogWriter::sync_gate`.
    gate: Arc<SyncGate>,
    /// Held by a compaction from choosing its run to switching over.
    pub(crate) compacting: Mutex<()>,
    /// Whether writers queue for a leader (`SyncMode::Always`). Otherwise
    /// each writer commits its own batch and publishing is lazy: a version
    /// is made when a snapshot asks for one (see `current`), not after every
    /// batch, because each published version makes the writer copy the
    /// index nodes it touches next, which is most of a small batch's cost.
    group_commit: bool,
    /// LSN of the newest acknowledged batch (buffered modes): a published
    /// version older than this is stale.
    acked: AtomicU64,
    /// Whether a write made compaction due since `take_compaction_due`
    /// last looked (see `LogWriter::compaction_due`).
    compaction_due: AtomicBool,
}

impl Committer {
    pub fn new(log: LogWriter) -> Committer {
        let version = log.version();
        let group_commit = log.sync == SyncMode::Always;
        let gate = log.sync_gate.clone();
        Committer {
            acked: AtomicU64::new(version.lsn),
            group_commit,
            queue: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            log: Mutex::new(log),
            current: Mutex::new(version),
            gate,
            compacting: Mutex::new(()),
            compaction_due: AtomicBool::new(false),
        }
    }

    /// Whether a write sealed a segment since the last call: the store then
    /// wakes its compaction thread (and may make the writer help it).
    pub fn take_compaction_due(&self) -> bool {
        self.compaction_due.load(Ordering::Relaxed)
            && self.compaction_due.swap(false, Ordering::Relaxed)
    }

    /// Passes on, under the writer's lock, what the last commit noted.
    fn note_compaction_due(&self, log: &mut LogWriter) {
        if std::mem::take(&mut log.compaction_due) {
            self.compaction_due.store(true, Ordering::Relaxed);
        }
    }

    /// The latest version: it holds every batch acknowledged before the
    /// call. In the buffered modes it is made here when the published one
    /// is stale, which waits for the writer's lock; the writer publishes
    /// before the slow steps it takes under that lock (rolls, frees,
    /// compaction switches), so the wait is one small batch at most.
    pub fn current(&self) -> Arc<Version> {
        let published = lock(&self.current).clone();
        if published.lsn >= self.acked.load(Ordering::Acquire) {
            return published;
        }
        let mut retired = Retired::default();
        let mut log = lock(&self.log);
        retired.push(self.publish_dirty(&mut log));
        let version = lock(&self.current).clone();
        drop(log);
        version
    }

    /// Publishes the working state if it holds unpublished batches; returns
    /// the replaced version (to retire outside the locks).
    pub(crate) fn publish_dirty(&self, log: &mut LogWriter) -> Option<Arc<Version>> {
        if !log.dirty {
            return None;
        }
        log.dirty = false;
        Some(self.publish(log.version()))
    }

    /// Stops writes after an I/O failure (see the module comment).
    pub(crate) fn stop(&self, cause: &Error) {
        self.gate.fail(cause);
    }

    /// `Err(WritesStopped)` once writes have stopped.
    pub(crate) fn check_stopped(&self) -> Result<()> {
        self.gate.check()
    }

    /// Why writes stopped, if they did.
    pub fn stopped_cause(&self) -> Option<Arc<Error>> {
        self.gate.cause()
    }

    /// Writes one batch (see the module comment).
    pub fn write(&self, batch: &WriteBatch) -> Result<u64> {
        self.check_stopped()?;
        if !self.group_commit {
            // With no sync to share, a queue would only add a hand-off
            // between threads (a sleep and a wake-up) to every batch: each
            // writer commits its own batch under the writer's lock.
            return self.commit_direct(batch);
        }
        let me = Arc::new(Waiter {
            batch: batch.clone(),
            result: Mutex::new(None),
        });
        let mut queue = lock(&self.queue);
        queue.push_back(me.clone());
        loop {
            if let Some(r) = lock(&me.result).take() {
                return r;
            }
            if queue.front().is_some_and(|w| Arc::ptr_eq(w, &me)) {
                break;
            }
            queue = self.cv.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
        // Leader: take the group (it stays queued so that later arrivals
        // wait for this group to finish).
        let mut group = Vec::new();
        let mut bytes = 0;
        for w in queue.iter() {
            if group.len() == MAX_GROUP_BATCHES || bytes >= MAX_GROUP_BYTES {
                break;
            }
            bytes += w.batch.len() * OP_HEADER_LEN;
            group.push(w.clone());
        }
        drop(queue);

        let batches: Vec<&WriteBatch> = group.iter().map(|w| &w.batch).collect();
        let results = self.commit(&batches);

        let mut queue = lock(&self.queue);
        for (w, r) in group.iter().zip(results) {
            queue.pop_front();
            *lock(&w.result) = Some(r);
        }
        drop(queue);
        self.cv.notify_all();
        let result = lock(&me.result).take();
        result.unwrap_or(Err(Error::Closed))
    }

    /// Commits one batch in a buffered mode, publishing lazily.
    fn commit_direct(&self, batch: &WriteBatch) -> Result<u64> {
        let mut retired = Retired::default();
        let mut log = lock(&self.log);
        // Under the writer's lock: a failure recorded by a sync that ran
        // meanwhile is seen before anything is written.
        self.check_stopped()?;
        // A roll syncs and swaps the manifest under the lock: publish first,
        // so that snapshots need not wait for it (the bound may be a little
        // early near a segment's end; that costs one publish).
        if log.must_roll(record_len(batch.payload_bound())) {
            retired.push(self.publish_dirty(&mut log));
        }
        let (result, fatal) = log.commit_one(batch);
        self.note_compaction_due(&mut log);
        let fatal = fatal.and_then(|()| {
            if result.is_ok() {
                log.dirty = true;
                self.acked.store(log.next_lsn - 1, Ordering::Release);
            }
            let ids = log.freeable();
            if !ids.is_empty() {
                retired.push(self.publish_dirty(&mut log));
                if log.free(ids)? {
                    retired.push(self.publish(log.version()));
                }
            }
            Ok(())
        });
        if let Err(e) = fatal {
            self.stop(&e);
        }
        drop(log);
        result
    }

    fn commit(&self, batches: &[&WriteBatch]) -> Vec<Result<u64>> {
        // Versions replaced here are dropped once the writer's lock is
        // released: the drop frees the index nodes the writer copied since
        // (a good part of a small batch's cost), which need not hold up the
        // next writer.
        let mut retired = Retired::default();
        let mut log = lock(&self.log);
        if let Err(e) = self.check_stopped() {
            return batches.iter().map(|_| Err(e.clone())).collect();
        }
        let (results, fatal) = log.commit_group(batches);
        self.note_compaction_due(&mut log);
        let fatal = fatal.and_then(|()| {
            retired.push(self.publish(log.version()));
            if log.free_segments()? {
                retired.push(self.publish(log.version()));
            }
            Ok(())
        });
        if let Err(e) = fatal {
            self.stop(&e);
        }
        drop(log);
        results
    }

    /// Writes one record of trusted operations, bypassing validation and the
    /// queue, and syncs it (salvage builds a store from recovered state).
    pub fn write_trusted(&self, ops: &[PlannedOp<'_>]) -> Result<u64> {
        let mut retired = Retired::default();
        let mut log = lock(&self.log);
        let lsn = log.commit_trusted(ops)?;
        retired.push(self.publish(log.version()));
        drop(log);
        Ok(lsn)
    }

    /// Makes `version` the one new snapshots get, and returns the one it
    /// replaces, to be retired outside the locks (see [`Retired`]).
    #[must_use = "the replaced version should be dropped outside the locks"]
    pub(crate) fn publish(&self, version: Arc<Version>) -> Arc<Version> {
        std::mem::replace(&mut *lock(&self.current), version)
    }

    /// Makes everything written so far durable, then leaves a sync mark.
    /// Runs the fdatasync without holding the writer's lock, so writers go
    /// on meanwhile; it fails, like every later call, once any sync or
    /// write has failed (see [`SyncGate`]).
    pub fn sync(&self) -> Result<()> {
        let (segment, pos) = {
            let log = lock(&self.log);
            self.check_stopped()?;
            (log.active().clone(), log.write_pos)
        };
        self.gate.sync(&segment)?;
        let mut log = lock(&self.log);
        if log.active().id == segment.id && log.synced_pos < pos {
            log.synced_pos = pos;
        }
        if let Err(e) = log.write_sync_mark() {
            self.stop(&e);
            return Err(e);
        }
        Ok(())
    }

    /// The last sync at clean close: everything written is made durable and
    /// so is a sync mark claiming it, so that the next open tells damage to
    /// these records from a torn tail.
    pub fn sync_for_close(&self) -> Result<()> {
        self.sync()?;
        let log = lock(&self.log);
        self.gate.sync(log.active())
    }
}
