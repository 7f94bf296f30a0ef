//! Closing a store shared between threads: `close(&self)` waits for the
//! calls under way, every later call fails with `Error::Closed`, the lock is
//! released at once (the store reopens while handles to the closed one are
//! alive), and every batch acknowledged before is there after the reopen.

use std::sync::Arc;

use journalstore::{Error, Options, Store, SyncMode, WriteBatch};

/// Writers append to their own journals until a write fails; the main
/// thread closes the store meanwhile, from its own handle.
#[test]
fn closing_a_shared_store_stops_every_writer_and_keeps_what_they_were_told() {
    for sync in [SyncMode::Always, SyncMode::Never] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let store = Arc::new(
            Store::open(
                &dir,
                Options {
                    sync,
                    ..Options::default()
                },
            )
            .unwrap(),
        );
        let started = Arc::new(std::sync::Barrier::new(5));
        let writers: Vec<_> = (0..4u64)
            .map(|t| {
                let (store, started) = (store.clone(), started.clone());
                std::thread::spawn(move || {
                    let id = format!("t{t}").into_bytes();
                    let mut acked = 0u64;
                    loop {
                        let mut batch = WriteBatch::new();
                        batch.append(&id, format!("{t}-{acked}").as_bytes());
                        match store.write(&batch) {
                            Ok(_) => acked += 1,
                            Err(Error::Closed) => return acked,
                            Err(e) => panic!("writer {t}: {e}"),
                        }
                        if acked == 1 {
                            started.wait();
                        }
                    }
                })
            })
            .collect();
        // Every writer has had a batch acknowledged before the close.
        started.wait();
        store.close().unwrap();
        assert!(matches!(store.close(), Err(Error::Closed)), "second close");
        assert!(matches!(store.sync(), Err(Error::Closed)));
        assert!(matches!(store.compact(), Err(Error::Closed)));
        let acked: Vec<u64> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(acked.iter().all(|&n| n >= 1), "{acked:?}");

        // The lock is free although `store` (closed) is still alive.
        let reopened = Store::open(&dir, Options::default()).unwrap();
        let snap = reopened.snapshot();
        for (t, n) in acked.iter().enumerate() {
            let j = snap.journal(format!("t{t}").as_bytes()).unwrap();
            assert_eq!(j.len(), *n, "{sync:?}: writer {t}: acknowledged batches");
            for (k, e) in j.entries(..).enumerate() {
                assert_eq!(e.unwrap().1, format!("{t}-{k}").as_bytes());
            }
        }
        drop(snap);
        reopened.close().unwrap();
        drop(store);
    }
}
