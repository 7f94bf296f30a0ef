//! A value's CRC is checked before its bytes are first handed out, once
//! per open store: later reads of the same value skip the check (a bit per
//! operation in its segment's `verified` map). A damaged value is
//! `Corruption` on its first read and on every later one (a failed check
//! sets no bit), whatever was read around it; an intact value reads the
//! same every time. What the design gives up is stated by the last test:
//! a value changed in the file after it was verified, under the store's
//! mapping, is not checked again until the store is reopened.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use journalstore::inspect::{self, ScanItem};
use journalstore::{work, Error, Options, Store, SyncMode, WriteBatch};

fn options() -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: 8 << 10,
        background_compaction: false,
        status_interval: None,
        // Written at close only: open then starts from it and does not
        // checksum the records it covers, so damage to a value reaches
        // the read path.
        index_checkpoint_bytes: Some(1 << 40),
        ..Options::default()
    }
}

/// Every append of `journal` in the segment files of `dir`: its index, its
/// segment file and the file offset of its value.
fn value_offsets(dir: &Path, journal: &[u8]) -> Vec<(u64, PathBuf, u64)> {
    let mut out = Vec::new();
    for (_, path) in inspect::segment_files(dir).unwrap() {
        let file = inspect::SegmentFile::read(&path).unwrap();
        for item in file.scan(64, None, false) {
            if let ScanItem::Record { ops, .. } = item {
                for op in ops {
                    if op.kind == "append" && op.journal == journal {
                        let at = op.offset + 32 + op.journal.len() as u64;
                        out.push((op.index().unwrap(), path.clone(), at));
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// Flips the low bit of the byte at `at` of `path` with `pwrite`: an open
/// store's shared mapping of the file sees the change.
fn flip_in_place(path: &Path, at: u64) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    byte[0] ^= 0x01;
    file.write_all_at(&byte, at).unwrap();
}

fn assert_corruption<T: std::fmt::Debug>(result: journalstore::Result<T>, context: &str) {
    match result {
        Err(Error::Corruption {
            journal, reason, ..
        }) => {
            assert_eq!(journal.as_deref(), Some(&b"j"[..]), "{context}");
            assert_eq!(reason, "value checksum mismatch", "{context}");
        }
        other => panic!("{context}: expected Corruption, got {other:?}"),
    }
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i:04}-{}", "v".repeat(200)).into_bytes()
}

/// A store in `dir` with 40 entries of `j`, one batch each (so they span
/// several 8 KiB segments), closed with an index checkpoint.
fn closed_store(dir: &Path) {
    let store = Store::open(dir, options()).unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..40 {
        batch.clear();
        batch.append(b"j", &value(i));
        store.write(&batch).unwrap();
    }
    store.close().unwrap();
}

/// Values damaged on disk while the store was closed (open starts from
/// the index checkpoint, so nothing checks them before a read) are
/// `Corruption` on their first read and again on every later read, through
/// the same snapshot, a new one and the entries iterator, also after their
/// intact neighbours were read and verified.
#[test]
fn a_value_damaged_on_disk_is_corruption_on_every_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    closed_store(&dir);
    let offsets = value_offsets(&dir, b"j");
    assert_eq!(offsets.len(), 40);
    let damaged = [3u64, 17];
    for &i in &damaged {
        let (_, path, at) = &offsets[i as usize];
        flip_in_place(path, at + 20);
    }
    work::take();
    let store = Store::open(&dir, options()).unwrap();
    assert_eq!(work::take().index_checkpoints_loaded, 1);
    let snap = store.snapshot();
    let j = snap.journal(b"j").unwrap();
    for round in 0..3 {
        for i in 0..40 {
            let context = format!("round {round}, entry {i}");
            if damaged.contains(&i) {
                assert_corruption(j.entry(i), &context);
            } else {
                assert_eq!(j.entry(i).unwrap(), Some(&value(i)[..]), "{context}");
            }
        }
    }
    let fresh = store.snapshot();
    let j = fresh.journal(b"j").unwrap();
    assert_corruption(j.entry(3), "fresh snapshot");
    let items: Vec<_> = j.entries(..).collect();
    assert_eq!(items.len(), 40);
    for (i, item) in items.into_iter().enumerate() {
        if damaged.contains(&(i as u64)) {
            assert_corruption(item, &format!("iterator, entry {i}"));
        } else {
            assert_eq!(item.unwrap(), (i as u64, &value(i as u64)[..]));
        }
    }
}

/// The smallest operations (a 1-byte id and a 1-byte value: 34 bytes each,
/// one record) lie closer together than anything else can: each is
/// verified on its own. Every third value is damaged under the open
/// store's mapping before any read; reading all of them in order and then
/// backwards, each damaged one is `Corruption` every time, even right after
/// the intact operation before or after it was verified, and each intact
/// one reads its byte.
#[test]
fn adjacent_smallest_values_are_verified_one_by_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(
        &dir,
        Options {
            segment_size: 64 << 10,
            ..options()
        },
    )
    .unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..240u64 {
        batch.append(b"j", &[i as u8]);
    }
    store.write(&batch).unwrap();
    let offsets = value_offsets(&dir, b"j");
    assert_eq!(offsets.len(), 240);
    for pair in offsets.windows(2) {
        assert_eq!(
            pair[1].2 - pair[0].2,
            34,
            "one record of adjacent operations"
        );
    }
    for (i, path, at) in &offsets {
        if i % 3 == 0 {
            flip_in_place(path, *at);
        }
    }
    let snap = store.snapshot();
    let j = snap.journal(b"j").unwrap();
    let order: Vec<u64> = (0..240).chain((0..240).rev()).collect();
    for (n, &i) in order.iter().enumerate() {
        let context = format!("read {n}, entry {i}");
        if i % 3 == 0 {
            assert_corruption(j.entry(i), &context);
        } else {
            assert_eq!(j.entry(i).unwrap(), Some(&[i as u8][..]), "{context}");
        }
    }
}

/// An intact value read twice, through one snapshot and through another,
/// is the same bytes each time: the ones written.
#[test]
fn an_intact_value_reads_the_same_every_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    closed_store(&dir);
    let store = Store::open(&dir, options()).unwrap();
    let first = store.snapshot();
    let second = store.snapshot();
    for i in 0..40 {
        let a = first.journal(b"j").unwrap().entry(i).unwrap().unwrap();
        let b = first.journal(b"j").unwrap().entry(i).unwrap().unwrap();
        let c = second.journal(b"j").unwrap().entry(i).unwrap().unwrap();
        assert_eq!(a, &value(i)[..], "entry {i}");
        assert_eq!(a, b, "entry {i}");
        assert_eq!(a, c, "entry {i}");
    }
}

/// The trade-off, stated: once a value passed its check, later reads
/// through the same open store do not check it again, so a change to the
/// file behind the store's back (here a `pwrite` that the shared mapping
/// sees) is handed out as the value. The next open checks it again: the
/// first read after reopening is `Corruption`.
#[test]
fn a_value_changed_in_the_file_after_it_was_verified_is_not_checked_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    closed_store(&dir);
    let offsets = value_offsets(&dir, b"j");
    let (_, path, at) = &offsets[5];
    let store = Store::open(&dir, options()).unwrap();
    let snap = store.snapshot();
    let j = snap.journal(b"j").unwrap();
    assert_eq!(j.entry(5).unwrap(), Some(&value(5)[..]));
    flip_in_place(path, at + 20);
    let mut changed = value(5);
    changed[20] ^= 0x01;
    assert_eq!(j.entry(5).unwrap(), Some(&changed[..]), "not checked again");
    // Not read before the change: checked on its first read.
    let (_, path6, at6) = &offsets[6];
    flip_in_place(path6, at6 + 20);
    assert_corruption(j.entry(6), "entry 6, first read after its change");
    drop(snap);
    store.close().unwrap();
    work::take();
    let store = Store::open(&dir, options()).unwrap();
    assert_eq!(work::take().index_checkpoints_loaded, 1);
    let snap = store.snapshot();
    assert_corruption(
        snap.journal(b"j").unwrap().entry(5),
        "entry 5 after reopening",
    );
    assert_corruption(
        snap.journal(b"j").unwrap().entry(6),
        "entry 6 after reopening",
    );
}
