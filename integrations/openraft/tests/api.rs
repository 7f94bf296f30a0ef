//! The adapter's own promises, beyond openraft's suite: durability when
//! the flush callback has run, errors that keep their source, the layout of
//! groups in the store, and state machine snapshots that survive a reopen.

use std::error::Error as _;

use journalstore::Options;
use journalstore_openraft::kv::{Request, TypeConfig};
use journalstore_openraft::RaftStore;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::log_id;
use openraft::{Entry, EntryPayload, RaftLogReader, RaftSnapshotBuilder, Vote};

fn set(index: u64, key: &str, value: &str) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Request::Set {
            key: key.into(),
            value: value.into(),
        }),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// When openraft's flush callback has run, the store's durable LSN covers
/// the append (and so every write before it, of every group).
#[test]
fn flush_callback_runs_once_durable() {
    let tmp = tempfile::tempdir().unwrap();
    let stores = RaftStore::open(tmp.path(), Options::default()).unwrap();
    rt().block_on(async {
        let mut a = stores.log_store::<TypeConfig>(1);
        let mut b = stores.log_store::<TypeConfig>(2);
        // Not synced by itself: a purge of group 2.
        b.purge(log_id(1, 1, 4)).await.unwrap();
        let purge_lsn = stores.store().last_lsn();
        a.blocking_append([set(1, "k", "v")]).await.unwrap();
        let append_lsn = stores.store().last_lsn();
        assert!(append_lsn > purge_lsn);
        assert!(stores.store().durable_lsn() >= append_lsn);
        // Votes are durable on return.
        b.save_vote(&Vote::new(2, 1)).await.unwrap();
        assert!(stores.store().durable_lsn() >= stores.store().last_lsn());
    });
}

/// A failure reaches openraft as a `StorageError` whose source chain
/// still holds journalstore's error.
#[test]
fn errors_keep_their_source() {
    let tmp = tempfile::tempdir().unwrap();
    let stores = RaftStore::open(tmp.path(), Options::default()).unwrap();
    let mut log = stores.log_store::<TypeConfig>(1);
    stores.close().unwrap();
    let err = rt()
        .block_on(log.save_vote(&Vote::new(1, 1)))
        .expect_err("the store is closed");
    let mut chain = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    assert!(
        chain.iter().any(|m| m.contains("store is closed")),
        "{chain:?}"
    );
    // An append after close: the error comes back, nothing is written.
    let err = rt()
        .block_on(log.blocking_append([set(0, "k", "v")]))
        .expect_err("the store is closed");
    assert!(format!("{err:?}").contains("closed"), "{err:?}");
}

/// Groups are independent journals of one store; an append that would leave
/// a hole is refused.
#[test]
fn groups_share_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let stores = RaftStore::open(tmp.path(), Options::default()).unwrap();
    rt().block_on(async {
        for g in [3u64, 1, 2] {
            let mut log = stores.log_store::<TypeConfig>(g);
            log.blocking_append([set(1, "g", &g.to_string())])
                .await
                .unwrap();
        }
        let mut two = stores.log_store::<TypeConfig>(2);
        assert_eq!(two.journal_id(), b"raft/00000000000000000002/log");
        let got = two.try_get_log_entries(..).await.unwrap();
        assert_eq!(got, vec![set(1, "g", "2")]);
        let hole = two.blocking_append([set(5, "g", "x")]).await;
        assert!(hole.is_err());
        assert_eq!(two.try_get_log_entries(..).await.unwrap().len(), 1);
    });
    assert_eq!(stores.groups(), vec![1, 2, 3]);
}

/// The log, vote, committed id and the state machine's snapshot survive a
/// close and reopen; the state machine restarts from its snapshot.
#[test]
fn state_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let meta = {
        let stores = RaftStore::open(tmp.path(), Options::default()).unwrap();
        let meta = rt().block_on(async {
            let mut log = stores.log_store::<TypeConfig>(9);
            let mut sm = stores.state_machine(9).unwrap();
            let entries = vec![set(1, "a", "1"), set(2, "b", "2"), set(3, "a", "3")];
            log.blocking_append(entries.clone()).await.unwrap();
            log.save_vote(&Vote::new(4, 2)).await.unwrap();
            log.save_committed(Some(log_id(1, 1, 3))).await.unwrap();
            sm.apply(entries).await.unwrap();
            let snapshot = sm
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            log.purge(log_id(1, 1, 2)).await.unwrap();
            snapshot.meta
        });
        stores.close().unwrap();
        meta
    };
    let stores = RaftStore::open(tmp.path(), Options::default()).unwrap();
    rt().block_on(async {
        let mut log = stores.log_store::<TypeConfig>(9);
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(4, 2)));
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(1, 1, 3)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(1, 1, 3)));
        assert_eq!(
            log.try_get_log_entries(..).await.unwrap(),
            vec![set(3, "a", "3")]
        );
        let mut sm = stores.state_machine(9).unwrap();
        assert_eq!(sm.get("a").as_deref(), Some("3"));
        assert_eq!(sm.last_applied(), Some(log_id(1, 1, 3)));
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, meta);
    });
}

/// Appends learn the log's bounds from the log store's own bookkeeping
/// after the first one; across overlapping appends, purges past the end
/// and truncates, each append lands where a snapshot says the log is.
#[test]
fn appends_follow_truncates_and_purges() {
    let tmp = tempfile::tempdir().unwrap();
    let stores = RaftStore::open(tmp.path(), Options::default()).unwrap();
    let bounds = |stores: &RaftStore| {
        let snap = stores.store().snapshot();
        let j = snap.journal(b"raft/00000000000000000001/log").unwrap();
        let values: Vec<String> = j
            .entries(..)
            .map(|e| {
                let entry: Entry<TypeConfig> = serde_json::from_slice(e.unwrap().1).unwrap();
                match entry.payload {
                    EntryPayload::Normal(Request::Set { value, .. }) => value,
                    _ => String::new(),
                }
            })
            .collect();
        (j.first_index(), j.end_index(), values.join(","))
    };
    rt().block_on(async {
        let mut log = stores.log_store::<TypeConfig>(1);
        log.blocking_append([set(1, "k", "a"), set(2, "k", "b"), set(3, "k", "c")])
            .await
            .unwrap();
        assert_eq!(bounds(&stores), (1, 4, "a,b,c".into()));
        // Overlapping: entries from 2 on are replaced.
        log.blocking_append([set(2, "k", "B"), set(3, "k", "C"), set(4, "k", "D")])
            .await
            .unwrap();
        assert_eq!(bounds(&stores), (1, 5, "a,B,C,D".into()));
        log.truncate(log_id(1, 1, 3)).await.unwrap();
        log.blocking_append([set(3, "k", "x")]).await.unwrap();
        assert_eq!(bounds(&stores), (1, 4, "a,B,x".into()));
        // A purge past the end moves the empty log up.
        log.purge(log_id(1, 1, 9)).await.unwrap();
        log.blocking_append([set(10, "k", "y"), set(11, "k", "z")])
            .await
            .unwrap();
        assert_eq!(bounds(&stores), (10, 12, "y,z".into()));
        log.purge(log_id(1, 1, 10)).await.unwrap();
        log.blocking_append([set(12, "k", "w")]).await.unwrap();
        assert_eq!(bounds(&stores), (11, 13, "z,w".into()));
        // A hole is refused and changes nothing; the next append still fits.
        let hole = log.blocking_append([set(15, "k", "h")]).await;
        assert!(hole.is_err());
        log.blocking_append([set(13, "k", "v")]).await.unwrap();
        assert_eq!(bounds(&stores), (11, 14, "z,w,v".into()));
    });
}
