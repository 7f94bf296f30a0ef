//! A fault-injecting file system for power-loss and I/O-error tests.
//!
//! [`SimFs`] performs every operation on the real disk through [`RealFs`], so
//! the engine sees real files and real memory mappings. On the side it keeps,
//! in memory, the image of what would survive a power loss:
//!
//! * per file (keyed by an internal id, so renames and open handles agree):
//!   the durable content and length, plus the pending writes and length
//!   changes since the last `sync_data`, in order;
//! * per directory: the `current` name → file map (what `CreateNew`, `rename`
//!   and `remove_file` change) and the `durable` one (what `sync_dir` makes
//!   of `current`).
//!
//! [`SimFs::crash`] rewrites a directory on disk to that durable image, and
//! [`SimFs::fail_after`] / [`SimFs::inject`] make mutating operations fail.
//! Files SimFs had not seen before (made by an earlier run, or by RealFs) are
//! adopted the first time their directory is touched: their content and name
//! at that moment count as durable.
//!
//! Real `fsync`s are not issued: durability is exactly what SimFs tracks, and
//! real syncs would only make crash loops slow without changing what the
//! engine can observe.
//!
//! The file is longer than the others: one concept (the model of what
//! survives) whose own unit tests, which pin that model down case by case,
//! take a third of it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{FileIdentity, FileSystem, LockGuard, Mapping, OpenMode, RealFs, StorageFile};

type FileId = u64;

/// What [`SimFs::crash`] lets survive besides the durable state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Only synced data and dir-synced names survive.
    DropUnsynced,
    /// Additionally, a prefix of the unsynced write stream reached the disk:
    /// the first `writes` pending writes in global issue order (the numbering
    /// [`SimFs::pending_writes`] counts, across all files) land whole, then the
    /// first `torn_bytes` bytes (clamped) of the next one. Pending length
    /// changes issued before the cut land too. Writes to files whose name is
    /// not durable in the crashed directory take their place in the order but
    /// have no effect, since the file itself is lost.
    KeepPrefix {
        /// Number of whole pending writes that survive.
        writes: usize,
        /// Bytes of the following pending write that survive.
        torn_bytes: usize,
    },
}

/// A one-shot failure armed with [`SimFs::inject`].
///
/// `nth` counts the operations of that kind from now on: `0` fails the next
/// one, `1` the one after it. A failing write writes no byte; a failing
/// sync does what a failed `fdatasync` does on Linux: the file's unsynced
/// writes are dropped (still readable, never durable) and the error is
/// reported to that call only, so the next sync succeeds. Each returns
/// an error of kind `kind`, e.g. [`io::ErrorKind::StorageFull`] for a full
/// disk or [`io::ErrorKind::Other`] for an EIO-like failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Fail a [`StorageFile::write_at`].
    Write {
        /// Which write, counting from 0 for the next one.
        nth: u64,
        /// The error kind returned.
        kind: io::ErrorKind,
    },
    /// Fail a [`StorageFile::allocate`].
    Allocate {
        /// Which allocation, counting from 0 for the next one.
        nth: u64,
        /// The error kind returned.
        kind: io::ErrorKind,
    },
    /// Fail a [`StorageFile::sync_data`].
    Sync {
        /// Which sync, counting from 0 for the next one.
        nth: u64,
        /// The error kind returned.
        kind: io::ErrorKind,
    },
    /// Fail a [`FileSystem::sync_dir`].
    SyncDir {
        /// Which directory sync, counting from 0 for the next one.
        nth: u64,
        /// The error kind returned.
        kind: io::ErrorKind,
    },
    /// Fail a [`FileSystem::rename`].
    Rename {
        /// Which rename, counting from 0 for the next one.
        nth: u64,
        /// The error kind returned.
        kind: io::ErrorKind,
    },
    /// Fail a [`FileSystem::open`] with [`OpenMode::CreateNew`].
    Create {
        /// Which creation, counting from 0 for the next one.
        nth: u64,
        /// The error kind returned.
        kind: io::ErrorKind,
    },
    /// Fail a [`FileSystem::remove_file`].
    Remove {
        /// Which removal, counting from 0 for the next one.
        nth: u64,
        /// The error kind returned.
        kind: io::ErrorKind,
    },
}

/// The kinds of mutating operation; each goes through [`State::gate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Write,
    Allocate,
    Sync,
    SyncDir,
    Rename,
    Create,
    Remove,
}

impl Fault {
    fn parts(self) -> Armed {
        let (op, nth, kind) = match self {
            Fault::Write { nth, kind } => (Op::Write, nth, kind),
            Fault::Allocate { nth, kind } => (Op::Allocate, nth, kind),
            Fault::Sync { nth, kind } => (Op::Sync, nth, kind),
            Fault::SyncDir { nth, kind } => (Op::SyncDir, nth, kind),
            Fault::Rename { nth, kind } => (Op::Rename, nth, kind),
            Fault::Create { nth, kind } => (Op::Create, nth, kind),
            Fault::Remove { nth, kind } => (Op::Remove, nth, kind),
        };
        Armed { op, nth, kind }
    }
}

#[derive(Debug)]
struct Armed {
    op: Op,
    /// Operations of kind `op` still to let through before failing.
    nth: u64,
    kind: io::ErrorKind,
}

/// A file's content as it would be found after a crash.
///
/// Invariant: `data.len() <= len`; bytes past `data` read as zeros, so a
/// preallocated segment does not cost memory.
#[derive(Clone, Debug, Default)]
struct Image {
    data: Vec<u8>,
    len: u64,
}

impl Image {
    fn from_disk(mut data: Vec<u8>) -> Image {
        let len = data.len() as u64;
        let keep = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        data.truncate(keep);
        data.shrink_to_fit();
        Image { data, len }
    }

    /// Callers guarantee `offset + data.len()` fits in `usize` (`write_at`
    /// checks it before recording a write).
    fn write(&mut self, offset: usize, data: &[u8]) {
        let end = offset.saturating_add(data.len());
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        if let Some(target) = self.data.get_mut(offset..end) {
            target.copy_from_slice(data);
        }
        self.len = self.len.max(end as u64);
    }

    fn apply(&mut self, op: &PendingOp) {
        match op {
            PendingOp::Write { offset, data, .. } => self.write(*offset, data),
            PendingOp::Grow { len, .. } => self.len = self.len.max(*len),
        }
    }
}

/// An operation done on disk but not yet made durable by `sync_data`.
/// `seq` is global across files, so the unsynced stream has one order.
#[derive(Debug)]
enum PendingOp {
    Write {
        seq: u64,
        offset: usize,
        data: Vec<u8>,
    },
    Grow {
        seq: u64,
        len: u64,
    },
}

impl PendingOp {
    fn seq(&self) -> u64 {
        match self {
            PendingOp::Write { seq, .. } | PendingOp::Grow { seq, .. } => *seq,
        }
    }
}

#[derive(Debug)]
struct Tracked {
    /// Directory the file was created in, adopted from or last renamed into;
    /// `crash` of that directory forgets the record.
    home: PathBuf,
    durable: Image,
    pending: Vec<PendingOp>,
}

#[derive(Debug, Default)]
struct Dir {
    current: BTreeMap<String, FileId>,
    durable: BTreeMap<String, FileId>,
}

#[derive(Default)]
struct State {
    files: HashMap<FileId, Tracked>,
    /// Keyed by canonicalized directory path.
    dirs: HashMap<PathBuf, Dir>,
    next_id: FileId,
    next_seq: u64,
    ops: u64,
    /// Mutating operations still allowed before every one fails.
    fail_after: Option<u64>,
    faults: Vec<Armed>,
    /// How long each `sync_data` and `sync_dir` takes (a slow disk).
    sync_latency: Duration,
    /// How long each `write_at` waits before it is issued.
    write_latency: Duration,
    /// Calls of `write_in_place` (each then done as a `write_at`).
    writes_in_place: u64,
}

impl fmt::Debug for State {
    // A summary: the images can be megabytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("files", &self.files.len())
            .field("dirs", &self.dirs.keys().collect::<Vec<_>>())
            .field("ops", &self.ops)
            .field("fail_after", &self.fail_after)
            .field("faults", &self.faults)
            .finish()
    }
}

impl State {
    /// Counts a mutating operation and decides whether it may run. Must be
    /// called before the operation touches the disk, so a failure does nothing.
    fn gate(&mut self, op: Op) -> io::Result<()> {
        self.ops += 1;
        match self.fail_after {
            Some(0) => return Err(io::Error::other("simulated power loss")),
            Some(n) => self.fail_after = Some(n - 1),
            None => {}
        }
        let mut fired = None;
        for (i, armed) in self.faults.iter_mut().enumerate() {
            if armed.op != op {
                continue;
            }
            if armed.nth > 0 {
                armed.nth -= 1;
            } else if fired.is_none() {
                fired = Some(i);
            }
        }
        match fired {
            Some(i) => {
                let armed = self.faults.remove(i);
                let message = format!("simulated {op:?} failure").to_lowercase();
                Err(io::Error::new(armed.kind, message))
            }
            None => Ok(()),
        }
    }

    fn new_record(&mut self, home: &Path, durable: Image) -> FileId {
        let id = self.next_id;
        self.next_id += 1;
        let (home, pending) = (home.to_path_buf(), Vec::new());
        let record = Tracked {
            home,
            durable,
            pending,
        };
        self.files.insert(id, record);
        id
    }

    /// Starts tracking `dir` if needed, adopting every file in it as durable.
    fn ensure_dir(&mut self, dir: &Path) -> io::Result<()> {
        if self.dirs.contains_key(dir) {
            return Ok(());
        }
        let names = RealFs.read_dir(dir)?;
        self.dirs.insert(dir.to_path_buf(), Dir::default());
        for name in names {
            if let Err(e) = self.lookup(dir, &name) {
                // Half a scan would later drop the unscanned files at crash.
                self.dirs.remove(dir);
                return Err(e);
            }
        }
        Ok(())
    }

    /// The file currently named `dir/name`, adopting it (content and name
    /// durable) if it is on disk but unknown; `None` if there is no such file.
    fn lookup(&mut self, dir: &Path, name: &str) -> io::Result<Option<FileId>> {
        self.ensure_dir(dir)?;
        if let Some(id) = self.dirs.get(dir).and_then(|d| d.current.get(name)) {
            return Ok(Some(*id));
        }
        let path = dir.join(name);
        if !fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            return Ok(None);
        }
        let id = self.new_record(dir, Image::from_disk(fs::read(&path)?));
        let d = self.dirs.entry(dir.to_path_buf()).or_default();
        d.current.insert(name.to_owned(), id);
        d.durable.entry(name.to_owned()).or_insert(id);
        Ok(Some(id))
    }

    fn record(&mut self, id: FileId) -> io::Result<&mut Tracked> {
        self.files
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("file handle invalidated by SimFs::crash"))
    }
}

/// A simulated file system: real files on disk plus an in-memory model of
/// what survives a power loss, with fault injection. Clones share state.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    inner: Arc<Mutex<State>>,
    /// The holds armed by [`SimFs::hold_sync`], shared with their handles.
    holds: Arc<(Mutex<Holds>, Condvar)>,
}

/// The syncs [`SimFs::hold_sync`] holds, by their place in the sequence
/// of `sync_data` calls.
#[derive(Debug, Default)]
struct Holds {
    /// `sync_data` calls that have reached the hold check so far.
    syncs: u64,
    /// The armed holds: the place of the sync each holds, and where it is.
    armed: Vec<(u64, Hold)>,
}

/// Where a sync held by [`SimFs::hold_sync`] is.
#[derive(Debug, PartialEq, Eq)]
enum Hold {
    /// The sync has not been called yet.
    Armed,
    /// It waits for [`SyncHold::release`].
    Holding,
    Released,
}

/// A sync held by [`SimFs::hold_sync`]: tests wait until it is held, do
/// what must happen while a sync is under way, and release it.
#[derive(Debug)]
pub struct SyncHold {
    holds: Arc<(Mutex<Holds>, Condvar)>,
    /// The place of the held sync (see [`Holds`]).
    place: u64,
}

impl SyncHold {
    fn state<'a>(&self, holds: &'a mut Holds) -> Option<&'a mut Hold> {
        holds
            .armed
            .iter_mut()
            .find(|(place, _)| *place == self.place)
            .map(|(_, hold)| hold)
    }

    /// Waits until its sync is held; `false` if it was not by `deadline`.
    pub fn wait_held(&self, deadline: Instant) -> bool {
        let (holds, cv) = &*self.holds;
        let mut holds = holds.lock().unwrap_or_else(|e| e.into_inner());
        while self.state(&mut holds) != Some(&mut Hold::Holding) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            holds = cv
                .wait_timeout(holds, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Lets the held sync go on (it then fails if a fault is armed for it).
    pub fn release(&self) {
        let (holds, cv) = &*self.holds;
        let mut holds = holds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = self.state(&mut holds) {
            *state = Hold::Released;
        }
        cv.notify_all();
    }
}

impl Drop for SyncHold {
    /// A hold is never left holding a thread, nor armed.
    fn drop(&mut self) {
        self.release();
        let (holds, _) = &*self.holds;
        let mut holds = holds.lock().unwrap_or_else(|e| e.into_inner());
        holds.armed.retain(|(place, _)| *place != self.place);
    }
}

impl SimFs {
    /// A SimFs with no faults armed, tracking nothing yet.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets `n` more mutating operations run, then fails every later one with
    /// kind `Other` ("simulated power loss") without doing anything: the
    /// machine died at step `n`. Call [`SimFs::crash`] next.
    pub fn fail_after(&self, n: u64) {
        self.state().fail_after = Some(n);
    }

    /// Arms a one-shot fault; several may be armed at once.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push(fault.parts());
    }

    /// Makes every later `sync_data` and `sync_dir` take `latency` (the
    /// calling thread sleeps, holding no lock of the SimFs), like a disk
    /// whose flushes are slow: for testing what the engine does when its
    /// syncs, not its CPU, are the bottleneck.
    pub fn set_sync_latency(&self, latency: Duration) {
        self.state().sync_latency = latency;
    }

    /// Makes every later `write_at` wait `latency` before it is issued (the
    /// calling thread sleeps, holding no lock of the SimFs): writes issued
    /// by several threads at once then overlap, and reach the file in an
    /// order of their own, for testing what the engine does with writes
    /// still under way when another one fails.
    pub fn set_write_latency(&self, latency: Duration) {
        self.state().write_latency = latency;
    }

    /// Makes the next `sync_data` wait, before it does anything, until the
    /// returned handle releases it (or drops): for testing what runs while
    /// a sync is under way. The same as `hold_sync(0)`.
    pub fn hold_next_sync(&self) -> SyncHold {
        self.hold_sync(0)
    }

    /// Makes the `sync_data` call `nth` from now (0 for the next one) wait,
    /// before it does anything, until the returned handle releases it (or
    /// drops). Syncs are counted in the order they reach the hold check,
    /// held ones included; several holds may be armed at once, so that a
    /// test can stop two syncs in a row (one held sync does not hold up
    /// the count: others go by it). Two handles for the same sync share
    /// its hold: either releases it, and dropping either disarms it.
    pub fn hold_sync(&self, nth: u64) -> SyncHold {
        let mut holds = self.holds.0.lock().unwrap_or_else(|e| e.into_inner());
        let place = holds.syncs + nth;
        if !holds.armed.iter().any(|(p, _)| *p == place) {
            holds.armed.push((place, Hold::Armed));
        }
        SyncHold {
            holds: self.holds.clone(),
            place,
        }
    }

    /// Counts a `sync_data` call, and waits if a hold is armed for it (see
    /// `hold_sync`).
    fn wait_if_held(&self) {
        let (holds, cv) = &*self.holds;
        let mut holds = holds.lock().unwrap_or_else(|e| e.into_inner());
        let place = holds.syncs;
        holds.syncs += 1;
        let Some(state) = holds.armed.iter_mut().find(|(p, _)| *p == place) else {
            return;
        };
        if state.1 != Hold::Armed {
            return;
        }
        state.1 = Hold::Holding;
        cv.notify_all();
        while holds
            .armed
            .iter()
            .any(|(p, hold)| *p == place && *hold == Hold::Holding)
        {
            holds = cv.wait(holds).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn sleep_for_sync(&self) {
        let latency = self.state().sync_latency;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
    }

    /// Disarms [`SimFs::fail_after`] and every injected fault.
    pub fn clear_faults(&self) {
        let mut state = self.state();
        state.fail_after = None;
        state.faults.clear();
    }

    /// Writes issued but not yet made durable by `sync_data`, across all
    /// files: the range of [`CrashMode::KeepPrefix`]'s `writes` worth trying.
    pub fn pending_writes(&self) -> usize {
        let state = self.state();
        let pending = state.files.values().flat_map(|t| &t.pending);
        pending
            .filter(|op| matches!(op, PendingOp::Write { .. }))
            .count()
    }

    /// Mutating calls made so far (write_at, allocate, sync_data, sync_dir,
    /// rename, remove_file, open with `CreateNew`), failed ones included; a
    /// clean run's count bounds the useful [`SimFs::fail_after`] arguments.
    pub fn op_count(&self) -> u64 {
        self.state().ops
    }

    /// Calls of [`StorageFile::write_in_place`] so far. A `SimFs` file has
    /// no writable mapping: each is done as a `write_at` (and counts in
    /// [`op_count`](Self::op_count) as one); this tells which way the
    /// engine chose.
    pub fn writes_in_place(&self) -> u64 {
        self.state().writes_in_place
    }

    /// Simulates power loss for the files directly in `dir`: every file there
    /// is deleted, then each durable name is rewritten with its file's durable
    /// image (plus what `mode` keeps), zero-extended to its durable length.
    ///
    /// Afterwards the machine is "rebooted": faults are disarmed, tracking of
    /// `dir` starts afresh (its files are adopted as durable on next use), and
    /// handles opened before fail on mutation. The caller must have dropped
    /// the store and its mappings. Other directories are not rolled back.
    pub fn crash(&self, dir: &Path, mode: CrashMode) -> io::Result<()> {
        let dir = canonical(dir);
        let mut guard = self.state();
        let state = &mut *guard;
        state.fail_after = None;
        state.faults.clear();
        let Some(tracked) = state.dirs.remove(&dir) else {
            // Nothing was done here through SimFs: the disk is the durable state.
            return Ok(());
        };
        let mut images: HashMap<FileId, Image> = HashMap::new();
        for id in tracked.durable.values() {
            if let Some(t) = state.files.get(id) {
                images.insert(*id, t.durable.clone());
            }
        }
        if let CrashMode::KeepPrefix { writes, torn_bytes } = mode {
            let mut ops: Vec<(FileId, &PendingOp)> = state
                .files
                .iter()
                .flat_map(|(id, t)| t.pending.iter().map(move |op| (*id, op)))
                .collect();
            ops.sort_by_key(|(_, op)| op.seq());
            let mut whole = writes;
            for (id, op) in ops {
                let image = images.get_mut(&id);
                match op {
                    PendingOp::Write { offset, data, .. } if whole == 0 => {
                        let torn = data.get(..torn_bytes.min(data.len())).unwrap_or(&[]);
                        if let Some(image) = image {
                            image.write(*offset, torn);
                        }
                        break;
                    }
                    _ => {
                        if matches!(op, PendingOp::Write { .. }) {
                            whole -= 1;
                        }
                        if let Some(image) = image {
                            image.apply(op);
                        }
                    }
                }
            }
        }
        // Forget this directory's files, except ones another directory still
        // names (after a cross-directory rename).
        let elsewhere: HashSet<FileId> = state
            .dirs
            .values()
            .flat_map(|d| d.current.values().chain(d.durable.values()))
            .copied()
            .collect();
        state
            .files
            .retain(|id, t| t.home != dir || elsewhere.contains(id));

        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                fs::remove_file(entry.path())?;
            }
        }
        for (name, id) in &tracked.durable {
            let image = images.remove(id).unwrap_or_default();
            let mut file = fs::File::create_new(dir.join(name))?;
            file.write_all(&image.data)?;
            file.set_len(image.len)?;
        }
        Ok(())
    }
}

/// `path` with symlinks and `..` resolved, so one directory has one key;
/// as given when it cannot be resolved (the real operation then reports why).
fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The canonical parent directory of `path` and its file name.
fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok((canonical(parent), name.to_string_lossy().into_owned()))
}

/// A file opened through [`SimFs`]: the real file plus its tracking id.
#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    id: FileId,
    real: Arc<dyn StorageFile>,
}

impl StorageFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        self.real.len()
    }

    /// The real file's: SimFs keeps every file on the real disk, and a
    /// crash rewrites the files it keeps (new identities; handles opened
    /// before it are invalid anyway).
    fn identity(&self) -> io::Result<FileIdentity> {
        self.real.identity()
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut guard = self.fs.state();
        let state = &mut *guard;
        state.gate(Op::Allocate)?;
        let seq = state.next_seq;
        let record = state.record(self.id)?;
        self.real.allocate(len)?;
        // Record the length the disk really has: fs4's `allocate` may leave a
        // short file as it is when its allocated blocks already cover `len`.
        let len = self.real.len()?;
        record.pending.push(PendingOp::Grow { seq, len });
        state.next_seq += 1;
        Ok(())
    }

    fn extend(&self, len: u64) -> io::Result<()> {
        let mut guard = self.fs.state();
        let state = &mut *guard;
        state.gate(Op::Allocate)?;
        let seq = state.next_seq;
        let record = state.record(self.id)?;
        self.real.extend(len)?;
        let len = self.real.len()?;
        record.pending.push(PendingOp::Grow { seq, len });
        state.next_seq += 1;
        Ok(())
    }

    /// Changes nothing a crash could lose (the length is the same): only a
    /// point where an injected fault (a full disk) can strike.
    fn reserve(&self, upto: u64) -> io::Result<()> {
        self.fs.state().gate(Op::Allocate)?;
        self.real.reserve(upto)
    }

    fn write_in_place(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.fs.state().writes_in_place += 1;
        self.write_at(offset, buf)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let latency = self.fs.state().write_latency;
        if !latency.is_zero() {
            std::thread::sleep(latency);
        }
        // The lock is held across the real write so the global sequence
        // order is the order the writes reached the disk.
        let mut guard = self.fs.state();
        let state = &mut *guard;
        state.gate(Op::Write)?;
        let start = usize::try_from(offset)
            .ok()
            .filter(|o| o.checked_add(buf.len()).is_some())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let seq = state.next_seq;
        let record = state.record(self.id)?;
        self.real.write_at(offset, buf)?;
        let data = buf.to_vec();
        let op = PendingOp::Write {
            seq,
            offset: start,
            data,
        };
        record.pending.push(op);
        state.next_seq += 1;
        Ok(())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.real.read_at(offset, buf)
    }

    fn sync_data(&self) -> io::Result<()> {
        // No real fsync: durability is what SimFs tracks (see module docs).
        self.fs.wait_if_held();
        self.fs.sleep_for_sync();
        let mut state = self.fs.state();
        let power_lost = state.fail_after == Some(0);
        if let Err(e) = state.gate(Op::Sync) {
            if !power_lost {
                // As on Linux: the failed writeback leaves the file's dirty
                // pages clean, so its unsynced writes never reach the disk
                // (they stay readable until the cache drops them), and the
                // error is reported to this caller only.
                let record = state.record(self.id)?;
                record
                    .pending
                    .retain(|op| !matches!(op, PendingOp::Write { .. }));
            }
            return Err(e);
        }
        let record = state.record(self.id)?;
        for op in std::mem::take(&mut record.pending) {
            record.durable.apply(&op);
        }
        Ok(())
    }

    fn map(&self) -> io::Result<Arc<dyn Mapping>> {
        self.real.map()
    }
}

impl FileSystem for SimFs {
    /// Not tracked: `crash` acts on the files of one directory and leaves
    /// directories themselves in place.
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        RealFs.create_dir(path)
    }

    fn identity(&self, path: &Path) -> io::Result<FileIdentity> {
        RealFs.identity(path)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let (dir, name) = split(path)?;
        let mut state = self.state();
        let (id, real) = if mode == OpenMode::CreateNew {
            state.gate(Op::Create)?;
            // Scan before creating, or the new file would be adopted as durable.
            state.ensure_dir(&dir)?;
            let real = RealFs.open(path, mode)?;
            let id = state.new_record(&dir, Image::default());
            state.dirs.entry(dir).or_default().current.insert(name, id);
            (id, real)
        } else {
            let real = RealFs.open(path, mode)?;
            let id = state
                .lookup(&dir, &name)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"))?;
            (id, real)
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            id,
            real,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        let mut state = self.state();
        state.gate(Op::Remove)?;
        state.lookup(&dir, &name)?; // adopt first, so the durable name is kept
        RealFs.remove_file(path)?;
        state.dirs.entry(dir).or_default().current.remove(&name);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        let mut state = self.state();
        state.gate(Op::Rename)?;
        let id = state.lookup(&from_dir, &from_name)?;
        // Adopt a replaced target too: its durable name must outlive the rename.
        state.lookup(&to_dir, &to_name)?;
        RealFs.rename(from, to)?;
        let source = state.dirs.entry(from_dir).or_default();
        source.current.remove(&from_name);
        if let Some(id) = id {
            state
                .dirs
                .entry(to_dir.clone())
                .or_default()
                .current
                .insert(to_name, id);
            if let Some(record) = state.files.get_mut(&id) {
                record.home = to_dir;
            }
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let names = RealFs.read_dir(path)?;
        let dir = canonical(path);
        let mut state = self.state();
        for name in &names {
            state.lookup(&dir, name)?;
        }
        Ok(names)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // No real fsync: durability is what SimFs tracks (see module docs).
        self.sleep_for_sync();
        let dir = canonical(path);
        let mut state = self.state();
        state.gate(Op::SyncDir)?;
        state.ensure_dir(&dir)?;
        let d = state.dirs.entry(dir).or_default();
        d.durable = d.current.clone();
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        RealFs.lock(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Option<Vec<u8>> {
        fs::read(path).ok()
    }

    /// A fresh store directory holding `name`, created and dir-synced.
    fn setup(name: &str) -> (tempfile::TempDir, SimFs, Arc<dyn StorageFile>) {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimFs::new();
        let file = sim
            .open(&dir.path().join(name), OpenMode::CreateNew)
            .unwrap();
        sim.sync_dir(dir.path()).unwrap();
        (dir, sim, file)
    }

    #[test]
    fn sim_fs_is_send_sync() {
        fn check<T: Send + Sync + fmt::Debug>() {}
        check::<SimFs>();
        check::<SimFile>();
    }

    #[test]
    fn synced_writes_survive_and_unsynced_do_not() {
        let (dir, sim, file) = setup("f");
        file.write_at(0, b"hello").unwrap();
        file.sync_data().unwrap();
        file.write_at(5, b" world").unwrap();
        file.write_at(0, b"J").unwrap();
        assert_eq!(sim.pending_writes(), 2);
        drop(file);
        sim.crash(dir.path(), CrashMode::DropUnsynced).unwrap();
        assert_eq!(read(&dir.path().join("f")).unwrap(), b"hello");
        assert_eq!(sim.pending_writes(), 0);
    }

    #[test]
    fn created_file_without_sync_dir_disappears() {
        let (dir, sim, file) = setup("kept");
        let lost = sim
            .open(&dir.path().join("lost"), OpenMode::CreateNew)
            .unwrap();
        lost.write_at(0, b"data").unwrap();
        lost.sync_data().unwrap(); // data synced, but the name never was
        drop((file, lost));
        sim.crash(dir.path(), CrashMode::DropUnsynced).unwrap();
        assert_eq!(sim.read_dir(dir.path()).unwrap(), vec!["kept".to_owned()]);
        assert_eq!(read(&dir.path().join("kept")).unwrap(), b"");
    }

    #[test]
    fn rename_is_durable_only_after_sync_dir() {
        for sync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join("a"), b"old").unwrap(); // adopted as durable
            let sim = SimFs::new();
            let tmp = sim
                .open(&dir.path().join("tmp"), OpenMode::CreateNew)
                .unwrap();
            tmp.write_at(0, b"new").unwrap();
            tmp.sync_data().unwrap();
            sim.rename(&dir.path().join("tmp"), &dir.path().join("a"))
                .unwrap();
            assert_eq!(read(&dir.path().join("a")).unwrap(), b"new");
            if sync {
                sim.sync_dir(dir.path()).unwrap();
            }
            drop(tmp);
            sim.crash(dir.path(), CrashMode::DropUnsynced).unwrap();
            let want: &[u8] = if sync { b"new" } else { b"old" };
            assert_eq!(read(&dir.path().join("a")).unwrap(), want);
            assert_eq!(sim.read_dir(dir.path()).unwrap(), vec!["a".to_owned()]);
        }
    }

    #[test]
    fn remove_is_durable_only_after_sync_dir() {
        for sync in [false, true] {
            let (dir, sim, file) = setup("f");
            file.write_at(0, b"x").unwrap();
            file.sync_data().unwrap();
            sim.remove_file(&dir.path().join("f")).unwrap();
            if sync {
                sim.sync_dir(dir.path()).unwrap();
            }
            drop(file);
            sim.crash(dir.path(), CrashMode::DropUnsynced).unwrap();
            let want = (!sync).then(|| b"x".to_vec());
            assert_eq!(read(&dir.path().join("f")), want);
        }
    }

    #[test]
    fn keep_prefix_tears_exactly_at_the_given_byte() {
        for torn in 0..=5 {
            let (dir, sim, a) = setup("a");
            let b = sim
                .open(&dir.path().join("b"), OpenMode::CreateNew)
                .unwrap();
            sim.sync_dir(dir.path()).unwrap();
            a.write_at(0, b"1111").unwrap();
            b.write_at(0, b"2222").unwrap();
            a.write_at(4, b"3333").unwrap();
            drop((a, b));
            let mode = CrashMode::KeepPrefix {
                writes: 2,
                torn_bytes: torn,
            };
            sim.crash(dir.path(), mode).unwrap();
            let mut want = b"1111".to_vec();
            want.extend(std::iter::repeat_n(b'3', torn.min(4)));
            assert_eq!(read(&dir.path().join("a")).unwrap(), want);
            assert_eq!(read(&dir.path().join("b")).unwrap(), b"2222");
        }
    }

    #[test]
    fn allocation_is_durable_after_sync_data_only() {
        let (dir, sim, file) = setup("f");
        file.allocate(100).unwrap();
        file.write_at(0, b"z").unwrap();
        file.sync_data().unwrap();
        file.allocate(1 << 20).unwrap();
        assert_eq!(file.len().unwrap(), 1 << 20);
        drop(file);
        sim.crash(dir.path(), CrashMode::DropUnsynced).unwrap();
        let data = read(&dir.path().join("f")).unwrap();
        assert_eq!(data.len(), 100);
        assert_eq!(data[0], b'z');
        assert!(data[1..].iter().all(|&b| b == 0));
    }

    #[test]
    fn fail_after_fails_every_later_op_and_does_nothing() {
        let (dir, sim, file) = setup("f");
        let start = sim.op_count();
        sim.fail_after(1);
        file.write_at(0, b"ok").unwrap();
        let err = file.write_at(2, b"lost").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert_eq!(err.to_string(), "simulated power loss");
        assert!(file.sync_data().is_err());
        assert!(file.allocate(4096).is_err());
        let path = dir.path().join("f");
        assert!(sim.rename(&path, &dir.path().join("g")).is_err());
        assert!(sim.remove_file(&path).is_err());
        assert!(sim
            .open(&dir.path().join("h"), OpenMode::CreateNew)
            .is_err());
        assert!(sim.sync_dir(dir.path()).is_err());
        assert_eq!(sim.op_count() - start, 8);
        // Nothing after the first write reached the disk; reads still work.
        assert_eq!(read(&path).unwrap(), b"ok");
        assert_eq!(sim.read_dir(dir.path()).unwrap(), vec!["f".to_owned()]);
        let mut buf = [0; 2];
        file.read_at(0, &mut buf).unwrap();
        assert_eq!(file.map().unwrap().slice(0, 2), Some(&b"ok"[..]));
        drop(file);
        sim.crash(dir.path(), CrashMode::DropUnsynced).unwrap();
        assert_eq!(read(&path).unwrap(), b"");
        // The crash rebooted the machine: operations work again.
        let file = sim.open(&path, OpenMode::ReadWrite).unwrap();
        file.write_at(0, b"back").unwrap();
    }

    #[test]
    fn injected_write_and_sync_faults_fail_once_with_their_kind() {
        let (dir, sim, file) = setup("f");
        let full = io::ErrorKind::StorageFull;
        sim.inject(Fault::Write { nth: 1, kind: full });
        sim.inject(Fault::Sync {
            nth: 0,
            kind: io::ErrorKind::Other,
        });
        file.write_at(0, b"a").unwrap();
        assert_eq!(file.write_at(1, b"b").unwrap_err().kind(), full);
        file.write_at(1, b"c").unwrap();
        assert_eq!(read(&dir.path().join("f")).unwrap(), b"ac");
        let err = file.sync_data().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert_eq!(sim.pending_writes(), 0, "a failed sync drops the writes");
        assert_eq!(
            read(&dir.path().join("f")).unwrap(),
            b"ac",
            "still readable"
        );
        file.sync_data().unwrap();
        sim.crash(dir.path(), CrashMode::DropUnsynced).unwrap();
        assert_eq!(
            read(&dir.path().join("f")).unwrap(),
            b"",
            "a later successful sync does not make dropped writes durable"
        );

        sim.inject(Fault::Rename {
            nth: 0,
            kind: io::ErrorKind::Other,
        });
        sim.clear_faults();
        let g = dir.path().join("g");
        sim.rename(&dir.path().join("f"), &g).unwrap();
    }

    #[test]
    fn crash_adopts_survivors_and_invalidates_old_handles() {
        let (dir, sim, file) = setup("f");
        file.write_at(0, b"keep").unwrap();
        file.sync_data().unwrap();
        sim.crash(dir.path(), CrashMode::DropUnsynced).unwrap();
        assert!(file.write_at(0, b"stale").is_err());
        // Nothing done since: a second crash changes nothing.
        let path = dir.path().join("f");
        let again = sim.open(&path, OpenMode::ReadWrite).unwrap();
        again.write_at(4, b"!").unwrap();
        drop((file, again));
        sim.crash(dir.path(), CrashMode::DropUnsynced).unwrap();
        assert_eq!(read(&path).unwrap(), b"keep");
        // The RealFs view agrees.
        assert_eq!(RealFs.read_dir(dir.path()).unwrap(), vec!["f".to_owned()]);
    }
}
