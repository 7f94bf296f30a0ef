//! Group commit: the queue of writers and the published version.
//!
//! A batch written with `sync: true` (the default under `SyncMode::Always`)
//! and a `sync_to` request go through the queue: the request at the head
//! becomes the leader and commits every queued batch as one group (LevelDB
//! style), so that one fdatasync serves them all and every request queued
//! with them (`LogWriter::commit_group`), then publishes a new [`Version`]
//! that snapshots pick up. Followers wait on a condition variable and
//! return the leader's verdict. A batch written with `sync: false` (the
//! default under `Never` and `Interval`) has no sync to share, and handing
//! it to a leader would cost a sleep and a wake-up per batch: its writer
//! commits it as a group of one under the writer's lock, applies it to the
//! index only once its write succeeded, and does not publish a version:
//! `Committer::current` makes one when a snapshot finds the published
//! version older than the newest acknowledged batch. A published version
//! makes the writer copy the index nodes it touches next, which is most of
//! a small buffered batch's cost.
//!
//! Invariants:
//! - A version is published only after its records are written. A batch
//!   written with `sync: true` is published (and acknowledged) only after
//!   its group's sync: a snapshot never shows it while a power loss could
//!   take it back. A batch written with `sync: false` is visible as soon as
//!   it is written, in every `SyncMode`: a snapshot may show it before it is
//!   durable, and so may show batches a power loss takes back.
//! - Neither a `sync: true` write nor `sync_to` returns `Ok` before every
//!   byte of the batches it covers is durable: the `Progress` durable LSN
//!   is raised only after a successful sync covering it, and a roll syncs
//!   the segment it seals, so it counts across segments.
//! - After a failed write or sync, writes stop (`Error::WritesStopped`) until
//!   reopen, checked under the writer's lock; the last published version
//!   stays readable, and a `sync_to` or `sync: true` write not yet covered
//!   by a successful sync fails: no later sync may count (see [`SyncGate`]).
//! - Replaced versions are dropped after the locks are released
//!   ([`Retired`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use arc_swap::ArcSwap;
use std::time::Instant;

use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::index_checkpoint::IndexCheckpoint;
use crate::log_writer::{LogWriter, MAX_GROUP_BYTES};
use crate::mutex::lock;
use crate::progress::{Progress, Waited};
use crate::record::{record_len, OP_HEADER_LEN};
use crate::sync_gate::SyncGate;
use crate::version::{Retired, Version};

/// Most batches committed as one group.
const MAX_GROUP_BATCHES: usize = 512;

/// What a queued caller asks the leader for.
#[derive(Debug)]
enum Request {
    /// Write this batch and sync it.
    Write(WriteBatch),
    /// Make every batch up to this LSN durable.
    SyncTo(u64),
}

/// One caller waiting in the queue.
#[derive(Debug)]
struct Waiter {
    request: Request,
    result: Mutex<Option<Result<u64>>>,
}

/// Group commit: the queue, the leader's state and the published version.
#[derive(Debug)]
pub(crate) struct Committer {
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    cv: Condvar,
    pub(crate) log: Mutex<LogWriter>,
    /// The version snapshots start from. Loading it takes no lock
    /// (`ArcSwap`), so readers taking snapshots never wait for each other or
    /// for the writer.
    pub(crate) current: ArcSwap<Version>,
    /// Records why writes stopped (after an I/O failure) and serialises the
    /// active segment's syncs; the same gate as `LogWriter::sync_gate`.
    gate: Arc<SyncGate>,
    /// The acknowledged and durable LSNs and their waiters; the same as
    /// `LogWriter::progress`. A published version older than the
    /// acknowledged LSN is stale (see `current`).
    progress: Arc<Progress>,
    /// Held by a compaction from choosing its run to switching over.
    pub(crate) compacting: Mutex<()>,
    /// Whether a write made compaction due since `take_compaction_due`
    /// last looked (see `LogWriter::compaction_due`).
    compaction_due: AtomicBool,
}

impl Committer {
    pub fn new(log: LogWriter) -> Committer {
        let version = log.version();
        let gate = log.sync_gate.clone();
        let progress = log.progress.clone();
        Committer {
            queue: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            log: Mutex::new(log),
            current: ArcSwap::new(version),
            gate,
            progress,
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

    /// The state an index checkpoint records, taken under the writer's
    /// lock: everything written so far and where it ends. Not yet durable:
    /// the caller syncs before storing it.
    pub(crate) fn index_checkpoint_state(&self) -> Result<IndexCheckpoint> {
        let log = lock(&self.log);
        self.check_stopped()?;
        Ok(IndexCheckpoint {
            generation: log.manifest.generation,
            last_lsn: log.next_lsn - 1,
            active_end: log.write_pos,
            segments: log.manifest.segments.clone(),
            index: log.index.clone(),
            acct: log.acct.clone(),
            appended: log.appended,
        })
    }

    /// Bytes of records appended since open.
    pub(crate) fn appended(&self) -> u64 {
        lock(&self.log).appended
    }

    /// Passes on, under the writer's lock, what the last commit noted.
    fn note_compaction_due(&self, log: &mut LogWriter) {
        if std::mem::take(&mut log.compaction_due) {
            self.compaction_due.store(true, Ordering::Relaxed);
        }
    }

    /// The latest version: it holds every batch acknowledged before the
    /// call. After `sync: false` writes it is made here when the published
    /// one is stale, which waits for the writer's lock; the writer publishes
    /// before the slow steps it takes under that lock (rolls, frees,
    /// compaction switches), so the wait is one small batch at most.
    pub fn current(&self) -> Arc<Version> {
        let published = self.current.load_full();
        if published.lsn >= self.progress.acked() {
            return published;
        }
        let mut retired = Retired::default();
        let mut log = lock(&self.log);
        retired.push(self.publish_dirty(&mut log));
        let version = self.current.load_full();
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

    /// Stops writes after an I/O failure (see the module comment) and
    /// wakes the waiters for what can no longer come.
    pub(crate) fn stop(&self, cause: &Error) {
        self.gate.fail(cause);
        self.progress.stop();
    }

    /// `Err(WritesStopped)` once writes have stopped.
    pub(crate) fn check_stopped(&self) -> Result<()> {
        self.gate.check()
    }

    /// Why writes stopped, if they did.
    pub fn stopped_cause(&self) -> Option<Arc<Error>> {
        self.gate.cause()
    }

    /// LSN of the newest acknowledged batch.
    pub fn last_lsn(&self) -> u64 {
        self.progress.acked()
    }

    /// LSN up to which every batch is durable.
    pub fn durable_lsn(&self) -> u64 {
        self.progress.durable()
    }

    /// Writes one batch, synced with its group if `sync` (see the module
    /// comment).
    pub fn write(&self, batch: &WriteBatch, sync: bool) -> Result<u64> {
        self.check_stopped()?;
        if !sync {
            // With no sync to share, a queue would only add a hand-off
            // between threads (a sleep and a wake-up) to every batch: each
            // writer commits its own batch under the writer's lock.
            return self.commit_direct(batch);
        }
        self.enqueue(Request::Write(batch.clone()))
    }

    /// Returns once every batch up to `lsn` is durable: at once if a sync
    /// covered it already; else, after waiting for `lsn` to be
    /// acknowledged if it is not yet, and for an explicit sync under way
    /// that covers it, as a request in the queue, whose leader syncs once
    /// for every request and batch of its group, and syncs nothing if a
    /// sync that ran while the request waited covered it.
    pub fn sync_to(&self, lsn: u64) -> Result<()> {
        if self.progress.durable() >= lsn {
            return Ok(());
        }
        if self.progress.acked() < lsn {
            self.wait_for(lsn, None)?;
        }
        self.progress.await_syncs_covering(lsn);
        if self.progress.durable() >= lsn {
            return Ok(());
        }
        self.check_stopped()?;
        self.enqueue(Request::SyncTo(lsn)).map(|_| ())
    }

    /// Waits until a batch with an LSN of at least `lsn` is acknowledged
    /// (`Ok(true)`) or `deadline` passes (`Ok(false)`); fails once writes
    /// stopped or the store closed without it.
    pub fn wait_for(&self, lsn: u64, deadline: Option<Instant>) -> Result<bool> {
        self.wait(deadline, |acked, _| acked >= lsn)
    }

    /// Like `wait_for`, until every batch up to `lsn` is durable.
    pub fn wait_for_durable(&self, lsn: u64, deadline: Option<Instant>) -> Result<bool> {
        self.wait(deadline, |_, durable| durable >= lsn)
    }

    fn wait(&self, deadline: Option<Instant>, reached: impl Fn(u64, u64) -> bool) -> Result<bool> {
        match self.progress.wait_until(deadline, reached) {
            Waited::Reached => Ok(true),
            Waited::TimedOut => Ok(false),
            // `stop` records the cause in the gate before it wakes anyone.
            Waited::Stopped => Err(self.check_stopped().err().unwrap_or(Error::Closed)),
            Waited::Closed => Err(Error::Closed),
        }
    }

    /// Wakes every waiter with `Error::Closed` (the store is closing).
    pub fn close_waiters(&self) {
        self.progress.close();
    }

    /// Queues `request` and returns its verdict, leading a group if it
    /// comes to the head of the queue.
    fn enqueue(&self, request: Request) -> Result<u64> {
        let me = Arc::new(Waiter {
            request,
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
            if let Request::Write(batch) = &w.request {
                bytes += batch.len() * OP_HEADER_LEN;
            }
            group.push(w.clone());
        }
        drop(queue);

        let results = self.commit(&group);

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

    /// Commits one batch without a sync, publishing lazily.
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
                self.progress.acknowledge(log.next_lsn - 1);
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

    /// Commits a group of queued requests: writes its batches and syncs
    /// them with everything written before. Returns each request's verdict,
    /// in order: a batch's LSN, or for a `sync_to` request the LSN its sync
    /// covered.
    fn commit(&self, group: &[Arc<Waiter>]) -> Vec<Result<u64>> {
        // Versions replaced here are dropped once the writer's lock is
        // released: the drop frees the index nodes the writer copied since
        // (a good part of a small batch's cost), which need not hold up the
        // next writer.
        let mut retired = Retired::default();
        let mut log = lock(&self.log);
        let durable = self.progress.durable();
        if let Err(e) = self.check_stopped() {
            return group
                .iter()
                .map(|w| {
                    if covered(&w.request, durable) {
                        Ok(durable)
                    } else {
                        Err(e.clone())
                    }
                })
                .collect();
        }
        let batches: Vec<&WriteBatch> = group
            .iter()
            .filter_map(|w| match &w.request {
                Request::Write(batch) => Some(batch),
                Request::SyncTo(_) => None,
            })
            .collect();
        if batches.is_empty() && group.iter().all(|w| covered(&w.request, durable)) {
            // A sync that ran while these requests queued covered them.
            return group.iter().map(|_| Ok(durable)).collect();
        }
        let (results, fatal) = log.commit_group(&batches);
        self.note_compaction_due(&mut log);
        let synced = match &fatal {
            Ok(()) => Ok(log.next_lsn - 1),
            Err(e) => Err(e.clone()),
        };
        let fatal = fatal.and_then(|()| {
            if results.iter().any(Result::is_ok) || log.dirty {
                log.dirty = false;
                retired.push(self.publish(log.version()));
                self.progress.acknowledge(log.next_lsn - 1);
            }
            if log.free_segments()? {
                retired.push(self.publish(log.version()));
            }
            Ok(())
        });
        if let Err(e) = fatal {
            self.stop(&e);
        }
        drop(log);
        let mut results = results.into_iter();
        group
            .iter()
            .map(|w| match &w.request {
                // `commit_group` gives one verdict per batch.
                Request::Write(_) => results.next().unwrap_or(Err(Error::Closed)),
                Request::SyncTo(_) => match &synced {
                    Ok(lsn) => Ok(*lsn),
                    Err(e) => Err(e.clone()),
                },
            })
            .collect()
    }

    /// Makes `version` the one new snapshots get, and returns the one it
    /// replaces, to be retired outside the locks (see [`Retired`]).
    #[must_use = "the replaced version should be dropped outside the locks"]
    pub(crate) fn publish(&self, version: Arc<Version>) -> Arc<Version> {
        self.current.swap(version)
    }

    /// Makes everything written so far durable, then leaves a sync mark.
    /// Runs the fdatasync without holding the writer's lock, so writers go
    /// on meanwhile; it fails, like every later call, once any sync or
    /// write has failed (see [`SyncGate`]).
    pub fn sync(&self) -> Result<()> {
        let (segment, pos, lsn) = {
            let log = lock(&self.log);
            self.check_stopped()?;
            (log.active().clone(), log.write_pos, log.next_lsn - 1)
        };
        // `sync_to` callers wait for this sync rather than repeat it.
        self.progress.begin_sync(lsn);
        let synced = self.gate.sync(&segment);
        if synced.is_ok() {
            // Every record up to `lsn` was written to `segment` below
            // `pos`, or to a segment sealed (and so synced) before it.
            self.progress.made_durable(lsn);
        }
        self.progress.end_sync(lsn);
        if let Err(e) = synced {
            // Recorded by the gate already; this wakes the waiters.
            self.stop(&e);
            return Err(e);
        }
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

/// Whether a sync already covered `request` (a `sync_to` request up to the
/// durable LSN).
fn covered(request: &Request, durable: u64) -> bool {
    matches!(request, Request::SyncTo(lsn) if *lsn <= durable)
}
