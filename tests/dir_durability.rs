//! Directories the engine creates are durable at every level.
//!
//! `Store::open` and `Store::checkpoint` create their directory and any
//! missing parents. A new directory's entry is durable only once its own
//! parent directory is synced; if only the last level's parent were synced,
//! a power loss could drop an upper new level and with it the whole store
//! (whose files had been synced). Claims checked, with a file system that
//! records what it is asked to do: for every level that did not exist, the
//! level is created and then its parent synced, before `open` or
//! `checkpoint` returns; levels that existed are not recreated.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use journalstore::io::{FileIdentity, FileSystem, LockGuard, OpenMode, RealFs, StorageFile};
use journalstore::{Options, Store, SyncMode, WriteBatch};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    /// A directory came into existence.
    Created(PathBuf),
    /// A directory was synced.
    Synced(PathBuf),
}

/// The real file system, recording directory creations and syncs.
#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    fn record(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl FileSystem for Recorder {
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir(path)?;
        self.record(Event::Created(path.to_path_buf()));
        Ok(())
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        RealFs.open(path, mode)
    }
    fn identity(&self, path: &Path) -> io::Result<FileIdentity> {
        RealFs.identity(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        RealFs.read_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.sync_dir(path)?;
        self.record(Event::Synced(path.to_path_buf()));
        Ok(())
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        RealFs.lock(path)
    }
}

/// Every level of `levels` was created once, and its parent synced after.
fn assert_durable(events: &[Event], levels: &[PathBuf], what: &str) {
    for level in levels {
        let created: Vec<usize> = (0..events.len())
            .filter(|&i| events[i] == Event::Created(level.clone()))
            .collect();
        assert_eq!(created.len(), 1, "{what}: {level:?} created {created:?}");
        let parent = Event::Synced(level.parent().unwrap().to_path_buf());
        assert!(
            events[created[0]..].contains(&parent),
            "{what}: {level:?} created but its parent never synced after: {events:#?}"
        );
    }
}

fn options(fs: &Arc<Recorder>) -> Options {
    Options {
        sync: SyncMode::Always,
        segment_size: 64 << 10,
        background_compaction: false,
        status_interval: None,
        fs: fs.clone(),
        ..Options::default()
    }
}

#[test]
fn open_and_checkpoint_make_every_new_level_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let fs = Arc::new(Recorder::default());

    let dir = root.join("a").join("b").join("store");
    let store = Store::open(&dir, options(&fs)).unwrap();
    let levels = [root.join("a"), root.join("a/b"), dir.clone()];
    assert_durable(&fs.events(), &levels, "open");

    let mut b = WriteBatch::new();
    b.append(b"j", b"entry");
    store.write(&b).unwrap();

    // Part of the path exists already: only the rest is created.
    let dest = root.join("a").join("c").join("d").join("checkpoint");
    let from = fs.events().len();
    store.checkpoint(&dest).unwrap();
    let events = fs.events()[from..].to_vec();
    let levels = [root.join("a/c"), root.join("a/c/d"), dest.clone()];
    assert_durable(&events, &levels, "checkpoint");
    assert!(
        !events.contains(&Event::Created(root.join("a"))),
        "{events:#?}"
    );
    store.close().unwrap();

    // An existing store directory: nothing created.
    let from = fs.events().len();
    Store::open(&dir, options(&fs)).unwrap().close().unwrap();
    let created = fs.events()[from..]
        .iter()
        .filter(|e| matches!(e, Event::Created(_)))
        .count();
    assert_eq!(created, 0);
    let store = Store::open(&dest, options(&fs)).unwrap();
    assert_eq!(
        store.snapshot().journal(b"j").unwrap().entry(0).unwrap(),
        Some(&b"entry"[..])
    );
    store.close().unwrap();
}
