//! Reading everything a snapshot shows, and opening a (possibly damaged)
//! store every way there is: the checks the file-level targets share.

use std::collections::BTreeMap;
use std::path::Path;

use journalstore::inspect;
use journalstore::io::SimFs;
use journalstore::{Error, Snapshot, Store, SyncMode};

use super::{dir_image, options};
use crate::model::{Model, ModelJournal};

/// What a failed read reported, coarse enough to compare across reopens
/// (paths and offsets may legitimately differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrClass {
    Corruption,
    Io,
    Other,
}

pub(crate) fn class(e: &Error) -> ErrClass {
    match e {
        Error::Corruption { .. } => ErrClass::Corruption,
        Error::Io { .. } => ErrClass::Io,
        _ => ErrClass::Other,
    }
}

/// One journal as read through a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReadJournal {
    first: u64,
    end: u64,
    metadata: Result<Option<Vec<u8>>, ErrClass>,
    entries: Vec<Result<Vec<u8>, ErrClass>>,
}

/// Everything a snapshot shows, every value read (and so checksum-verified).
pub(crate) type ReadState = BTreeMap<Vec<u8>, ReadJournal>;

/// Reads every journal, its metadata and every entry of `snap`, checking
/// that the read API agrees with itself: ids listed in order and counted
/// right, bounds consistent with the entries, iteration and point reads
/// returning the same thing, nothing outside the bounds. Failed reads are
/// recorded, not reported; the caller decides whether they may happen.
pub(crate) fn read_state(snap: &Snapshot, ctx: &str) -> ReadState {
    let ids: Vec<Vec<u8>> = snap.journal_ids().map(<[u8]>::to_vec).collect();
    assert_eq!(
        ids.len(),
        snap.journal_count(),
        "{ctx}: journal_count disagrees with journal_ids"
    );
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{ctx}: journal_ids not strictly ascending"
    );
    let mut out = ReadState::new();
    for id in ids {
        let j = snap
            .journal(&id)
            .unwrap_or_else(|| panic!("{ctx}: listed journal {id:?} not found"));
        assert_eq!(j.id(), &id[..], "{ctx}: journal id");
        let (first, end) = (j.first_index(), j.end_index());
        assert!(first <= end, "{ctx}: {id:?} first {first} > end {end}");
        assert_eq!(j.len(), end - first, "{ctx}: len of {id:?}");
        assert_eq!(j.is_empty(), first == end, "{ctx}: is_empty of {id:?}");
        let metadata = j
            .metadata()
            .map(|m| m.map(<[u8]>::to_vec))
            .map_err(|e| class(&e));
        let mut entries = Vec::new();
        for (k, item) in j.entries(..).enumerate() {
            entries.push(match item {
                Ok((index, bytes)) => {
                    assert_eq!(index, first + k as u64, "{ctx}: index in {id:?}");
                    Ok(bytes.to_vec())
                }
                Err(e) => Err(class(&e)),
            });
        }
        assert_eq!(
            entries.len() as u64,
            end - first,
            "{ctx}: entries(..) of {id:?} yields a different count than its bounds"
        );
        if let Some(last) = entries.last() {
            let point = j.entry(end - 1).map_err(|e| class(&e));
            let point = point.map(|o| o.map(<[u8]>::to_vec));
            assert_eq!(
                point,
                last.clone().map(Some),
                "{ctx}: entry({}) of {id:?} differs from iteration",
                end - 1
            );
        }
        assert!(
            matches!(j.entry(end), Ok(None)),
            "{ctx}: entry past the end of {id:?}"
        );
        if first > 0 {
            assert!(
                matches!(j.entry(first - 1), Ok(None)),
                "{ctx}: entry before the start of {id:?}"
            );
        }
        let ranged = j.entries(first.saturating_add(1)..end).count() as u64;
        assert_eq!(
            ranged,
            (end - first).saturating_sub(1),
            "{ctx}: entries(first+1..end) of {id:?}"
        );
        out.insert(
            id,
            ReadJournal {
                first,
                end,
                metadata,
                entries,
            },
        );
    }
    out
}

/// The state as a model, if every read succeeded.
pub(crate) fn to_model(state: &ReadState) -> Option<Model> {
    let mut model = Model::default();
    for (id, j) in state {
        let entries: Result<Vec<Vec<u8>>, ErrClass> = j.entries.iter().cloned().collect();
        let journal = ModelJournal {
            first: j.first,
            entries: entries.ok()?,
            metadata: j.metadata.clone().ok()?,
        };
        model.journals.insert(id.clone(), journal);
    }
    Some(model)
}

/// Opens the (possibly damaged) store in `dir` every way there is and checks
/// that the ways agree. Returns the state if it opened.
///
/// Findings: a panic anywhere; `Store::open` and `inspect::open_read_only`
/// disagreeing on whether the store is valid or on its content;
/// `open_read_only` changing a file; a `Corruption`/`UnsupportedVersion`
/// open leaving the directory changed (the documented promise is that such
/// an open changes nothing); a store that opened failing to close, to
/// reopen to the same state, or to take a new batch that then survives a
/// reopen.
pub(crate) fn open_checked(dir: &Path, ctx: &str) -> Option<ReadState> {
    let before = dir_image(dir);
    let has_manifest = before.contains_key("MANIFEST");
    let read_only = inspect::open_read_only(dir).map(|ro| {
        let exhausted = ro.snapshot.lsn() == u64::MAX || ro.manifest.generation == u64::MAX;
        (read_state(&ro.snapshot, ctx), exhausted)
    });
    assert!(
        dir_image(dir) == before,
        "{ctx}: open_read_only changed the directory"
    );
    let sim = SimFs::new();
    let store = match Store::open(dir, options(&sim, SyncMode::Always)) {
        Ok(store) => store,
        Err(e) => {
            let _ = e.to_string();
            if matches!(
                e,
                Error::Corruption { .. } | Error::UnsupportedVersion { .. }
            ) {
                assert!(
                    dir_image(dir) == before,
                    "{ctx}: an open that failed with `{e}` changed the directory"
                );
            }
            // Reading needs no new LSN or generation; opening may (to seal
            // a torn tail or free segments), so only a store whose LSNs or
            // generations are used up may be readable but not openable.
            if let (true, Ok((state, exhausted))) = (has_manifest, &read_only) {
                assert!(
                    *exhausted,
                    "{ctx}: open_read_only read {} journals but Store::open failed: {e}",
                    state.len()
                );
            }
            return None;
        }
    };
    let state = read_state(&store.snapshot(), ctx);
    if has_manifest {
        match &read_only {
            Ok((ro, _)) => assert_eq!(ro, &state, "{ctx}: open_read_only and Store::open differ"),
            Err(e) => panic!("{ctx}: Store::open succeeded but open_read_only failed: {e}"),
        }
    }
    store
        .close()
        .unwrap_or_else(|e| panic!("{ctx}: close after recovery failed: {e}"));

    // Recovery is idempotent: whatever the first open cut, sealed or freed,
    // the second one sees the same state.
    let store = Store::open(dir, options(&sim, SyncMode::Always))
        .unwrap_or_else(|e| panic!("{ctx}: second open failed: {e}"));
    let again = read_state(&store.snapshot(), ctx);
    assert_eq!(again, state, "{ctx}: the second open shows another state");

    // A recovered store takes new writes, and they survive a reopen.
    let probe: Vec<u8> = (0u8..=255)
        .map(|n| vec![0xfe, n])
        .find(|id| !state.contains_key(id))
        .expect("some probe id is free");
    let mut batch = journalstore::WriteBatch::new();
    batch.append(&probe, b"probe entry");
    batch.set_metadata(&probe, b"probe metadata");
    let mut expect = state.clone();
    let recovered_lsn = store.snapshot().lsn();
    match store.write(&batch) {
        Ok(lsn) => {
            assert!(
                lsn > recovered_lsn,
                "{ctx}: probe LSN {lsn} not above the recovered {recovered_lsn}"
            );
            expect.insert(
                probe,
                ReadJournal {
                    first: 0,
                    end: 1,
                    metadata: Ok(Some(b"probe metadata".to_vec())),
                    entries: vec![Ok(b"probe entry".to_vec())],
                },
            );
        }
        // Segment ids (u32) and LSNs can run out in a crafted store.
        Err(Error::InvalidOptions(_)) => {}
        Err(e) => panic!("{ctx}: write after recovery failed: {e}"),
    }
    assert_eq!(
        read_state(&store.snapshot(), ctx),
        expect,
        "{ctx}: state after the probe write"
    );
    drop(store);
    let store = Store::open(dir, options(&sim, SyncMode::Always))
        .unwrap_or_else(|e| panic!("{ctx}: open after the probe write failed: {e}"));
    assert_eq!(
        read_state(&store.snapshot(), ctx),
        expect,
        "{ctx}: state after the probe write and a reopen"
    );
    drop(store);
    Some(state)
}
