//! Segment files belong to the open store that holds the directory lock.
//!
//! A snapshot can outlive its store: it keeps the segments it reads mapped,
//! including segments the store had freed, whose files go when the last
//! snapshot that reaches them drops. Claims checked: once the store is
//! closed (or dropped), dropping such a snapshot removes nothing, whatever
//! the directory holds by then (a new store whose segment ids restart at 1,
//! or a checkpoint restored under the old names, even as hard links to the
//! very same files); and while the store is open, a segment's file is
//! removed only if its name still leads to the file the segment mapped.
//! What is left over is removed by the next open's orphan sweep.

mod common;

use std::path::Path;

use common::{files_on_disk, listed};
use journalstore::{Options, Snapshot, Store, SyncMode, WriteBatch};

const SEGMENT_SIZE: u64 = 8 << 10;

/// No background compaction (it pins versions of its own for a moment)
/// and no status file: the directory holds only what the test puts there.
fn options() -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: SEGMENT_SIZE,
        background_compaction: false,
        status_interval: None,
        ..Options::default()
    }
}

fn entry(tag: &str, i: u64) -> Vec<u8> {
    let mut v = format!("{tag} {i} ").into_bytes();
    v.resize(1000, b'.');
    v
}

/// Journal "big" over several segments, then "small" in the active one.
fn fill(store: &Store, tag: &str) {
    for i in 0..40 {
        let mut b = WriteBatch::new();
        b.append(b"big", &entry(tag, i));
        store.write(&b).unwrap();
    }
    let mut b = WriteBatch::new();
    b.append(b"small", tag.as_bytes());
    store.write(&b).unwrap();
    assert!(store.stats().segments >= 4, "{:?}", store.stats());
}

/// Takes a snapshot, then deletes "big": the snapshot alone keeps the
/// freed segments (ids 1 and up) on disk.
fn pin_freed_segments(store: &Store) -> Snapshot {
    let held = store.snapshot();
    let mut b = WriteBatch::new();
    b.delete_journal(b"big");
    store.write(&b).unwrap();
    assert!(store.stats().pinned_only_bytes > 0, "{:?}", store.stats());
    assert!(files_on_disk(store.path()).contains(&1));
    assert!(!listed(store.path()).contains(&1));
    held
}

/// The snapshot still reads everything it saw.
fn check_held(held: &Snapshot, tag: &str) {
    let big = held.journal(b"big").expect("in the snapshot");
    assert_eq!(big.len(), 40);
    for i in [0, 17, 39] {
        assert_eq!(big.entry(i).unwrap(), Some(&entry(tag, i)[..]));
    }
}

/// The store in `dir` opens and holds what `fill(tag)` wrote.
fn check_reopens(dir: &Path, tag: &str) {
    let store = Store::open(dir, options()).unwrap_or_else(|e| panic!("reopen: {e}"));
    let snap = store.snapshot();
    let big = snap.journal(b"big").expect("big survives");
    assert_eq!(big.len(), 40);
    for i in 0..40 {
        assert_eq!(big.entry(i).unwrap(), Some(&entry(tag, i)[..]), "entry {i}");
    }
    assert_eq!(
        snap.journal(b"small").unwrap().entry(0).unwrap(),
        Some(tag.as_bytes())
    );
    drop(snap);
    store.close().unwrap();
}

fn remove_dir_contents(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
}

/// The directory is emptied after close and a new store created in it:
/// its segment ids start at 1 again, the names of the freed segments the
/// old snapshot pins. Dropping that snapshot leaves the new store's files.
#[test]
fn snapshot_outliving_close_leaves_a_new_store_alone() {
    for close in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let old = Store::open(&dir, options()).unwrap();
        fill(&old, "old");
        let held = pin_freed_segments(&old);
        if close {
            old.close().unwrap();
        } else {
            drop(old);
        }

        remove_dir_contents(&dir);
        let new = Store::open(&dir, options()).unwrap();
        fill(&new, "new");
        let before = files_on_disk(&dir);
        assert!(before.contains(&1), "{before:?}");

        check_held(&held, "old");
        drop(held);
        assert_eq!(files_on_disk(&dir), before, "close={close}");
        new.close().unwrap();
        check_reopens(&dir, "new");
    }
}

/// A checkpoint taken before the freeing is restored into the store's
/// directory after close, its sealed segments hard-linked back: the very
/// files (same device and inode) the old snapshot maps, under the same
/// names. Only the store that owns the directory may remove them.
#[test]
fn snapshot_outliving_close_leaves_a_restored_checkpoint_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let backup = tmp.path().join("backup");
    let old = Store::open(&dir, options()).unwrap();
    fill(&old, "same");
    old.checkpoint(&backup).unwrap();
    let held = pin_freed_segments(&old);
    old.close().unwrap();

    remove_dir_contents(&dir);
    for e in std::fs::read_dir(&backup).unwrap() {
        let e = e.unwrap();
        std::fs::hard_link(e.path(), dir.join(e.file_name())).unwrap();
    }
    let restored = Store::open(&dir, options()).unwrap();
    let before = files_on_disk(&dir);
    assert!(before.contains(&1), "{before:?}");

    check_held(&held, "same");
    drop(held);
    assert_eq!(files_on_disk(&dir), before);
    let snap = restored.snapshot();
    assert_eq!(snap.journal(b"big").unwrap().len(), 40);
    drop(snap);
    restored.close().unwrap();
    check_reopens(&dir, "same");
}

/// While the store is open, a freed segment's name that leads to another
/// file by the time the snapshot drops (replaced from outside) is not
/// removed: the store removes only the file its segment mapped. The next
/// open sweeps the stranger away as an unlisted segment file.
#[test]
fn a_replaced_segment_file_is_not_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    fill(&store, "x");
    let held = pin_freed_segments(&store);
    let name = dir.join("seg-00000001.jseg");
    let stranger = tmp.path().join("stranger");
    std::fs::write(&stranger, b"not the segment the store mapped").unwrap();
    std::fs::rename(&stranger, &name).unwrap();

    check_held(&held, "x");
    drop(held);
    assert_eq!(
        std::fs::read(&name).expect("the stranger is still there"),
        b"not the segment the store mapped"
    );
    // The other freed segments were the store's own: removed as usual.
    assert_eq!(files_on_disk(&dir), {
        let mut want = listed(&dir);
        want.insert(1);
        want
    });
    store.close().unwrap();
    let store = Store::open(&dir, options()).unwrap();
    assert!(!name.exists(), "the next open sweeps it away");
    assert_eq!(files_on_disk(&dir), listed(&dir));
    assert_eq!(store.snapshot().journal(b"small").unwrap().len(), 1);
    store.close().unwrap();
}
