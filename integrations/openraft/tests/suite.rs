//! openraft's own storage test suite (`openraft::testing::Suite`) against
//! the log store and the key-value state machine: for a group alone in its
//! store, and for groups that share a store with others.

// openraft's `Suite` returns its `StorageError` as it is.
#![allow(clippy::result_large_err)]

use std::sync::atomic::{AtomicU64, Ordering};

use journalstore::Options;
use journalstore_openraft::kv::{KvStateMachine, TypeConfig};
use journalstore_openraft::{LogStore, RaftStore};
use openraft::storage::RaftLogStorage;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, Vote};
use tempfile::TempDir;

/// A new store for each test: group 1, alone.
struct Alone;

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, KvStateMachine, TempDir> for Alone {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<TypeConfig>, KvStateMachine), StorageError<u64>> {
        let tmp = tempfile::tempdir().unwrap();
        let stores = RaftStore::open(tmp.path(), Options::default()).unwrap();
        Ok((tmp, stores.log_store(1), stores.state_machine(1)?))
    }
}

/// One store for every test: each test gets a new group, after group 0 and
/// the groups of the tests before it (which hold entries, votes, purges and
/// snapshots of their own).
struct Shared {
    stores: RaftStore,
    next: AtomicU64,
    _tmp: TempDir,
}

impl StoreBuilder<TypeConfig, LogStore<TypeConfig>, KvStateMachine> for Shared {
    async fn build(&self) -> Result<((), LogStore<TypeConfig>, KvStateMachine), StorageError<u64>> {
        let group = self.next.fetch_add(1, Ordering::Relaxed);
        Ok((
            (),
            self.stores.log_store(group),
            self.stores.state_machine(group)?,
        ))
    }
}

#[test]
fn suite_single_group() -> Result<(), StorageError<u64>> {
    Suite::test_all(Alone)
}

#[test]
fn suite_group_in_shared_store() -> Result<(), StorageError<u64>> {
    let tmp = tempfile::tempdir().unwrap();
    let stores = RaftStore::open(tmp.path(), Options::default()).unwrap();
    // Group 0 comes first in the store, with a vote and a few entries.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use openraft::storage::RaftLogStorageExt;
        let mut g0 = stores.log_store::<TypeConfig>(0);
        g0.save_vote(&Vote::new(5, 1)).await?;
        g0.blocking_append((0..10).map(|i| openraft::testing::blank_ent::<TypeConfig>(1, 1, i)))
            .await
    })?;
    drop(rt);
    let builder = Shared {
        stores: stores.clone(),
        next: AtomicU64::new(1),
        _tmp: tmp,
    };
    Suite::test_all(builder)?;
    // Most tests leave a log behind (the others touch only the state machine).
    assert!(stores.groups().len() > 20, "{:?}", stores.groups());
    // Group 0 is as it was.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use openraft::RaftLogReader;
        let mut g0 = stores.log_store::<TypeConfig>(0);
        assert_eq!(g0.read_vote().await?, Some(Vote::new(5, 1)));
        assert_eq!(g0.try_get_log_entries(..).await?.len(), 10);
        Ok(())
    })
}
