//! Bad input: damaged or foreign files in the store directory, a directory
//! that is already open, and batches or options outside the limits.
//!
//! Every case must end in a clear, typed error (never a panic), and a failed
//! open must leave the directory exactly as it was: the tests compare every
//! file's bytes and the directory listing before and after. Damage is made by
//! hand from the on-disk layout (parsed here independently of the engine), so
//! each test knows which file and which record it broke.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{to_batch, Model, ModelJournal, Op, Rng};
use journalstore::record::OpIter;
use journalstore::{Error, Options, Snapshot, Store, SyncMode};

/// Small segments so that a few dozen batches fill several of them.
const SEGMENT_SIZE: u64 = 8 << 10;
const SEGMENT_HEADER_LEN: usize = 64;
const RECORD_HEADER_LEN: usize = 32;
const OP_HEADER_LEN: usize = 32;
/// Manifest layout: magic 8, version 4, segment_count 4, generation 8,
/// next_segment_id 8, lsn_floor 8; then 16-byte entries; then a CRC-32.
const MANIFEST_HEADER_LEN: usize = 40;
const MANIFEST_ENTRY_LEN: usize = 16;
const ACTIVE: u64 = u64::MAX;
/// The orphan segment file every fixture starts with.
const ORPHAN: &str = "seg-000000e0.jseg";

fn options() -> Options {
    Options {
        sync: SyncMode::Always,
        segment_size: SEGMENT_SIZE,
        // No index checkpoints: these tests damage records and check what
        // open's replay makes of them, and open does not read the records
        // a checkpoint covers (damage under one: tests/index_checkpoint.rs,
        // tests/verify_once.rs).
        index_checkpoint_bytes: None,
        // Nor compaction at close: the tests damage records of the layout
        // their writes left.
        compact_on_close: false,
        ..Options::default()
    }
}

// ---------------------------------------------------------------------------
// Directory trees: exact contents, for "nothing changed" checks.

/// One directory entry: a file's bytes or a subdirectory's entries.
#[derive(Clone, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir(Tree),
}

type Tree = BTreeMap<String, Node>;

fn read_tree(dir: &Path) -> Tree {
    let mut tree = Tree::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let node = if entry.file_type().unwrap().is_dir() {
            Node::Dir(read_tree(&entry.path()))
        } else {
            Node::File(std::fs::read(entry.path()).unwrap())
        };
        tree.insert(name, node);
    }
    tree
}

/// Replaces everything in `dir` by `tree`.
fn restore_tree(dir: &Path, tree: &Tree) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    for (name, node) in tree {
        match node {
            Node::File(bytes) => std::fs::write(dir.join(name), bytes).unwrap(),
            Node::Dir(sub) => restore_tree(&dir.join(name), sub),
        }
    }
}

/// Lists what differs between two trees (names and first differing byte).
fn tree_diff(before: &Tree, after: &Tree, prefix: &str, out: &mut Vec<String>) {
    for (name, node) in before {
        let path = format!("{prefix}{name}");
        match (node, after.get(name)) {
            (_, None) => out.push(format!("{path}: removed")),
            (Node::File(a), Some(Node::File(b))) if a != b => {
                let at = a.iter().zip(b).position(|(x, y)| x != y);
                out.push(format!(
                    "{path}: changed ({} -> {} bytes, first difference at {at:?})",
                    a.len(),
                    b.len()
                ));
            }
            (Node::Dir(a), Some(Node::Dir(b))) => tree_diff(a, b, &format!("{path}/"), out),
            (Node::File(_), Some(Node::File(_))) => {}
            _ => out.push(format!("{path}: changed between file and directory")),
        }
    }
    for name in after.keys().filter(|n| !before.contains_key(*n)) {
        out.push(format!("{prefix}{name}: created"));
    }
}

fn assert_same_tree(before: &Tree, after: &Tree, context: &str) {
    let mut diff = Vec::new();
    tree_diff(before, after, "", &mut diff);
    assert!(
        diff.is_empty(),
        "{context}: the directory changed: {diff:?}"
    );
}

/// Opens `dir`, which must fail, and checks that the directory was not
/// touched. Returns the error.
fn open_fails_untouched(dir: &Path, context: &str) -> Error {
    let before = read_tree(dir);
    let result = Store::open(dir, options());
    let after = read_tree(dir);
    let err = match result {
        Ok(_) => panic!("{context}: open succeeded on a damaged store"),
        Err(e) => e,
    };
    assert_same_tree(&before, &after, context);
    err
}

#[track_caller]
fn assert_corruption(err: &Error, file: &Path, offsets: Range<u64>, context: &str) {
    match err {
        Error::Corruption { path, offset, .. } => {
            assert_eq!(
                path, file,
                "{context}: corruption names the wrong file: {err}"
            );
            assert!(
                offsets.contains(offset),
                "{context}: offset {offset} outside {offsets:?}: {err}"
            );
        }
        other => panic!("{context}: expected Corruption in {file:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_unsupported(err: &Error, file: &Path, version: u32, context: &str) {
    let is_manifest = file.file_name().is_some_and(|n| n == "MANIFEST");
    let readable = if is_manifest {
        1
    } else {
        journalstore::record::FORMAT_VERSION
    };
    match err {
        Error::UnsupportedVersion {
            path,
            found,
            supported,
        } => {
            assert_eq!(path, file, "{context}: {err}");
            assert_eq!(*found, version, "{context}: {err}");
            assert_eq!(*supported, readable, "{context}: {err}");
        }
        other => panic!("{context}: expected UnsupportedVersion, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The on-disk layout, parsed independently of the engine.

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn align8(x: usize) -> usize {
    (x + 7) & !7
}

/// One record of a segment file.
#[derive(Clone, Debug)]
struct Rec {
    /// File offset of the record header.
    offset: usize,
    /// Header plus payload (unaligned).
    len: usize,
    synced_through: u64,
    /// File offsets and lengths of the non-empty values in the payload.
    values: Vec<(usize, usize)>,
    /// File offsets of the operation headers in the payload.
    ops: Vec<usize>,
}

impl Rec {
    fn range(&self) -> Range<u64> {
        self.offset as u64..(self.offset + self.len) as u64
    }
}

#[derive(Clone, Debug)]
struct Seg {
    name: String,
    path: PathBuf,
    /// `None` for the active segment.
    sealed_len: Option<u64>,
    records: Vec<Rec>,
    /// End of the records (where the zero-filled rest starts).
    data_end: usize,
}

#[derive(Debug)]
struct Layout {
    manifest: PathBuf,
    segments: Vec<Seg>,
}

impl Layout {
    fn read(dir: &Path) -> Layout {
        let manifest = dir.join("MANIFEST");
        let m = std::fs::read(&manifest).unwrap();
        let count = u32_at(&m, 12) as usize;
        let mut segments = Vec::new();
        for i in 0..count {
            let at = MANIFEST_HEADER_LEN + i * MANIFEST_ENTRY_LEN;
            let id = u64_at(&m, at);
            let sealed = u64_at(&m, at + 8);
            let name = format!("seg-{id:08x}.jseg");
            let path = dir.join(&name);
            let bytes = std::fs::read(&path).unwrap();
            let limit = if sealed == ACTIVE {
                bytes.len()
            } else {
                sealed as usize
            };
            let mut records = Vec::new();
            let mut pos = SEGMENT_HEADER_LEN;
            while pos + RECORD_HEADER_LEN <= limit
                && bytes[pos..pos + RECORD_HEADER_LEN].iter().any(|&b| b != 0)
            {
                let payload_len = u32_at(&bytes, pos + 16) as usize;
                let payload_at = pos + RECORD_HEADER_LEN;
                let payload = &bytes[payload_at..payload_at + payload_len];
                let values = OpIter::new(payload)
                    .map(|op| op.expect("the fixture's records decode"))
                    .filter(|op| !op.value.is_empty())
                    .map(|op| {
                        let at = payload_at + op.offset + OP_HEADER_LEN + op.id.len();
                        (at, op.value.len())
                    })
                    .collect();
                let ops = OpIter::new(payload)
                    .map(|op| payload_at + op.unwrap().offset)
                    .collect();
                records.push(Rec {
                    offset: pos,
                    len: RECORD_HEADER_LEN + payload_len,
                    synced_through: u64::from(u32_at(&bytes, pos + 20)),
                    values,
                    ops,
                });
                pos = align8(pos + RECORD_HEADER_LEN + payload_len);
            }
            segments.push(Seg {
                name,
                path,
                sealed_len: (sealed != ACTIVE).then_some(sealed),
                records,
                data_end: pos,
            });
        }
        Layout { manifest, segments }
    }

    fn sealed(&self) -> impl Iterator<Item = &Seg> {
        self.segments.iter().filter(|s| s.sealed_len.is_some())
    }

    fn active(&self) -> &Seg {
        self.segments.last().unwrap()
    }
}

fn flip(path: &Path, offset: usize, bit: u32) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 1 << bit;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path, len: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len).unwrap();
}

// ---------------------------------------------------------------------------
// The store every corruption test starts from.

/// A closed store with at least two sealed segments and an active segment
/// holding several records, written with `SyncMode::Always` (so each record's
/// `synced_through` covers every record before it), plus what a crash during
/// a roll or a manifest swap leaves behind: an orphan segment file and a
/// `MANIFEST.tmp`. A successful open removes those two; a failed open must
/// not, which shows that clean-up waits until the store is validated.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    /// The model after each batch; `history[0]` is the empty store.
    history: Vec<Model>,
    layout: Layout,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let store = Store::open(&dir, options()).unwrap();
        let mut rng = Rng::new(7);
        let mut model = Model::default();
        let mut history = vec![model.clone()];
        let mut write = |ops: Vec<Op>| {
            store.write(&to_batch(&ops)).unwrap();
            model.apply(&ops).unwrap();
            history.push(model.clone());
        };
        let mut n = 0u64;
        // Big batches until the third segment is active...
        while store.stats().segments < 3 {
            let id = format!("j{}", n % 3).into_bytes();
            let mut value = rng.bytes(400);
            value.push(n as u8); // never empty: value flips need bytes
            let mut ops = vec![Op::Append(id.clone(), None, value)];
            match n {
                _ if n.is_multiple_of(4) => {
                    ops.push(Op::SetMetadata(id, format!("meta {n}").into()))
                }
                5 => ops.push(Op::Trim(id, 1)),
                10 => ops.push(Op::Truncate(id, 2)),
                _ => {}
            }
            write(ops);
            n += 1;
        }
        // ...then small ones that stay in it.
        for k in 0..5u8 {
            let id = format!("j{}", k % 3).into_bytes();
            write(vec![
                Op::Append(id.clone(), None, vec![k; 40]),
                Op::SetMetadata(id, vec![b'm', k]),
            ]);
        }
        store.close().unwrap();
        let orphan = std::fs::read(dir.join("seg-00000001.jseg")).unwrap();
        std::fs::write(dir.join(ORPHAN), orphan).unwrap();
        std::fs::copy(dir.join("MANIFEST"), dir.join("MANIFEST.tmp")).unwrap();
        let layout = Layout::read(&dir);
        assert!(layout.sealed().count() >= 2, "{layout:?}");
        assert!(layout.active().records.len() >= 5, "{layout:?}");
        Fixture {
            _tmp: tmp,
            dir,
            history,
            layout,
        }
    }

    fn model(&self) -> &Model {
        self.history.last().unwrap()
    }

    /// Opens the store, which must succeed, and checks its contents and
    /// that the crash leftovers are gone.
    fn open_and_check(&self, context: &str) -> Store {
        let store = Store::open(&self.dir, options())
            .unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
        self.model().assert_matches(&store.snapshot(), context);
        for name in [ORPHAN, "MANIFEST.tmp"] {
            assert!(!self.dir.join(name).exists(), "{context}: {name} kept");
        }
        store
    }
}

/// Reads everything a snapshot holds into a model, stopping at the first error.
fn read_state(snap: &Snapshot) -> Result<Model, Error> {
    let mut model = Model::default();
    for id in snap.journal_ids() {
        let j = snap.journal(id).expect("listed journal exists");
        let mut mj = ModelJournal {
            first: j.first_index(),
            entries: Vec::new(),
            metadata: j.metadata()?.map(<[u8]>::to_vec),
        };
        for item in j.entries(..) {
            mj.entries.push(item?.1.to_vec());
        }
        model.journals.insert(id.to_vec(), mj);
    }
    Ok(model)
}

// ---------------------------------------------------------------------------
// Damaged segments.

/// A sealed segment cut short anywhere (inside its header, inside its
/// records, exactly at the end of its records, one byte short of its
/// preallocated size) is Corruption naming that file, and open changes
/// nothing.
#[test]
fn truncated_sealed_segment_is_corruption() {
    let fx = Fixture::new();
    let seg = fx.layout.sealed().nth(1).unwrap();
    let original = std::fs::read(&seg.path).unwrap();
    let sealed_len = seg.sealed_len.unwrap();
    let cuts = [
        0,
        20,
        SEGMENT_HEADER_LEN as u64,
        sealed_len / 2,
        sealed_len - 1,
        sealed_len,
        SEGMENT_SIZE - 1,
    ];
    for len in cuts {
        let context = format!("{} cut to {len} bytes", seg.name);
        truncate(&seg.path, len);
        let err = open_fails_untouched(&fx.dir, &context);
        assert_corruption(&err, &seg.path, 0..SEGMENT_SIZE, &context);
        std::fs::write(&seg.path, &original).unwrap();
    }
    // The untouched store still opens with everything in it.
    fx.open_and_check("after restoring the segment");
}

/// The active segment cut inside its 64-byte header is Corruption naming it:
/// a segment is listed in the manifest only after its header was synced, so
/// this is not a torn tail.
#[test]
fn active_segment_cut_inside_its_header_is_corruption() {
    let fx = Fixture::new();
    let active = fx.layout.active();
    for len in [0, 1, 8, 63] {
        let context = format!("active {} cut to {len} bytes", active.name);
        truncate(&active.path, len);
        let err = open_fails_untouched(&fx.dir, &context);
        assert_corruption(&err, &active.path, 0..SEGMENT_HEADER_LEN as u64, &context);
    }
}

/// A flipped bit in a record of a sealed segment, in its header or its
/// payload, in the first or the last record, is Corruption naming the file
/// and an offset inside that record. (A flip in the last record must not be
/// mistaken for a torn tail: a sealed segment is complete by definition.)
#[test]
fn bit_flip_in_a_sealed_segment_record_is_corruption() {
    let fx = Fixture::new();
    let seg = fx.layout.sealed().next().unwrap();
    let original = std::fs::read(&seg.path).unwrap();
    let first = &seg.records[0];
    let last = seg.records.last().unwrap();
    for rec in [first, last] {
        // Header: its CRC, the LSN, payload_len, synced_through, kind, op_count;
        // payload: an op header, and the last payload byte.
        let spots = [0, 9, 16, 20, 24, 28, 32, 33, rec.len - 1];
        for (k, &spot) in spots.iter().enumerate() {
            let at = rec.offset + spot;
            let bit = (k % 8) as u32;
            let context = format!(
                "{} record at {}: bit {bit} of byte {at}",
                seg.name, rec.offset
            );
            flip(&seg.path, at, bit);
            let err = open_fails_untouched(&fx.dir, &context);
            assert_corruption(&err, &seg.path, rec.range(), &context);
            std::fs::write(&seg.path, &original).unwrap();
        }
    }
    fx.open_and_check("after restoring the segment");
}

/// A flipped bit in a record of the active segment that later records (each
/// written under `SyncMode::Always`) declare synced is damage to durable data,
/// not a torn tail: Corruption naming the file at that record's offset, and
/// the later, acknowledged records are not silently cut.
#[test]
fn bit_flip_in_the_active_segment_before_synced_records_is_corruption() {
    let fx = Fixture::new();
    let active = fx.layout.active();
    let original = std::fs::read(&active.path).unwrap();
    let n = active.records.len();
    for i in 0..n - 1 {
        let rec = &active.records[i];
        // The fixture's premise: the next record says this one was synced.
        assert!(
            active.records[i + 1].synced_through >= (rec.offset + rec.len) as u64,
            "{:?}",
            active.records
        );
        for spot in [4, 12, rec.len / 2, rec.len - 1] {
            let at = rec.offset + spot;
            let context = format!("active {} record {i}: byte {at}", active.name);
            flip(&active.path, at, 3);
            let err = open_fails_untouched(&fx.dir, &context);
            assert_corruption(
                &err,
                &active.path,
                rec.offset as u64..rec.offset as u64 + 1,
                &context,
            );
            std::fs::write(&active.path, &original).unwrap();
        }
    }
    fx.open_and_check("after restoring the segment");
}

/// A flipped bit inside an entry or metadata value is caught at open (the
/// record's payload CRC covers it): Corruption naming the file, with an
/// offset inside the record that holds the value. Checked in a sealed
/// segment and in the active segment ahead of synced records.
#[test]
fn bit_flip_inside_a_value_is_corruption() {
    let fx = Fixture::new();
    let sealed = fx.layout.sealed().nth(1).unwrap();
    let active = fx.layout.active();
    let n = active.records.len();
    let cases = sealed
        .records
        .iter()
        .map(|r| (sealed, r))
        .chain(active.records[..n - 1].iter().map(|r| (active, r)));
    let mut checked = 0;
    for (seg, rec) in cases {
        let original = std::fs::read(&seg.path).unwrap();
        for &(at, len) in &rec.values {
            for (spot, bit) in [(0, 0), (len / 2, 5), (len - 1, 7)] {
                let context = format!(
                    "{} record at {}: value byte {}",
                    seg.name,
                    rec.offset,
                    at + spot
                );
                flip(&seg.path, at + spot, bit);
                let err = open_fails_untouched(&fx.dir, &context);
                assert_corruption(&err, &seg.path, rec.range(), &context);
                std::fs::write(&seg.path, &original).unwrap();
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} value flips checked");
    fx.open_and_check("after restoring the segments");
}

/// A segment header with an unknown format version (and a valid CRC, as a
/// newer build would write it) is UnsupportedVersion naming that segment,
/// for a sealed and for the active segment.
#[test]
fn segment_with_unknown_version_is_unsupported() {
    let fx = Fixture::new();
    for seg in [fx.layout.sealed().next().unwrap(), fx.layout.active()] {
        let original = std::fs::read(&seg.path).unwrap();
        let mut bytes = original.clone();
        let newer = journalstore::record::FORMAT_VERSION + 1;
        bytes[8..12].copy_from_slice(&newer.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&seg.path, &bytes).unwrap();
        let context = format!("{} with version {newer}", seg.name);
        let err = open_fails_untouched(&fx.dir, &context);
        assert_unsupported(&err, &seg.path, newer, &context);
        std::fs::write(&seg.path, &original).unwrap();
    }
    fx.open_and_check("after restoring the segments");
}

/// A segment the manifest lists but that is gone from the directory is
/// Corruption naming the missing file (sealed or active).
#[test]
fn listed_segment_missing_is_corruption() {
    let fx = Fixture::new();
    for seg in [fx.layout.sealed().nth(1).unwrap(), fx.layout.active()] {
        let original = std::fs::read(&seg.path).unwrap();
        std::fs::remove_file(&seg.path).unwrap();
        let context = format!("{} deleted", seg.name);
        let err = open_fails_untouched(&fx.dir, &context);
        assert_corruption(&err, &seg.path, 0..1, &context);
        std::fs::write(&seg.path, &original).unwrap();
    }
    fx.open_and_check("after restoring the segments");
}

// ---------------------------------------------------------------------------
// Damaged manifest.

/// A manifest cut short at any length is Corruption naming MANIFEST (never
/// "no manifest, create a new store"), and open changes nothing.
#[test]
fn truncated_manifest_is_corruption() {
    let fx = Fixture::new();
    let original = std::fs::read(&fx.layout.manifest).unwrap();
    for len in 0..original.len() {
        let context = format!("MANIFEST cut to {len} bytes");
        truncate(&fx.layout.manifest, len as u64);
        let err = open_fails_untouched(&fx.dir, &context);
        assert_corruption(
            &err,
            &fx.layout.manifest,
            0..original.len() as u64,
            &context,
        );
        std::fs::write(&fx.layout.manifest, &original).unwrap();
    }
    fx.open_and_check("after restoring the manifest");
}

/// Every single-bit flip anywhere in the manifest is Corruption naming
/// MANIFEST (the CRC covers the version field too, so a flipped version is
/// damage, not a newer format).
#[test]
fn bit_flipped_manifest_is_corruption() {
    let fx = Fixture::new();
    let path = &fx.layout.manifest;
    let original = std::fs::read(path).unwrap();
    for at in 0..original.len() {
        for bit in 0..8 {
            let context = format!("MANIFEST bit {bit} of byte {at}");
            flip(path, at, bit);
            let err = open_fails_untouched(&fx.dir, &context);
            assert_corruption(&err, path, 0..original.len() as u64, &context);
            std::fs::write(path, &original).unwrap();
        }
    }
    fx.open_and_check("after restoring the manifest");
}

/// A deleted manifest while segment files hold records is Corruption naming
/// MANIFEST: open must not take the directory for a new store and remove the
/// segments as leftovers.
#[test]
fn deleted_manifest_with_data_is_corruption() {
    let fx = Fixture::new();
    std::fs::remove_file(&fx.layout.manifest).unwrap();
    let err = open_fails_untouched(&fx.dir, "MANIFEST deleted");
    assert_corruption(&err, &fx.layout.manifest, 0..1, "MANIFEST deleted");
    for seg in &fx.layout.segments {
        assert!(seg.path.exists(), "{} was removed", seg.name);
    }
}

/// A manifest with an unknown format version is UnsupportedVersion naming
/// MANIFEST, both with this build's layout and a valid CRC, and with a
/// length that does not fit this build's layout (a future format).
#[test]
fn manifest_with_unknown_version_is_unsupported() {
    let fx = Fixture::new();
    let path = &fx.layout.manifest;
    let original = std::fs::read(path).unwrap();
    let body = original.len() - 4;

    let mut same_layout = original[..body].to_vec();
    same_layout[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&same_layout);
    same_layout.extend_from_slice(&crc.to_le_bytes());

    let mut longer = original[..body].to_vec();
    longer[8..12].copy_from_slice(&2u32.to_le_bytes());
    longer.extend_from_slice(&[0xAB; 24]);
    let crc = crc32fast::hash(&longer);
    longer.extend_from_slice(&crc.to_le_bytes());

    for (what, bytes) in [("same layout", same_layout), ("longer layout", longer)] {
        let context = format!("MANIFEST version 2, {what}");
        std::fs::write(path, &bytes).unwrap();
        let err = open_fails_untouched(&fx.dir, &context);
        assert_unsupported(&err, path, 2, &context);
    }
    std::fs::write(path, &original).unwrap();
    fx.open_and_check("after restoring the manifest");
}

// ---------------------------------------------------------------------------
// Foreign files.

/// Files that are not the store's (`notes.txt`, `seg-foo.jseg`, names close
/// to a segment's, a subdirectory with a file in it) are ignored and left
/// byte-for-byte alone by a successful open, writes and close; files named
/// exactly like a segment but not listed in the manifest (what a crash
/// during a roll or a free leaves) are removed by the open.
#[test]
fn junk_is_left_alone_and_orphan_segments_are_removed() {
    let fx = Fixture::new();
    let junk: [(&str, &[u8]); 6] = [
        ("notes.txt", b"hands off"),
        ("seg-foo.jseg", b"not a segment"),
        ("seg-0000001.jseg", b"seven hex digits"),
        ("seg-00000001.jseg.bak", b"a backup"),
        ("MANIFEST.old", b"an old manifest"),
        ("seg-000000001.jseg", b"nine hex digits"),
    ];
    for (name, bytes) in junk {
        std::fs::write(fx.dir.join(name), bytes).unwrap();
    }
    std::fs::create_dir(fx.dir.join("attic")).unwrap();
    std::fs::write(fx.dir.join("attic/seg-00000001.jseg"), b"kept").unwrap();
    // Orphans: a full copy of a segment and an empty file, under unlisted ids.
    let copy = std::fs::read(&fx.layout.segments[0].path).unwrap();
    std::fs::write(fx.dir.join("seg-000000f0.jseg"), copy).unwrap();
    std::fs::write(fx.dir.join("seg-000000f1.jseg"), b"").unwrap();

    let before = read_tree(&fx.dir);
    let store = fx.open_and_check("open with junk and orphans");
    let mut batch = journalstore::WriteBatch::new();
    batch.append(b"j0", b"one more");
    store.write(&batch).unwrap();
    store.close().unwrap();
    let after = read_tree(&fx.dir);

    for (name, bytes) in junk {
        assert!(
            after.get(name) == Some(&Node::File(bytes.to_vec())),
            "{name} was changed or removed"
        );
    }
    assert!(
        after.get("attic") == before.get("attic"),
        "attic/ was changed"
    );
    assert!(!after.contains_key("seg-000000f0.jseg"), "orphan copy kept");
    assert!(
        !after.contains_key("seg-000000f1.jseg"),
        "empty orphan kept"
    );
    for seg in &fx.layout.segments {
        assert!(
            after.contains_key(&seg.name),
            "listed {} was removed",
            seg.name
        );
    }
}

/// Names that parse as a segment id but are not the name the engine gives
/// that segment (upper-case hex, a sign) are junk like any other file: open
/// succeeds and leaves them alone. (It must not remove the *canonical* file
/// of that id, nor fail trying to.)
#[test]
fn non_canonical_segment_names_are_junk() {
    let fx = Fixture::new();
    let listed = &fx.layout.segments[0];
    let id = u32::from_str_radix(&listed.name[4..12], 16).unwrap();
    let names = [
        "seg-000000AB.jseg".to_string(),
        "seg-+00000ac.jseg".to_string(),
        // A second spelling of a listed segment's id.
        format!("seg-+{:07x}.jseg", id),
    ];
    for name in &names {
        std::fs::write(fx.dir.join(name), b"junk").unwrap();
    }
    let store = fx.open_and_check("open with non-canonical segment names");
    store.close().unwrap();
    for name in &names {
        assert_eq!(
            std::fs::read(fx.dir.join(name)).ok().as_deref(),
            Some(&b"junk"[..]),
            "{name} was changed or removed"
        );
    }
    fx.open_and_check("reopen");
}

// ---------------------------------------------------------------------------
// Locking.

/// A second open of a directory that is open in this process fails with
/// Locked naming the LOCK file and changes nothing; after the first store is
/// dropped (or closed, even with a snapshot of it still alive) it opens.
#[test]
fn second_open_in_process_is_locked() {
    let fx = Fixture::new();
    let lock = fx.dir.join("LOCK");
    let first = fx.open_and_check("first open");
    let err = open_fails_untouched(&fx.dir, "second open while the first is open");
    assert!(
        matches!(&err, Error::Locked { path } if *path == lock),
        "expected Locked({lock:?}), got {err:?}"
    );
    drop(first);

    let second = fx.open_and_check("open after drop");
    let snap = second.snapshot();
    second.close().unwrap();
    let third = fx.open_and_check("open after close, with a snapshot alive");
    fx.model()
        .assert_matches(&snap, "snapshot of the closed store");
    let err = open_fails_untouched(&fx.dir, "open while the third is open");
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    drop(third);
}

const CHILD_DIR_VAR: &str = "JOURNALSTORE_TEST_LOCK_CHILD_DIR";
const CHILD_READY: &str = "journalstore-child-ready";

/// Helper for `open_in_another_process_is_locked`, run by it in a child
/// process: opens the store named by the environment, says so on stdout,
/// and holds it until stdin closes. Does nothing when run on its own.
#[test]
#[ignore = "run as a child process by open_in_another_process_is_locked"]
fn child_holds_lock() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let store = Store::open(&dir, options()).expect("child opens the store");
    println!("{CHILD_READY}");
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest).unwrap();
    store.close().unwrap();
}

/// Kills the child if the test fails before it exits.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// While another process holds the store open, open fails with Locked and
/// changes nothing; once that process exits, open succeeds.
#[test]
fn open_in_another_process_is_locked() {
    let fx = Fixture::new();
    let exe = std::env::current_exe().unwrap();
    let child = Command::new(exe)
        .args(["--exact", "child_holds_lock", "--ignored", "--nocapture"])
        .env(CHILD_DIR_VAR, &fx.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(line) => {
                let line = line.unwrap();
                if line.contains(CHILD_READY) {
                    break;
                }
                seen.push(line);
            }
            None => panic!("child exited without opening the store; output: {seen:?}"),
        }
    }

    let err = open_fails_untouched(&fx.dir, "open while another process holds it");
    assert!(
        matches!(&err, Error::Locked { path } if *path == fx.dir.join("LOCK")),
        "expected Locked, got {err:?}"
    );

    drop(child.0.stdin.take()); // the child closes its store and exits
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "child failed: {status}; output: {rest:?}");
    fx.open_and_check("open after the child exited");
}

// ---------------------------------------------------------------------------
// Batches and options outside the limits.

/// A live store and the model of what it holds.
struct Harness {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    options: Options,
    store: Store,
    model: Model,
}

impl Harness {
    fn new(options: Options) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let store = Store::open(&dir, options.clone()).unwrap();
        let mut h = Harness {
            _tmp: tmp,
            dir,
            options,
            store,
            model: Model::default(),
        };
        h.ok(&[
            Op::Append(b"a".to_vec(), None, b"a0".to_vec()),
            Op::Append(b"a".to_vec(), None, b"a1".to_vec()),
            Op::Append(b"a".to_vec(), None, b"a2".to_vec()),
            Op::SetMetadata(b"a".to_vec(), b"meta a".to_vec()),
            Op::Append(b"b".to_vec(), None, b"b0".to_vec()),
        ]);
        h
    }

    fn ok(&mut self, ops: &[Op]) -> u64 {
        let lsn = self
            .store
            .write(&to_batch(ops))
            .unwrap_or_else(|e| panic!("{ops:?}: {e}"));
        self.model.apply(ops).unwrap();
        self.model
            .assert_matches(&self.store.snapshot(), "after a valid batch");
        lsn
    }

    /// Writes `ops`, which must be rejected as a whole with an error `check`
    /// accepts; then checks that nothing changed (state, LSN, bytes written,
    /// generation) and that the store goes on accepting writes.
    fn rejected(&mut self, ops: &[Op], check: impl FnOnce(&Error) -> bool) {
        let context = format!("{:?}", ops.iter().map(short).collect::<Vec<_>>());
        let before = self.store.stats();
        let err = match self.store.write(&to_batch(ops)) {
            Ok(lsn) => panic!("{context}: accepted at LSN {lsn}"),
            Err(e) => e,
        };
        assert!(check(&err), "{context}: wrong error {err:?}");
        let after = self.store.stats();
        assert_eq!(after.lsn, before.lsn, "{context}: LSN moved");
        assert_eq!(
            after.bytes_written, before.bytes_written,
            "{context}: bytes written"
        );
        assert_eq!(after.generation, before.generation, "{context}: generation");
        let snap = self.store.snapshot();
        assert_eq!(snap.lsn(), before.lsn, "{context}: snapshot LSN");
        self.model
            .assert_matches(&snap, &format!("{context}: after rejection"));
        // Still working: the next valid batch gets the next LSN.
        let lsn = self.ok(&[Op::Append(b"after".to_vec(), None, context.into_bytes())]);
        assert_eq!(
            lsn,
            before.lsn + 1,
            "an LSN was used up by the rejected batch"
        );
    }

    /// Reopens and checks that nothing of the rejected batches reached disk.
    fn reopen_and_check(self) {
        let Harness {
            _tmp,
            dir,
            options,
            store,
            model,
        } = self;
        store.close().unwrap();
        let store = Store::open(&dir, options).unwrap();
        model.assert_matches(&store.snapshot(), "after reopen");
    }
}

/// An op with its value shortened, for messages.
fn short(op: &Op) -> String {
    let s = format!("{op:?}");
    s.chars().take(80).collect()
}

fn small_options() -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: 64 << 10,
        max_entry_size: 1000,
        max_metadata_size: 100,
        // Full replay at every open, as in `options()`.
        index_checkpoint_bytes: None,
        ..Options::default()
    }
}

/// Journal ids must be 1 to 255 bytes: an empty id and a 256-byte id (in
/// any op kind) reject the whole batch with InvalidJournalId; 255 is fine.
#[test]
fn invalid_journal_ids_reject_the_batch() {
    let mut h = Harness::new(small_options());
    let valid = Op::Append(b"a".to_vec(), None, b"applied?".to_vec());
    let long = vec![b'x'; 256];
    let bad = [
        Op::Append(Vec::new(), None, b"v".to_vec()),
        Op::SetMetadata(Vec::new(), b"m".to_vec()),
        Op::Delete(Vec::new()),
        Op::Append(long.clone(), None, b"v".to_vec()),
        Op::Trim(long.clone(), 0),
        Op::Truncate(long, 0),
    ];
    for op in bad {
        let want = match &op {
            Op::Append(id, ..) | Op::SetMetadata(id, _) | Op::Trim(id, _) => id.len(),
            Op::Truncate(id, _) | Op::Delete(id) | Op::ClearMetadata(id) => id.len(),
        };
        h.rejected(
            &[valid.clone(), op],
            |e| matches!(e, Error::InvalidJournalId { len } if *len == want),
        );
    }
    h.ok(&[Op::Append(vec![b'y'; 255], None, b"max id".to_vec())]);
    h.reopen_and_check();
}

/// An entry over max_entry_size or metadata over max_metadata_size rejects
/// the whole batch with ValueTooLarge naming the journal, the kind, the size
/// and the limit; values exactly at the limits are accepted.
#[test]
fn values_over_the_limits_reject_the_batch() {
    let mut h = Harness::new(small_options());
    let valid = [
        Op::Append(b"a".to_vec(), None, b"applied?".to_vec()),
        Op::SetMetadata(b"b".to_vec(), b"applied?".to_vec()),
    ];
    let cases = [
        (
            Op::Append(b"big".to_vec(), None, vec![1; 1001]),
            "entry",
            1001,
            1000,
        ),
        (
            Op::Append(b"big".to_vec(), Some(0), vec![1; 1001]),
            "entry",
            1001,
            1000,
        ),
        (
            Op::SetMetadata(b"big".to_vec(), vec![2; 101]),
            "metadata",
            101,
            100,
        ),
    ];
    for (op, what_want, len_want, max_want) in cases {
        let mut ops = valid.to_vec();
        ops.push(op);
        h.rejected(&ops, |e| {
            matches!(e, Error::ValueTooLarge { journal, what, len, max }
                if journal == b"big" && *what == what_want && *len == len_want && *max == max_want)
        });
    }
    h.ok(&[
        Op::Append(b"big".to_vec(), None, vec![1; 1000]),
        Op::SetMetadata(b"big".to_vec(), vec![2; 100]),
    ]);
    h.reopen_and_check();
}

/// A batch whose record does not fit in one segment (one huge entry, or many
/// entries that only together exceed it) is rejected with BatchTooLarge and
/// no segment roll; a record of exactly a segment's capacity is accepted.
#[test]
fn batch_larger_than_a_segment_is_rejected() {
    let segment_size = 64u64 << 10;
    let options = Options {
        max_entry_size: 1 << 20, // above the segment size on purpose
        ..small_options()
    };
    let mut h = Harness::new(options);
    let max = segment_size - SEGMENT_HEADER_LEN as u64;
    let valid = Op::Append(b"a".to_vec(), None, b"applied?".to_vec());
    let check =
        |e: &Error| matches!(e, Error::BatchTooLarge { len, max: m } if *len > max && *m == max);
    h.rejected(
        &[
            valid.clone(),
            Op::Append(b"x".to_vec(), None, vec![3; 70_000]),
        ],
        check,
    );
    let many: Vec<Op> = std::iter::once(valid.clone())
        .chain((0..3).map(|_| Op::Append(b"x".to_vec(), None, vec![4; 30_000])))
        .collect();
    h.rejected(&many, check);
    // One byte more than fits: header 32 + op header 32 + id 1 + value.
    let fits = max as usize - RECORD_HEADER_LEN - OP_HEADER_LEN - 1;
    h.rejected(&[Op::Append(b"x".to_vec(), None, vec![5; fits + 1])], check);
    let segments = h.store.stats().segments;
    h.ok(&[Op::Append(b"x".to_vec(), None, vec![6; fits])]);
    assert!(
        h.store.stats().segments > segments,
        "the full record rolled"
    );
    h.reopen_and_check();
}

/// append_at with an index other than the journal's end at that point of
/// the batch (counting the batch's own earlier appends) rejects the whole
/// batch with UnexpectedIndex giving both indexes.
#[test]
fn append_at_the_wrong_index_rejects_the_batch() {
    let mut h = Harness::new(small_options());
    let a = || b"a".to_vec();
    // "a" holds 0..3.
    h.rejected(
        &[
            Op::Append(a(), None, b"3".to_vec()),
            Op::Append(a(), Some(4), b"4".to_vec()),
            Op::Append(a(), Some(4), b"4 again".to_vec()),
        ],
        |e| matches!(e, Error::UnexpectedIndex { journal, expected: 4, actual: 5 } if journal == b"a"),
    );
    h.rejected(
        &[
            Op::Append(a(), None, b"3".to_vec()),
            Op::Append(b"new".to_vec(), Some(1), b"1".to_vec()),
        ],
        |e| {
            matches!(
                e,
                Error::UnexpectedIndex {
                    expected: 1,
                    actual: 0,
                    ..
                }
            )
        },
    );
    h.rejected(
        &[Op::Delete(a()), Op::Append(a(), Some(3), b"3".to_vec())],
        |e| {
            matches!(
                e,
                Error::UnexpectedIndex {
                    expected: 3,
                    actual: 0,
                    ..
                }
            )
        },
    );
    h.ok(&[Op::Append(a(), Some(3), b"3".to_vec())]);
    h.reopen_and_check();
}

/// Indexes beyond the format's limit (`MAX_INDEX`) reject the whole batch
/// with InvalidRange: a trim or truncate past it, and an append at it (a
/// journal moved there by a trim). Any index up to it is valid for both
/// (`tests/journal_bounds.rs` covers the rule at every boundary).
#[test]
fn indexes_past_the_format_limit_reject_the_batch() {
    use journalstore::record::MAX_INDEX;
    let mut h = Harness::new(small_options());
    let a = || b"a".to_vec();
    for op in [Op::Trim(a(), MAX_INDEX + 1), Op::Truncate(a(), u64::MAX)] {
        let (name, index) = match op {
            Op::Trim(_, i) => ("trim_prefix", i),
            Op::Truncate(_, i) => ("truncate", i),
            _ => unreachable!(),
        };
        h.rejected(&[Op::Append(a(), None, b"x".to_vec()), op], |e| {
            matches!(e, Error::InvalidRange { journal, op, index: i, .. }
                if journal == b"a" && *op == name && *i == index)
        });
    }
    h.ok(&[Op::Trim(a(), MAX_INDEX)]);
    h.rejected(&[Op::Append(a(), None, b"x".to_vec())], |e| {
        matches!(e, Error::InvalidRange { op: "append", index, first, end, .. }
            if *index == MAX_INDEX && *first == MAX_INDEX && *end == MAX_INDEX)
    });
    h.ok(&[
        Op::Truncate(a(), MAX_INDEX - 1),
        Op::Append(a(), None, b"last".to_vec()),
    ]);
    h.reopen_and_check();
}

/// Options that cannot work (segment_size 0 or above 4 GiB - 1, a zero sync
/// interval, a space amplification target below 1, a write stall below the
/// target) fail with InvalidOptions before anything is created, and leave
/// an existing store untouched.
#[test]
fn invalid_options_are_rejected() {
    let fx = Fixture::new();
    let bad = [
        Options {
            segment_size: 0,
            ..options()
        },
        Options {
            segment_size: 1 << 32,
            ..options()
        },
        Options {
            sync: SyncMode::Interval(std::time::Duration::ZERO),
            ..options()
        },
        Options {
            max_space_amplification: 0.5,
            ..options()
        },
        Options {
            max_space_amplification: 1.25,
            stall_space_amplification: Some(1.1),
            ..options()
        },
    ];
    for o in bad {
        let context = format!(
            "{:?} / {:?} / {:?} / {:?}",
            o.segment_size, o.sync, o.max_space_amplification, o.stall_space_amplification
        );
        let fresh = fx.dir.with_file_name("fresh");
        let err = Store::open(&fresh, o.clone()).map(drop).unwrap_err();
        assert!(
            matches!(err, Error::InvalidOptions(_)),
            "{context}: {err:?}"
        );
        assert!(!fresh.exists(), "{context}: created a directory");

        let before = read_tree(&fx.dir);
        let err = Store::open(&fx.dir, o).map(drop).unwrap_err();
        assert!(
            matches!(err, Error::InvalidOptions(_)),
            "{context}: {err:?}"
        );
        assert_same_tree(&before, &read_tree(&fx.dir), &context);
    }
    fx.open_and_check("with valid options");
}

// ---------------------------------------------------------------------------
// Random damage.

/// Random single-bit flips, truncations and deletions of the manifest and
/// segment files never make open or reads panic: open either fails with
/// Corruption or UnsupportedVersion and leaves the directory unchanged, or
/// succeeds, every value reads back and a reopen shows the same state. As
/// every batch was synced, a successful open shows all of them, except that
/// damage to the very last record of the active segment is a torn tail (the
/// one case recovery cannot tell apart) and drops just that batch.
#[test]
fn random_damage_gives_typed_errors_or_all_synced_batches() {
    let fx = Fixture::new();
    let base = read_tree(&fx.dir);
    // Targets with the end of their meaningful bytes (flips favour them).
    let mut targets: Vec<(PathBuf, usize)> = vec![(
        fx.layout.manifest.clone(),
        std::fs::metadata(&fx.layout.manifest).unwrap().len() as usize,
    )];
    for seg in &fx.layout.segments {
        targets.push((seg.path.clone(), seg.data_end));
    }
    let active = fx.layout.active();
    let last = active.records.last().unwrap();
    let last_record = last.offset..last.offset + last.len;
    let before_last = &fx.history[fx.history.len() - 2];
    let mut rng = Rng::new(2024);
    let (mut failed, mut opened) = (0, 0);
    for step in 0..2000 {
        restore_tree(&fx.dir, &base);
        let (path, data_end) = &targets[rng.below(targets.len() as u64) as usize];
        let mut torn_tail = false;
        let size = std::fs::metadata(path).unwrap().len();
        let name = path.file_name().unwrap().to_string_lossy();
        let what = match rng.below(10) {
            0..=6 => {
                let span = if rng.chance(80) {
                    *data_end as u64
                } else {
                    size
                };
                let at = rng.below(span) as usize;
                let bit = rng.below(8) as u32;
                flip(path, at, bit);
                torn_tail = *path == active.path && last_record.contains(&at);
                format!("flip bit {bit} of byte {at} of {name}")
            }
            7..=8 => {
                let len = rng.below(size);
                truncate(path, len);
                format!("truncate {name} to {len}")
            }
            _ => {
                std::fs::remove_file(path).unwrap();
                format!("delete {name}")
            }
        };
        let context = format!("step {step}: {what}");
        let before = read_tree(&fx.dir);
        match Store::open(&fx.dir, options()) {
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        Error::Corruption { .. } | Error::UnsupportedVersion { .. }
                    ),
                    "{context}: {e:?}"
                );
                assert_same_tree(&before, &read_tree(&fx.dir), &context);
                failed += 1;
            }
            Ok(store) => {
                let state = read_state(&store.snapshot())
                    .unwrap_or_else(|e| panic!("{context}: read after open: {e}"));
                assert!(
                    state == *fx.model() || (torn_tail && state == *before_last),
                    "{context}: opened without some synced batches"
                );
                store.close().unwrap();
                let store = Store::open(&fx.dir, options())
                    .unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
                let again = read_state(&store.snapshot()).unwrap();
                assert!(again == state, "{context}: reopen shows another state");
                opened += 1;
            }
        }
    }
    assert!(
        failed > 1000 && opened > 50,
        "failed {failed}, opened {opened}"
    );
}

/// Recomputes the payload and header CRCs of the record at `offset`, as a
/// buggy or foreign writer would leave them: the damage then passes every
/// checksum and only the decoders' own checks stand in its way.
fn reseal(bytes: &mut [u8], offset: usize) {
    let payload_len = u32_at(bytes, offset + 16) as usize;
    let payload = offset + RECORD_HEADER_LEN;
    let crc = crc32fast::hash(&bytes[payload..payload + payload_len]);
    bytes[offset + 4..offset + 8].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32fast::hash(&bytes[offset + 4..offset + RECORD_HEADER_LEN]);
    bytes[offset..offset + 4].copy_from_slice(&crc.to_le_bytes());
}

/// One journal as read through a snapshot: id, bounds, and the metadata then
/// every entry (`None` where the read failed).
type JournalOutcome = (Vec<u8>, u64, u64, Vec<Option<Vec<u8>>>);

/// Reads everything through `snap`; a failed read must be Corruption.
fn read_all_typed(snap: &Snapshot, context: &str) -> Vec<JournalOutcome> {
    let typed = |r: Result<&[u8], Error>| match r {
        Ok(bytes) => Some(bytes.to_vec()),
        Err(e) => {
            assert!(e.is_corruption(), "{context}: read failed with {e:?}");
            None
        }
    };
    snap.journal_ids()
        .map(|id| {
            let j = snap.journal(id).unwrap();
            let mut values = vec![typed(j.metadata().map(Option::unwrap_or_default))];
            values.extend(j.entries(..).map(|r| typed(r.map(|(_, bytes)| bytes))));
            (id.to_vec(), j.first_index(), j.end_index(), values)
        })
        .collect()
}

/// Random changes to operation headers and record header fields, with the
/// CRCs recomputed so that they pass, never make open, reads or later writes
/// panic: open fails with Corruption and changes nothing, or it succeeds,
/// every read is Ok or Corruption, writes to every journal go through, and a
/// reopen shows the same state.
#[test]
fn checksum_valid_garbage_in_records_never_panics() {
    let fx = Fixture::new();
    let base = read_tree(&fx.dir);
    let records: Vec<(&Seg, &Rec)> = fx
        .layout
        .segments
        .iter()
        .flat_map(|s| s.records.iter().map(move |r| (s, r)))
        .filter(|(_, r)| !r.ops.is_empty())
        .collect();
    let mut rng = Rng::new(77);
    let (mut failed, mut opened) = (0, 0);
    for step in 0..800 {
        restore_tree(&fx.dir, &base);
        let (seg, rec) = records[rng.below(records.len() as u64) as usize];
        let mut bytes = std::fs::read(&seg.path).unwrap();
        let mut what = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let at = if rng.chance(70) {
                // An op header field: kind, id_len, value_len, first, end.
                let op = rec.ops[rng.below(rec.ops.len() as u64) as usize];
                let field = [0, 1, 4, 5, 16, 17, 23, 24, 25, 31];
                op + field[rng.below(field.len() as u64) as usize]
            } else if rng.chance(70) {
                rec.offset + RECORD_HEADER_LEN + rng.below((rec.len - 32) as u64) as usize
            } else {
                // Record header: lsn, synced_through, kind, flags, op_count.
                rec.offset + 8 + rng.below(24) as usize
            };
            if (rec.offset + 16..rec.offset + 20).contains(&at) {
                continue; // payload_len: keep the CRC computable
            }
            bytes[at] = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                2 => rng.next_u64() as u8,
                _ => bytes[at] ^ (1 << rng.below(8)),
            };
            what.push(format!("[{at}]={:#x}", bytes[at]));
        }
        reseal(&mut bytes, rec.offset);
        std::fs::write(&seg.path, &bytes).unwrap();
        let context = format!("step {step}: {} record {}: {what:?}", seg.name, rec.offset);

        let before = read_tree(&fx.dir);
        let store = match Store::open(&fx.dir, options()) {
            Err(e) => {
                assert!(e.is_corruption(), "{context}: {e:?}");
                assert_same_tree(&before, &read_tree(&fx.dir), &context);
                failed += 1;
                continue;
            }
            Ok(store) => store,
        };
        opened += 1;
        let snap = store.snapshot();
        read_all_typed(&snap, &context);
        for id in snap.journal_ids() {
            let mut batch = journalstore::WriteBatch::new();
            batch.append(id, b"after").set_metadata(id, b"after");
            if let Err(e) = store.write(&batch) {
                panic!("{context}: write to {id:?} failed: {e}");
            }
        }
        drop(snap);
        let written = read_all_typed(&store.snapshot(), &context);
        store.close().unwrap();
        let store = Store::open(&fx.dir, options())
            .unwrap_or_else(|e| panic!("{context}: reopen after writes: {e}"));
        let again = read_all_typed(&store.snapshot(), &context);
        assert!(again == written, "{context}: reopen shows another state");
    }
    assert!(
        failed > 300 && opened > 60,
        "failed {failed}, opened {opened}"
    );
}

/// Journal bounds at the very top of the index space in a checksum-valid
/// record (a trim to `u64::MAX`; no real store gets there) must not lead to
/// a panic: open either rejects them as Corruption without changing
/// anything, or it recovers and a later append to that journal fails with
/// an error instead of overflowing `end_index`.
#[test]
fn journal_bounds_at_the_index_limit_do_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).unwrap();
    let mut batch = journalstore::WriteBatch::new();
    batch
        .append(b"j", b"0")
        .append(b"j", b"1")
        .append(b"j", b"2");
    store.write(&batch).unwrap();
    let mut batch = journalstore::WriteBatch::new();
    batch.trim_prefix(b"j", 2);
    store.write(&batch).unwrap();
    store.close().unwrap();

    let layout = Layout::read(&dir);
    let seg = layout.active();
    let rec = &seg.records[1];
    let op = rec.ops[0];
    let mut bytes = std::fs::read(&seg.path).unwrap();
    assert_eq!(bytes[op], 3, "the second record is the trim");
    bytes[op + 16..op + 24].copy_from_slice(&u64::MAX.to_le_bytes());
    bytes[op + 24..op + 32].copy_from_slice(&u64::MAX.to_le_bytes());
    reseal(&mut bytes, rec.offset);
    std::fs::write(&seg.path, &bytes).unwrap();

    let before = read_tree(&dir);
    let store = match Store::open(&dir, options()) {
        Err(e) => {
            assert!(e.is_corruption(), "{e:?}");
            assert_same_tree(&before, &read_tree(&dir), "rejected at open");
            return;
        }
        Ok(store) => store,
    };
    let mut batch = journalstore::WriteBatch::new();
    batch.append(b"j", b"past the end of the index space");
    let result = store.write(&batch);
    assert!(result.is_err(), "append past u64::MAX accepted: {result:?}");
    store.close().unwrap();
    Store::open(&dir, options()).expect("the store still opens");
}
