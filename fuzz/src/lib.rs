//! The logic of journalstore's fuzz targets, shared by the `cargo fuzz`
//! binaries in `fuzz_targets/` and by the stable replay test in
//! `tests/replay.rs`.
//!
//! Each public function takes the raw fuzz input and panics only on a real
//! finding: a panic inside the engine, or a broken promise of the engine's
//! documentation. Inputs it cannot use are ignored, never reported.
//!
//! | target | attacks |
//! |---|---|
//! | [`segment_decode`] | segment and record decoding (`inspect` scans), and recovery of a store whose active segment is the input |
//! | [`manifest_decode`] | manifest decoding, and recovery of a real store whose `MANIFEST` is the input |
//! | [`ops_model`] | the whole engine: batches, snapshots, sync, reopen, against the in-memory model |
//! | [`crash_recovery`] | power loss at any I/O operation with any tearing (`SimFs`), then recovery |
//! | [`corrupt_open`] | byte flips, truncations, copies and deletions in a valid store's files, then recovery |
//!
//! Every store is opened through a [`SimFs`]: it performs all operations on
//! the real files and mappings but issues no real `fsync`, which would only
//! make runs slow. Scratch stores live in `/dev/shm` when it exists.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arbitrary::Unstructured;
use journalstore::inspect::{self, ScanItem, SegmentFile};
use journalstore::io::{CrashMode, SimFs};
use journalstore::record::FORMAT_VERSION;
use journalstore::{Error, Options, Snapshot, Store, SyncMode};

pub mod budget;

#[path = "../../tests/common/mod.rs"]
mod common;

use common::{counter, to_batch, Model, ModelJournal, Op, COUNTER};

/// Segment size of every store the targets create: just above the minimum
/// that `Options::validate` accepts (64 + 32 + 4096 = 4192), so a few
/// batches fill a segment and rolls, seals and frees happen all the time.
pub const SEGMENT_SIZE: u64 = 4608;
/// `Options::max_entry_size` of the targets' stores (small, so the fuzzer
/// can reach `ValueTooLarge`).
const MAX_ENTRY: u64 = 1024;
/// `Options::max_metadata_size` of the targets' stores.
const MAX_METADATA: u64 = 256;
/// Inputs longer than this are ignored, which bounds the work per input.
const MAX_INPUT: usize = 1 << 16;
/// Size of a segment header and a record header (format-spec sections 3, 4).
const SEGMENT_HEADER_LEN: usize = 64;
const RECORD_HEADER_LEN: usize = 32;
const OP_HEADER_LEN: usize = 32;

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// Whether `FUZZ_TRACE` is set: the targets then print what they do, to
/// explain a finding (`FUZZ_TRACE=1 cargo fuzz run ... artifact`).
fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// A fresh scratch directory, in memory when the machine has `/dev/shm`.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("journalstore-fuzz")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::Builder::new()
        .prefix("journalstore-fuzz")
        .tempdir()
        .expect("create a scratch directory")
}

fn options(sim: &SimFs, sync: SyncMode) -> Options {
    Options {
        sync,
        segment_size: SEGMENT_SIZE,
        max_entry_size: MAX_ENTRY,
        max_metadata_size: MAX_METADATA,
        fs: Arc::new(sim.clone()),
        // A background thread would make runs nondeterministic (libFuzzer
        // needs an input to do the same thing every time); compaction is
        // to be driven explicitly from the inputs (see the hook in
        // `ops_model`).
        background_compaction: false,
        // No status file either: it holds a pid and a time (templates and
        // seeds would differ from run to run) and is no part of the format.
        status_interval: None,
        ..Options::default()
    }
}

fn align8(x: usize) -> usize {
    (x + 7) & !7
}

fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// What a failed read reported, coarse enough to compare across reopens
/// (paths and offsets may legitimately differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrClass {
    Corruption,
    Io,
    Other,
}

fn class(e: &Error) -> ErrClass {
    match e {
        Error::Corruption { .. } => ErrClass::Corruption,
        Error::Io { .. } => ErrClass::Io,
        _ => ErrClass::Other,
    }
}

/// One journal as read through a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReadJournal {
    first: u64,
    end: u64,
    metadata: Result<Vec<u8>, ErrClass>,
    entries: Vec<Result<Vec<u8>, ErrClass>>,
}

/// Everything a snapshot shows, every value read (and so checksum-verified).
type ReadState = BTreeMap<Vec<u8>, ReadJournal>;

/// Reads every journal, its metadata and every entry of `snap`, checking
/// that the read API agrees with itself: ids listed in order and counted
/// right, bounds consistent with the entries, iteration and point reads
/// returning the same thing, nothing outside the bounds. Failed reads are
/// recorded, not reported; the caller decides whether they may happen.
fn read_state(snap: &Snapshot, ctx: &str) -> ReadState {
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
        let metadata = j.metadata().map(<[u8]>::to_vec).map_err(|e| class(&e));
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
fn to_model(state: &ReadState) -> Option<Model> {
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

/// The files of a store directory (name -> bytes), without `LOCK`, which
/// every open creates.
fn dir_image(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("list scratch directory") {
        let entry = entry.expect("list scratch directory");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "LOCK" || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).expect("read scratch file");
        out.insert(name, bytes);
    }
    out
}

fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("write scratch file");
    }
}

/// A manifest as format-spec section 6 describes it: `segments` are
/// `(id, sealed_len)` with `u64::MAX` for the active one.
fn encode_manifest(
    generation: u64,
    next_segment_id: u64,
    lsn_floor: u64,
    segments: &[(u64, u64)],
) -> Vec<u8> {
    let mut out = b"JSTRMAN\0".to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&next_segment_id.to_le_bytes());
    out.extend_from_slice(&lsn_floor.to_le_bytes());
    for &(id, sealed) in segments {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&sealed.to_le_bytes());
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A segment header as format-spec section 3.1 describes it.
fn segment_header(id: u64, capacity: u64, base_lsn: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(b"JSTRSEG\0");
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h[24..32].copy_from_slice(&capacity.to_le_bytes());
    h[32..40].copy_from_slice(&base_lsn.to_le_bytes());
    let crc = crc32(&h[..60]);
    h[60..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Recomputes the checksums of the chain of records from offset 64 (and, if
/// `values`, of every op value), so that the fuzzer's changes to lengths,
/// LSNs, kinds and bounds reach the decoding and replay logic behind the
/// checks instead of all dying at a checksum. Stops at an all-zero header
/// or a payload that runs past the end.
fn fix_record_checksums(seg: &mut [u8], values: bool) {
    let mut pos = SEGMENT_HEADER_LEN;
    while pos + RECORD_HEADER_LEN <= seg.len() {
        if seg[pos..pos + RECORD_HEADER_LEN].iter().all(|&b| b == 0) {
            break;
        }
        let payload_len = u32_at(seg, pos + 16) as usize;
        let start = pos + RECORD_HEADER_LEN;
        let Some(end) = start.checked_add(payload_len).filter(|&e| e <= seg.len()) else {
            break;
        };
        if values {
            let mut op = start;
            while op + OP_HEADER_LEN <= end {
                let (kind, id_len) = (seg[op], seg[op + 1] as usize);
                let value_len = u32_at(seg, op + 4) as usize;
                let value_at = op + OP_HEADER_LEN + id_len;
                let Some(value_end) = value_at.checked_add(value_len).filter(|&e| e <= end) else {
                    break;
                };
                if kind == 1 || kind == 2 {
                    let crc = crc32(&seg[value_at..value_end]);
                    seg[op + 8..op + 12].copy_from_slice(&crc.to_le_bytes());
                }
                op = value_end;
            }
        }
        let crc = crc32(&seg[start..end]);
        seg[pos + 4..pos + 8].copy_from_slice(&crc.to_le_bytes());
        let crc = crc32(&seg[pos + 4..pos + RECORD_HEADER_LEN]);
        seg[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
        pos = align8(end);
    }
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
fn open_checked(dir: &Path, ctx: &str) -> Option<ReadState> {
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
                    metadata: Ok(b"probe metadata".to_vec()),
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

// ---------------------------------------------------------------------------
// A small valid store, built once, that the file-level targets start from.
// ---------------------------------------------------------------------------

/// A store built by a fixed script: its files, and the model after each
/// prefix of its batches (`prefixes[k]` = after the first `k` batches).
struct Template {
    files: BTreeMap<String, Vec<u8>>,
    prefixes: Vec<Model>,
    /// `(id, sealed_len)` of the manifest's segments.
    segments: Vec<(u32, Option<u64>)>,
}

/// Deterministic entry bytes: a pattern that differs per `tag`.
fn value(tag: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag.wrapping_mul(131).wrapping_add(i as u32 * 7) % 251) as u8)
        .collect()
}

/// The template's batches: four journals, entries of 150-260 bytes so the
/// 4608-byte segments roll about every eight batches, and trims, truncates
/// and a delete so the first segments die and are freed.
fn template_batches() -> Vec<Vec<Op>> {
    let (a, b, c, d) = (
        b"a".to_vec(),
        b"bee".to_vec(),
        b"c".to_vec(),
        vec![b'd'; 40],
    );
    let mut batches = vec![vec![
        Op::SetMetadata(a.clone(), b"meta a".to_vec()),
        Op::SetMetadata(b.clone(), b"meta b".to_vec()),
    ]];
    for i in 0..8u32 {
        batches.push(vec![
            Op::Append(a.clone(), Some(u64::from(i)), value(i, 200)),
            Op::Append(b.clone(), None, value(100 + i, 180)),
        ]);
    }
    batches.push(vec![Op::Delete(b.clone()), Op::Trim(a.clone(), 6)]);
    for i in 0..8u32 {
        batches.push(vec![
            Op::Append(c.clone(), None, value(200 + i, 250)),
            Op::Append(a.clone(), None, value(300 + i, 150)),
        ]);
    }
    batches.push(vec![
        Op::Truncate(a.clone(), 12),
        Op::SetMetadata(a.clone(), b"meta a, again".to_vec()),
        Op::SetMetadata(c.clone(), b"meta c".to_vec()),
    ]);
    batches.push(vec![Op::Trim(a.clone(), 9), Op::Trim(c.clone(), 3)]);
    for i in 0..6u32 {
        batches.push(vec![
            Op::Append(d.clone(), None, value(400 + i, 260)),
            Op::Append(a.clone(), None, value(500 + i, 100)),
        ]);
    }
    batches.push(vec![
        Op::Trim(a.clone(), 14),
        Op::Delete(c.clone()),
        Op::SetMetadata(d.clone(), b"meta d".to_vec()),
    ]);
    batches.push(vec![Op::Append(b.clone(), None, value(600, 64))]);
    batches
}

fn build_template(sync: SyncMode) -> Template {
    let tmp = scratch();
    let dir = tmp.path();
    let sim = SimFs::new();
    let store = Store::open(dir, options(&sim, sync)).expect("create the template store");
    let mut model = Model::default();
    let mut prefixes = vec![model.clone()];
    for ops in template_batches() {
        store
            .write(&to_batch(&ops))
            .expect("template batches are valid");
        model.apply(&ops).expect("template batches are valid");
        prefixes.push(model.clone());
    }
    model.assert_matches(&store.snapshot(), "template");
    store.close().expect("close the template store");
    let manifest = inspect::read_manifest(&inspect::manifest_path(dir)).expect("template manifest");
    let segments: Vec<(u32, Option<u64>)> = manifest
        .segments
        .iter()
        .map(|s| (s.id, s.sealed_len))
        .collect();
    // The script is meant to leave several segments, some already freed.
    assert!(
        segments.len() >= 2 && segments[0].0 > 1,
        "template store has segments {segments:?}"
    );
    Template {
        files: dir_image(dir),
        prefixes,
        segments,
    }
}

/// Template 0 is written with `SyncMode::Always` (every record's
/// `synced_through` covers the records before it); template 1 with
/// `SyncMode::Never` and a clean close (the active segment's records claim
/// nothing synced, so damage in the middle reads as a torn tail).
fn template(variant: usize) -> &'static Template {
    static TEMPLATES: [OnceLock<Template>; 2] = [OnceLock::new(), OnceLock::new()];
    let sync = if variant == 0 {
        SyncMode::Always
    } else {
        SyncMode::Never
    };
    TEMPLATES[variant].get_or_init(|| build_template(sync))
}

/// The template's files, for seed generation (`tests/replay.rs`).
pub fn template_files(variant: usize) -> BTreeMap<String, Vec<u8>> {
    template(variant).files.clone()
}

// ---------------------------------------------------------------------------
// segment_decode
// ---------------------------------------------------------------------------

/// Arbitrary bytes as a segment file.
///
/// Always: `SegmentFile::from_bytes` and `scan` with and without resync,
/// and over a sub-range. Both scans must end (their work is bounded by the
/// input length), agree on the records before the first damage, and report
/// offsets inside the file.
///
/// When the first byte is odd, the bytes also become the only segment of a
/// store (header rewritten valid for id 1, base LSN from the input) and go
/// through [`open_checked`]. The first byte's other bits: 0x02 recomputes
/// the record checksums and 0x04 also the value checksums (so changed
/// lengths, LSNs and bounds get past the checksums), 0x08 seals the segment
/// at a length the input picks with an empty active segment after it, and
/// 0x30 (both) also salvages the store. Any state that opens is accepted
/// (the bytes are arbitrary), but it must be the same through every way of
/// opening it and stay the same across reopens and a new write.
pub fn segment_decode(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let file = SegmentFile::from_bytes(Path::new("fuzz.jseg"), data.to_vec());
    let _ = file.header();
    let len = file.len();
    let plain = file.scan(0, None, false);
    let resync = file.scan(0, None, true);
    for (items, resync) in [(&plain, false), (&resync, true)] {
        assert!(!items.is_empty(), "scan returned nothing");
        let mut last = 0;
        for (i, item) in items.iter().enumerate() {
            let is_last = i + 1 == items.len();
            let offset = match item {
                ScanItem::Record {
                    offset,
                    payload_len,
                    ops,
                    ..
                } => {
                    let end = offset + (RECORD_HEADER_LEN as u64) + u64::from(*payload_len);
                    assert!(end <= len, "record at {offset} runs past the file");
                    for op in ops {
                        assert!(
                            op.offset >= offset + RECORD_HEADER_LEN as u64 && op.offset < end,
                            "op at {} outside its record at {offset}",
                            op.offset
                        );
                    }
                    *offset
                }
                ScanItem::Damaged { offset, .. } => {
                    assert!(resync || is_last, "plain scan went on after damage");
                    *offset
                }
                ScanItem::SyncMark { offset, .. } => {
                    assert!(!is_last, "a sync mark is followed by the scan's end");
                    *offset
                }
                ScanItem::End { offset } => {
                    assert!(is_last, "scan went on after its end");
                    *offset
                }
            };
            assert!(
                offset <= len.max(SEGMENT_HEADER_LEN as u64),
                "offset {offset} past the file"
            );
            assert!(
                i == 0 || offset > last || is_last,
                "scan offsets not increasing"
            );
            last = offset;
        }
    }
    let records = |items: &[ScanItem]| -> Vec<u64> {
        items
            .iter()
            .map_while(|i| match i {
                ScanItem::Record { offset, .. } => Some(*offset),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        records(&plain),
        records(&resync)[..records(&plain).len().min(records(&resync).len())],
        "resync scan disagrees with the plain scan before the first damage"
    );
    let _ = file.scan(len / 3, Some(len.saturating_sub(len / 5)), true);
    let _ = file.scan(len.saturating_add(8), Some(u64::MAX), false);

    let Some(&control) = data.first() else {
        return;
    };
    if control & 1 == 0 {
        return;
    }
    // The header region's bytes, before they are overwritten, choose the
    // base LSN and the sealed length.
    let mut seg = data.to_vec();
    seg.resize(seg.len().max(SEGMENT_HEADER_LEN + RECORD_HEADER_LEN), 0);
    let base_lsn = u64_at(&seg, 32);
    let sealed_pick = u64::from(u32_at(&seg, 40));
    let capacity = seg.len() as u64;
    seg[..SEGMENT_HEADER_LEN].copy_from_slice(&segment_header(1, capacity, base_lsn));
    if control & 2 != 0 {
        fix_record_checksums(&mut seg, control & 4 != 0);
    }
    let tmp = scratch();
    let dir = tmp.path();
    let mut files = BTreeMap::new();
    files.insert("seg-00000001.jseg".to_owned(), seg);
    let manifest = if control & 8 != 0 {
        // Sealed at a length the input picks, then an empty active segment.
        let mut active = segment_header(2, SEGMENT_SIZE, base_lsn).to_vec();
        active.resize(SEGMENT_SIZE as usize, 0);
        files.insert("seg-00000002.jseg".to_owned(), active);
        let sealed = SEGMENT_HEADER_LEN as u64 + sealed_pick % (capacity + 1);
        encode_manifest(1, 3, 0, &[(1, sealed), (2, u64::MAX)])
    } else {
        encode_manifest(1, 2, 0, &[(1, u64::MAX)])
    };
    files.insert("MANIFEST".to_owned(), manifest);
    write_files(dir, &files);
    let ctx = format!("segment_decode (control {control:#04x})");
    open_checked(dir, &ctx);
    if control & 0x30 == 0x30 {
        salvage_checked(dir, &ctx);
    }
}

/// `inspect::salvage` of arbitrary bytes returns without touching its
/// source, and what it writes is a store whose manifest decodes and whose
/// segments hold only intact records. (Opening it is left out: salvage
/// writes 64 MiB segments, and every open scans the active one to its end
/// for a torn tail, which costs a quarter of a second per input in a fuzz
/// build.)
fn salvage_checked(dir: &Path, ctx: &str) {
    let out_tmp = scratch();
    let out = out_tmp.path().join("salvaged");
    let before = dir_image(dir);
    let report = inspect::salvage(dir, &out);
    assert!(
        dir_image(dir) == before,
        "{ctx}: salvage changed its source"
    );
    if report.is_err() {
        return;
    }
    let manifest = inspect::read_manifest(&inspect::manifest_path(&out))
        .unwrap_or_else(|e| panic!("{ctx}: salvaged store's manifest: {e}"));
    for segment in manifest.segments {
        // What salvage wrote (at most about twice the input) lies in the
        // first MiB; reading only that keeps this cheap.
        let path = out.join(&segment.file_name);
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| {
                std::io::Read::read_to_end(&mut std::io::Read::take(f, 1 << 20), &mut bytes)
            })
            .unwrap_or_else(|e| panic!("{ctx}: read salvaged segment: {e}"));
        let file = SegmentFile::from_bytes(&path, bytes);
        assert!(file.header().is_ok(), "{ctx}: salvaged segment header");
        let items = file.scan(0, segment.sealed_len, false);
        assert!(
            items.iter().all(|i| !matches!(i, ScanItem::Damaged { .. })),
            "{ctx}: salvage wrote damaged records: {items:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// manifest_decode
// ---------------------------------------------------------------------------

/// Arbitrary bytes as a manifest.
///
/// Always: `inspect::decode_manifest` of the whole input returns; when it
/// accepts, what it decoded obeys format-spec section 6 (ids ascending below
/// `next_segment_id`, only the last active, at least one segment) and
/// encodes back to exactly the input bytes.
///
/// When the input has at least one byte: the bytes after the first become
/// the `MANIFEST` of the template store (its checksum recomputed when the
/// first byte is odd, so the fuzzer reaches the checks behind it) and the
/// store goes through [`open_checked`]. If that manifest lists exactly the
/// template's segments, a successful open must show the template's state.
pub fn manifest_decode(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    check_manifest_decode(data);
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mut manifest = rest.to_vec();
    if control & 1 != 0 && manifest.len() >= 4 {
        let at = manifest.len() - 4;
        let crc = crc32(&manifest[..at]);
        manifest[at..].copy_from_slice(&crc.to_le_bytes());
    }
    let decoded = check_manifest_decode(&manifest);
    let template = template(usize::from(control & 2 != 0));
    let tmp = scratch();
    let dir = tmp.path();
    let mut files = template.files.clone();
    files.insert("MANIFEST".to_owned(), manifest);
    write_files(dir, &files);
    let ctx = format!("manifest_decode (control {control:#04x})");
    let Some(state) = open_checked(dir, &ctx) else {
        return;
    };
    let same_segments = decoded.is_some_and(|segments| segments == template.segments);
    if same_segments {
        let final_model = template.prefixes.last().expect("template has batches");
        assert_eq!(
            to_model(&state).as_ref(),
            Some(final_model),
            "{ctx}: the template's own segment list shows another state"
        );
    }
}

/// Decodes `bytes`, checks what was decoded, returns its segment list.
fn check_manifest_decode(bytes: &[u8]) -> Option<Vec<(u32, Option<u64>)>> {
    let info = match inspect::decode_manifest(bytes, Path::new("MANIFEST")) {
        Ok(info) => info,
        Err(e) => {
            let _ = e.to_string();
            assert!(
                matches!(
                    e,
                    Error::Corruption { .. } | Error::UnsupportedVersion { .. }
                ),
                "manifest rejected with an unexpected error kind: {e:?}"
            );
            return None;
        }
    };
    let segs = &info.segments;
    assert!(!segs.is_empty(), "accepted a manifest without segments");
    for (i, s) in segs.iter().enumerate() {
        assert!(
            s.id < info.next_segment_id,
            "segment id not below next_segment_id"
        );
        // Manifest order is replay order; since compaction rewrites a run
        // of segments under a new id, ids need not ascend, only be unique.
        assert!(
            segs[..i].iter().all(|p| p.id != s.id),
            "segment id repeated"
        );
        assert_eq!(
            s.sealed_len.is_none(),
            i + 1 == segs.len(),
            "only the last segment may be (and must be) active"
        );
        assert_eq!(
            inspect::segment_id_from_file_name(&s.file_name),
            Some(s.id),
            "file name of segment {}",
            s.id
        );
    }
    let entries: Vec<(u64, u64)> = segs
        .iter()
        .map(|s| (u64::from(s.id), s.sealed_len.unwrap_or(u64::MAX)))
        .collect();
    let again = encode_manifest(
        info.generation,
        u64::from(info.next_segment_id),
        info.lsn_floor,
        &entries,
    );
    assert!(
        again == bytes,
        "an accepted manifest does not encode back to its bytes: {info:?}"
    );
    Some(segs.iter().map(|s| (s.id, s.sealed_len)).collect())
}

// ---------------------------------------------------------------------------
// Batches from fuzz input
// ---------------------------------------------------------------------------

/// The journals random batches use: three short ids and the longest one.
const IDS: [&[u8]; 4] = [b"a", b"b", b"c", &[b'z'; 255]];

/// A journal id: almost always one of [`IDS`], rarely an invalid one
/// (empty or 256 bytes) when `invalid_ok`.
fn pick_id(u: &mut Unstructured, invalid_ok: bool) -> arbitrary::Result<Vec<u8>> {
    let pick: u8 = u.arbitrary()?;
    Ok(match pick {
        252 | 253 if invalid_ok => Vec::new(),
        254 | 255 if invalid_ok => vec![b'x'; 256],
        _ => IDS[usize::from(pick % 4)].to_vec(),
    })
}

/// A value of a length the input picks (mostly short; with `allow_big`
/// sometimes past the store's limits), filled with a pattern that differs
/// from one value to the next.
fn pick_value(u: &mut Unstructured, max: usize, allow_big: bool) -> arbitrary::Result<Vec<u8>> {
    let big = allow_big && u.ratio(1, 12)?;
    let max = if big { max * 4 + 64 } else { max };
    let len = u.int_in_range(0..=max)?;
    let fill: u8 = u.arbitrary()?;
    Ok((0..len)
        .map(|i| fill.wrapping_add((i as u8).wrapping_mul(13)))
        .collect())
}

/// An index near the journal's bounds: mostly inside, sometimes just
/// outside, rarely anything.
fn pick_index(u: &mut Unstructured, first: u64, end: u64) -> arbitrary::Result<u64> {
    Ok(match u.int_in_range(0..=9u8)? {
        0 => first.saturating_sub(1),
        1 => end + 1,
        2 => u.arbitrary()?,
        _ => first + u.int_in_range(0..=end - first)?,
    })
}

/// One batch of 1..=6 operations over [`IDS`]. Indexes are chosen against
/// the state the batch's earlier operations leave (`model` plus them), so
/// most batches are valid and the invalid ones fail for one reason.
fn gen_batch(
    u: &mut Unstructured,
    model: &Model,
    max_value: usize,
    invalid_ok: bool,
) -> arbitrary::Result<Vec<Op>> {
    let n = u.int_in_range(1..=6u8)?;
    let mut staging = model.clone();
    let mut ops = Vec::new();
    for _ in 0..n {
        let id = pick_id(u, invalid_ok)?;
        let (first, end) = staging
            .journals
            .get(&id)
            .map_or((0, 0), |j| (j.first, j.end()));
        let op = match u.int_in_range(0..=99u8)? {
            0..=39 => Op::Append(id, None, pick_value(u, max_value, invalid_ok)?),
            40..=54 => {
                let at = match u.int_in_range(0..=11u8)? {
                    0 => end + 1,
                    1 => end.saturating_sub(1),
                    2 => u.arbitrary()?,
                    _ => end,
                };
                Op::Append(id, Some(at), pick_value(u, max_value, invalid_ok)?)
            }
            55..=69 => Op::SetMetadata(id, pick_value(u, 64, invalid_ok)?),
            70..=81 => Op::Trim(id, pick_index(u, first, end)?),
            82..=93 => Op::Truncate(id, pick_index(u, first, end)?),
            _ => Op::Delete(id),
        };
        let _ = staging.apply(std::slice::from_ref(&op));
        ops.push(op);
    }
    Ok(ops)
}

/// How `Store::write` must answer a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    InvalidJournalId,
    ValueTooLarge,
    UnexpectedIndex,
    InvalidRange,
    BatchTooLarge,
}

fn op_parts(op: &Op) -> (&[u8], &[u8], u64) {
    match op {
        Op::Append(id, _, v) => (id, v, MAX_ENTRY),
        Op::SetMetadata(id, v) => (id, v, MAX_METADATA),
        Op::Trim(id, _) | Op::Truncate(id, _) | Op::Delete(id) => (id, &[], MAX_ENTRY),
    }
}

/// The documented answer to `ops` on a store in state `model`: limits that
/// do not depend on the state first (in batch order), then the operations
/// in order against the state, then the record size against a segment.
fn expected(model: &Model, ops: &[Op]) -> Outcome {
    for op in ops {
        let (id, value, max) = op_parts(op);
        if id.is_empty() || id.len() > 255 {
            return Outcome::InvalidJournalId;
        }
        if value.len() as u64 > max {
            return Outcome::ValueTooLarge;
        }
    }
    let mut m = model.clone();
    for op in ops {
        if m.apply(std::slice::from_ref(op)).is_err() {
            return match op {
                Op::Append(..) => Outcome::UnexpectedIndex,
                _ => Outcome::InvalidRange,
            };
        }
    }
    let payload: usize = ops
        .iter()
        .map(|op| {
            let (id, value, _) = op_parts(op);
            OP_HEADER_LEN + id.len() + value.len()
        })
        .sum();
    if align8(RECORD_HEADER_LEN + payload) > SEGMENT_SIZE as usize - SEGMENT_HEADER_LEN {
        return Outcome::BatchTooLarge;
    }
    Outcome::Ok
}

fn outcome_of(e: &Error) -> Option<Outcome> {
    Some(match e {
        Error::InvalidJournalId { .. } => Outcome::InvalidJournalId,
        Error::ValueTooLarge { .. } => Outcome::ValueTooLarge,
        Error::UnexpectedIndex { .. } => Outcome::UnexpectedIndex,
        Error::InvalidRange { .. } => Outcome::InvalidRange,
        Error::BatchTooLarge { .. } => Outcome::BatchTooLarge,
        _ => return None,
    })
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list store directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jseg"))
        .collect();
    names.sort();
    names
}

// ---------------------------------------------------------------------------
// ops_model
// ---------------------------------------------------------------------------

/// Steps per input, at most.
const MAX_STEPS: usize = 64;
/// Snapshots held at once, at most.
const MAX_HELD: usize = 6;

/// An arbitrary sequence of batches (all six operations over four journals,
/// valid and invalid), snapshots taken, read and dropped, syncs,
/// compactions, checkpoints and close/reopen, on a real store with
/// 4608-byte segments and on the model.
///
/// Findings: a batch answered other than [`expected`] says; an LSN that
/// does not increase (across reopens too); any read through the current
/// snapshot or any held snapshot (even across a reopen) that differs from
/// the model at that snapshot (also after a compaction, and in a reopened
/// checkpoint); a failed sync, compaction, checkpoint, close or reopen; once every
/// snapshot is dropped, a segment file on disk the store does not list.
pub fn ops_model(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut u = Unstructured::new(data);
    let sync = if u.arbitrary::<bool>().unwrap_or(false) {
        SyncMode::Never
    } else {
        SyncMode::Always
    };
    // How dead a sealed segment must be for `Store::compact` to rewrite it.
    let threshold = if u.arbitrary::<bool>().unwrap_or(false) {
        0.9
    } else {
        0.5
    };
    let tmp = scratch();
    let dir = &tmp.path().join("store");
    let sim = SimFs::new();
    let store_options = || Options {
        compaction_threshold: threshold,
        ..options(&sim, sync)
    };
    let open =
        || Store::open(dir, store_options()).unwrap_or_else(|e| panic!("ops_model: open: {e}"));
    let mut store = open();
    let mut model = Model::default();
    let mut held: Vec<(Snapshot, Model)> = Vec::new();
    let mut last_lsn = 0u64;
    let mut checkpoints = 0;
    for step in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        let ctx = format!("ops_model step {step} ({sync:?})");
        let Ok(kind) = u.int_in_range(0..=109u8) else {
            break;
        };
        match kind {
            0..=59 => {
                let Ok(ops) = gen_batch(&mut u, &model, 300, true) else {
                    break;
                };
                let want = expected(&model, &ops);
                let result = store.write(&to_batch(&ops));
                match (&result, want) {
                    (Ok(lsn), Outcome::Ok) => {
                        assert!(*lsn > last_lsn, "{ctx}: LSN {lsn} after {last_lsn}");
                        last_lsn = *lsn;
                        model.apply(&ops).expect("expected() said valid");
                    }
                    (Err(e), want) if want != Outcome::Ok && outcome_of(e) == Some(want) => {}
                    _ => panic!("{ctx}: batch {ops:?}: expected {want:?}, store said {result:?}"),
                }
                let snap = store.snapshot();
                assert!(
                    snap.lsn() >= last_lsn,
                    "{ctx}: snapshot LSN below the last write"
                );
                model.assert_matches(&snap, &format!("{ctx} after the batch"));
            }
            60..=69 => {
                if held.len() < MAX_HELD {
                    held.push((store.snapshot(), model.clone()));
                }
            }
            70..=76 => {
                if !held.is_empty() {
                    let i = u.choose_index(held.len()).unwrap_or(0);
                    held.swap_remove(i);
                }
            }
            77..=86 => {
                if !held.is_empty() {
                    let i = u.choose_index(held.len()).unwrap_or(0);
                    let (snap, old) = &held[i];
                    old.assert_matches(snap, &format!("{ctx} held snapshot {i}"));
                }
            }
            87..=92 => store
                .sync()
                .unwrap_or_else(|e| panic!("{ctx}: sync failed: {e}")),
            // Compaction rewrites sealed segments under the readers: the
            // state, every held snapshot and (at the end) the absence of
            // leaked files must be as if it had not run.
            93..=99 => {
                let report = store
                    .compact()
                    .unwrap_or_else(|e| panic!("{ctx}: compact failed: {e}"));
                trace!("{ctx}: {report:?}");
                model.assert_matches(&store.snapshot(), &format!("{ctx} after compact"));
                for (i, (snap, old)) in held.iter().enumerate() {
                    old.assert_matches(snap, &format!("{ctx} held snapshot {i} after compact"));
                }
            }
            // A checkpoint opens as exactly the state it was taken at.
            100..=102 => {
                let dest = tmp.path().join(format!("checkpoint-{checkpoints}"));
                checkpoints += 1;
                let lsn = store.snapshot().lsn();
                let report = store
                    .checkpoint(&dest)
                    .unwrap_or_else(|e| panic!("{ctx}: checkpoint failed: {e}"));
                assert_eq!(report.lsn, lsn, "{ctx}: checkpoint LSN");
                let copy = Store::open(&dest, options(&sim, sync))
                    .unwrap_or_else(|e| panic!("{ctx}: checkpoint does not open: {e}"));
                model.assert_matches(&copy.snapshot(), &format!("{ctx} checkpoint"));
                copy.close().expect("close the checkpoint");
                std::fs::remove_dir_all(&dest).expect("remove the checkpoint");
            }
            _ => {
                let clean = u.arbitrary::<bool>().unwrap_or(true);
                if clean {
                    store
                        .close()
                        .unwrap_or_else(|e| panic!("{ctx}: close failed: {e}"));
                } else {
                    drop(store);
                }
                store = open();
                let snap = store.snapshot();
                assert!(
                    snap.lsn() >= last_lsn,
                    "{ctx}: reopened at LSN {} below the last write {last_lsn}",
                    snap.lsn()
                );
                model.assert_matches(&snap, &format!("{ctx} after reopen"));
                for (i, (snap, old)) in held.iter().enumerate() {
                    old.assert_matches(snap, &format!("{ctx} held snapshot {i} after reopen"));
                }
            }
        }
    }
    for (i, (snap, old)) in held.iter().enumerate() {
        old.assert_matches(snap, &format!("ops_model end, held snapshot {i}"));
    }
    held.clear();
    model.assert_matches(&store.snapshot(), "ops_model end");
    let stats = store.stats();
    assert_eq!(stats.pinned_snapshots, 0, "ops_model end: pinned snapshots");
    assert_eq!(
        segment_files(dir).len(),
        stats.segments,
        "ops_model end: segment files on disk vs listed ({:?})",
        segment_files(dir)
    );
    store.close().expect("ops_model: final close");
}

// ---------------------------------------------------------------------------
// crash_recovery
// ---------------------------------------------------------------------------

/// What a run has written, in order, and what must survive.
struct History {
    /// `models[k]`: the model after the first `k` batches of the history.
    models: Vec<Model>,
    /// The first `must_have` batches are durable: they survive any crash.
    must_have: usize,
    /// The first `must_see` (>= `must_have`) batches are in the files: the
    /// next successful open shows them unless the power is cut first
    /// (after a process crash, acknowledged batches are in the page cache).
    must_see: usize,
    /// The last batch's write failed with an I/O error: it may or may not
    /// be on disk. Every other batch in `models` was acknowledged.
    maybe: bool,
    /// The power was cut since the last successful open: the batches after
    /// `must_have` may be gone already, whatever happens next.
    lost_power: bool,
}

impl History {
    fn batches(&self) -> usize {
        self.models.len() - 1
    }
    fn acked(&self) -> usize {
        self.batches() - usize::from(self.maybe)
    }
    /// The first `n` batches were made durable (acknowledged under
    /// `Always`, or covered by a successful sync or close).
    fn durable(&mut self, n: usize) {
        self.must_have = n;
        self.must_see = n;
    }
}

/// Checks a freshly opened store against the history and cuts the history
/// to what survived: the store must hold exactly the model after some
/// prefix `k` of the batches, with `must_see <= k`. What it shows is
/// durable from then on (recovery syncs it before it returns).
fn verify_recovered(store: &Store, dir: &Path, history: &mut History, faults: bool, ctx: &str) {
    // Recovery leaves no orphan segment and no stale manifest behind, unless
    // the machine died during it: a segment it freed is unlinked when its
    // last user drops, which cannot report a failure (the next open removes
    // the orphan).
    let mut listed: Vec<String> = inspect::read_manifest(&inspect::manifest_path(dir))
        .unwrap_or_else(|e| panic!("{ctx}: manifest after a successful open: {e}"))
        .segments
        .into_iter()
        .map(|s| s.file_name)
        .collect();
    // Manifest order is replay order, not id order (compaction).
    listed.sort();
    if !faults {
        assert_eq!(
            segment_files(dir),
            listed,
            "{ctx}: segment files vs manifest"
        );
        assert!(
            !dir.join("MANIFEST.tmp").exists(),
            "{ctx}: MANIFEST.tmp left after open"
        );
    }
    let snap = store.snapshot();
    let state = read_state(&snap, ctx);
    let model = to_model(&state)
        .unwrap_or_else(|| panic!("{ctx}: unreadable values after recovery: {state:?}"));
    let k = counter(&model, ctx);
    assert!(
        k >= history.must_see && k <= history.batches(),
        "{ctx}: recovered batch {k}, must have {} of {} (last maybe: {})",
        history.must_see,
        history.batches(),
        history.maybe
    );
    assert_eq!(
        model, history.models[k],
        "{ctx}: recovered state is not the model after batch {k}"
    );
    history.models.truncate(k + 1);
    history.must_have = k;
    history.must_see = k;
    history.maybe = false;
    history.lost_power = false;
}

/// An arbitrary history of batches through a [`SimFs`] in a sync mode the
/// input picks, over up to three rounds; in each, the machine may die at an
/// arbitrary I/O operation (during recovery, a write, a sync, a roll, a
/// manifest swap, a segment free or a compaction), then the power is cut (unsynced writes
/// dropped, or an arbitrary prefix of them kept with the next one torn at an
/// arbitrary byte) or only the process dies, and the store is reopened.
///
/// Findings: an open that fails although no fault was armed (a torn tail
/// is never corruption), or fails with anything but an I/O error when one
/// was; a recovered state that is not the model after a prefix of the
/// batches, or loses a batch that had to survive (`Always`: every
/// acknowledged batch; `Never`/`Interval`: those covered by a successful
/// `sync` or `close`; after a process crash, every acknowledged batch,
/// unless the power is also cut before an open succeeds); LSNs that do not
/// increase after recovery; orphan files.
pub fn crash_recovery(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut u = Unstructured::new(data);
    let sync = match u.int_in_range(0..=2u8).unwrap_or(0) {
        0 => SyncMode::Always,
        1 => SyncMode::Never,
        // An interval that never elapses during a run keeps runs
        // deterministic; the sync thread still starts and stops.
        _ => SyncMode::Interval(Duration::from_secs(3600)),
    };
    let tmp = scratch();
    let dir = tmp.path();
    let sim = SimFs::new();
    let mut history = History {
        models: vec![Model::default()],
        must_have: 0,
        must_see: 0,
        maybe: false,
        lost_power: false,
    };
    let rounds = u.int_in_range(1..=3u8).unwrap_or(1);
    for round in 0..rounds {
        let ctx = format!("crash_recovery round {round} ({sync:?})");
        let fault = if u.ratio(1, 2).unwrap_or(false) {
            let n = u.int_in_range(0..=80u64).unwrap_or(0);
            sim.fail_after(n);
            trace!("{ctx}: machine dies after {n} more I/O operations");
            Some(n)
        } else {
            None
        };
        let store = match Store::open(dir, options(&sim, sync)) {
            Ok(store) => store,
            Err(e) => {
                trace!("{ctx}: open failed: {e}");
                assert!(
                    fault.is_some(),
                    "{ctx}: open failed with no fault armed: {e}"
                );
                assert!(
                    matches!(e, Error::Io { .. }),
                    "{ctx}: open under an injected I/O failure failed with {e:?}"
                );
                power_loss(&mut u, &sim, dir, &mut history, &ctx);
                continue;
            }
        };
        verify_recovered(
            &store,
            dir,
            &mut history,
            fault.is_some(),
            &format!("{ctx} open"),
        );
        trace!("{ctx}: opened with {} batches", history.batches());
        let mut last_lsn = store.snapshot().lsn();
        let mut stopped = false;
        let mut held = Vec::new();
        let steps = u.int_in_range(0..=24u8).unwrap_or(0);
        for step in 0..steps {
            if stopped {
                break;
            }
            let ctx = format!("{ctx} step {step}");
            match u.int_in_range(0..=10u8).unwrap_or(0) {
                0..=6 => {
                    let tip = history.models.last().expect("never empty");
                    let Ok(mut ops) = gen_batch(&mut u, tip, 300, false) else {
                        break;
                    };
                    let seq = history.batches() as u64 + 1;
                    ops.push(Op::SetMetadata(
                        COUNTER.to_vec(),
                        seq.to_le_bytes().to_vec(),
                    ));
                    let want = expected(tip, &ops);
                    let result = store.write(&to_batch(&ops));
                    trace!("{ctx}: batch {seq} ({want:?}): {result:?}: {ops:?}");
                    match (&result, want) {
                        (Ok(lsn), Outcome::Ok) => {
                            assert!(*lsn > last_lsn, "{ctx}: LSN {lsn} after {last_lsn}");
                            last_lsn = *lsn;
                            let mut next = tip.clone();
                            next.apply(&ops).expect("expected() said valid");
                            history.models.push(next);
                            if sync == SyncMode::Always {
                                history.durable(history.batches());
                            }
                        }
                        (Err(Error::Io { .. }), Outcome::Ok) if fault.is_some() => {
                            let mut next = tip.clone();
                            next.apply(&ops).expect("expected() said valid");
                            history.models.push(next);
                            history.maybe = true;
                            stopped = true;
                        }
                        (Err(Error::WritesStopped { .. }), _) if fault.is_some() => {
                            stopped = true;
                        }
                        (Err(e), want) if want != Outcome::Ok && outcome_of(e) == Some(want) => {}
                        _ => {
                            panic!("{ctx}: batch {ops:?}: expected {want:?}, store said {result:?}")
                        }
                    }
                }
                7 => match store.sync().inspect(|()| trace!("{ctx}: sync ok")) {
                    Ok(()) => history.durable(history.batches()),
                    Err(Error::Io { .. } | Error::WritesStopped { .. }) if fault.is_some() => {
                        stopped = true;
                    }
                    Err(e) => panic!("{ctx}: sync failed: {e}"),
                },
                8 => {
                    if held.len() < 4 {
                        held.push(store.snapshot());
                    }
                }
                // Compaction changes no state, so a crash in the middle of
                // one must not either.
                10 => match store.compact() {
                    Ok(report) => trace!("{ctx}: {report:?}"),
                    Err(Error::Io { .. } | Error::WritesStopped { .. }) if fault.is_some() => {
                        trace!("{ctx}: compact failed");
                        stopped = true;
                    }
                    Err(e) => panic!("{ctx}: compact failed: {e}"),
                },
                _ => {
                    let tip = history.models[history.acked()].clone();
                    tip.assert_matches(&store.snapshot(), &ctx);
                }
            }
        }
        if u.arbitrary::<bool>().unwrap_or(false) {
            trace!("{ctx}: close");
            match store.close() {
                Ok(()) => history.durable(history.acked()),
                Err(e) => assert!(fault.is_some(), "{ctx}: close failed: {e}"),
            }
        } else {
            trace!("{ctx}: drop");
            drop(store);
            // Dropping closes like `close` and ignores errors: with no
            // fault armed that close cannot fail.
            if fault.is_none() {
                history.durable(history.acked());
            }
        }
        // Snapshots may pin freed segments; they go before the power does.
        drop(held);
        power_loss(&mut u, &sim, dir, &mut history, &ctx);
    }
    let ctx = format!("crash_recovery final ({sync:?})");
    sim.clear_faults();
    let store =
        Store::open(dir, options(&sim, sync)).unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
    verify_recovered(&store, dir, &mut history, false, &ctx);
    // The recovered store takes writes with LSNs above everything it holds.
    let before = store.snapshot().lsn();
    let mut batch = journalstore::WriteBatch::new();
    batch.append(b"after", b"recovery");
    let lsn = store
        .write(&batch)
        .unwrap_or_else(|e| panic!("{ctx}: write after recovery: {e}"));
    assert!(
        lsn > before,
        "{ctx}: LSN {lsn} not above recovered {before}"
    );
    store.close().expect("crash_recovery: final close");
}

/// Ends a round: the process dies (nothing lost: every acknowledged batch
/// must survive) or the power is cut, in a way the input picks.
fn power_loss(u: &mut Unstructured, sim: &SimFs, dir: &Path, history: &mut History, ctx: &str) {
    let mode = match u.int_in_range(0..=3u8).unwrap_or(1) {
        0 => {
            trace!("{ctx}: process crash only");
            sim.clear_faults();
            // Everything acknowledged is in the files, unless an earlier
            // power loss (not yet seen by a successful open) took it.
            if !history.lost_power {
                history.must_see = history.acked();
            }
            return;
        }
        1 => CrashMode::DropUnsynced,
        _ => {
            let pending = sim.pending_writes();
            let writes = u.int_in_range(0..=pending).unwrap_or(0);
            let torn_bytes = usize::from(u.arbitrary::<u16>().unwrap_or(0));
            CrashMode::KeepPrefix { writes, torn_bytes }
        }
    };
    trace!("{ctx}: power loss {mode:?}");
    history.lost_power = true;
    history.must_see = history.must_have;
    sim.crash(dir, mode)
        .unwrap_or_else(|e| panic!("{ctx}: SimFs::crash: {e}"));
    if tracing() {
        let manifest = inspect::read_manifest(&inspect::manifest_path(dir));
        trace!("{ctx}: after the crash: {:?}", manifest.map(|m| m.segments));
        for (name, bytes) in dir_image(dir) {
            if name.ends_with(".jseg") {
                let file = SegmentFile::from_bytes(Path::new(&name), bytes);
                let records: Vec<String> = file
                    .scan(0, None, false)
                    .iter()
                    .map(|item| match item {
                        ScanItem::Record { offset, lsn, .. } => format!("{offset}:lsn{lsn}"),
                        other => format!("{other:?}"),
                    })
                    .collect();
                trace!("  {name} {:?}: {}", file.header(), records.join(" "));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// corrupt_open
// ---------------------------------------------------------------------------

/// One change to a store's files.
#[derive(Debug)]
enum Damage {
    /// XOR one byte with a non-zero mask.
    Flip { file: usize, at: u64, mask: u8 },
    /// Cut the file to a length.
    Truncate { file: usize, len: u64 },
    /// Zero a range.
    Zero { file: usize, at: u64, len: u16 },
    /// Delete the file.
    Delete { file: usize },
    /// Copy a range of one file over a range of another (or the same), e.g.
    /// an old record where the data ends.
    Copy {
        from: usize,
        at: u64,
        len: u16,
        to: usize,
        dest: u64,
    },
    /// Copy a whole file to an unused segment name (an orphan).
    Orphan { file: usize, id: u8 },
}

/// An offset in a file of `len` bytes whose data ends at `used`: usually in
/// or just after the data, sometimes anywhere.
fn pick_offset(u: &mut Unstructured, len: usize, used: usize) -> arbitrary::Result<u64> {
    if len == 0 {
        return Ok(0);
    }
    let range = if u.ratio(3, 4)? {
        (used + 64).min(len)
    } else {
        len
    };
    u.int_in_range(0..=range as u64 - 1)
}

fn used_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

fn gen_damage(
    u: &mut Unstructured,
    files: &BTreeMap<String, Vec<u8>>,
) -> arbitrary::Result<Damage> {
    let names: Vec<&Vec<u8>> = files.values().collect();
    let file = u.choose_index(names.len())?;
    let bytes = names[file];
    let (len, used) = (bytes.len(), used_len(bytes));
    Ok(match u.int_in_range(0..=9u8)? {
        0..=3 => Damage::Flip {
            file,
            at: pick_offset(u, len, used)?,
            mask: u.int_in_range(1..=255)?,
        },
        4 => Damage::Truncate {
            file,
            len: u.int_in_range(0..=len as u64)?,
        },
        5 => Damage::Zero {
            file,
            at: pick_offset(u, len, used)?,
            len: u.int_in_range(1..=512)?,
        },
        6 => Damage::Delete { file },
        7 | 8 => {
            let to = u.choose_index(names.len())?;
            let dest_bytes = names[to];
            Damage::Copy {
                from: file,
                at: pick_offset(u, len, used)?,
                len: u.int_in_range(1..=1024)?,
                to,
                dest: pick_offset(u, dest_bytes.len(), used_len(dest_bytes))?,
            }
        }
        _ => Damage::Orphan {
            file,
            id: u.int_in_range(1..=16)?,
        },
    })
}

fn apply_damage(files: &mut BTreeMap<String, Vec<u8>>, damage: &Damage) {
    let name = |files: &BTreeMap<String, Vec<u8>>, i: usize| files.keys().nth(i).cloned();
    match *damage {
        Damage::Flip { file, at, mask } => {
            let Some(n) = name(files, file) else { return };
            if let Some(b) = files.get_mut(&n).and_then(|f| f.get_mut(at as usize)) {
                *b ^= mask;
            }
        }
        Damage::Truncate { file, len } => {
            let Some(n) = name(files, file) else { return };
            if let Some(f) = files.get_mut(&n) {
                f.truncate(len as usize);
            }
        }
        Damage::Zero { file, at, len } => {
            let Some(n) = name(files, file) else { return };
            if let Some(f) = files.get_mut(&n) {
                let start = (at as usize).min(f.len());
                let end = (start + usize::from(len)).min(f.len());
                f[start..end].fill(0);
            }
        }
        Damage::Delete { file } => {
            let Some(n) = name(files, file) else { return };
            files.remove(&n);
        }
        Damage::Copy {
            from,
            at,
            len,
            to,
            dest,
        } => {
            let (Some(src), Some(dst)) = (name(files, from), name(files, to)) else {
                return;
            };
            let chunk: Vec<u8> = {
                let f = &files[&src];
                let start = (at as usize).min(f.len());
                f[start..(start + usize::from(len)).min(f.len())].to_vec()
            };
            if let Some(f) = files.get_mut(&dst) {
                let start = (dest as usize).min(f.len());
                let end = (start + chunk.len()).min(f.len());
                f[start..end].copy_from_slice(&chunk[..end - start]);
            }
        }
        Damage::Orphan { file, id } => {
            let Some(n) = name(files, file) else { return };
            let orphan = format!("seg-{:08x}.jseg", 100 + u32::from(id));
            let bytes = files[&n].clone();
            files.insert(orphan, bytes);
        }
    }
}

/// A valid store (one of the two [`template`]s: four journals over several
/// 4608-byte segments, the first ones already freed) with 1..=4 arbitrary
/// changes to its files (byte flips, truncations, zeroed ranges, deletions,
/// copies of bytes from elsewhere, orphan copies), then opened.
///
/// Every damage is either detected (the open fails with a typed error and,
/// if it is `Corruption`, changes nothing) or harmless: if the open
/// succeeds, every value reads back without error and the state is exactly
/// the model after some prefix of the template's batches (damage that looks
/// like a torn tail may cut the last batches; nothing else is acceptable).
/// Opening is checked as in [`open_checked`] (read-only open agrees,
/// reopening is stable, new writes work).
pub fn corrupt_open(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut u = Unstructured::new(data);
    let variant = usize::from(u.arbitrary::<bool>().unwrap_or(false));
    let template = template(variant);
    let mut files = template.files.clone();
    let count = u.int_in_range(1..=4u8).unwrap_or(1);
    let mut damages = Vec::new();
    for _ in 0..count {
        if files.is_empty() {
            break;
        }
        let Ok(damage) = gen_damage(&mut u, &files) else {
            break;
        };
        apply_damage(&mut files, &damage);
        damages.push(damage);
    }
    let tmp = scratch();
    let dir = tmp.path();
    write_files(dir, &files);
    let ctx = format!("corrupt_open (template {variant}, {damages:?})");
    let Some(state) = open_checked(dir, &ctx) else {
        return;
    };
    let model = to_model(&state)
        .unwrap_or_else(|| panic!("{ctx}: opened, but values do not read back: {state:?}"));
    assert!(
        template.prefixes.contains(&model),
        "{ctx}: opened with a state that no prefix of the batches produces: {model:?}"
    );
}
