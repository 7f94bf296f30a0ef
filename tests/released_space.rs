//! Disk space reserved ahead of the data (a segment reserves 1 MiB steps,
//! or writes zeros ahead under `SyncMode::Always`) goes back once nothing
//! more will be written there: past a sealed segment's end once its seal
//! is durable, and past the active segment's end at clean close. The files
//! keep their length; what a read sees does not change, and a reopened
//! store writes on where it stopped.
//!
//! Measured in allocated blocks (`st_blocks`), on the real file system of
//! the temporary directory. A file system that cannot punch holes keeps the
//! blocks; the test then says so and checks only the data.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use journalstore::inspect;
use journalstore::{Options, Store, SyncMode, WriteBatch};

const SEGMENT: u64 = 4 << 20;

fn options(sync: SyncMode) -> Options {
    Options {
        sync,
        segment_size: SEGMENT,
        background_compaction: false,
        index_checkpoint_bytes: None,
        status_interval: None,
        ..Options::default()
    }
}

/// Allocated bytes of segment `id` in `dir`.
fn allocated(dir: &Path, id: u32) -> u64 {
    let path = dir.join(inspect::segment_file_name_of(id));
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// Whether the file system of `dir` gives back a punched hole's blocks.
fn punches_holes(dir: &Path) -> bool {
    use std::os::unix::fs::FileExt;
    let path = dir.join("probe");
    let file = std::fs::File::create(&path).unwrap();
    file.write_all_at(&[1; 1 << 20], 0).unwrap();
    file.sync_all().unwrap();
    let before = std::fs::metadata(&path).unwrap().blocks();
    let punched = rustix::fs::fallocate(
        &file,
        rustix::fs::FallocateFlags::PUNCH_HOLE | rustix::fs::FallocateFlags::KEEP_SIZE,
        4096,
        (1 << 20) - 4096,
    )
    .is_ok();
    let after = std::fs::metadata(&path).unwrap().blocks();
    std::fs::remove_file(&path).unwrap();
    punched && after < before
}

fn append(store: &Store, n: u64, size: usize) {
    for i in 0..n {
        let mut b = WriteBatch::new();
        b.append(b"j", &vec![i as u8; size]);
        store.write(&b).unwrap();
    }
}

#[test]
fn close_gives_back_the_active_segments_reserve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    if !punches_holes(tmp.path()) {
        eprintln!("the file system keeps punched blocks: nothing to measure");
        return;
    }
    for sync in [SyncMode::Always, SyncMode::Never] {
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, options(sync)).unwrap();
        // 40 KiB of data: the reserve (1 MiB, or the zeros ahead) is far
        // larger.
        append(&store, 10, 4000);
        let open_alloc = allocated(&dir, 1);
        store.close().unwrap();
        let closed_alloc = allocated(&dir, 1);
        assert!(
            closed_alloc <= 64 << 10,
            "{sync:?}: {closed_alloc} bytes allocated after close for 40 KiB of data \
             ({open_alloc} while open)"
        );

        // Reopened, it writes on, and every entry reads back.
        let store = Store::open(&dir, options(sync)).unwrap();
        append(&store, 10, 4000);
        let snap = store.snapshot();
        let j = snap.journal(b"j").unwrap();
        assert_eq!(j.end_index(), 20);
        for i in 0..20u64 {
            assert_eq!(
                j.entry(i).unwrap().unwrap(),
                &vec![(i % 10) as u8; 4000][..]
            );
        }
        drop(snap);
        store.close().unwrap();
    }
}

#[test]
fn a_durable_seal_gives_back_the_sealed_segments_reserve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    if !punches_holes(tmp.path()) {
        eprintln!("the file system keeps punched blocks: nothing to measure");
        return;
    }
    let store = Store::open(&dir, options(SyncMode::Never)).unwrap();
    // Six 600 KiB entries fill segment 1 to 3.5 MiB, its space reserved to
    // 4 MiB; the seventh rolls.
    let per = 600 << 10;
    let mut written = 0;
    while store.stats().segments < 2 {
        append(&store, 1, per);
        written += 1;
    }
    // The seal is taken by this sync.
    store.sync().unwrap();
    let data = (written - 1) * per as u64;
    let sealed_alloc = allocated(&dir, 1);
    assert!(
        sealed_alloc <= data + (64 << 10) && sealed_alloc <= SEGMENT,
        "{sealed_alloc} bytes allocated for a sealed segment of about {data} bytes of data"
    );
    let snap = store.snapshot();
    assert_eq!(snap.journal(b"j").unwrap().end_index(), written);
}
