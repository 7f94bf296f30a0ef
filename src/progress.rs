//! The two LSN watermarks callers follow and wait on: the newest
//! acknowledged batch (visible to new snapshots) and the newest durable one.
//!
//! Invariants:
//! - `acked` is raised, under the writer's lock, before the write that
//!   made it returns, and only for batches whose records are written: every
//!   batch with an LSN up to it is visible to a snapshot taken afterwards
//!   (`Committer::current` makes the version on demand in the buffered path).
//! - `durable` is raised only after a successful fdatasync that covered
//!   every record up to it (the active segment's records up to it, and the
//!   sealed segments before, each synced by its roll). Both start at the
//!   LSN open recovered, which open makes durable. `durable` may run ahead
//!   of `acked`: a group's sync raises it before the group is acknowledged,
//!   and a batch whose write failed after its bytes were synced (a failed
//!   sync mark or roll later in its group) is durable though never
//!   acknowledged.
//! - An explicit sync (`Committer::sync`, outside the queue) announces the
//!   LSN it covers while it runs and raises `durable` before it withdraws
//!   the announcement, so a `sync_to` that waited for it finds its LSN
//!   durable or the failure recorded in the `SyncGate`, which a failed
//!   sync records before it returns.
//! - Every raise, a stop of writes and close wake the waiters: a waiter
//!   counts itself in `waiters` and then checks its condition, with the
//!   state lock held; a raise stores the watermark and then reads
//!   `waiters`, taking the lock to notify only if it is not zero. Both
//!   sides use sequentially consistent operations, so at least one sees
//!   the other's store: the waiter sees the new watermark, or the raise
//!   sees the waiter, whose lock it then waits for (held until the waiter
//!   sleeps), and no wake-up is lost.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::mutex::lock;

/// The watermarks and their waiters.
#[derive(Debug)]
pub(crate) struct Progress {
    acked: AtomicU64,
    durable: AtomicU64,
    /// Threads in `wait_until` or `await_syncs_covering`: a raise with none
    /// takes no lock and makes no system call (it would on every write).
    waiters: AtomicUsize,
    state: Mutex<State>,
    changed: Condvar,
}

/// What the waiters need besides the watermarks.
#[derive(Debug, Default)]
struct State {
    /// Writes stopped after an I/O failure: no watermark moves again.
    stopped: bool,
    /// The LSNs that the explicit syncs under way (`Committer::sync`, run
    /// outside the queue) will make durable if they succeed.
    syncing: Vec<u64>,
    closed: bool,
}

/// How `Progress::wait_until` ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    Reached,
    TimedOut,
    Stopped,
    Closed,
}

impl Progress {
    /// Both watermarks at `lsn`, the newest batch recovered (and durable).
    pub fn new(lsn: u64) -> Progress {
        Progress {
            acked: AtomicU64::new(lsn),
            durable: AtomicU64::new(lsn),
            waiters: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        }
    }

    /// LSN of the newest acknowledged batch.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// LSN up to which every batch is durable.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::SeqCst)
    }

    /// Every batch up to `lsn` is acknowledged (see the module comment).
    pub fn acknowledge(&self, lsn: u64) {
        self.acked.fetch_max(lsn, Ordering::SeqCst);
        self.wake_waiters();
    }

    /// Every batch up to `lsn` is durable (see the module comment).
    pub fn made_durable(&self, lsn: u64) {
        self.durable.fetch_max(lsn, Ordering::SeqCst);
        self.wake_waiters();
    }

    /// After a raise: wakes the waiters if there are any (see the module
    /// comment for why none is missed).
    fn wake_waiters(&self) {
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.notify(|_| {});
        }
    }

    /// An explicit sync that will make every batch up to `lsn` durable
    /// starts (see `await_syncs_covering`); `end_sync` must follow.
    pub fn begin_sync(&self, lsn: u64) {
        lock(&self.state).syncing.push(lsn);
    }

    /// The sync `begin_sync(lsn)` announced is over, after `made_durable`
    /// if it succeeded.
    pub fn end_sync(&self, lsn: u64) {
        self.notify(|s| {
            if let Some(at) = s.syncing.iter().position(|&t| t == lsn) {
                s.syncing.swap_remove(at);
            }
        });
    }

    /// Waits while an explicit sync under way covers `lsn` and has not
    /// made it durable yet, so that the caller need not sync again.
    pub fn await_syncs_covering(&self, lsn: u64) {
        let mut state = lock(&self.state);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        while self.durable() < lsn
            && !state.stopped
            && !state.closed
            && state.syncing.iter().any(|&t| t >= lsn)
        {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Writes stopped: waiters for what cannot come any more fail.
    pub fn stop(&self) {
        self.notify(|s| s.stopped = true);
    }

    /// The store closed: every waiter fails.
    pub fn close(&self) {
        self.notify(|s| s.closed = true);
    }

    fn notify(&self, change: impl FnOnce(&mut State)) {
        let mut state = lock(&self.state);
        change(&mut state);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.changed.notify_all();
        }
    }

    /// Waits until `reached(acked, durable)` holds, writes stop, the store
    /// closes or `deadline` passes, in that order of precedence.
    pub fn wait_until(
        &self,
        deadline: Option<Instant>,
        reached: impl Fn(u64, u64) -> bool,
    ) -> Waited {
        let mut state = lock(&self.state);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let waited = loop {
            if reached(self.acked(), self.durable()) {
                break Waited::Reached;
            }
            if state.stopped {
                break Waited::Stopped;
            }
            if state.closed {
                break Waited::Closed;
            }
            state = match deadline {
                None => self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break Waited::TimedOut;
                    }
                    self.changed
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        drop(state);
        waited
    }
}
