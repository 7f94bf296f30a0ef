//! `Store`: open, write, snapshot, sync, stats, close.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::batch::WriteBatch;
use crate::checkpoint::{self, CheckpointReport};
use crate::commit::Committer;
use crate::compaction::{CompactionReport, Policy};
use crate::error::{Error, Result};
use crate::index_checkpoint;
use crate::live::DeadTrigger;
use crate::mutex::lock;
use crate::options::{Options, SyncMode, WriteOptions};
use crate::recovery;
use crate::segment::DirOwner;
use crate::snapshot::Snapshot;
use crate::stats::Stats;
use crate::status;

/// An open store: one directory holding many journals.
///
/// `Send + Sync`: share it between threads with an `Arc` (or by reference).
/// Closing happens on [`Store::close`] or on drop.
#[derive(Debug)]
pub struct Store {
    inner: Arc<Inner>,
    /// The `SyncMode::Interval` thread, the compaction thread and the
    /// status thread.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    options: Options,
    committer: Committer,
    /// Held shared by every call that may write (`write`, `sync`,
    /// `compact`, `checkpoint`) and exclusively by close, which so waits for
    /// the calls under way and runs alone: nothing is written after the
    /// directory lock is released.
    calls: RwLock<()>,
    closed: Mutex<bool>,
    /// Notified at close; the threads without an early wake-up wait on it.
    closed_cv: Condvar,
    /// Raised when a write seals a segment or `dead_due` is raised: the
    /// compaction thread wakes without waiting out its period.
    compaction_wake: Wake,
    /// Raised when a write seals a segment: the index checkpoint thread
    /// looks whether one is due without waiting out its period, so that
    /// under a fast writer the log after the newest checkpoint stays near
    /// `index_checkpoint_bytes` (a segment, by default) rather than a
    /// period's worth of writes.
    index_checkpoint_wake: Wake,
    /// Raised under the writer's lock when enough bytes died since
    /// compaction last looked (`live::DeadTrigger`, which shares it);
    /// taken after the write, which then wakes the compaction thread.
    dead_due: Arc<AtomicBool>,
    /// The directory lock, held until close; segment files are removed
    /// only under it (see `DirOwner`).
    owner: Arc<DirOwner>,
    /// Serialises index checkpoints (they share a tmp file); holds what
    /// the next background one waits for.
    index_checkpointed: Mutex<LastIndexCheckpoint>,
}

/// The last index checkpoint this store wrote.
#[derive(Clone, Copy, Debug, Default)]
struct LastIndexCheckpoint {
    /// `LogWriter::appended` as of it.
    appended: u64,
    /// Its file's size.
    bytes: u64,
}

impl LastIndexCheckpoint {
    /// The `appended` at which the background writer takes the next one:
    /// `every` bytes later, or [`INDEX_CHECKPOINT_SPACING`] times the last
    /// one's size if that is more, so that checkpoints of a large index
    /// never cost more than an eighth of the bytes appended.
    fn next_due(self, every: u64) -> u64 {
        let spacing = self.bytes.saturating_mul(INDEX_CHECKPOINT_SPACING);
        self.appended.saturating_add(every.max(spacing))
    }
}

impl Store {
    /// Opens the store in `dir`, creating the directory and an empty store if
    /// needed, and recovering after a crash.
    ///
    /// Fails with [`Error::Locked`] if the directory is open elsewhere,
    /// [`Error::Corruption`] or [`Error::UnsupportedVersion`] for files it
    /// cannot trust; in those cases nothing in the directory is changed.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        let dir = dir.as_ref().to_owned();
        let (log, owner) = recovery::open(&dir, &options)?;
        let inner = Arc::new(Inner {
            dir,
            committer: Committer::new(log),
            calls: RwLock::new(()),
            closed: Mutex::new(false),
            closed_cv: Condvar::new(),
            compaction_wake: Wake::default(),
            index_checkpoint_wake: Wake::default(),
            dead_due: Arc::new(AtomicBool::new(false)),
            owner,
            index_checkpointed: Mutex::new(LastIndexCheckpoint::default()),
            options,
        });
        let store = Store {
            inner: inner.clone(),
            threads: Mutex::new(Vec::new()),
        };
        let start = |what,
                     every: Duration,
                     early: Option<fn(&Inner) -> &Wake>,
                     work: fn(&Inner) -> Option<Duration>| {
            spawn_periodic(inner.clone(), what, every, early, work)
                .map(|h| lock(&store.threads).push(h))
                .map_err(|e| Error::io("start background thread", &inner.dir, e))
        };
        if let SyncMode::Interval(every) = inner.options.sync {
            // A failure stops writes (recorded by `sync`).
            start("journalstore-sync", every, None, |inner| {
                if let Err(_e) = inner.committer.sync() {
                    trace_event!(
                        ERROR,
                        error = %crate::error::DisplayChain(&_e),
                        dir = %inner.dir.display(),
                        "background sync failed; writes are stopped"
                    );
                }
                None
            })?;
        }
        if inner.options.index_checkpoint_bytes.is_some() {
            // Looks every `index_checkpoint_interval`, and when a write
            // seals a segment, whether one is due
            // (`LastIndexCheckpoint::next_due`); a failure is retried at the
            // next look (a failed sync stops writes, and with them
            // checkpoints).
            start(
                "journalstore-index",
                inner
                    .options
                    .index_checkpoint_interval
                    .unwrap_or(Duration::MAX),
                Some(|inner| &inner.index_checkpoint_wake),
                |inner| {
                    let every = inner.options.index_checkpoint_bytes?;
                    let due = lock(&inner.index_checkpointed).next_due(every);
                    if inner.committer.appended() >= due {
                        let _ = inner.write_index_checkpoint();
                    }
                    None
                },
            )?;
        }
        if inner.options.background_compaction {
            // Armed before the thread starts: deaths from here on count.
            {
                let mut log = lock(&inner.committer.log);
                log.acct.dead_trigger = Some(DeadTrigger {
                    due_at: u64::MAX,
                    flag: inner.dead_due.clone(),
                });
                let between = log.dead_bytes_between_looks(inner.policy(true));
                log.acct.arm_dead_trigger(between);
            }
            // Without a fallback period the thread waits for a wake-up.
            let every = inner.options.compaction_interval.unwrap_or(Duration::MAX);
            start(
                "journalstore-compact",
                every,
                Some(|inner| &inner.compaction_wake),
                // A segment left for being young is looked at again once
                // it is old by time (`Committer::young_left_for`).
                |inner| match inner.compact(inner.policy(true)) {
                    Ok(_report) => {
                        if _report.runs > 0 {
                            trace_event!(
                                DEBUG,
                                runs = _report.runs,
                                segments_rewritten = _report.segments_rewritten,
                                bytes_copied = _report.bytes_copied,
                                bytes_released = _report.bytes_released,
                                "background compaction ran"
                            );
                        }
                        inner.committer.young_left_for()
                    }
                    Err(_e) => {
                        trace_event!(
                            ERROR,
                            error = %crate::error::DisplayChain(&_e),
                            dir = %inner.dir.display(),
                            "background compaction failed"
                        );
                        None
                    }
                },
            )?;
        }
        if let Some(every) = inner.options.status_interval {
            // The first one now, so that a reader need not wait `every`.
            inner.write_status(true);
            start("journalstore-status", every, None, |inner| {
                inner.write_status(true);
                None
            })?;
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Writes `batch` atomically and returns its LSN. With
    /// [`SyncMode::Always`] the batch is durable when this returns.
    ///
    /// The same as [`write_with`](Self::write_with) with `sync: true` under
    /// [`SyncMode::Always`] and `sync: false` under `Never` and `Interval`.
    ///
    /// The whole batch is rejected, and nothing of it written, if any
    /// operation is invalid against the state left by the batches before it
    /// and by its own earlier operations.
    pub fn write(&self, batch: &WriteBatch) -> Result<u64> {
        let sync = self.inner.options.sync == SyncMode::Always;
        self.write_with(batch, WriteOptions { sync })
    }

    /// Writes `batch` atomically, durable on return or not as `options`
    /// says, and returns its LSN; otherwise like [`write`](Self::write).
    ///
    /// With `sync: true` the batch is durable when this returns `Ok`, under
    /// any [`SyncMode`] (concurrent such writes share one fdatasync), and
    /// visible to snapshots only from then on. With `sync: false` it returns
    /// once the batch is written and visible to new snapshots, not yet
    /// durable, in every `SyncMode` (under `Always` too): see
    /// [`sync_to`](Self::sync_to) and [`WriteOptions`].
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use journalstore::{Options, Store, SyncMode, WriteBatch, WriteOptions};
    ///
    /// // A buffered store, and one write that must not be lost.
    /// let options = Options { sync: SyncMode::Never, ..Options::default() };
    /// let store = Store::open(tmp.path(), options)?;
    /// let mut batch = WriteBatch::new();
    /// batch.append(b"inv-1", b"step 1 done");
    /// let lsn = store.write_with(&batch, WriteOptions { sync: true })?;
    /// assert!(store.durable_lsn() >= lsn);
    /// # Ok(()) }
    /// ```
    pub fn write_with(&self, batch: &WriteBatch, options: WriteOptions) -> Result<u64> {
        let _call = self.begin_call()?;
        let o = &self.inner.options;
        batch.validate(o.max_entry_size, o.max_metadata_size)?;
        let lsn = self.inner.committer.write(batch, options.sync)?;
        let sealed = self.inner.committer.take_compaction_due();
        // Raised once per crossing of the dead-bytes threshold, so the
        // wake-up (a lock and a futex call) is not paid per write.
        let dead = self.inner.dead_due.load(Ordering::Relaxed)
            && self.inner.dead_due.swap(false, Ordering::Relaxed);
        if sealed || dead {
            self.inner.on_compaction_due();
        }
        if sealed && self.inner.options.index_checkpoint_bytes.is_some() {
            self.inner.wake(&self.inner.index_checkpoint_wake);
        }
        Ok(lsn)
    }

    /// A snapshot of everything written so far: it includes every batch
    /// whose `write` returned before this call. O(1); takes no lock held
    /// across I/O.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.committer.snapshot()
    }

    /// Makes every batch written so far durable (useful with
    /// [`SyncMode::Never`]).
    pub fn sync(&self) -> Result<()> {
        let _call = self.begin_call()?;
        self.inner.committer.sync()
    }

    /// Returns once every batch with an LSN up to `lsn` is durable.
    ///
    /// If a sync already covered `lsn` ([`durable_lsn`](Self::durable_lsn)
    /// `>= lsn`), it returns at once and does no I/O. Otherwise it is served
    /// by group commit like a `sync: true` write: it waits for the group
    /// under way, if any, returns if that group's sync covered `lsn`, and
    /// else syncs (once for every `sync_to` and `sync: true` write queued
    /// with it). A sync covers every batch written before it, in every
    /// segment: a segment is synced when a roll seals it.
    ///
    /// An `lsn` not yet written ([`last_lsn`](Self::last_lsn) `< lsn`) is
    /// waited for: the call returns once a batch with that LSN has been
    /// written and made durable, and fails if the store closes first.
    ///
    /// Fails with [`Error::WritesStopped`] once a write or sync has failed,
    /// unless a sync before the failure covered `lsn`: a failed sync may
    /// have dropped the bytes, and no later sync may count
    /// (README, "Guarantees"). With [`Error::Closed`] once the store is
    /// closed.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use journalstore::{Store, WriteBatch, WriteOptions};
    ///
    /// let store = Store::open(tmp.path(), Default::default())?;
    /// let mut last = 0;
    /// for i in 0..3u64 {
    ///     let mut batch = WriteBatch::new();
    ///     batch.append_at(b"raft-log", i, format!("entry {i}").as_bytes());
    ///     last = store.write_with(&batch, WriteOptions { sync: false })?;
    /// }
    /// store.sync_to(last)?; // one fdatasync for the three batches
    /// assert!(store.durable_lsn() >= last);
    /// # Ok(()) }
    /// ```
    pub fn sync_to(&self, lsn: u64) -> Result<()> {
        let _call = self.begin_call()?;
        self.inner.committer.sync_to(lsn)
    }

    /// The LSN up to which every batch is known durable: written and
    /// covered by a successful fdatasync (or recovered at open, which makes
    /// what it recovered durable). It only grows; a failed sync leaves it
    /// where the last successful one put it.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use journalstore::{Options, Store, SyncMode, WriteBatch};
    ///
    /// let options = Options { sync: SyncMode::Never, ..Options::default() };
    /// let store = Store::open(tmp.path(), options)?;
    /// let mut batch = WriteBatch::new();
    /// batch.append(b"j", b"e");
    /// let lsn = store.write(&batch)?; // buffered: not durable yet
    /// assert!(store.durable_lsn() < lsn);
    /// store.sync()?;
    /// assert_eq!(store.durable_lsn(), lsn);
    /// # Ok(()) }
    /// ```
    pub fn durable_lsn(&self) -> u64 {
        self.inner.committer.durable_lsn()
    }

    /// The LSN of the newest acknowledged batch: every batch up to it is
    /// visible to a snapshot taken now. 0 for a new store. A `sync: true`
    /// write counts once it is durable (when it returns), a `sync: false`
    /// one once it is written.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// assert_eq!(store.last_lsn(), 0);
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.append(b"j", b"e");
    /// let lsn = store.write(&batch)?;
    /// assert_eq!(store.last_lsn(), lsn);
    /// assert_eq!(store.snapshot().lsn(), lsn);
    /// # Ok(()) }
    /// ```
    pub fn last_lsn(&self) -> u64 {
        self.inner.committer.last_lsn()
    }

    /// Waits until a batch with an LSN of at least `lsn` is visible to new
    /// snapshots ([`last_lsn`](Self::last_lsn) `>= lsn`): `Ok(true)`, at
    /// once if it is already. `Ok(false)` if `timeout` (`None`: no limit)
    /// passes first. Writers wake it when they acknowledge a batch; it does
    /// not poll.
    ///
    /// Fails with [`Error::Closed`] if the store closes first (close wakes
    /// every waiter), and with [`Error::WritesStopped`] if writes stop
    /// first (no batch can come any more). It writes nothing, so it does
    /// not hold up [`close`](Self::close).
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use journalstore::{Store, WriteBatch};
    ///
    /// let store = Arc::new(Store::open(tmp.path(), Default::default())?);
    /// let next = store.last_lsn() + 1;
    /// let follower = {
    ///     let store = store.clone();
    ///     std::thread::spawn(move || store.wait_for(next, None))
    /// };
    /// let mut batch = WriteBatch::new();
    /// batch.append(b"j", b"e");
    /// store.write(&batch)?;
    /// assert!(follower.join().unwrap()?);
    /// assert!(store.snapshot().lsn() >= next);
    /// // Nothing more is written: the wait times out.
    /// assert!(!store.wait_for(next + 1, Some(Duration::from_millis(10)))?);
    /// # Ok(()) }
    /// ```
    pub fn wait_for(&self, lsn: u64, timeout: Option<Duration>) -> Result<bool> {
        self.inner.committer.wait_for(lsn, deadline(timeout))
    }

    /// Like [`wait_for`](Self::wait_for), until every batch up to `lsn` is
    /// durable ([`durable_lsn`](Self::durable_lsn) `>= lsn`). It syncs
    /// nothing itself: with `sync: false` writes something else must
    /// ([`sync_to`](Self::sync_to), [`sync`](Self::sync), the
    /// `SyncMode::Interval` thread, a `sync: true` write).
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use std::sync::Arc;
    /// use journalstore::{Store, WriteBatch, WriteOptions};
    ///
    /// let store = Arc::new(Store::open(tmp.path(), Default::default())?);
    /// let mut batch = WriteBatch::new();
    /// batch.append(b"j", b"e");
    /// let lsn = store.write_with(&batch, WriteOptions { sync: false })?;
    /// let acker = {
    ///     let store = store.clone();
    ///     std::thread::spawn(move || store.wait_for_durable(lsn, None))
    /// };
    /// store.sync_to(lsn)?;
    /// assert!(acker.join().unwrap()?);
    /// # Ok(()) }
    /// ```
    pub fn wait_for_durable(&self, lsn: u64, timeout: Option<Duration>) -> Result<bool> {
        self.inner
            .committer
            .wait_for_durable(lsn, deadline(timeout))
    }

    /// Rewrites every run of segments whose live ratio is below
    /// [`Options::compaction_threshold`] now, and returns what it did. Runs
    /// alongside writers and readers (see `compaction.rs` for the pause).
    pub fn compact(&self) -> Result<CompactionReport> {
        let _call = self.begin_call()?;
        self.inner.compact(self.inner.policy(false))
    }

    /// Writes a consistent copy of the store as of a snapshot taken now into
    /// `dest` (created if missing; must be empty), while writes go on.
    /// Sealed segments are hard-linked where the file system allows, the
    /// active one is copied up to the snapshot, and the manifest is written
    /// last. `Store::open(dest)` gives exactly that snapshot.
    pub fn checkpoint(&self, dest: impl AsRef<Path>) -> Result<CheckpointReport> {
        let _call = self.begin_call()?;
        let version = self.inner.committer.current();
        // Its sealed segments are linked, not copied: durable first.
        self.inner.committer.finish_pending()?;
        checkpoint::write(
            &version,
            &self.inner.options.fs,
            &self.inner.dir,
            dest.as_ref(),
        )
    }

    /// Writes an index checkpoint now: the in-memory index, as of
    /// everything written so far, to a file that the next open loads
    /// before replaying only what is written after it (README, "Open").
    /// Syncs first, as the checkpoint may only describe durable records.
    /// Unless [`Options::index_checkpoint_bytes`] is `None`, the store also
    /// writes one at clean close and in the background as that option
    /// says.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use journalstore::{Options, Store, SyncMode, WriteBatch};
    /// let options = || Options { sync: SyncMode::Never, ..Options::default() };
    /// let store = Store::open(tmp.path(), options())?;
    /// let mut batch = WriteBatch::new();
    /// batch.append(b"j", b"entry");
    /// store.write(&batch)?;
    /// store.write_index_checkpoint()?;
    /// drop(store);
    /// let store = Store::open(tmp.path(), options())?; // loads it, replays nothing
    /// assert_eq!(store.snapshot().journal(b"j").unwrap().len(), 1);
    /// # Ok(()) }
    /// ```
    pub fn write_index_checkpoint(&self) -> Result<()> {
        let _call = self.begin_call()?;
        self.inner.write_index_checkpoint()
    }

    /// Current figures.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Syncs and closes the store, releasing the directory lock. It waits
    /// for the calls under way (writes, syncs, compactions, checkpoints);
    /// later ones fail with [`Error::Closed`]. Snapshots taken earlier stay
    /// readable. A store shared behind an `Arc` closes through any handle;
    /// dropping the last handle of an open store does the same but ignores
    /// errors.
    ///
    /// Fails with [`Error::WritesStopped`] if an earlier write or sync
    /// failed (the lock is released all the same): batches acknowledged
    /// before that may not be durable; with [`Error::Closed`] if the store
    /// was closed already.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use std::sync::Arc;
    /// let store = Arc::new(journalstore::Store::open(tmp.path(), Default::default())?);
    /// let writer = store.clone();
    /// store.close()?; // reports a failed sync; releases the lock
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.append(b"j", b"late");
    /// assert!(matches!(writer.write(&batch), Err(journalstore::Error::Closed)));
    /// # Ok(()) }
    /// ```
    pub fn close(&self) -> Result<()> {
        self.shutdown().unwrap_or(Err(Error::Closed))
    }

    /// Enters a call that may write: fails once the store is closed; the
    /// guard keeps close waiting until the call is done.
    fn begin_call(&self) -> Result<RwLockReadGuard<'_, ()>> {
        let call = self.inner.calls.read().unwrap_or_else(|e| e.into_inner());
        if *lock(&self.inner.closed) {
            return Err(Error::Closed);
        }
        Ok(call)
    }

    /// Closes the store; `None` if it was closed already.
    fn shutdown(&self) -> Option<Result<()>> {
        {
            let mut closed = lock(&self.inner.closed);
            if *closed {
                return None;
            }
            *closed = true;
        }
        // Waiters hold no call open (except `sync_to` waiting for its LSN
        // to be written, which the wake-up ends): wake them before waiting
        // for the calls.
        self.inner.committer.close_waiters();
        // Every call that saw the store open has finished once this is
        // held; the ones after it see it closed.
        let _alone = self.inner.calls.write().unwrap_or_else(|e| e.into_inner());
        self.inner.closed_cv.notify_all();
        self.inner.compaction_wake.cv.notify_all();
        self.inner.index_checkpoint_wake.cv.notify_all();
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for handle in threads {
            let _ = handle.join();
        }
        // Alone now: no call, no background thread. A failed step leaves
        // the store as it was, or (a failed switch) stops writes, which the
        // close's sync below reports.
        let o = &self.inner.options;
        if o.compact_on_close && o.background_compaction {
            let _ = self.inner.compact_for_close();
        }
        // After a failed write or sync (possibly in the sync thread, where
        // nobody saw it) what was acknowledged may not be durable: say so
        // rather than report a clean close.
        // The index as of the last record, checkpointed once the close's
        // sync made that record durable (a failure costs only a longer
        // replay at the next open).
        let checkpoint = self
            .inner
            .options
            .index_checkpoint_bytes
            .and_then(|_| self.inner.committer.index_checkpoint_state().ok());
        let result = self.inner.committer.sync_for_close();
        if let (Ok(()), Some(checkpoint)) = (&result, checkpoint) {
            let _ = index_checkpoint::store(&*self.inner.options.fs, &self.inner.dir, &checkpoint);
        }
        // The last word, while the lock is still held (the next opener
        // writes its own); it records whether writes had stopped.
        self.inner.write_status(false);
        self.inner.owner.release();
        Some(result)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The instant `timeout` from now; `None` (no limit) for `None` or a
/// timeout too far off to represent.
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

/// The background index checkpoint waits for at least this many times the
/// last one's size to be appended (see [`LastIndexCheckpoint::next_due`]).
const INDEX_CHECKPOINT_SPACING: u64 = 8;

/// Most compaction steps one stalled write runs.
const STALL_STEPS: usize = 64;

impl Inner {
    /// Takes the index's state, syncs what it covers, and stores it.
    fn write_index_checkpoint(&self) -> Result<()> {
        let mut last = lock(&self.index_checkpointed);
        let checkpoint = self.committer.index_checkpoint_state()?;
        self.committer.sync()?;
        let bytes = index_checkpoint::store(&*self.options.fs, &self.dir, &checkpoint)?;
        *last = LastIndexCheckpoint {
            appended: checkpoint.appended,
            bytes,
        };
        Ok(())
    }

    fn stats(&self) -> Stats {
        // Every figure from one point, under the writer's lock. There the
        // published version is the working state, unless the buffered modes
        // hold acknowledged batches not yet published (`dirty`): then the
        // working index is exactly what was acknowledged, and what a
        // publish would show. (The clone of the published version is not
        // its last reference while the lock is held, so dropping it here
        // frees nothing.)
        let log = lock(&self.committer.log);
        let (lsn, journals) = if log.dirty {
            (log.next_lsn - 1, log.index.len())
        } else {
            let published = self.committer.current.load_full();
            (published.lsn, published.index.len())
        };
        let generation = &log.generation;
        let pins = self.committer.pins.live();
        let oldest = pins.iter().min_by_key(|p| p.busy_since);
        let mut pinned_only = std::collections::HashMap::new();
        for pin in &pins {
            for s in &pin.generation.segments {
                if generation.segment(s.id).is_none() {
                    pinned_only.insert(s.id, s.capacity);
                }
            }
        }
        let sealed: u64 = log
            .manifest
            .segments
            .iter()
            .filter_map(|s| s.sealed_len)
            .sum();
        Stats {
            generation: generation.number,
            lsn,
            segments: generation.segments.len(),
            bytes_on_disk: generation.bytes_on_disk(),
            bytes_written: sealed + log.write_pos,
            live_bytes: log.acct.total_live_bytes(),
            journals,
            pinned_snapshots: pins.iter().map(|p| p.snapshots).sum(),
            oldest_pinned_generation: oldest.map(|p| p.generation.number),
            oldest_pinned_age: oldest.map(|p| p.busy_since.elapsed()),
            pinned_only_bytes: pinned_only.values().sum(),
            bytes_appended: log.appended,
            compaction_bytes_copied: log.compacted,
            compaction_runs: log.compaction_runs,
        }
    }

    /// Rewrites the status file if `Options::status_interval` asks for
    /// one. Failures are ignored: the file is advisory (see `status.rs`).
    fn write_status(&self, open: bool) {
        let Some(interval) = self.options.status_interval else {
            return;
        };
        // The figures first, and the I/O after every lock is released.
        let stats = self.stats();
        let writes_stopped = self.committer.stopped_cause().is_some();
        let cx = status::Context {
            interval,
            open,
            writes_stopped,
        };
        let text = status::render(&stats, &cx, SystemTime::now());
        let _ = status::write(&*self.options.fs, &self.dir, &text);
    }

    /// Wakes the compaction thread (it looks for work at once).
    fn wake_compaction(&self) {
        self.wake(&self.compaction_wake);
    }

    /// Raises a background thread's early wake-up and notifies it, unless
    /// it is raised already: then a notification is on its way, or the
    /// thread has not taken the wake-up since it last looked and will
    /// before it waits (so a writer pays the lock and the system call once
    /// per look of the thread, not once per write).
    fn wake(&self, wake: &Wake) {
        if wake.due.swap(true, Ordering::AcqRel) {
            return;
        }
        // Under the lock, so the thread cannot check the flag and then miss
        // the notification.
        drop(lock(&self.closed));
        wake.cv.notify_one();
    }

    /// After a write sealed a segment or took the dead bytes since
    /// compaction last looked past `dead_bytes_between_looks`: wakes the
    /// compaction thread and, if the store is over
    /// `Options::stall_space_amplification`, makes the writer compact until
    /// it is not (the write stall). Checked at the dead-bytes crossings too,
    /// since writers that outrun the thread (which shares the cores with
    /// them) would otherwise fill the active segment with dead records
    /// until it is full. The writer's batch is already written and visible;
    /// only its return waits.
    fn on_compaction_due(&self) {
        let o = &self.options;
        if !o.background_compaction {
            return;
        }
        self.wake_compaction();
        let Some(limit) = o.stall_space_amplification else {
            return;
        };
        // Each step rewrites one run (half a segment of live data at most);
        // the cap bounds the stall even if compaction cannot get under the
        // limit (segments too live to be worth rewriting). An error stopped
        // writes: the next write reports it.
        #[cfg(feature = "tracing")]
        let stalled = self
            .committer
            .over_space_limit(limit)
            .then(std::time::Instant::now);
        let _result = self.compact_while(STALL_STEPS, self.policy(false), || {
            self.committer.over_space_limit(limit)
        });
        #[cfg(feature = "tracing")]
        if let Some(started) = stalled {
            trace_event!(
                WARN,
                limit,
                waited_ms = started.elapsed().as_secs_f64() * 1e3,
                still_over = self.committer.over_space_limit(limit),
                error = _result.as_ref().err().map(|e| crate::error::DisplayChain(e).to_string()),
                "write stall: the store was over stall_space_amplification and the writer compacted"
            );
        }
    }

    /// The compaction policy from the options; `wait_for_young` for the
    /// compaction thread only (see `Policy::wait_for_young`).
    fn policy(&self, wait_for_young: bool) -> Policy {
        Policy {
            threshold: self.options.compaction_threshold,
            wait_for_young,
            max_space_amplification: self.options.max_space_amplification,
            dead_bytes: self.options.compaction_dead_bytes,
            at_close: false,
        }
    }

    fn compact(&self, policy: Policy) -> Result<CompactionReport> {
        self.compact_while(self.step_cap(), policy, || true)
    }

    /// The most steps a compaction to completion runs: each step rewrites
    /// a run into a settled segment or finds its run changed, so this only
    /// guards against a bug looping forever.
    fn step_cap(&self) -> usize {
        16 + 4 * lock(&self.committer.log).generation.segments.len()
    }

    /// The pass at close (`Options::compact_on_close`): compaction steps
    /// under the close's policy (`Policy::at_close`) until the store meets
    /// its space target or has copied one segment's worth, so a close
    /// costs at most about one segment's copy and sync.
    fn compact_for_close(&self) -> Result<()> {
        let policy = Policy {
            at_close: true,
            ..self.policy(false)
        };
        let budget = lock(&self.committer.log).segment_size;
        self.compact_steps(self.step_cap(), policy, |done| done.bytes_copied < budget)
            .map(|_| ())
    }

    /// Runs compaction steps while `wanted` says so, until there is nothing
    /// left to do, the store closes, or `cap` steps ran; sums what they did.
    fn compact_while(
        &self,
        cap: usize,
        policy: Policy,
        wanted: impl Fn() -> bool,
    ) -> Result<CompactionReport> {
        self.compact_steps(cap, policy, |_| !*lock(&self.closed) && wanted())
    }

    /// Runs compaction steps while `wanted`, given what the steps so far
    /// did, says so, until there is nothing left to do or `cap` steps ran;
    /// sums what they did.
    fn compact_steps(
        &self,
        cap: usize,
        policy: Policy,
        wanted: impl Fn(&CompactionReport) -> bool,
    ) -> Result<CompactionReport> {
        let mut total = CompactionReport::default();
        for _ in 0..cap {
            if !wanted(&total) {
                break;
            }
            match self
                .committer
                .compact_once(policy, self.options.compaction_rate_limit)?
            {
                None => break,
                Some(step) => {
                    total.runs += step.runs;
                    total.segments_rewritten += step.segments_rewritten;
                    total.segments_written += step.segments_written;
                    total.bytes_copied += step.bytes_copied;
                    total.bytes_released += step.bytes_released;
                    total.max_pause = total.max_pause.max(step.max_pause);
                }
            }
        }
        Ok(total)
    }
}

/// A background thread's early wake-up: raised, then `cv` notified with the
/// store's `closed` lock taken in between (see `Inner::wake`).
#[derive(Debug, Default)]
struct Wake {
    due: AtomicBool,
    cv: Condvar,
}

/// A background thread that runs `work` every `every` until close, and
/// earlier when `early` (if any) is raised, which it consumes, or when
/// `work` asks to run again sooner.
fn spawn_periodic(
    inner: Arc<Inner>,
    name: &str,
    every: Duration,
    early: Option<fn(&Inner) -> &Wake>,
    work: fn(&Inner) -> Option<Duration>,
) -> std::io::Result<JoinHandle<()>> {
    let mut wait = every;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            let cv = early.map_or(&inner.closed_cv, |wake| &wake(&inner).cv);
            // `wait_timeout_while` checks the condition before waiting: a
            // close that came before this thread first took the lock has
            // already notified, and a plain wait would sleep a whole `every`.
            let closed = lock(&inner.closed);
            let (closed, _) = cv
                .wait_timeout_while(closed, wait, |closed| {
                    !*closed
                        && !early.is_some_and(|wake| wake(&inner).due.swap(false, Ordering::AcqRel))
                })
                .unwrap_or_else(|e| e.into_inner());
            if *closed {
                return;
            }
            drop(closed);
            wait = work(&inner).map_or(every, |sooner| sooner.min(every));
        })
}
