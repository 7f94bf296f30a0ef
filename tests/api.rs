//! The public API as documented, call by call with its documented types,
//! plus the type-level promises: `Store: Send + Sync`, `Snapshot: Send +
//! Sync + 'static + Clone`, one `#[non_exhaustive]` error type.

use journalstore::{Error, Journal, Options, Snapshot, Stats, Store, SyncMode, WriteBatch};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_snapshot_bounds<T: Send + Sync + Clone + 'static>() {}

/// Every documented call compiles with its documented types and does what
/// the documentation says.
#[test]
fn the_documented_api_works_as_written() -> journalstore::Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new-dir"); // `open` creates it
    let store = journalstore::Store::open(&dir, journalstore::Options::default())?;

    // inv-2..4 written earlier.
    let mut setup = WriteBatch::new();
    for i in 0..12u32 {
        setup.append(b"inv-2", &i.to_le_bytes());
        setup.append(b"inv-3", &i.to_le_bytes());
    }
    setup.append(b"inv-4", b"x").set_metadata(b"inv-4", b"m");
    let setup_lsn = store.write(&setup)?;

    let mut batch = journalstore::WriteBatch::new();
    batch.append(b"inv-1", b"entry 0");
    batch.append_at(b"inv-1", 1, b"entry 1");
    batch.set_metadata(b"inv-1", b"len=2");
    batch.trim_prefix(b"inv-2", 10); // keep indexes >= 10
    batch.truncate(b"inv-3", 4); // keep indexes < 4
    batch.delete_journal(b"inv-4");
    let lsn: u64 = store.write(&batch)?; // atomic; durable per Options::sync
    assert!(lsn > setup_lsn);
    let snap: journalstore::Snapshot = store.snapshot(); // O(1); Send + Sync + 'static; Clone
    assert_eq!(snap.lsn(), lsn);
    assert!(snap.generation() >= 1);
    let mut seen = Vec::new();
    if let Some(j) = snap.journal(b"inv-1") {
        // Option<journalstore::Journal<'_>>
        assert_eq!((j.first_index(), j.end_index(), j.len()), (0, 2, 2));
        let meta: Option<&[u8]> = j.metadata()?; // Result<Option<&[u8]>>
        assert_eq!(meta, Some(&b"len=2"[..]));
        let e: Option<&[u8]> = j.entry(0)?; // borrowed from the mapping
        assert_eq!(e, Some(&b"entry 0"[..]));
        for item in j.entries(..) {
            let (index, bytes) = item?;
            seen.push((index, bytes.to_vec()));
        }
    }
    assert_eq!(
        seen,
        vec![(0, b"entry 0".to_vec()), (1, b"entry 1".to_vec())]
    );
    let inv2 = snap.journal(b"inv-2").unwrap();
    assert_eq!((inv2.first_index(), inv2.end_index()), (10, 12));
    assert_eq!(inv2.entry(9)?, None);
    assert_eq!(inv2.entry(10)?, Some(&10u32.to_le_bytes()[..]));
    let inv3 = snap.journal(b"inv-3").unwrap();
    assert_eq!((inv3.first_index(), inv3.end_index()), (0, 4));
    assert!(snap.journal(b"inv-4").is_none());
    let ids: Vec<&[u8]> = snap.journal_ids().collect(); // ascending bytewise
    assert_eq!(ids, vec![&b"inv-1"[..], b"inv-2", b"inv-3"]);
    store.sync()?; // everything written so far is durable
    let stats: Stats = store.stats(); // generation, segments, bytes ...
    assert_eq!(stats.journals, 3);
    assert_eq!(stats.pinned_snapshots, 1);
    assert!(stats.live_bytes > 0 && stats.bytes_on_disk >= stats.live_bytes);
    store.close()?; // or drop
                    // A snapshot outlives the store it came from.
    assert_eq!(
        snap.journal(b"inv-1").unwrap().metadata()?,
        Some(&b"len=2"[..])
    );
    Ok(())
}

/// Journal lifecycle rules: created by its first append or set_metadata,
/// kept when trimmed or truncated to empty, gone after delete, restarted at
/// 0 by a later append; trim/truncate/delete of an absent journal neither
/// fail nor create it; out-of-range trims and truncates are no-ops.
#[test]
fn journal_lifecycle_follows_the_documented_rules() -> journalstore::Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), Options::default())?;
    let write = |f: &dyn Fn(&mut WriteBatch)| {
        let mut b = WriteBatch::new();
        f(&mut b);
        store.write(&b)
    };
    write(&|b| {
        b.trim_prefix(b"ghost", 5)
            .truncate(b"ghost", 0)
            .delete_journal(b"ghost");
    })?;
    assert!(store.snapshot().journal(b"ghost").is_none());

    write(&|b| {
        b.set_metadata(b"m", b"only metadata");
    })?;
    let snap = store.snapshot();
    let m = snap.journal(b"m").unwrap();
    assert_eq!((m.first_index(), m.end_index()), (0, 0));

    write(&|b| {
        b.append(b"j", b"0").append(b"j", b"1").append(b"j", b"2");
    })?;
    write(&|b| {
        b.trim_prefix(b"j", 1)
            .trim_prefix(b"j", 0)
            .truncate(b"j", 7);
    })?;
    let snap = store.snapshot();
    let j = snap.journal(b"j").unwrap();
    assert_eq!((j.first_index(), j.end_index()), (1, 3));
    write(&|b| {
        b.truncate(b"j", 1);
    })?;
    let snap = store.snapshot();
    let j = snap.journal(b"j").unwrap();
    assert!(j.is_empty());
    assert_eq!((j.first_index(), j.end_index()), (1, 1));
    write(&|b| {
        b.append_at(b"j", 1, b"again");
    })?;
    write(&|b| {
        b.trim_prefix(b"j", 2);
    })?;
    let snap = store.snapshot();
    assert_eq!(snap.journal(b"j").unwrap().first_index(), 2);
    write(&|b| {
        b.delete_journal(b"j");
    })?;
    assert!(store.snapshot().journal(b"j").is_none());
    write(&|b| {
        b.append_at(b"j", 0, b"new life");
    })?;
    let snap = store.snapshot();
    assert_eq!(
        snap.journal(b"j").unwrap().entry(0)?,
        Some(&b"new life"[..])
    );
    // Everything above survives a reopen, including the empty journal.
    drop(store);
    let store = Store::open(tmp.path(), Options::default())?;
    let snap = store.snapshot();
    assert_eq!(
        snap.journal(b"m").unwrap().metadata()?,
        Some(&b"only metadata"[..])
    );
    assert_eq!(snap.journal(b"j").unwrap().end_index(), 1);
    Ok(())
}

/// LSNs strictly increase, also across reopen and in every sync mode, and
/// an empty store's snapshot has LSN 0.
#[test]
fn lsns_strictly_increase_across_reopen() -> journalstore::Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let mut last = 0;
    for (round, sync) in [
        SyncMode::Always,
        SyncMode::Never,
        SyncMode::Interval(std::time::Duration::from_millis(5)),
    ]
    .into_iter()
    .enumerate()
    {
        let store = Store::open(
            tmp.path(),
            Options {
                sync,
                ..Options::default()
            },
        )?;
        if round == 0 {
            assert_eq!(store.snapshot().lsn(), 0);
        }
        for _ in 0..10 {
            let mut b = WriteBatch::new();
            b.append(b"j", b"e");
            let lsn = store.write(&b)?;
            assert!(lsn > last);
            last = lsn;
        }
        // Deleting everything frees nothing the LSN depends on.
        let mut b = WriteBatch::new();
        b.delete_journal(b"j");
        last = store.write(&b)?;
        store.close()?;
    }
    Ok(())
}

#[test]
fn public_types_have_the_promised_bounds() {
    assert_send_sync::<Store>();
    assert_snapshot_bounds::<Snapshot>();
    assert_send_sync::<Journal<'static>>();
    assert_send_sync::<Error>();
    let e: Box<dyn std::error::Error + Send + Sync> = Box::new(Error::Closed);
    assert_eq!(e.to_string(), "store is closed");
}

/// Guards: segment files are sparse, with disk space reserved only about
/// 1 MiB ahead of the data, so a store holding a few KiB in a 64 MiB
/// segment occupies about 1 MiB on disk, not 64 MiB; its data reads back
/// after a reopen, and the file still has its full length.
#[test]
fn a_small_store_does_not_occupy_whole_segments_on_disk() -> journalstore::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, Options::default())?;
    let mut batch = WriteBatch::new();
    batch.append(b"j", &[1u8; 4000]);
    for _ in 0..10 {
        store.write(&batch)?;
    }
    store.close()?;
    let files = journalstore::inspect::segment_files(&dir)?;
    assert_eq!(files.len(), 1);
    let meta = std::fs::metadata(&files[0].1).unwrap();
    assert_eq!(meta.len(), Options::default().segment_size);
    let allocated = meta.blocks() * 512;
    assert!(allocated <= 2 << 20, "{allocated} bytes allocated");
    let store = Store::open(&dir, Options::default())?;
    assert_eq!(store.snapshot().journal(b"j").unwrap().len(), 10);
    Ok(())
}

/// `entries(range)` reads from both ends: `.rev()` gives the forward
/// order reversed, and mixing `next` and `next_back` yields every index
/// once, in a journal of either representation (a few entries, and more
/// than fit the small one) whose first index is not 0.
#[test]
fn entries_read_from_both_ends_and_last_is_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store"), Options::default()).unwrap();
    for (id, n) in [(&b"small"[..], 10u64), (&b"large"[..], 300)] {
        let mut batch = WriteBatch::new();
        for i in 0..n {
            batch.append(id, format!("{i}").as_bytes());
        }
        batch.trim_prefix(id, 3);
        store.write(&batch).unwrap();
    }
    let mut empty = WriteBatch::new();
    empty.set_metadata(b"empty", b"m");
    store.write(&empty).unwrap();
    let snap = store.snapshot();
    for (id, n) in [(&b"small"[..], 10u64), (&b"large"[..], 300)] {
        let j = snap.journal(id).unwrap();
        let read = |e: journalstore::Result<(u64, &[u8])>| {
            let (i, bytes) = e.unwrap();
            assert_eq!(bytes, format!("{i}").as_bytes());
            i
        };
        let forward: Vec<u64> = j.entries(..).map(read).collect();
        assert_eq!(forward, (3..n).collect::<Vec<_>>());
        let backward: Vec<u64> = j.entries(..).rev().map(read).collect();
        assert_eq!(backward, (3..n).rev().collect::<Vec<_>>());
        let ranged: Vec<u64> = j.entries(5..8).rev().map(read).collect();
        assert_eq!(ranged, [7, 6, 5]);
        let mut both = j.entries(..);
        assert_eq!(both.len() as u64, n - 3);
        let mut seen = Vec::new();
        while let Some(front) = both.next() {
            seen.push(read(front));
            if let Some(back) = both.next_back() {
                seen.push(read(back));
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (3..n).collect::<Vec<_>>(), "each index once");
        assert_eq!(
            j.last().unwrap(),
            Some((n - 1, format!("{}", n - 1).as_bytes()))
        );
    }
    assert_eq!(snap.journal(b"empty").unwrap().last().unwrap(), None);
    store.close().unwrap();
}

/// Journal ids from a start key and by prefix, in bytewise order, without
/// the ids outside.
#[test]
fn journal_ids_from_a_key_and_by_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store"), Options::default()).unwrap();
    let ids: [&[u8]; 6] = [b"a", b"inv/1", b"inv/2", b"inv/20", b"inw", b"z"];
    let mut batch = WriteBatch::new();
    for id in ids {
        batch.set_metadata(id, b"");
    }
    store.write(&batch).unwrap();
    let snap = store.snapshot();
    let from: Vec<&[u8]> = snap.journal_ids_from(b"inv/2").collect();
    assert_eq!(from, [&b"inv/2"[..], b"inv/20", b"inw", b"z"]);
    let prefixed: Vec<&[u8]> = snap.journal_ids_with_prefix(b"inv/").collect();
    assert_eq!(prefixed, [&b"inv/1"[..], b"inv/2", b"inv/20"]);
    assert_eq!(snap.journal_ids_with_prefix(b"q").count(), 0);
    assert_eq!(snap.journal_ids_from(b"zz").count(), 0);
    let all: Vec<&[u8]> = snap.journal_ids_from(b"").collect();
    assert_eq!(all, ids);
    store.close().unwrap();
}
