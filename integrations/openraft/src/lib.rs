//! [journalstore] as [openraft]'s log store: one journal per Raft group,
//! many groups in one store.
//!
//! Open the store once with [`RaftStore::open`] and take a [`LogStore`] per
//! group with [`RaftStore::log_store`]. The log of group `g` is the journal
//! `raft/<g>/log` (`g` zero-padded to 20 digits), and journal index = Raft log
//! index: an append is [`append_at`](journalstore::WriteBatch::append_at), a
//! truncate [`truncate`](journalstore::WriteBatch::truncate), a purge
//! [`trim_prefix`](journalstore::WriteBatch::trim_prefix). The vote, the
//! committed log id and the last purged log id live in that journal's
//! metadata and are written in the same batch as the change they belong to,
//! so that one [`journalstore::Snapshot`] shows them consistently with the
//! entries.
//!
//! # Durability contract
//!
//! [`RaftLogStorage::append`] returns once the entries are written and
//! readable (not yet durable); openraft's [`LogFlushed`] callback runs once
//! they are durable (fdatasync'ed, with every batch written before them, of
//! every group), from the store's flusher thread, which serves all groups
//! with one sync at a time (group commit across groups).
//! [`save_vote`](RaftLogStorage::save_vote) returns once the vote is durable.
//! Truncates, purges and committed log ids are written without a sync and
//! become durable with the next sync of the store (an append's callback or a
//! vote of any group); after a crash the store holds a prefix of the writes
//! in the order they were made.
//!
//! # Encoding
//!
//! Entries, metadata and snapshots are encoded with `serde_json`: it is
//! self-describing, so any application data type that serde supports
//! round-trips (untagged enums, `serde_json::Value`, flattened structs, which
//! compact non-self-describing formats such as bincode or postcard reject),
//! and the stored log can be read with `journal-dump`. The cost is larger
//! entries and slower encoding than a binary format.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! use journalstore_openraft::{kv::TypeConfig, RaftStore};
//! use openraft::storage::RaftLogStorage;
//! use openraft::Vote;
//!
//! let stores = RaftStore::open(tmp.path(), journalstore::Options::default())?;
//! let mut group_7 = stores.log_store::<TypeConfig>(7);
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     group_7.save_vote(&Vote::new(3, 1)).await?;
//!     assert_eq!(group_7.read_vote().await?, Some(Vote::new(3, 1)));
//!     Ok::<_, openraft::StorageError<u64>>(())
//! })?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
// openraft's storage traits return its `StorageError` (185+ bytes); the
// helpers return it too, so that `?` carries it unchanged.
#![allow(clippy::result_large_err)]

pub mod kv;

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use journalstore::{Options, Store, WriteBatch, WriteOptions};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, LogId, NodeId, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError,
    StorageIOError, Vote,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What the flusher calls once a sync covering the request's LSN returned.
type Done = Box<dyn FnOnce(io::Result<()>) + Send>;

/// A request to the flusher: call `done` once `lsn` is durable.
struct Flush {
    lsn: u64,
    done: Done,
}

/// A journalstore [`Store`] holding the logs (and state machine snapshots)
/// of many Raft groups, with the flusher thread that makes their appends
/// durable.
///
/// Cheap to clone: clones share the store and the flusher. The store closes
/// when [`close`](Self::close) is called, or when the last clone and the
/// last [`LogStore`], [`LogReader`] and [`kv::KvStateMachine`] taken from
/// it are dropped.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let tmp = tempfile::tempdir()?;
/// use journalstore_openraft::{kv::TypeConfig, RaftStore};
///
/// let stores = RaftStore::open(tmp.path(), journalstore::Options::default())?;
/// let group_1 = stores.log_store::<TypeConfig>(1);
/// let group_2 = stores.log_store::<TypeConfig>(2);
/// assert_eq!((group_1.group(), group_2.group()), (1, 2));
/// stores.close()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RaftStore {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<Store>,
    /// `None` once closed: requests then fail at once.
    flusher: Mutex<Option<mpsc::Sender<Flush>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStore")
            .field("path", &self.shared.store.path())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay valid when a holder panics.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RaftStore {
    /// Opens (or creates) the store in `dir` and starts its flusher.
    ///
    /// `options.sync` does not matter to the log stores: they write without
    /// a sync and make writes durable with [`Store::sync_to`].
    pub fn open(dir: impl AsRef<Path>, options: Options) -> journalstore::Result<RaftStore> {
        let store = Store::open(dir, options)?;
        let path = store.path().to_owned();
        RaftStore::new(Arc::new(store)).map_err(|e| journalstore::Error::Io {
            op: "start the flusher thread",
            path,
            source: Arc::new(e),
        })
    }

    /// Serves Raft groups from an open store (which may hold other
    /// journals too: the groups use only journals named `raft/…`), starting
    /// its flusher thread.
    pub fn new(store: Arc<Store>) -> io::Result<RaftStore> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("journalstore-raft-flush".into())
            .spawn({
                let store = store.clone();
                move || flusher(&store, &rx)
            })?;
        Ok(RaftStore {
            shared: Arc::new(Shared {
                store,
                flusher: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The underlying store.
    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    /// The log store of Raft group `group`: at most one at a time per group
    /// (openraft serializes the writes of one log store; two log stores of
    /// one group would race).
    pub fn log_store<C: RaftTypeConfig>(&self, group: u64) -> LogStore<C> {
        LogStore {
            group: Group::new(self.shared.clone(), group, "log"),
            bounds: None,
            _c: PhantomData,
        }
    }

    /// The groups that have a log in the store, in increasing order.
    pub fn groups(&self) -> Vec<u64> {
        let snap = self.shared.store.snapshot();
        let ids: Vec<u64> = snap
            .journal_ids_with_prefix(b"raft/")
            .filter_map(|id| {
                let rest = std::str::from_utf8(id.strip_prefix(b"raft/")?).ok()?;
                let (group, kind) = rest.split_once('/')?;
                (kind == "log").then(|| group.parse().ok())?
            })
            .collect();
        ids
    }

    /// Makes everything written durable, stops the flusher (after it has
    /// answered every request) and closes the store, so that the directory
    /// can be opened again. Later log store calls fail.
    pub fn close(&self) -> journalstore::Result<()> {
        let tx = lock(&self.shared.flusher).take();
        drop(tx);
        if let Some(thread) = lock(&self.shared.thread).take() {
            // The flusher ends once the channel is empty and closed; a
            // panic there has already been reported on stderr.
            let _ = thread.join();
        }
        self.shared.store.close()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        drop(lock(&self.flusher).take());
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

/// The flusher: takes every request queued, syncs once up to the greatest
/// LSN among them and answers them all, in the order they came; requests
/// that come during a sync wait for the next one, which so serves many
/// appends of many groups.
fn flusher(store: &Store, rx: &mpsc::Receiver<Flush>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        group.extend(rx.try_iter());
        let lsn = group.iter().map(|f| f.lsn).max().unwrap_or(0);
        let result = store.sync_to(lsn);
        for f in group {
            (f.done)(result.clone().map_err(io::Error::from));
        }
    }
}

/// The last purged log id, vote and committed log id of a group: the
/// metadata of its log journal, JSON.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct GroupMeta<NID: NodeId> {
    vote: Option<Vote<NID>>,
    committed: Option<LogId<NID>>,
    last_purged: Option<LogId<NID>>,
}

impl<NID: NodeId> Default for GroupMeta<NID> {
    fn default() -> Self {
        GroupMeta {
            vote: None,
            committed: None,
            last_purged: None,
        }
    }
}

/// One journal of one group, and the store it is in.
#[derive(Clone)]
struct Group {
    shared: Arc<Shared>,
    group: u64,
    id: Arc<[u8]>,
}

fn read_err<NID: NodeId>(e: &(impl std::error::Error + 'static)) -> StorageError<NID> {
    StorageIOError::read_logs(AnyError::new(e)).into()
}

fn write_err<NID: NodeId>(e: &(impl std::error::Error + 'static)) -> StorageError<NID> {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

/// The error a request to a closed flusher gets.
fn closed() -> io::Error {
    io::Error::from(journalstore::Error::Closed)
}

impl Group {
    fn new(shared: Arc<Shared>, group: u64, kind: &str) -> Group {
        let id = format!("raft/{group:020}/{kind}").into_bytes().into();
        Group { shared, group, id }
    }

    fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Asks the flusher to call `done` once `lsn` is durable (at once, with
    /// an error, if the store is closed).
    fn flush(&self, lsn: u64, done: Done) {
        let tx = lock(&self.shared.flusher);
        let Some(tx) = tx.as_ref() else {
            return done(Err(closed()));
        };
        if let Err(mpsc::SendError(f)) = tx.send(Flush { lsn, done }) {
            (f.done)(Err(closed()));
        }
    }

    /// Writes `batch` without a sync and returns once it is durable.
    async fn write_durable(&self, batch: &WriteBatch) -> io::Result<()> {
        let lsn = self
            .store()
            .write_with(batch, WriteOptions { sync: false })?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.flush(
            lsn,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.unwrap_or_else(|_| Err(closed()))
    }

    fn meta<NID: NodeId>(
        &self,
        snap: &journalstore::Snapshot,
    ) -> Result<GroupMeta<NID>, StorageError<NID>> {
        let Some(journal) = snap.journal(&self.id) else {
            return Ok(GroupMeta::default());
        };
        match journal.metadata().map_err(|e| read_err(&e))? {
            None => Ok(GroupMeta::default()),
            Some(bytes) => serde_json::from_slice(bytes).map_err(|e| read_err(&e)),
        }
    }

    /// Reads the metadata, lets `change` update it, and adds the new value
    /// to `batch`.
    fn update_meta<NID: NodeId>(
        &self,
        batch: &mut WriteBatch,
        change: impl FnOnce(&mut GroupMeta<NID>),
    ) -> Result<(), StorageError<NID>> {
        let mut meta = self.meta(&self.store().snapshot())?;
        change(&mut meta);
        let bytes = serde_json::to_vec(&meta).map_err(|e| write_err(&e))?;
        batch.set_metadata(&self.id, &bytes);
        Ok(())
    }

    fn entries<C: RaftTypeConfig>(
        &self,
        range: impl RangeBounds<u64>,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>>
    where
        C::Entry: DeserializeOwned,
    {
        let snap = self.store().snapshot();
        let Some(journal) = snap.journal(&self.id) else {
            return Ok(Vec::new());
        };
        journal
            .entries(range)
            .map(|e| {
                let (index, bytes) = e.map_err(|e| read_err(&e))?;
                serde_json::from_slice(bytes)
                    .map_err(|e| StorageIOError::read_log_at_index(index, AnyError::new(&e)).into())
            })
            .collect()
    }
}

/// The log of one Raft group: openraft's [`RaftLogStorage`] on a journal of
/// a [`RaftStore`]. Take it with [`RaftStore::log_store`].
///
/// `C::Entry` must implement serde's traits (openraft's [`openraft::Entry`]
/// does, with openraft's `serde` feature).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let tmp = tempfile::tempdir()?;
/// use journalstore_openraft::{kv::TypeConfig, RaftStore};
/// use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
/// use openraft::testing::{blank_ent, log_id};
/// use openraft::RaftLogReader;
///
/// let stores = RaftStore::open(tmp.path(), journalstore::Options::default())?;
/// let mut log = stores.log_store::<TypeConfig>(1);
/// tokio::runtime::Runtime::new()?.block_on(async {
///     // Returns once openraft's flush callback has run: durable.
///     log.blocking_append((1..=3).map(|i| blank_ent::<TypeConfig>(1, 1, i))).await?;
///     log.purge(log_id(1, 1, 1)).await?;
///     let state = log.get_log_state().await?;
///     assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 1)));
///     assert_eq!(state.last_log_id, Some(log_id(1, 1, 3)));
///     assert_eq!(log.try_get_log_entries(..).await?.len(), 2);
///     Ok::<_, openraft::StorageError<u64>>(())
/// })?;
/// # Ok(()) }
/// ```
pub struct LogStore<C> {
    group: Group,
    /// `(first, end)` of the log journal as this log store's last append
    /// left it, when known. The log store is the only writer of its journal
    /// (one per group, see [`RaftStore::log_store`]), so an append need not
    /// take a snapshot to learn them: a snapshot taken right after a write
    /// without a sync publishes a new version of the store's index, which
    /// makes the next write of every group copy the index nodes it touches.
    /// `None` after a truncate, a purge or a failed write: the next append
    /// reads them from a snapshot.
    bounds: Option<(u64, u64)>,
    _c: PhantomData<fn() -> C>,
}

impl<C> Debug for LogStore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("group", &self.group.group)
            .finish()
    }
}

impl<C> LogStore<C> {
    /// The Raft group id.
    pub fn group(&self) -> u64 {
        self.group.group
    }

    /// The id of the journal holding the log.
    pub fn journal_id(&self) -> &[u8] {
        &self.group.id
    }
}

/// A reader of one group's log, for openraft's replication tasks: see
/// [`RaftLogStorage::get_log_reader`].
pub struct LogReader<C> {
    group: Group,
    _c: PhantomData<fn() -> C>,
}

impl<C> Debug for LogReader<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("group", &self.group.group)
            .finish()
    }
}

impl<C> RaftLogReader<C> for LogReader<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.group.entries::<C>(range)
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.group.entries::<C>(range)
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        // One snapshot: the purged id and the last entry agree.
        let g = &self.group;
        let snap = g.store().snapshot();
        let last_purged_log_id = g.meta(&snap)?.last_purged;
        let last = match snap.journal(&g.id) {
            None => None,
            Some(journal) => match journal.last().map_err(|e| read_err(&e))? {
                None => None,
                Some((index, bytes)) => {
                    let entry: C::Entry = serde_json::from_slice(bytes).map_err(|e| {
                        StorageError::from(StorageIOError::read_log_at_index(
                            index,
                            AnyError::new(&e),
                        ))
                    })?;
                    Some(entry.get_log_id().clone())
                }
            },
        };
        Ok(LogState {
            last_log_id: last.or_else(|| last_purged_log_id.clone()),
            last_purged_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            group: self.group.clone(),
            _c: PhantomData,
        }
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let mut batch = WriteBatch::new();
        self.group
            .update_meta(&mut batch, |m| m.vote = Some(vote.clone()))?;
        self.group
            .write_durable(&batch)
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        let snap = self.group.store().snapshot();
        self.group
            .meta(&snap)
            .map(|m| m.vote)
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        // Without a sync: a committed id lost in a crash only means that
        // fewer entries are re-applied at startup.
        let mut batch = WriteBatch::new();
        self.group
            .update_meta(&mut batch, |m| m.committed = committed)?;
        self.group
            .store()
            .write_with(&batch, WriteOptions { sync: false })
            .map_err(|e| write_err(&e))?;
        Ok(())
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        let snap = self.group.store().snapshot();
        Ok(self.group.meta(&snap)?.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let g = &self.group;
        let (first, end) = match self.bounds.take() {
            Some(bounds) => bounds,
            None => g
                .store()
                .snapshot()
                .journal(&g.id)
                .map_or((0, 0), |j| (j.first_index(), j.end_index())),
        };
        let mut batch = WriteBatch::new();
        let mut start: Option<u64> = None;
        let mut next: Option<u64> = None;
        for entry in entries {
            let log_id = entry.get_log_id().clone();
            let index = log_id.index;
            match next {
                // Entries from `index` on are replaced (openraft truncates
                // first; this keeps an overlapping append correct too).
                None if index < end => {
                    batch.truncate(&g.id, index);
                }
                // An empty log continues where the first entry says (the
                // journal moves up, as after a purge past its end).
                None if index > end && first == end => {
                    batch.trim_prefix(&g.id, index);
                }
                None if index > end => return Err(hole(log_id, end)),
                Some(expected) if index != expected => return Err(hole(log_id, expected)),
                _ => {}
            }
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| StorageIOError::write_log_entry(log_id.clone(), AnyError::new(&e)))?;
            batch.append_at(&g.id, index, &bytes);
            start.get_or_insert(index);
            next = Some(index + 1);
        }
        let (Some(start), Some(next)) = (start, next) else {
            self.bounds = Some((first, end));
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        // Readable when this returns; durable when the flusher calls back.
        let lsn = g
            .store()
            .write_with(&batch, WriteOptions { sync: false })
            .map_err(|e| write_err(&e))?;
        // As the batch left the journal (`bounds` stays `None` on failure):
        // an empty log moved up to `start`, a truncate below `first` emptied
        // the journal there, else `first` stays.
        let first = if start > end { start } else { first.min(start) };
        self.bounds = Some((first, next));
        g.flush(lsn, Box::new(move |r| callback.log_io_completed(r)));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        // Durable with the next sync (an append's or a vote's): a lost
        // truncate leaves entries that openraft truncates again.
        self.bounds = None;
        let mut batch = WriteBatch::new();
        batch.truncate(&self.group.id, log_id.index);
        self.group
            .store()
            .write_with(&batch, WriteOptions { sync: false })
            .map_err(|e| write_err(&e))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        // The trim and the purged id in one batch: a reader sees both or
        // neither. Past the last entry the journal moves up to continue
        // after `log_id`.
        self.bounds = None;
        let mut batch = WriteBatch::new();
        batch.trim_prefix(&self.group.id, log_id.index + 1);
        self.group
            .update_meta(&mut batch, |m| m.last_purged = Some(log_id.clone()))?;
        self.group
            .store()
            .write_with(&batch, WriteOptions { sync: false })
            .map_err(|e| write_err(&e))?;
        Ok(())
    }
}

/// The error of an append that would leave a hole in the log.
fn hole<NID: NodeId>(log_id: LogId<NID>, expected: u64) -> StorageError<NID> {
    let e = io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("append of {log_id} would leave a hole: the log continues at index {expected}"),
    );
    StorageIOError::write_log_entry(log_id, AnyError::new(&e)).into()
}
