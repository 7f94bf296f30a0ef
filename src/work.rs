//! Counters of the work the decoders do on bytes read from disk, kept per
//! thread and hidden from the documentation.
//!
//! The decoders promise time linear in the bytes they read and memory
//! bounded by those bytes plus the live index (`format-spec/README.md`,
//! "Decoder budgets"). Wall time is a poor witness of that on a busy
//! machine, so the places where crafted input could make the work grow
//! faster than the input count what they do, and the budget tests and fuzz
//! targets compare the counts with the bytes they handed over. Counting is
//! a thread-local addition: recovery and the inspection functions run on
//! the caller's thread, so a caller sees exactly the work of its own calls.

use std::cell::Cell;

/// Work done on this thread since the last [`take`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Work {
    /// Bytes checksummed while searching past damage for records: the
    /// check of an active segment's dirty tail at open, and the resync of
    /// `inspect::SegmentFile::scan` (header and payload bytes).
    pub resync_crc_bytes: u64,
    /// Segment-id comparisons made by manifest decoding to check that ids
    /// are distinct.
    pub manifest_id_comparisons: u64,
    /// Placeholder items recovery's index stored for entries that no
    /// replayed record holds (each item stands for a run of entries).
    pub placeholder_items: u64,
    /// Records recovery replayed (what an index checkpoint saves).
    pub records_replayed: u64,
    /// Index checkpoints recovery started from.
    pub index_checkpoints_loaded: u64,
}

thread_local! {
    static WORK: Cell<Work> = const {
        Cell::new(Work {
            resync_crc_bytes: 0,
            manifest_id_comparisons: 0,
            placeholder_items: 0,
            records_replayed: 0,
            index_checkpoints_loaded: 0,
        })
    };
}

/// This thread's counts since the last call, which resets them.
pub fn take() -> Work {
    WORK.with(|w| w.replace(Work::default()))
}

fn add(f: impl FnOnce(&mut Work)) {
    // `try_with`: a thread being torn down has nothing left to count.
    let _ = WORK.try_with(|w| {
        let mut work = w.get();
        f(&mut work);
        w.set(work);
    });
}

pub(crate) fn resync_crc_bytes(n: usize) {
    add(|w| w.resync_crc_bytes = w.resync_crc_bytes.saturating_add(n as u64));
}

pub(crate) fn manifest_id_comparisons(n: u64) {
    add(|w| w.manifest_id_comparisons = w.manifest_id_comparisons.saturating_add(n));
}

pub(crate) fn placeholder_items(n: u64) {
    add(|w| w.placeholder_items = w.placeholder_items.saturating_add(n));
}

pub(crate) fn records_replayed(n: u64) {
    add(|w| w.records_replayed = w.records_replayed.saturating_add(n));
}

pub(crate) fn index_checkpoint_loaded() {
    add(|w| w.index_checkpoints_loaded += 1);
}
