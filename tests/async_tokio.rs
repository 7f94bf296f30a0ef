//! The `tokio` feature: `journalstore::tokio::AsyncStore` runs the blocking
//! calls on the runtime's blocking pool, so they never block the executor.
//!
//! The tests run on a current-thread runtime, whose one thread is the
//! whole executor: a call that blocked it would stop every other task, so
//! a follower waiting there while the writer task writes would wait out
//! its timeout (and the test fail) instead of returning `true`. No test
//! depends on timing: the timeouts are only a bound for such a regression.
#![cfg(feature = "tokio")]

use std::sync::Arc;
use std::time::Duration;

use journalstore::tokio::AsyncStore;
use journalstore::{Error, Options, Store, SyncMode, WriteBatch, WriteOptions};

/// Long enough never to pass while the code is right.
const BOUND: Option<Duration> = Some(Duration::from_secs(60));

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn open(dir: &std::path::Path, sync: SyncMode) -> AsyncStore {
    let options = Options {
        sync,
        ..Options::default()
    };
    AsyncStore::new(Arc::new(Store::open(dir, options).unwrap()))
}

fn append(value: &str) -> WriteBatch {
    let mut batch = WriteBatch::new();
    batch.append(b"j", value.as_bytes());
    batch
}

/// A follower task waits for each next LSN while the writer task, on the
/// same executor thread, writes it: both make progress, and the follower
/// sees every batch in a snapshot.
#[test]
fn waiting_task_does_not_block_the_writer_task() {
    for sync in [SyncMode::Always, SyncMode::Never] {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path(), sync);
        runtime().block_on(async {
            for round in 0..20usize {
                let next = store.store().last_lsn() + 1;
                let follower = tokio::spawn({
                    let store = store.clone();
                    async move {
                        let seen = store.wait_for(next, BOUND).await;
                        let snap = store.store().snapshot();
                        (seen, snap.journal(b"j").map_or(0, |j| j.len()))
                    }
                });
                // Let the follower start its wait first (without it the
                // test still holds, through the immediate path).
                tokio::task::yield_now().await;
                let lsn = store.write(append(&round.to_string())).await.unwrap();
                assert_eq!(lsn, next);
                let (seen, len) = follower.await.unwrap();
                assert!(seen.unwrap(), "{sync:?}: round {round}");
                assert_eq!(len, round as u64 + 1);
            }
        });
    }
}

/// `write_with(sync: false)`, then `sync_to`: durable when it returns; a
/// task waiting for durability wakes then.
#[test]
fn buffered_write_then_sync_to() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SyncMode::Never);
    runtime().block_on(async {
        let lsn = store
            .write_with(append("a"), WriteOptions { sync: false })
            .await
            .unwrap();
        assert!(store.store().durable_lsn() < lsn);
        let acker = tokio::spawn({
            let store = store.clone();
            async move { store.wait_for_durable(lsn, BOUND).await }
        });
        tokio::task::yield_now().await;
        store.sync_to(lsn).await.unwrap();
        assert!(store.store().durable_lsn() >= lsn);
        assert!(acker.await.unwrap().unwrap());
        let synced = store
            .write_with(append("b"), WriteOptions { sync: true })
            .await
            .unwrap();
        assert!(store.store().durable_lsn() >= synced);
    });
}

/// Closing wakes a task waiting for an LSN that never comes, with
/// `Error::Closed`; later calls fail the same way.
#[test]
fn close_wakes_a_waiting_task() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SyncMode::Always);
    runtime().block_on(async {
        let waiter = tokio::spawn({
            let store = store.clone();
            async move { store.wait_for(1, None).await }
        });
        tokio::task::yield_now().await;
        store.close().await.unwrap();
        assert!(matches!(waiter.await.unwrap(), Err(Error::Closed)));
        assert!(matches!(store.sync_to(1).await, Err(Error::Closed)));
        assert!(matches!(
            store.write(append("late")).await,
            Err(Error::Closed)
        ));
        // After close a wait fails at once rather than timing out.
        let short = Some(Duration::from_millis(1));
        assert!(matches!(store.wait_for(1, short).await, Err(Error::Closed)));
    });
}

/// A short timeout on an LSN never written gives `false`.
#[test]
fn wait_for_times_out() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path(), SyncMode::Always);
    runtime().block_on(async {
        let short = Some(Duration::from_millis(10));
        assert!(!store.wait_for(1, short).await.unwrap());
    });
}
