//! Opening a store written by an older format version (format-spec section
//! 8): the frozen version-1 store `format-spec/vectors/v1/all-ops/` (bytes
//! as the last version-1 build wrote them; `v1/all-ops.txt` gives its
//! content), copied to a temporary directory first so the fixture never
//! changes.
//!
//! - `version_1_store_reads_as_documented`: open read-write and read-only,
//!   it holds exactly the journals its `.txt` lists (metadata never set is
//!   absent, not empty); the read-only open changes no byte.
//! - `open_rolls_a_version_1_active_segment`: the open seals the version-1
//!   active segment at its end of data and rolls to a version-2 segment;
//!   the old file keeps its bytes and its version; a second open does not
//!   roll again.
//! - `upgraded_store_takes_new_operations`: `clear_metadata` (kind 6) and
//!   a trim past the end written after the upgrade survive close and
//!   reopen, and land in the version-2 segment.
//! - `kind_6_in_a_version_1_segment_is_read`: the writer never puts kind 6
//!   in a version-1 segment, and readers need not check it (section 8):
//!   the engine decodes it by the version-2 rules.
//! - `empty_version_1_active_segment_is_sealed_and_freed`: an active
//!   version-1 segment without records is sealed at 64, rolled from and
//!   freed by the same open.
//!
//! A segment header of a version this build does not read is covered by
//! `tests/bad_input.rs` (`segment_with_unknown_version_is_unsupported`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use journalstore::{inspect, Options, Snapshot, Store, SyncMode, WriteBatch};

/// The frozen store, copied into a fresh temporary directory.
struct OldStore {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

fn old_store() -> OldStore {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/vectors/v1/all-ops");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    OldStore { _tmp: tmp, dir }
}

fn options() -> Options {
    Options {
        sync: SyncMode::Always,
        segment_size: 64 + 32 + 4096,
        background_compaction: false,
        status_interval: None,
        ..Options::default()
    }
}

/// (first, end, metadata, entries) of each journal.
type Content = BTreeMap<Vec<u8>, (u64, u64, Option<Vec<u8>>, Vec<Vec<u8>>)>;

fn content(snap: &Snapshot) -> Content {
    snap.journal_ids()
        .map(|id| {
            let j = snap.journal(id).unwrap();
            let entries = j.entries(..).map(|e| e.unwrap().1.to_vec()).collect();
            (
                id.to_vec(),
                (
                    j.first_index(),
                    j.end_index(),
                    j.metadata().unwrap().map(<[u8]>::to_vec),
                    entries,
                ),
            )
        })
        .collect()
}

/// What `format-spec/vectors/v1/all-ops.txt` lists after replay.
fn documented() -> Content {
    let mut c = Content::new();
    c.insert(
        b"a".to_vec(),
        (
            1,
            3,
            Some(b"meta-a2".to_vec()),
            vec![b"world".to_vec(), b"again".to_vec()],
        ),
    );
    c.insert(
        b"m".to_vec(),
        (0, 0, Some(b"only metadata".to_vec()), vec![]),
    );
    c.insert(vec![0xff, 0xfe], (0, 1, None, vec![vec![0, 1, 2]]));
    c
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The format version in a segment file's header.
fn segment_version(path: &Path) -> u32 {
    let file = inspect::SegmentFile::read(path).unwrap();
    file.header().unwrap().version
}

#[test]
fn version_1_store_reads_as_documented() {
    let old = old_store();
    assert_eq!(segment_version(&old.dir.join("seg-00000001.jseg")), 1);
    let before = files(&old.dir);
    let ro = inspect::open_read_only(&old.dir).unwrap();
    assert_eq!(content(&ro.snapshot), documented());
    drop(ro);
    assert!(
        files(&old.dir) == before,
        "a read-only open changed the store"
    );

    let store = Store::open(&old.dir, options()).unwrap();
    assert_eq!(content(&store.snapshot()), documented());
    store.close().unwrap();
}

#[test]
fn open_rolls_a_version_1_active_segment() {
    let old = old_store();
    let seg1 = old.dir.join("seg-00000001.jseg");
    let old_bytes = std::fs::read(&seg1).unwrap();
    let m = inspect::read_manifest(&old.dir.join("MANIFEST")).unwrap();
    assert_eq!((m.generation, m.segments.len()), (1, 1));

    let store = Store::open(&old.dir, options()).unwrap();
    store.close().unwrap();

    // Segment 1 is sealed at its end of data (800: the records end there,
    // the sync mark of the old build's clean close follows), segment 2 is
    // active and of version 2; the manifest keeps layout version 1.
    let m = inspect::read_manifest(&old.dir.join("MANIFEST")).unwrap();
    assert_eq!(m.version, 1);
    assert_eq!(m.generation, 2);
    let listed: Vec<(String, Option<u64>)> = m
        .segments
        .iter()
        .map(|s| (s.file_name.clone(), s.sealed_len))
        .collect();
    assert_eq!(
        listed,
        [
            ("seg-00000001.jseg".to_owned(), Some(800)),
            ("seg-00000002.jseg".to_owned(), None),
        ]
    );
    assert_eq!(std::fs::read(&seg1).unwrap(), old_bytes);
    assert_eq!(segment_version(&seg1), 1);
    assert_eq!(segment_version(&old.dir.join("seg-00000002.jseg")), 2);

    // The active segment is now of the current version: no further roll.
    let store = Store::open(&old.dir, options()).unwrap();
    assert_eq!(content(&store.snapshot()), documented());
    store.close().unwrap();
    let m = inspect::read_manifest(&old.dir.join("MANIFEST")).unwrap();
    assert_eq!((m.generation, m.segments.len()), (2, 2));
}

#[test]
fn upgraded_store_takes_new_operations() {
    let old = old_store();
    let store = Store::open(&old.dir, options()).unwrap();
    let mut b = WriteBatch::new();
    b.clear_metadata(b"a")
        .trim_prefix(b"a", 10)
        .append(b"a", b"ten")
        .clear_metadata(b"m");
    store.write(&b).unwrap();
    let mut want = documented();
    want.insert(b"a".to_vec(), (10, 11, None, vec![b"ten".to_vec()]));
    want.insert(b"m".to_vec(), (0, 0, None, vec![]));
    assert_eq!(content(&store.snapshot()), want);
    store.close().unwrap();

    let store = Store::open(&old.dir, options()).unwrap();
    assert_eq!(content(&store.snapshot()), want);
    store.close().unwrap();
    let ro = inspect::open_read_only(&old.dir).unwrap();
    assert_eq!(content(&ro.snapshot), want);
    drop(ro);

    // The new operations are in the version-2 segment only.
    let kinds = |name: &str| -> Vec<&'static str> {
        let file = inspect::SegmentFile::read(&old.dir.join(name)).unwrap();
        file.scan(0, None, false)
            .into_iter()
            .flat_map(|i| match i {
                inspect::ScanItem::Record { ops, .. } => ops,
                _ => Vec::new(),
            })
            .map(|op| op.kind)
            .collect()
    };
    assert!(!kinds("seg-00000001.jseg").contains(&"clear_metadata"));
    assert_eq!(
        kinds("seg-00000002.jseg"),
        ["clear_metadata", "trim_prefix", "append", "clear_metadata"]
    );
}

/// Rewrites the `delete_journal "d"` of the frozen store (record at 624,
/// its only operation at 656, payload 33 bytes) into a `clear_metadata "d"`
/// with the same bounds (0, 0), with both record checksums made right: a
/// version-1 segment holding kind 6, which no writer produces.
#[test]
fn kind_6_in_a_version_1_segment_is_read() {
    let old = old_store();
    let path = old.dir.join("seg-00000001.jseg");
    let mut bytes = std::fs::read(&path).unwrap();
    let (record, op, payload_len) = (624, 656, 33);
    assert_eq!(bytes[op], 5, "the fixture's delete_journal");
    assert_eq!(&bytes[op + 32..op + 33], b"d");
    bytes[op] = 6;
    let payload_crc = crc32fast::hash(&bytes[op..op + payload_len]);
    bytes[record + 4..record + 8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[record + 4..record + 32]);
    bytes[record..record + 4].copy_from_slice(&header_crc.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();

    // Read by the version-2 rules: the clear forces "d" to 0..0 (its entry
    // dropped) and the journal stays, without metadata.
    let mut want = documented();
    want.insert(b"d".to_vec(), (0, 0, None, vec![]));
    let ro = inspect::open_read_only(&old.dir).unwrap();
    assert_eq!(content(&ro.snapshot), want);
    drop(ro);
    let store = Store::open(&old.dir, options()).unwrap();
    assert_eq!(content(&store.snapshot()), want);
    store.close().unwrap();
}

/// A version-1 store whose active segment holds no record (a store just
/// created by a version-1 build; made here by rewriting the version field
/// of a new store's only segment, with its header CRC): the open seals it
/// at 64 and rolls, and the sealed segment, holding nothing, is freed by
/// the same open.
#[test]
fn empty_version_1_active_segment_is_sealed_and_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    Store::open(&dir, options()).unwrap().close().unwrap();
    let seg1 = dir.join("seg-00000001.jseg");
    let mut bytes = std::fs::read(&seg1).unwrap();
    assert_eq!(&bytes[8..12], &2u32.to_le_bytes());
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&seg1, bytes).unwrap();
    assert_eq!(segment_version(&seg1), 1);

    let store = Store::open(&dir, options()).unwrap();
    assert_eq!(store.snapshot().journal_count(), 0);
    store.close().unwrap();
    let m = inspect::read_manifest(&dir.join("MANIFEST")).unwrap();
    let listed: Vec<(String, Option<u64>)> = m
        .segments
        .iter()
        .map(|s| (s.file_name.clone(), s.sealed_len))
        .collect();
    assert_eq!(listed, [("seg-00000002.jseg".to_owned(), None)]);
    assert!(!seg1.exists(), "the freed segment's file is removed");
    assert_eq!(segment_version(&dir.join("seg-00000002.jseg")), 2);
}
