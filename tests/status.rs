//! The advisory `STATUS` file: an open store rewrites its figures, pinned
//! snapshots included, every `Options::status_interval` (and at open and
//! close), so that another process (`journal-dump summary`, a monitor) can
//! alarm on a forgotten reader; `inspect::read_status` reads it back.
//!
//! Claims checked: the file follows a held snapshot (count, generation,
//! bytes only it keeps) and its release; its figures (those of
//! `Store::stats`) are taken at one point even while writes go on; close
//! leaves `open=false`;
//! `status_interval: None` writes nothing and leaves an old file alone; a
//! zero interval is refused; a garbage, cut, oversized or future-version
//! file is a typed error from `read_status` and never stops `Store::open`;
//! a file system that refuses the status file stops neither writes nor
//! close; after a simulated power loss the store opens whatever is left of
//! the file, and rewrites it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use journalstore::inspect::{self, StatusInfo};
use journalstore::io::{
    CrashMode, FileIdentity, FileSystem, LockGuard, OpenMode, RealFs, SimFs, StorageFile,
};
use journalstore::{Error, Options, Store, SyncMode, WriteBatch};

const SEGMENT_SIZE: u64 = 8 << 10;

/// Small segments so that a few dozen entries fill several; no background
/// compaction, which would pin versions of its own for a moment.
fn options(status_interval: Option<Duration>) -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: SEGMENT_SIZE,
        background_compaction: false,
        status_interval,
        ..Options::default()
    }
}

const FAST: Option<Duration> = Some(Duration::from_millis(50));

fn entry(i: u64) -> Vec<u8> {
    let mut v = format!("big entry {i} ").into_bytes();
    v.resize(1000, b'.');
    v
}

/// Journal "big" over several full segments, then journal "small" in the
/// active one: deleting "big" frees whole segments.
fn fill(store: &Store) {
    for i in 0..40 {
        let mut b = WriteBatch::new();
        b.append(b"big", &entry(i));
        store.write(&b).unwrap();
    }
    let mut b = WriteBatch::new();
    b.append(b"small", b"s").set_metadata(b"small", b"m");
    store.write(&b).unwrap();
    assert!(store.stats().segments >= 4, "{:?}", store.stats());
}

fn delete_big(store: &Store) {
    let mut b = WriteBatch::new();
    b.delete_journal(b"big");
    store.write(&b).unwrap();
}

/// Polls the status file until `want` holds (10 s at most). Every read
/// must succeed: the file is replaced by a rename, so a reader never sees
/// a half-written one.
fn wait_for(dir: &Path, what: &str, want: impl Fn(&StatusInfo) -> bool) -> StatusInfo {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = inspect::read_status(dir)
            .unwrap_or_else(|e| panic!("{what}: status file unreadable: {e}"));
        if let Some(s) = &seen {
            if want(s) {
                return s.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the status file never showed it; last seen {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn status_path(dir: &Path) -> PathBuf {
    dir.join(inspect::STATUS_FILE_NAME)
}

/// A held snapshot that pins freed segments shows in the status file within
/// a few intervals, with its generation and the bytes only it keeps; it
/// goes when the snapshot drops; close writes `open=false`.
#[test]
fn status_file_follows_a_held_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options(FAST)).unwrap();

    // Written at open already.
    let first = inspect::read_status(&dir)
        .unwrap()
        .expect("written at open");
    assert_eq!(first.version, 1);
    assert_eq!(first.pid, std::process::id());
    assert!(first.open && !first.writes_stopped);
    assert_eq!(first.interval_ms, 50);
    assert_eq!(first.pinned_snapshots, 0);
    assert_eq!(first.oldest_pinned_generation, None);
    let age = first.age(std::time::SystemTime::now());
    assert!(age < Duration::from_secs(60), "written {age:?} ago");

    fill(&store);
    let held = store.snapshot();
    delete_big(&store);
    let stats = store.stats();
    assert_eq!(stats.pinned_snapshots, 1);
    assert!(stats.pinned_only_bytes > 0, "nothing pinned: {stats:?}");
    assert!(stats.generation > held.generation());

    let s = wait_for(&dir, "held snapshot", |s| {
        s.pinned_snapshots >= 1 && s.pinned_only_bytes > 0
    });
    assert_eq!(s.pinned_snapshots, 1);
    assert_eq!(s.oldest_pinned_generation, Some(held.generation()));
    assert!(s.oldest_pinned_age_ms.is_some());
    assert_eq!(s.pinned_only_bytes, stats.pinned_only_bytes);
    assert_eq!(s.generation, stats.generation);
    assert_eq!(s.lsn, stats.lsn);
    assert_eq!(s.segments, stats.segments as u64);
    assert_eq!(s.journals, 1);
    assert_eq!(s.live_bytes, stats.live_bytes);
    assert!(s.open);
    // The age of the pin grows as the file is rewritten.
    let older = wait_for(&dir, "older pin", |t| {
        t.oldest_pinned_age_ms > s.oldest_pinned_age_ms
    });
    assert_eq!(older.pinned_snapshots, 1);

    drop(held);
    let s = wait_for(&dir, "snapshot dropped", |s| s.pinned_snapshots == 0);
    assert_eq!(s.pinned_only_bytes, 0);
    assert_eq!(s.oldest_pinned_generation, None);
    assert_eq!(s.oldest_pinned_age_ms, None);

    store.close().unwrap();
    let last = inspect::read_status(&dir)
        .unwrap()
        .expect("written at close");
    assert!(!last.open, "close says so: {last:?}");
    assert!(!last.writes_stopped);
    assert_eq!(last.lsn, stats.lsn);
    assert!(!dir.join("STATUS.tmp").exists(), "temporary file left");

    // Nothing of it bothers the next open, which takes the file over.
    let store = Store::open(&dir, options(FAST)).unwrap();
    assert!(inspect::read_status(&dir).unwrap().unwrap().open);
    drop(store);
    assert!(!inspect::read_status(&dir).unwrap().unwrap().open);
}

/// `Store::stats` (what the status file shows) takes its figures at one
/// point: with one fixed-size record per batch and nothing freed, the LSN
/// alone says how many segments and bytes the log holds, and every read
/// taken while a writer runs must agree with it.
#[test]
fn stats_are_taken_at_one_point() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store"), options(None)).unwrap();
    let value = vec![7u8; 1000];
    // Segment header 64 bytes; a record is its 32-byte header and one op
    // (32-byte header, the 1-byte id, the value), padded to 8 bytes.
    let record = (32 + 32 + 1 + value.len() as u64).next_multiple_of(8);
    let per_segment = (SEGMENT_SIZE - 64) / record;
    let expected = |lsn: u64| {
        let segments = lsn.div_ceil(per_segment).max(1);
        (segments as usize, 64 * segments + lsn * record)
    };
    let batches = 3000;
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for _ in 0..batches {
                let mut b = WriteBatch::new();
                b.append(b"j", &value);
                store.write(&b).unwrap();
            }
        });
        loop {
            let done = writer.is_finished();
            let stats = store.stats();
            let (segments, bytes) = expected(stats.lsn);
            assert_eq!(
                (stats.segments, stats.bytes_written),
                (segments, bytes),
                "figures from different points: {stats:?}"
            );
            assert_eq!(stats.journals, usize::from(stats.lsn > 0), "{stats:?}");
            if done {
                break;
            }
        }
        writer.join().unwrap();
    });
    let stats = store.stats();
    assert_eq!(stats.lsn, batches);
    assert_eq!((stats.segments, stats.bytes_written), expected(batches));
    store.close().unwrap();
}

/// `status_interval: None` writes no file, and leaves one written earlier
/// as it was; a zero interval is refused.
#[test]
fn no_status_file_when_turned_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options(None)).unwrap();
    fill(&store);
    let held = store.snapshot();
    delete_big(&store);
    std::thread::sleep(Duration::from_millis(150));
    assert!(!status_path(&dir).exists());
    drop(held);
    store.close().unwrap();
    assert!(!status_path(&dir).exists());
    assert!(!dir.join("STATUS.tmp").exists());
    assert!(inspect::read_status(&dir).unwrap().is_none());

    Store::open(&dir, options(FAST)).unwrap().close().unwrap();
    let before = std::fs::read(status_path(&dir)).unwrap();
    let store = Store::open(&dir, options(None)).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    store.close().unwrap();
    assert_eq!(std::fs::read(status_path(&dir)).unwrap(), before);

    let zero = Options {
        status_interval: Some(Duration::ZERO),
        ..options(None)
    };
    match Store::open(tmp.path().join("zero"), zero) {
        Err(Error::InvalidOptions(msg)) => assert!(msg.contains("status_interval"), "{msg}"),
        other => panic!("zero status_interval: {other:?}"),
    }
}

/// Garbage in `STATUS` (or a leftover `STATUS.tmp`) is a typed error from
/// `read_status`, never a panic, and never stops the store from opening;
/// an open store with the status file on replaces both.
#[test]
fn garbage_status_file_is_an_error_not_a_problem_for_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options(FAST)).unwrap();
    fill(&store);
    store.close().unwrap();
    let good = std::fs::read_to_string(status_path(&dir)).unwrap();

    // Seeded: the garbage is the same on every run.
    let mut rng = fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15);
    let mut random = |len: usize| -> Vec<u8> {
        let mut bytes = vec![0; len];
        rng.fill(&mut bytes);
        bytes
    };
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\n".to_vec(),
        vec![0; 300],
        b"version=1\n".to_vec(),
        good.replace("lsn=", "lsn=x").into_bytes(),
        good.replace("open=false", "open=maybe").into_bytes(),
        good.as_bytes()[..good.len() - 3].to_vec(),
        good.repeat(2).into_bytes(),
        vec![b'a'; 100 << 10],
    ];
    for len in [1, 7, 64, 500, 4096] {
        garbage.push(random(len));
    }
    for (i, bytes) in garbage.iter().enumerate() {
        std::fs::write(status_path(&dir), bytes).unwrap();
        std::fs::write(dir.join("STATUS.tmp"), bytes).unwrap();
        match inspect::read_status(&dir) {
            Err(e) => assert!(e.is_corruption(), "garbage {i}: {e}"),
            Ok(s) => panic!("garbage {i} read as {s:?}"),
        }
        // Off: the files stay as they are.
        let store = Store::open(&dir, options(None))
            .unwrap_or_else(|e| panic!("garbage {i}: open failed: {e}"));
        assert_eq!(store.snapshot().journal_count(), 2);
        store.close().unwrap();
        assert_eq!(&std::fs::read(status_path(&dir)).unwrap(), bytes);
        // On: replaced by a good file, the leftover gone.
        let store = Store::open(&dir, options(FAST))
            .unwrap_or_else(|e| panic!("garbage {i}: open failed: {e}"));
        let s = inspect::read_status(&dir).unwrap().expect("rewritten");
        assert!(s.open && s.journals == 2, "garbage {i}: {s:?}");
        assert!(!dir.join("STATUS.tmp").exists(), "garbage {i}");
        store.close().unwrap();
    }

    // Another version is reported as such.
    std::fs::write(status_path(&dir), good.replace("version=1", "version=9")).unwrap();
    assert!(matches!(
        inspect::read_status(&dir),
        Err(Error::UnsupportedVersion {
            found: 9,
            supported: 1,
            ..
        })
    ));
    // A directory where the file should be: an error too, and open works.
    std::fs::remove_file(status_path(&dir)).unwrap();
    std::fs::create_dir(status_path(&dir)).unwrap();
    assert!(inspect::read_status(&dir).is_err());
    let store = Store::open(&dir, options(FAST)).unwrap();
    let mut b = WriteBatch::new();
    b.append(b"small", b"more");
    store.write(&b).unwrap();
    store.close().unwrap();
    assert!(status_path(&dir).is_dir());
}

/// The real file system, refusing every operation on the status files.
#[derive(Debug)]
struct NoStatusFs;

fn refuse(path: &Path) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.starts_with("STATUS") {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "status files refused",
        ));
    }
    Ok(())
}

impl FileSystem for NoStatusFs {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        refuse(path)?;
        RealFs.open(path, mode)
    }
    fn identity(&self, path: &Path) -> io::Result<FileIdentity> {
        RealFs.identity(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        refuse(path)?;
        RealFs.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        refuse(from)?;
        refuse(to)?;
        RealFs.rename(from, to)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealFs.read_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        RealFs.lock(path)
    }
}

/// A status file that cannot be written stops neither writes, syncs,
/// snapshots nor close.
#[test]
fn failing_status_writes_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let opts = Options {
        fs: Arc::new(NoStatusFs),
        ..options(Some(Duration::from_millis(10)))
    };
    let store = Store::open(&dir, opts).unwrap();
    fill(&store);
    let held = store.snapshot();
    delete_big(&store);
    std::thread::sleep(Duration::from_millis(100));
    let mut b = WriteBatch::new();
    b.append(b"small", b"after");
    store.write(&b).unwrap();
    store.sync().unwrap();
    assert_eq!(store.stats().pinned_snapshots, 1);
    drop(held);
    store.close().expect("close ignores the status file");
    assert!(!status_path(&dir).exists());
    assert!(inspect::read_status(&dir).unwrap().is_none());
}

/// Under `SimFs` the status file is written through the simulated file
/// system like everything else: never synced, so a power loss leaves it
/// empty here (or missing, had no directory sync followed its rename). The
/// store opens regardless and writes a good one.
#[test]
fn status_file_after_a_simulated_power_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let sim_options = || Options {
        fs: Arc::new(sim.clone()),
        ..options(Some(Duration::from_millis(20)))
    };
    for round in 0..3 {
        let store = Store::open(&dir, sim_options()).unwrap();
        // Rolls sync the directory: the status file's name becomes
        // durable, its (unsynced) content does not.
        fill(&store);
        store.sync().unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(inspect::read_status(&dir).unwrap().unwrap().open);
        drop(store);
        sim.crash(&dir, CrashMode::DropUnsynced).unwrap();
        // The name survived (a roll synced the directory after the status
        // file was first renamed in), its content did not: an empty file.
        match inspect::read_status(&dir) {
            Err(e) => assert!(e.is_corruption(), "round {round}: {e}"),
            Ok(s) => panic!("round {round}: unsynced status survived: {s:?}"),
        }
        let store = Store::open(&dir, sim_options()).unwrap();
        let s = inspect::read_status(&dir)
            .unwrap()
            .expect("rewritten at open");
        assert!(s.open, "round {round}");
        assert!(s.lsn >= 41 * (round + 1), "round {round}: {s:?}");
        store.close().unwrap();
    }
}
