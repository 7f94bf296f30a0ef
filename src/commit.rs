//! Group commit: the queue of writers and the published version.
//!
//! A batch written with `sync: true` (the default under `SyncMode::Always`)
//! and a `sync_to` request go through the queue, and are committed in
//! groups that share one fdatasync, in a pipeline of two stages:
//!
//! 1. **Write.** The request at the head of the queue becomes the leader:
//!    it takes every queued request, encodes and writes their batches under
//!    the writer's lock, releases the lock, and repeats with the requests
//!    that arrived meanwhile, for as long as the previous group syncs (up to
//!    `MAX_GROUP_BATCHES` / `MAX_GROUP_BYTES`); parked between passes, it
//!    is woken once a quarter of the last group's size has queued
//!    (`PASSES_PER_GROUP`). So the next group keeps filling, and is
//!    written, while the previous one syncs.
//! 2. **Sync.** When the previous group's sync is over, the leader takes
//!    the requests still queued in a last pass, hands the write stage to the
//!    next head of the queue, and fdatasyncs its group without the writer's
//!    lock; then, under the lock, it leaves a sync mark, publishes the
//!    group's [`Version`] and acknowledges its LSN, wakes its followers
//!    with their verdicts, and only then lets the next group sync: with a
//!    fixed set of writers each waiting for its own sync, the followers
//!    just woken come back in time to join the next group instead of
//!    forming a group of their own after it, so there are half as many
//!    syncs for the same appends.
//!
//! Followers wait parked (each is woken alone, by its own leader) and
//! return the leader's verdict; their batches are read in place, never
//! copied into the queue. A batch written with `sync: false` (the default
//! under `Never` and `Interval`) has no sync to share, and handing it to a
//! leader would cost a sleep and a wake-up per batch: its writer validates
//! it, takes its LSN and its place in the active segment and applies it to
//! the working index under the writer's lock (never held across an
//! fdatasync of a group), then writes the record after releasing the lock,
//! so that writers copy side by side, and returns once its record and
//! every older one are written ([`InFlight`]). It does not publish a
//! version: `Committer::current` makes one when a snapshot finds the
//! published version older than the newest acknowledged batch. A published
//! version makes the writer copy the index nodes it touches next, which is
//! most of a small buffered batch's cost.
//!
//! Invariants:
//! - At most one group is in the write stage and one in the sync stage.
//!   Groups take LSNs, sync, publish and acknowledge in order: a group's
//!   sync starts after the previous group's ended, and covers every record
//!   written before it (its version and LSN are taken at the end of its
//!   last write pass). Syncs of one file never overlap ([`SyncGate`]).
//! - A version is published only after its records are written, and never
//!   replaces a newer one. A batch written with `sync: true` is published
//!   (and acknowledged) only after a sync covering it, unless a later batch
//!   is made visible first: snapshots always show a prefix of the log, so a
//!   `sync: false` batch written (and visible) while a group syncs shows the
//!   group's batches too. A change of the segments (a roll, a free, a
//!   compaction switch) is published with the working state only when no
//!   group's batches are written and not acknowledged; else by the sync of
//!   the last such group, after its own version ([`Committer::publish_change`]).
//!   A batch written with `sync: false` is visible as soon as it is
//!   written, in every `SyncMode`, and may be taken back by a power loss.
//! - Neither a `sync: true` write nor `sync_to` returns `Ok` before every
//!   byte of the batches it covers is durable: the `Progress` durable LSN
//!   is raised only after a successful sync covering it, and a sync
//!   finishes the seal a roll left pending (the sealed segment's sync and
//!   the manifest swap) first, so it counts across segments.
//! - After a failed write or sync, writes stop (`Error::WritesStopped`) until
//!   reopen, checked under the writer's lock; the last published version
//!   stays readable, and a `sync_to` or `sync: true` write not yet covered
//!   by a successful sync fails: no later sync may count (see [`SyncGate`]),
//!   so a group written while the group before it failed to sync is never
//!   acknowledged. After a failed buffered write, no record reserved after
//!   it is acknowledged, and no version is published again: the working
//!   index holds the failed record, so the batches acknowledged since the
//!   last published version are seen again after a reopen (recovery keeps
//!   the log up to the failed record).
//! - Replaced versions are dropped after the locks are released
//!   ([`Retired`]).

use std::cell::Cell;
use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};

use arc_swap::ArcSwap;
use std::time::Instant;

use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::in_flight::InFlight;
use crate::index_checkpoint::IndexCheckpoint;
use crate::log_writer::{LogWriter, MAX_GROUP_BYTES};
use crate::mutex::lock;
use crate::pins::Pins;
use crate::progress::{Progress, Waited};
use crate::record::{record_len, OP_HEADER_LEN};
use crate::segment::Segment;
use crate::snapshot::Snapshot;
use crate::sync_gate::SyncGate;
use crate::version::{Retired, Version};

thread_local! {
    /// The buffer a thread's buffered writes encode their record into,
    /// kept between writes.
    static WRITE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Most batches committed as one group.
const MAX_GROUP_BATCHES: usize = 512;

/// What a queued caller asks the leader for.
#[derive(Debug)]
enum Request {
    /// Write this batch and sync it. The batch is the caller's own, read in
    /// place (see [`Waiter::batch`]).
    Write(NonNull<WriteBatch>),
    /// Make every batch up to this LSN durable.
    SyncTo(u64),
}

/// One caller waiting in the queue.
#[derive(Debug)]
struct Waiter {
    request: Request,
    /// The caller's thread, unparked when its verdict is set or when it
    /// comes to lead.
    thread: Thread,
    result: Mutex<Option<Result<u64>>>,
}

// SAFETY: the only field that is not `Send` and `Sync` by itself is the
// pointer in `Request::Write`, which is read only through `Waiter::batch`
// (a shared borrow of a `WriteBatch`, which is `Sync`), under the
// conditions stated there.
#[allow(unsafe_code)]
unsafe impl Send for Waiter {}
// SAFETY: as for `Send`.
#[allow(unsafe_code)]
unsafe impl Sync for Waiter {}

impl Waiter {
    /// The batch to write, for a `Write` request.
    #[allow(unsafe_code)]
    fn batch(&self) -> Option<&WriteBatch> {
        match &self.request {
            // SAFETY: the pointer comes from the `&WriteBatch` that
            // `Committer::write` got, and that borrow lasts until `enqueue`
            // returns, which it does only once the waiter's `result` is set
            // (or it never queued). Leaders read batches only in the write
            // stage, before the group's results are set, so every read is
            // within the borrow.
            Request::Write(batch) => Some(unsafe { batch.as_ref() }),
            Request::SyncTo(_) => None,
        }
    }

    /// Sets the verdict and wakes the caller (unless it is the caller).
    fn finish(&self, result: Result<u64>) {
        *lock(&self.result) = Some(result);
        if self.thread.id() != thread::current().id() {
            self.thread.unpark();
        }
    }
}

/// The queue and the pipeline's two stages (see the module comment).
#[derive(Debug, Default)]
struct Queue {
    /// Requests no leader has taken yet, oldest first.
    waiting: VecDeque<Arc<Waiter>>,
    /// A leader is in the write stage (only the head of `waiting` may
    /// become one while none is).
    leading: bool,
    /// A group is in the sync stage.
    syncing: bool,
    /// The leader in the write stage while it is parked, waiting for
    /// requests or for the sync stage to be free.
    parked_leader: Option<Thread>,
    /// How many requests waiting wake a parked leader for a write pass
    /// (at least one; the sync stage's end wakes it whatever the count):
    /// a share of the last group's requests (see [`PASSES_PER_GROUP`]).
    wake_leader_at: usize,
}

/// About how many write passes a group takes while the previous group
/// syncs: a parked leader is woken for a pass once this share of the
/// previous group's requests has queued, not at every request, so that
/// many writers cost a few passes (each a wake-up of the leader and a
/// write) per group rather than one per arrival.
const PASSES_PER_GROUP: usize = 4;

/// A group in the pipeline: its requests, their verdicts so far, and where
/// its last write pass left the log.
#[derive(Default)]
struct Group {
    waiters: Vec<Arc<Waiter>>,
    /// One per waiter; a `SyncTo` request's is set by the sync.
    results: Vec<Result<u64>>,
    /// Bytes of operations its batches hold (the group's size limit).
    bytes: usize,
    /// The I/O failure that stopped writes while it was written.
    fatal: Option<Error>,
    /// What its sync must cover, taken at the end of its last pass.
    end: Option<GroupEnd>,
}

impl Group {
    /// Writes stopped while the group was written: its batches written by
    /// earlier passes will never be synced, and fail like the rest.
    fn fail(&mut self, e: Error) {
        for (w, r) in self.waiters.iter().zip(&mut self.results) {
            if r.is_ok() && w.batch().is_some() {
                *r = Err(e.clone());
            }
        }
        self.fatal = Some(e);
    }
}

/// The log as a group's last write pass left it.
struct GroupEnd {
    segment: Arc<Segment>,
    /// The end of the records written in `segment`.
    pos: u64,
    /// The newest LSN written.
    lsn: u64,
    /// The version to publish once synced, if the group wrote a batch.
    version: Option<Arc<Version>>,
}

/// Group commit: the queue, the leader's state and the published version.
#[derive(Debug)]
pub(crate) struct Committer {
    queue: Mutex<Queue>,
    pub(crate) log: Mutex<LogWriter>,
    /// The version snapshots start from. Loading it takes no lock
    /// (`ArcSwap`), so readers taking snapshots never wait for each other or
    /// for the writer.
    pub(crate) current: ArcSwap<Version>,
    /// The versions live snapshots hold (`pins.rs`); told of every publish.
    pub(crate) pins: Pins,
    /// Records why writes stopped (after an I/O failure) and serialises the
    /// active segment's syncs; the same gate as `LogWriter::sync_gate`.
    gate: Arc<SyncGate>,
    /// The acknowledged and durable LSNs and their waiters; the same as
    /// `LogWriter::progress`. A published version older than the
    /// acknowledged LSN is stale (see `current`).
    progress: Arc<Progress>,
    /// The buffered records written outside the writer's lock; the same as
    /// `LogWriter::in_flight`, held here so that a buffered write reaches
    /// it after releasing the lock without cloning the `Arc` each time.
    in_flight: Arc<InFlight>,
    /// Buffered writes between entering `commit_direct` and leaving it:
    /// more than one says writers run side by side, which makes copies in
    /// place worth their page faults (see `Reservation::in_place`).
    direct_writers: AtomicU32,
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
        let in_flight = log.in_flight.clone();
        Committer {
            queue: Mutex::new(Queue::default()),
            log: Mutex::new(log),
            current: ArcSwap::new(version),
            pins: Pins::default(),
            gate,
            progress,
            in_flight,
            direct_writers: AtomicU32::new(0),
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
        log.in_flight.settle();
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
        if self.holds_every_ack(&published) {
            return published;
        }
        self.publish_stale()
    }

    /// A snapshot of the latest version (as `current` chooses it). A fresh
    /// published version is pinned without moving its reference count
    /// (`pins.rs`).
    pub fn snapshot(&self) -> Snapshot {
        let published = self.current.load();
        if self.holds_every_ack(&published) {
            return Snapshot::new(&published, &self.pins);
        }
        drop(published);
        Snapshot::new(&self.publish_stale(), &self.pins)
    }

    /// Whether `version` holds every batch acknowledged so far: a reader
    /// may use it as the latest.
    fn holds_every_ack(&self, version: &Version) -> bool {
        version.lsn >= self.progress.acked()
    }

    /// Publishes the batches acknowledged but not yet published; returns
    /// the version that holds them.
    fn publish_stale(&self) -> Arc<Version> {
        let mut retired = Retired::default();
        let mut log = lock(&self.log);
        retired.push(self.publish_dirty(&mut log));
        let version = self.current.load_full();
        drop(log);
        version
    }

    /// Publishes the working state if it holds unpublished batches; returns
    /// the versions to retire outside the locks (see `publish`).
    /// After a failed buffered write nothing is published: the working
    /// index holds the failed record (see [`InFlight`]), and the versions
    /// published before the failure stay what snapshots see.
    pub(crate) fn publish_dirty(&self, log: &mut LogWriter) -> Vec<Arc<Version>> {
        if !log.dirty {
            return Vec::new();
        }
        self.publish_working(log)
    }

    /// Publishes the working state, unless a buffered write failed (see
    /// `publish_dirty`).
    fn publish_working(&self, log: &mut LogWriter) -> Vec<Arc<Version>> {
        // Checked once every record in flight is written or has failed.
        log.in_flight.settle();
        if log.in_flight.failed() {
            return Vec::new();
        }
        log.dirty = false;
        self.publish(log.version())
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
        self.enqueue(Request::Write(NonNull::from(batch)))
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

    /// Queues `request` and returns its verdict, leading a group through
    /// the pipeline if it comes to the head of the queue while no other
    /// leader writes (see the module comment).
    fn enqueue(&self, request: Request) -> Result<u64> {
        let me = Arc::new(Waiter {
            request,
            thread: thread::current(),
            result: Mutex::new(None),
        });
        let mut queue = lock(&self.queue);
        queue.waiting.push_back(me.clone());
        if queue.waiting.len() >= queue.wake_leader_at {
            if let Some(leader) = queue.parked_leader.take() {
                leader.unpark();
            }
        }
        loop {
            if !queue.leading && queue.waiting.front().is_some_and(|w| Arc::ptr_eq(w, &me)) {
                queue.leading = true;
                break;
            }
            drop(queue);
            // A verdict or the lead is always announced by an `unpark`
            // after the state that the loop checks is set, so no wake-up is
            // lost; spurious ones only repeat the check. The verdict, the
            // usual reason to wake, is checked without the queue's lock,
            // which the leader and arriving writers contend for.
            thread::park();
            if let Some(r) = lock(&me.result).take() {
                return r;
            }
            queue = lock(&self.queue);
        }
        drop(queue);
        let group = self.write_stage();
        self.sync_stage(group);
        let result = lock(&me.result).take();
        result.unwrap_or(Err(Error::Closed))
    }

    /// The write stage of a leader: takes queued requests and writes their
    /// batches, pass after pass, until the sync stage is free; then takes a
    /// last pass, hands the lead to the next head of the queue and returns
    /// the group for its sync.
    fn write_stage(&self) -> Group {
        let mut group = Group::default();
        loop {
            let mut queue = lock(&self.queue);
            let mut taken = Vec::new();
            while group.waiters.len() + taken.len() < MAX_GROUP_BATCHES
                && group.bytes < MAX_GROUP_BYTES
            {
                let Some(w) = queue.waiting.pop_front() else {
                    break;
                };
                group.bytes += w.batch().map_or(0, |b| b.len() * OP_HEADER_LEN);
                taken.push(w);
            }
            let last = !queue.syncing;
            if last {
                queue.syncing = true;
            } else if taken.is_empty() {
                // Full, or nothing new: wait for requests or for the sync
                // stage (either unparks the leader).
                queue.parked_leader = Some(thread::current());
                drop(queue);
                thread::park();
                continue;
            }
            drop(queue);
            self.write_pass(&mut group, taken, last);
            if last {
                // The lead passes on only now: a next leader's pass written
                // before this last one would take LSNs below this group's
                // end, so this group's sync and version would cover batches
                // of the next group, whose own sync may fail.
                let mut queue = lock(&self.queue);
                queue.leading = false;
                queue.wake_leader_at = (group.waiters.len() / PASSES_PER_GROUP).max(1);
                if let Some(next) = queue.waiting.front() {
                    next.thread.unpark();
                }
                return group;
            }
        }
    }

    /// Writes the batches of `taken` (one write of the encoded records) and
    /// adds them to `group`; on the `last` pass, notes where the log ends.
    fn write_pass(&self, group: &mut Group, taken: Vec<Arc<Waiter>>, last: bool) {
        let mut log = lock(&self.log);
        if let (None, Err(e)) = (&group.fatal, self.check_stopped()) {
            group.fail(e);
        }
        if let Some(e) = &group.fatal {
            let durable = self.progress.durable();
            for w in &taken {
                group.results.push(match w.request {
                    Request::SyncTo(lsn) if lsn <= durable => Ok(durable),
                    _ => Err(e.clone()),
                });
            }
            group.waiters.extend(taken);
            return;
        }
        let batches: Vec<&WriteBatch> = taken.iter().filter_map(|w| w.batch()).collect();
        let mut written = Vec::with_capacity(batches.len());
        let fatal = log.write_group(&batches, &mut written);
        self.note_compaction_due(&mut log);
        let mut written = written.into_iter();
        for w in &taken {
            group.results.push(match w.request {
                // `write_group` gives one verdict per batch.
                Request::Write(_) => written.next().unwrap_or(Err(Error::Closed)),
                // Set by the sync.
                Request::SyncTo(lsn) => Ok(lsn),
            });
        }
        group.waiters.extend(taken);
        if let Err(e) = fatal {
            self.stop(&e);
            group.fail(e);
        } else if last {
            // The sync covers every record up to the LSN noted here.
            log.in_flight.settle();
            let wrote = group
                .waiters
                .iter()
                .zip(&group.results)
                .any(|(w, r)| w.batch().is_some() && r.is_ok());
            group.end = Some(GroupEnd {
                segment: log.active().clone(),
                pos: log.write_pos,
                lsn: log.next_lsn - 1,
                version: wrote.then(|| log.version()),
            });
        }
    }

    /// The sync stage of a group: syncs it (unless a sync covered it
    /// already), publishes and acknowledges it, frees the segments its
    /// records left dead, hands every waiter its verdict, and then lets the
    /// next group sync (see the module comment).
    fn sync_stage(&self, group: Group) {
        let mut retired = Retired::default();
        // A group that failed while written has its verdicts already.
        let synced = match (&group.fatal, &group.end) {
            (Some(_), _) => None,
            (None, None) => Some(Err(Error::Closed)),
            (None, Some(end)) => Some(self.finish_sync(end, &mut retired)),
        };
        for (w, r) in group.waiters.iter().zip(group.results) {
            w.finish(match (&synced, r) {
                (Some(Err(e)), Ok(_)) => Err(e.clone()),
                (Some(Ok(lsn)), Ok(_)) if w.batch().is_none() => Ok(*lsn),
                (_, r) => r,
            });
        }
        let mut queue = lock(&self.queue);
        queue.syncing = false;
        if let Some(leader) = queue.parked_leader.take() {
            leader.unpark();
        }
    }

    /// Syncs a written group, leaves a sync mark claiming it, publishes its
    /// version and acknowledges it; returns the LSN made durable.
    fn finish_sync(&self, end: &GroupEnd, retired: &mut Retired) -> Result<u64> {
        let synced = self
            .gate
            .sync_covering(&end.segment, end.lsn, &self.progress);
        let mut log = lock(&self.log);
        // No mark repeating the last one when nothing new was synced (a
        // group of `sync_to` requests, or one a roll or `sync` covered).
        let marked = synced.and_then(|()| {
            if log.active().id == end.segment.id && log.synced_pos < end.pos {
                log.synced_pos = end.pos;
                log.write_sync_mark()?;
            }
            Ok(())
        });
        if let Err(e) = marked {
            self.stop(&e);
            return Err(e);
        }
        if let Some(version) = &end.version {
            if version.lsn > self.current.load().lsn {
                retired.push(self.publish(version.clone()));
            }
        }
        self.progress.acknowledge(end.lsn);
        if !Arc::ptr_eq(&self.current.load().generation, &log.generation) {
            // A change of the segments that no version shows yet, made
            // while this group was written or synced: left to it.
            retired.push(self.publish_change(&mut log));
        }
        if let Err(e) = self.free_or_defer(&mut log, retired) {
            // The group is durable; the failure stops later writes.
            self.stop(&e);
        }
        drop(log);
        Ok(end.lsn)
    }

    /// Commits one batch without a sync, publishing lazily: its record is
    /// reserved under the writer's lock and written after it (see
    /// [`InFlight`]), so that writers copy side by side; the batch is
    /// acknowledged once it and every record before it are written.
    fn commit_direct(&self, batch: &WriteBatch) -> Result<u64> {
        let side_by_side = self.direct_writers.fetch_add(1, Ordering::Relaxed) > 0;
        let result = self.commit_direct_counted(batch, side_by_side);
        self.direct_writers.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// `commit_direct`, told whether another buffered write was under way
    /// as it began.
    fn commit_direct_counted(&self, batch: &WriteBatch, side_by_side: bool) -> Result<u64> {
        let mut retired = Retired::default();
        let mut log = lock(&self.log);
        // Under the writer's lock: a failure recorded by a sync that ran
        // meanwhile is seen before anything is reserved.
        self.check_stopped()?;
        let mut buf = WRITE_BUFFER.take();
        // A roll creates files under the lock: publish first, so that
        // snapshots need not wait for it (the bound may be a little
        // early near a segment's end; that costs one publish).
        if log.must_roll(record_len(batch.payload_bound())) {
            retired.push(self.publish_dirty(&mut log));
        }
        let reserved = log.reserve_one(batch, &mut buf, side_by_side);
        self.note_compaction_due(&mut log);
        let reservation = match reserved {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, Error::Io { .. }) {
                    self.stop(&e);
                }
                drop(log);
                WRITE_BUFFER.set(buf);
                return Err(e);
            }
        };
        log.dirty = true;
        // Segments the batch left freeable: noted for the compaction
        // thread now, or freed after the write (a free syncs, which would
        // wait for this very record).
        let ids = log.freeable();
        let free_after = !ids.is_empty() && !log.defers_frees();
        if free_after {
            log.acct.changed = true;
        } else if !ids.is_empty() {
            log.defer_free(ids);
        }
        drop(log);
        drop(retired);

        let file = &reservation.file;
        let written = if reservation.in_place {
            file.write_in_place(reservation.offset, &buf)
        } else {
            file.write_at(reservation.offset, &buf)
        }
        .map_err(|e| Error::io("write segment", &reservation.segment.path, e));
        let buf_len = buf.len();
        WRITE_BUFFER.set(buf);
        if let Err(e) = &written {
            // Recorded before `finish` wakes anyone waiting for the record.
            self.stop(e);
        }
        self.in_flight.finish(reservation.lsn, written.is_ok());
        if written.is_ok() && reservation.in_place {
            // Readying the space after the record (page faults ahead) is
            // left until it counts as written, so that newer records'
            // writers do not wait for it.
            file.after_write_in_place(reservation.offset, buf_len);
        }
        let acknowledged = self.in_flight.written_through(reservation.lsn);
        written?;
        if !acknowledged {
            return Err(self.check_stopped().err().unwrap_or(Error::Closed));
        }
        self.progress.acknowledge(reservation.lsn);
        if free_after {
            let mut retired = Retired::default();
            let mut log = lock(&self.log);
            if let Err(e) = self.free_or_defer(&mut log, &mut retired) {
                self.stop(&e);
            }
        }
        Ok(reservation.lsn)
    }

    /// Frees the segments the last write left freeable or, with
    /// `LogWriter::defers_frees`, leaves them to the compaction thread.
    fn free_or_defer(&self, log: &mut LogWriter, retired: &mut Retired) -> Result<()> {
        let ids = log.freeable();
        if ids.is_empty() {
            return Ok(());
        }
        if log.defers_frees() {
            log.defer_free(ids);
            return Ok(());
        }
        // The free syncs under the lock: publish first.
        retired.push(self.publish_dirty(log));
        if log.free(ids)? {
            retired.push(self.publish_change(log));
        }
        Ok(())
    }

    /// Publishes the working state after a step that changed the segments
    /// (a free, a roll, a compaction switch), so that the segments it
    /// dropped go once no snapshot holds them. Not while a group commit has
    /// written batches that are not acknowledged: their group's sync may
    /// still fail, and a batch never shows before its writer's verdict. The
    /// change is then published after the sync of the last such group
    /// (`finish_sync`, which finds the published generation older than the
    /// working one), whose own version may predate it.
    #[must_use = "the replaced versions should be dropped outside the locks"]
    pub(crate) fn publish_change(&self, log: &mut LogWriter) -> Vec<Arc<Version>> {
        if log.group_written > self.progress.acked() {
            return Vec::new();
        }
        self.publish_working(log)
    }

    /// Makes `version` the one new snapshots get. Returns the one it
    /// replaces and those of the idle pins this released, to be retired
    /// outside the locks (see [`Retired`]).
    #[must_use = "the replaced versions should be dropped outside the locks"]
    pub(crate) fn publish(&self, version: Arc<Version>) -> Vec<Arc<Version>> {
        let previous = self.current.swap(version.clone());
        let mut released = self.pins.published(&version, &previous);
        released.push(previous);
        released
    }

    /// Makes everything written so far durable, then leaves a sync mark.
    /// Runs the fdatasync without holding the writer's lock, so writers go
    /// on meanwhile; it fails, like every later call, once any sync or
    /// write has failed (see [`SyncGate`]).
    pub fn sync(&self) -> Result<()> {
        let (segment, pos, lsn) = {
            let log = lock(&self.log);
            self.check_stopped()?;
            log.in_flight.settle();
            (log.active().clone(), log.write_pos, log.next_lsn - 1)
        };
        // `sync_to` callers wait for this sync rather than repeat it.
        self.progress.begin_sync(lsn);
        // Every record up to `lsn` was written to `segment` below `pos`, or
        // to a segment sealed (and so synced) before it.
        let synced = self.gate.sync_covering(&segment, lsn, &self.progress);
        self.progress.end_sync(lsn);
        if let Err(e) = synced {
            // Recorded by the gate already; this wakes the waiters.
            self.stop(&e);
            return Err(e);
        }
        // And the manifest a roll left pending, which `sync_covering` may
        // have had no need for.
        self.finish_pending()?;
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

    /// Takes the manifest swap a roll, a free or a compaction left pending
    /// (`SyncGate::finish_pending`), without the writer's lock; a failure
    /// stops writes.
    pub fn finish_pending(&self) -> Result<()> {
        self.gate
            .finish_pending(&self.progress)
            .inspect_err(|e| self.stop(e))
    }

    /// The last sync at clean close: everything written is made durable and
    /// so is a sync mark claiming it, so that the next open tells damage to
    /// these records from a torn tail.
    pub fn sync_for_close(&self) -> Result<()> {
        self.sync()?;
        let log = lock(&self.log);
        self.gate.sync(log.active())?;
        // Closed: the space reserved past the data goes back (the next
        // open reserves again before it writes).
        log.active().unreserve_after(log.write_pos);
        Ok(())
    }
}
