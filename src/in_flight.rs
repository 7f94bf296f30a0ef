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
//!   is written ([`InFlight::finish`]): the acknowledged LSN never covers a
//!   record that is not in the file.
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::mutex::lock;

/// The records reserved and not yet written, and their waiters.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    /// `state.records.len()`, read without the lock by the waits' fast path.
    count: AtomicUsize,
    /// Set by the first failed write, never cleared.
    failed: AtomicBool,
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
    /// The LSN of the first record whose write failed.
    failed_at: Option<u64>,
    /// Threads waiting on `written`.
    waiters: usize,
}

#[derive(Debug)]
struct Slot {
    lsn: u64,
    offset: u64,
    written: bool,
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
        self.count.store(state.records.len(), Ordering::Release);
    }

    /// Records that the record with `lsn` was written (`ok`) or failed,
    /// then waits until every older record is written too. Returns whether
    /// every record up to `lsn` was written without a failure: only then
    /// may its batch be acknowledged.
    pub fn finish(&self, lsn: u64, ok: bool) -> bool {
        let mut state = lock(&self.state);
        if let Ok(i) = state.records.binary_search_by_key(&lsn, |s| s.lsn) {
            state.records[i].written = true;
        } else {
            debug_assert!(false, "record {lsn} finished twice or never reserved");
        }
        if !ok {
            self.failed.store(true, Ordering::Release);
            state.failed_at = Some(state.failed_at.map_or(lsn, |f| f.min(lsn)));
        }
        let mut popped = false;
        while state.records.front().is_some_and(|s| s.written) {
            state.records.pop_front();
            popped = true;
        }
        self.count.store(state.records.len(), Ordering::Release);
        if popped && state.waiters > 0 {
            self.written.notify_all();
        }
        let state = self.wait_while(state, |s| s.records.front().is_some_and(|s| s.lsn < lsn));
        state.failed_at.is_none_or(|f| f > lsn)
    }

    /// Waits until no record is in flight.
    pub fn settle(&self) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        drop(self.wait_while(lock(&self.state), |s| !s.records.is_empty()));
    }

    /// Waits until every record in flight that starts at or before `offset`
    /// of the active segment is written.
    pub fn settle_through(&self, offset: u64) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let state = lock(&self.state);
        drop(self.wait_while(state, |s| {
            s.records.front().is_some_and(|s| s.offset <= offset)
        }));
    }

    /// Whether a write of a reserved record failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn wait_while<'a>(
        &self,
        mut state: MutexGuard<'a, State>,
        pending: impl Fn(&State) -> bool,
    ) -> MutexGuard<'a, State> {
        while pending(&state) {
            state.waiters += 1;
            state = self.written.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiters -= 1;
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_record_is_acknowledged_only_once_every_older_one_is_written() {
        let flight = Arc::new(InFlight::default());
        flight.reserve(1, 100);
        flight.reserve(2, 200);
        let newer = {
            let flight = flight.clone();
            std::thread::spawn(move || flight.finish(2, true))
        };
        // The newer record's writer waits for the older one: it cannot
        // have returned while record 1 is in flight.
        while lock(&flight.state).waiters == 0 {
            std::thread::yield_now();
        }
        assert!(!newer.is_finished());
        assert!(flight.finish(1, true));
        assert!(newer.join().unwrap());
        flight.settle();
        assert_eq!(flight.count.load(Ordering::Acquire), 0);
    }

    #[test]
    fn records_after_a_failed_one_are_not_acknowledged() {
        let flight = InFlight::default();
        flight.reserve(5, 0);
        flight.reserve(6, 64);
        flight.reserve(7, 128);
        assert!(flight.finish(5, true), "older than the failure");
        assert!(!flight.finish(6, false));
        assert!(!flight.finish(7, true), "newer than the failure");
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
            std::thread::spawn(move || flight.finish(2, true))
        };
        assert!(flight.finish(1, true));
        waiter.join().unwrap();
        assert!(second.join().unwrap());
    }
}
