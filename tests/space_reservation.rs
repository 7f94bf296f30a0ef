//! How the active segment's space is reserved under `SyncMode::Always`:
//! by writing zeros ahead of the data while groups are small, with
//! `fallocate` once they average 160 KiB or more (zeros would double the
//! bytes large groups send to the disk). Both reservations must keep every
//! acknowledged batch through a power loss, and a failed reservation
//! stops writes like any failed write.

use std::io::ErrorKind;
use std::sync::Arc;

use journalstore::io::{CrashMode, Fault, SimFs};
use journalstore::{Error, Options, Store, SyncMode, WriteBatch};

const JOURNAL: &[u8] = b"j";

fn options(sim: &SimFs, segment_size: u64) -> Options {
    Options {
        sync: SyncMode::Always,
        segment_size,
        background_compaction: false,
        status_interval: None,
        fs: Arc::new(sim.clone()),
        ..Options::default()
    }
}

/// Entry `i` of the test: `len` bytes derived from `i`, so a read tells a
/// wrong or torn entry from the right one.
fn entry(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (i as usize * 31 + k * 7) as u8)
        .collect::<Vec<u8>>()
}

fn append(store: &Store, i: u64, len: usize) -> journalstore::Result<u64> {
    let mut batch = WriteBatch::new();
    batch.append_at(JOURNAL, i, &entry(i, len));
    store.write(&batch)
}

/// Reopens `dir` and checks that entries `0..acked` are there, each whole,
/// with the lengths `len_of` gives.
fn assert_entries(sim: &SimFs, dir: &std::path::Path, acked: u64, len_of: impl Fn(u64) -> usize) {
    let store = Store::open(dir, options(sim, 4 << 20)).unwrap();
    let snap = store.snapshot();
    let journal = snap.journal(JOURNAL);
    let end = journal.as_ref().map_or(0, |j| j.end_index());
    assert!(end >= acked, "acknowledged {acked} entries, {end} survived");
    let Some(journal) = journal else { return };
    for i in 0..acked {
        assert_eq!(
            journal.entry(i).unwrap(),
            Some(&entry(i, len_of(i))[..]),
            "entry {i}"
        );
    }
}

/// Small durable batches reserve by writing zeros, so a file system that
/// cannot `fallocate` does not matter to them; once the groups grow to
/// 160 KiB and more the store reserves with `fallocate`, and a full disk
/// there fails the batch that needed the space with an I/O error, stops
/// writes, and loses nothing acknowledged.
#[test]
fn large_durable_groups_reserve_with_fallocate_and_a_failure_stops_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimFs::new();
    // One segment holds everything: no roll allocates a new one.
    let store = Store::open(tmp.path(), options(&sim, 64 << 20)).unwrap();
    // Every allocation from now on fails.
    for nth in 0..64 {
        sim.inject(Fault::Allocate {
            nth,
            kind: ErrorKind::StorageFull,
        });
    }
    // 3 MiB in 256-byte batches: several 1 MiB steps, all zero-filled.
    let small = 3 * 4096;
    for i in 0..small {
        append(&store, i, 256).unwrap_or_else(|e| panic!("small batch {i}: {e}"));
    }
    // 256 KiB batches: after a few, the average crosses 160 KiB and the
    // next step is reserved with fallocate, which fails.
    let mut i = small;
    let err = loop {
        match append(&store, i, 256 << 10) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
        assert!(i < small + 64, "no reservation through fallocate");
    };
    assert!(
        matches!(&err, Error::Io { op: "reserve segment space", source, .. }
            if source.kind() == ErrorKind::StorageFull),
        "{err}"
    );
    assert!(matches!(
        append(&store, i + 1, 256),
        Err(Error::WritesStopped { .. })
    ));
    drop(store);
    sim.clear_faults();
    sim.crash(tmp.path(), CrashMode::DropUnsynced).unwrap();
    assert_entries(
        &sim,
        tmp.path(),
        i,
        |k| if k < small { 256 } else { 256 << 10 },
    );
}

/// A power loss at any step of writing large durable batches (reserved
/// with `fallocate`, across segment rolls) keeps every acknowledged one.
#[test]
fn large_durable_groups_survive_a_power_loss_at_every_step() {
    // Large enough that the average passes 160 KiB after four batches.
    let len = 400 << 10;
    // Enough batches for two rolls of the 4 MiB segments.
    let batches = 24;
    let mut deaths = 0;
    for after in (1..400).step_by(7) {
        let tmp = tempfile::tempdir().unwrap();
        let sim = SimFs::new();
        let store = Store::open(tmp.path(), options(&sim, 4 << 20)).unwrap();
        sim.fail_after(after);
        let mut acked = 0;
        for i in 0..batches {
            match append(&store, i, len) {
                Ok(_) => acked = i + 1,
                Err(Error::Io { .. } | Error::WritesStopped { .. }) => break,
                Err(e) => panic!("after {after} ops: {e}"),
            }
        }
        if acked < batches {
            deaths += 1;
        }
        drop(store);
        sim.crash(tmp.path(), CrashMode::DropUnsynced).unwrap();
        assert_entries(&sim, tmp.path(), acked, |_| len);
    }
    assert!(deaths >= 10, "only {deaths} runs died while writing");
}
