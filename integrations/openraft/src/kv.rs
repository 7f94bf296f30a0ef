//! A small in-memory key-value state machine whose snapshots are durable in
//! the store: for the `cluster` example, the tests, and as a model for an
//! application's own.
//!
//! The state lives in memory; every snapshot (built here or installed from
//! the leader) is written durably to the group's journal
//! `raft/<g>/snapshot`: its [`SnapshotMeta`] as the journal's metadata and
//! its bytes as the journal's one entry, in one batch. On open the state
//! machine starts from that snapshot, and openraft re-applies the log after
//! it (up to the committed log id the [`LogStore`](crate::LogStore) keeps).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! use journalstore_openraft::RaftStore;
//!
//! let stores = RaftStore::open(tmp.path(), journalstore::Options::default())?;
//! let sm = stores.state_machine(1)?;
//! assert_eq!(sm.get("k"), None);
//! assert!(sm.data().is_empty());
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use journalstore::WriteBatch;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::{lock, Group, RaftStore};

/// A command of the key-value state machine.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Sets `key` to `value`.
    Set {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Removes `key`.
    Delete {
        /// The key.
        key: String,
    },
}

/// What applying a [`Request`] returns: the key's previous value.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The value before the request, if any.
    pub previous: Option<String>,
}

openraft::declare_raft_types!(
    /// The type config of the key-value state machine: `u64` node ids,
    /// [`BasicNode`], openraft's `Entry`, snapshots in a `Cursor<Vec<u8>>`,
    /// tokio.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
);

/// Node id of [`TypeConfig`].
pub type NodeId = u64;

/// The state: what a snapshot holds.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
struct State {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    data: BTreeMap<String, String>,
}

struct Inner {
    state: State,
    /// Numbers the snapshots built by this process (snapshot ids must be
    /// unique; the last applied log id alone is not).
    built: u64,
}

/// The key-value state machine of one group; openraft's
/// [`RaftStateMachine`]. Take it with [`RaftStore::state_machine`].
///
/// Clones share the state: keep one to read it while openraft owns another.
#[derive(Clone)]
pub struct KvStateMachine {
    group: Group,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for KvStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStateMachine")
            .field("group", &self.group.group)
            .finish()
    }
}

type Error = StorageError<NodeId>;

fn snapshot_read_err(e: &(impl std::error::Error + 'static)) -> Error {
    StorageIOError::read_snapshot(None, AnyError::new(e)).into()
}

fn snapshot_write_err(e: &(impl std::error::Error + 'static)) -> Error {
    StorageIOError::write_snapshot(None, AnyError::new(e)).into()
}

impl RaftStore {
    /// The key-value state machine of group `group`, starting from its last
    /// durable snapshot (empty if there is none). At most one at a time per
    /// group (and its clones).
    pub fn state_machine(&self, group: u64) -> Result<KvStateMachine, Error> {
        let group = Group::new(self.shared.clone(), group, "snapshot");
        let state = match read_snapshot(&group)? {
            Some((_, bytes)) => {
                serde_json::from_slice(&bytes).map_err(|e| snapshot_read_err(&e))?
            }
            None => State::default(),
        };
        Ok(KvStateMachine {
            group,
            inner: Arc::new(Mutex::new(Inner { state, built: 0 })),
        })
    }
}

/// A durable snapshot: its meta and bytes.
type Stored = (SnapshotMeta<NodeId, BasicNode>, Vec<u8>);

/// The durable snapshot of `group`.
fn read_snapshot(group: &Group) -> Result<Option<Stored>, Error> {
    let snap = group.store().snapshot();
    let Some(journal) = snap.journal(&group.id) else {
        return Ok(None);
    };
    let (Some(meta), Some((_, bytes))) = (
        journal.metadata().map_err(|e| snapshot_read_err(&e))?,
        journal.last().map_err(|e| snapshot_read_err(&e))?,
    ) else {
        return Ok(None);
    };
    let meta = serde_json::from_slice(meta).map_err(|e| snapshot_read_err(&e))?;
    Ok(Some((meta, bytes.to_vec())))
}

/// Writes a snapshot durably, replacing the previous one in one batch.
async fn write_snapshot(
    group: &Group,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    bytes: &[u8],
) -> Result<(), Error> {
    let end = group
        .store()
        .snapshot()
        .journal(&group.id)
        .map_or(0, |j| j.end_index());
    let meta_bytes = serde_json::to_vec(meta).map_err(|e| snapshot_write_err(&e))?;
    let mut batch = WriteBatch::new();
    batch
        .trim_prefix(&group.id, end)
        .set_metadata(&group.id, &meta_bytes)
        .append_at(&group.id, end, bytes);
    group.write_durable(&batch).await.map_err(|e| {
        StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e)).into()
    })
}

impl KvStateMachine {
    /// The group id.
    pub fn group(&self) -> u64 {
        self.group.group
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        lock(&self.inner).state.data.get(key).cloned()
    }

    /// A copy of all the data.
    pub fn data(&self) -> BTreeMap<String, String> {
        lock(&self.inner).state.data.clone()
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        lock(&self.inner).state.last_applied
    }
}

impl RaftSnapshotBuilder<TypeConfig> for KvStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, Error> {
        let (state, n) = {
            let mut inner = lock(&self.inner);
            inner.built += 1;
            (inner.state.clone(), inner.built)
        };
        let bytes = serde_json::to_vec(&state).map_err(|e| snapshot_write_err(&e))?;
        let last = state
            .last_applied
            .map_or("none".to_string(), |l| l.to_string());
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.last_membership.clone(),
            snapshot_id: format!("{}-{last}-{n}", self.group.group),
        };
        write_snapshot(&self.group, &meta, &bytes).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for KvStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), Error> {
        let inner = lock(&self.inner);
        Ok((
            inner.state.last_applied,
            inner.state.last_membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, Error>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut inner = lock(&self.inner);
        let state = &mut inner.state;
        let mut replies = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            let previous = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(Request::Set { key, value }) => state.data.insert(key, value),
                EntryPayload::Normal(Request::Delete { key }) => state.data.remove(&key),
                EntryPayload::Membership(m) => {
                    state.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    None
                }
            };
            replies.push(Response { previous });
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, Error> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), Error> {
        let bytes = snapshot.into_inner();
        let state: State = serde_json::from_slice(&bytes).map_err(|e| {
            Error::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        // Durable first: the state never runs ahead of what a restart finds.
        write_snapshot(&self.group, meta, &bytes).await?;
        lock(&self.inner).state = State {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            data: state.data,
        };
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, Error> {
        Ok(read_snapshot(&self.group)?.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
