//! Records reserved under the writer's lock and written outside it.
//!
//! A buffered write (`sync: false`) takes its LSN and its place in the
//! active segment under the writer's lock, and applies its operations to
//! the working index there, but writes its bytes to the file after the lock
//! is released, so that writers copy side by side
//! (`Committer::commit_direct`). `InFlight` holds those records until they
//! are written, and lets threads wait for them.
//!
//! Invariants:
//! - Records are registered under the writer's lock, in LSN order, and so
//!   in offset order: every record in flight is in the active segment,
//!   because a roll waits for all of them first ([`InFlight::settle`]).
//! - A writer acknowledges its batch only once every record up to its LSN
//!   is written ([`InFlight::written_through`]): the acknowledged LSN never
//!   covers a record that is not in the file.
//! - The holder of the writer's lock waits for every record in flight
//!   before it makes a version, syncs, seals a segment or takes a
//!   checkpoint's state, and for the records up to an offset before it
//!   reads the length of an operation there: nothing reads or syncs a
//!   reserved record before its bytes are in the file.
//! - Writing a record never takes the writer's lock, so the lock holder's
//!   wait always ends, provided it holds no reservation of its own that it
//!   has not written.
//! - After a failed write, [`InFlight::failed`] stays true: the records
//!   after it are never acknowledged (their writers fail), and no version is
//!   made from the working index, which holds the failed record.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use crate::mutex::lock;

/// The records reserved and not yet written, and their waiters.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// The LSN and the offset of the oldest record in flight (`NONE` when
    /// there is none), set under `state`'s lock whenever the oldest record
    /// changes, and read without it by the waits' fast path and spin.
    oldest_lsn: AtomicU64,
    oldest_offset: AtomicU64,
    /// The LSN of the first record whose write failed (`NONE` until one
    /// does); never raised again.
    failed_at: AtomicU64,
    state: Mutex<State>,
    /// Notified when the oldest records are written (only while someone
    /// waits).
    written: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Oldest first; a record leaves once it and every older one is
    /// written.
    records: VecDeque<Slot>,
    /// Threads waiting on `written`.
    waiters: usize,
}

#[derive(Debug)]
struct Slot {
    lsn: u64,
    offset: u64,
    written: bool,
}

/// `oldest_lsn`, `oldest_offset` and `failed_at` when nothing is there.
const NONE: u64 = u64::MAX;

/// How many times a wait checks before it sleeps: a record is written in a
/// few hundred nanoseconds (a copy into the page cache), so a wait mostly
/// ends while its writer runs on another core, or once a writer preempted
/// in the middle of its copy gets a core back; a sleep and a wake-up cost
/// microseconds of both threads' time.
const SPINS: u32 = 24;
/// Of those, the last checks first yield the core (`sched_yield`), letting
/// a preempted writer finish; the first few only spin: a spin lasts ~100
/// cycles, and with more writers than cores the writer waited for is often
/// preempted, which only a yield helps.
const YIELDS: u32 = 16;

impl Default for InFlight {
    fn default() -> InFlight {
        InFlight {
            oldest_lsn: AtomicU64::new(NONE),
            oldest_offset: AtomicU64::new(NONE),
            failed_at: AtomicU64::new(NONE),
            state: Mutex::default(),
            written: Condvar::new(),
        }
    }
}

impl InFlight {
    /// Registers the record at `offset` with `lsn`, newer than every
    /// record registered before (under the writer's lock).
    pub fn reserve(&self, lsn: u64, offset: u64) {
        let mut state = lock(&self.state);
        debug_assert!(state.records.back().is_none_or(|s| s.lsn < lsn));
        state.records.push_back(Slot {
            lsn,
            offset,
            written: false,
        });
        if state.records.len() == 1 {
            self.note_oldest(&state);
        }
    }

    /// Records that the record with `lsn` was written (`ok`) or failed.
    /// Its writer then waits for the older ones with
    /// [`written_through`](Self::written_through).
    pub fn finish(&self, lsn: u64, ok: bool) {
        let mut state = lock(&self.state);
        if let Ok(i) = state.records.binary_search_by_key(&lsn, |s| s.lsn) {
            state.records[i].written = true;
        } else {
            debug_assert!(false, "record {lsn} finished twice or never reserved");
        }
        if !ok {
            // Before the record leaves: whoever sees it written sees this.
            self.failed_at.fetch_min(lsn, Ordering::AcqRel);
        }
        let mut popped = false;
        while state.records.front().is_some_and(|s| s.written) {
            state.records.pop_front();
            popped = true;
        }
        if popped {
            self.note_oldest(&state);
            if state.waiters > 0 {
                self.written.notify_all();
            }
        }
    }

    /// Waits until every record up to `lsn` is written or failed. Returns
    /// whether all were written without a failure: only then may the batch
    /// of `lsn` be acknowledged.
    pub fn written_through(&self, lsn: u64) -> bool {
        self.wait_until(|| self.oldest_lsn.load(Ordering::Acquire) > lsn);
        self.failed_at.load(Ordering::Acquire) > lsn
    }

    /// Waits until no record is in flight.
    pub fn settle(&self) {
        self.wait_until(|| self.oldest_lsn.load(Ordering::Acquire) == NONE);
    }

    /// Waits until every record in flight that starts at or before `offset`
    /// of the active segment is written.
    pub fn settle_through(&self, offset: u64) {
        self.wait_until(|| {
            let oldest = self.oldest_offset.load(Ordering::Acquire);
            oldest == NONE || oldest > offset
        });
    }

    /// Whether a write of a reserved record failed.
    pub fn failed(&self) -> bool {
        self.failed_at.load(Ordering::Acquire) != NONE
    }

    /// Publishes the oldest record's LSN and offset (under `state`'s lock).
    fn note_oldest(&self, state: &State) {
        let (lsn, offset) = state
            .records
            .front()
            .map_or((NONE, NONE), |s| (s.lsn, s.offset));
        self.oldest_offset.store(offset, Ordering::Release);
        self.oldest_lsn.store(lsn, Ordering::Release);
    }

    /// Returns once `done` holds: it is checked `SPINS` times, then after
    /// each change of the oldest record, sleeping in between.
    fn wait_until(&self, done: impl Fn() -> bool) {
        for i in 0..SPINS {
            if done() {
                return;
            }
            if i < SPINS - YIELDS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let mut state = lock(&self.state);
        // `done` reads what is changed under this lock, so no change is
        // missed between the check and the wait.
        while !done() {
            state.waiters += 1;
            state = self.written.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiters -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// What a writer does after its copy: records it, then waits.
    fn done(flight: &InFlight, lsn: u64, ok: bool) -> bool {
        flight.finish(lsn, ok);
        flight.written_through(lsn)
    }

    #[test]
    fn a_record_is_acknowledged_only_once_every_older_one_is_written() {
        let flight = Arc::new(InFlight::default());
        flight.reserve(1, 100);
        flight.reserve(2, 200);
        let newer = {
            let flight = flight.clone();
            std::thread::spawn(move || done(&flight, 2, true))
        };
        // The newer record's writer waits for the older one: it cannot
        // have returned while record 1 is in flight.
        while lock(&flight.state).waiters == 0 {
            std::thread::yield_now();
        }
        assert!(!newer.is_finished());
        assert!(done(&flight, 1, true));
        assert!(newer.join().unwrap());
        flight.settle();
        assert_eq!(flight.oldest_lsn.load(Ordering::Acquire), NONE);
    }

    #[test]
    fn records_after_a_failed_one_are_not_acknowledged() {
        let flight = InFlight::default();
        flight.reserve(5, 0);
        flight.reserve(6, 64);
        flight.reserve(7, 128);
        assert!(done(&flight, 5, true), "older than the failure");
        assert!(!done(&flight, 6, false));
        assert!(!done(&flight, 7, true), "newer than the failure");
        assert!(flight.failed());
        flight.settle();
    }

    #[test]
    fn settle_through_waits_only_for_records_at_or_before_the_offset() {
        let flight = Arc::new(InFlight::default());
        flight.reserve(1, 100);
        flight.reserve(2, 200);
        // Nothing starts at or before 99.
        flight.settle_through(99);
        let waiter = {
            let flight = flight.clone();
            std::thread::spawn(move || flight.settle_through(150))
        };
        while lock(&flight.state).waiters == 0 {
            std::thread::yield_now();
        }
        assert!(!waiter.is_finished());
        // Record 2 finishing leaves record 1 (at 100) in flight.
        let second = {
            let flight = flight.clone();
            std::thread::spawn(move || done(&flight, 2, true))
        };
        assert!(done(&flight, 1, true));
        waiter.join().unwrap();
        assert!(second.join().unwrap());
    }
}
