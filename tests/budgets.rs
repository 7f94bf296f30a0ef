//! Decoder budgets: crafted files whose checksums all pass must not make
//! open, the read-only open, `verify`, `salvage` or a resync scan take time
//! or memory beyond what the bytes read justify (format-spec, "Decoder
//! budgets").
//!
//! Each case asserts on the work the decoders report
//! (`journalstore::work`, counted per thread) against the bytes handed to
//! them, so that a slow or busy machine cannot make it pass or fail; the
//! wall-time limits of the acceptance are kept on top (in a release build;
//! a debug build gets ten times as long). Memory is measured in a child
//! process, this test binary run again, whose counting allocator refuses
//! to go past the limit (the child then aborts instead of taking the
//! machine's memory).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use journalstore::record::{encode_op, OpKind, PlannedOp, FORMAT_VERSION, MANIFEST_VERSION};
use journalstore::{inspect, work, Error, Options, Store, WriteBatch};

const SEGMENT_HEADER_LEN: usize = 64;
const RECORD_HEADER_LEN: usize = 32;
const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Every allocation of this test binary is counted. Outside the child (no
// cap) it only counts.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, CAP as LIMIT, CURRENT, PEAK};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------
// Helpers

fn options(segment_size: u64) -> Options {
    Options {
        segment_size,
        background_compaction: false,
        status_interval: None,
        ..Options::default()
    }
}

/// The acceptance's wall-time limit, in a release build; a debug build
/// (plain `cargo test`) gets ten times as long. The work counters are the
/// strict check.
fn time_limit(release: Duration) -> Duration {
    if cfg!(debug_assertions) {
        release * 10
    } else {
        release
    }
}

/// Runs `f`, returning its result, the wall time and this thread's work.
fn measured<T>(f: impl FnOnce() -> T) -> (T, Duration, work::Work) {
    work::take();
    let start = Instant::now();
    let out = f();
    (out, start.elapsed(), work::take())
}

/// A record header (format-spec 4.1) with a valid `header_crc`.
fn record_header(
    payload_crc: u32,
    lsn: u64,
    payload_len: u32,
    synced_through: u32,
    kind: u16,
    op_count: u32,
) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[4..8].copy_from_slice(&payload_crc.to_le_bytes());
    h[8..16].copy_from_slice(&lsn.to_le_bytes());
    h[16..20].copy_from_slice(&payload_len.to_le_bytes());
    h[20..24].copy_from_slice(&synced_through.to_le_bytes());
    h[24..26].copy_from_slice(&kind.to_le_bytes());
    h[28..32].copy_from_slice(&op_count.to_le_bytes());
    let crc = crc32fast::hash(&h[4..]);
    h[..4].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A whole valid batch record of `ops` ops, padded to a multiple of 8.
fn record(lsn: u64, synced_through: u32, op_count: u32, payload: &[u8]) -> Vec<u8> {
    let header = record_header(
        crc32fast::hash(payload),
        lsn,
        payload.len() as u32,
        synced_through,
        1,
        op_count,
    );
    let mut out = header.to_vec();
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(8), 0);
    out
}

/// A segment header (format-spec 3.1) with a valid CRC.
fn segment_header(id: u64, capacity: u64, base_lsn: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(b"JSTRSEG\0");
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h[24..32].copy_from_slice(&capacity.to_le_bytes());
    h[32..40].copy_from_slice(&base_lsn.to_le_bytes());
    let crc = crc32fast::hash(&h[..60]);
    h[60..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A manifest (format-spec 6) with a valid CRC; `sealed` `u64::MAX` is the
/// active segment.
fn manifest(next_segment_id: u64, segments: &[(u64, u64)]) -> Vec<u8> {
    let mut out = b"JSTRMAN\0".to_vec();
    out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&next_segment_id.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    for &(id, sealed) in segments {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&sealed.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A store in `dir` with one journal `j` (one entry, metadata), closed.
/// Returns the active segment's path, its end of data and the last LSN.
fn small_store(dir: &Path, segment_size: u64) -> (PathBuf, usize, u64) {
    let store = Store::open(dir, options(segment_size)).unwrap();
    let mut batch = WriteBatch::new();
    batch.append(b"j", b"entry 0").set_metadata(b"j", b"meta");
    store.write(&batch).unwrap();
    store.close().unwrap();
    let ro = inspect::open_read_only(dir).unwrap();
    let active = ro.manifest.segments.last().unwrap();
    (
        dir.join(&active.file_name),
        ro.active_end as usize,
        ro.newest_lsn,
    )
}

/// Every file of `dir` but `LOCK` (which any open may create).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for (name, bytes) in files(from) {
        std::fs::write(to.join(name), bytes).unwrap();
    }
}

/// Headers with valid CRCs every 32 bytes from `from` to `to`, each
/// claiming a payload up to `to` with a wrong payload CRC (each header's
/// payload is the headers after it), LSNs from `lsn`, claiming
/// `synced_through`.
fn header_run(from: usize, to: usize, lsn: u64, synced_through: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(to - from);
    let mut pos = from;
    let mut k = 0;
    while pos + RECORD_HEADER_LEN <= to {
        let payload_len = (to - pos - RECORD_HEADER_LEN) as u32;
        // A payload CRC no payload here has (the CRC of no bytes is 0, so
        // the last, empty payload would match 0).
        out.extend_from_slice(&record_header(
            1,
            lsn + k,
            payload_len,
            synced_through,
            1,
            1,
        ));
        pos += RECORD_HEADER_LEN;
        k += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// Defect: the dirty-tail check and the resync checksummed every candidate's
// claimed payload, quadratic in the tail's length.

/// An active segment whose data is followed by an invalid record and then
/// 8 MiB of headers with valid CRCs every 32 bytes, each claiming a payload
/// that runs to the end of the file, all claiming nothing beyond the data
/// as synced (a torn tail, as far as the claims go). Store::open seals it,
/// the read-only open and verify read it, each in linear work.
#[test]
fn dirty_tail_of_8_mib_of_valid_headers_is_linear() {
    let tmp = tempfile::tempdir().unwrap();
    let tail_len = 8 * MIB;
    let capacity = tail_len + 64 * 1024;
    let base = tmp.path().join("base");
    let (path, end, last_lsn) = small_store(&base, capacity as u64);
    let mut tail = vec![0xa5u8; RECORD_HEADER_LEN];
    let from = end + RECORD_HEADER_LEN;
    tail.extend(header_run(from, capacity, last_lsn + 1, end as u32));
    assert!(tail.len() >= tail_len, "tail of {} bytes", tail.len());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&tail, end as u64)
        .unwrap();
    let tail_bytes = (capacity - end) as u64;
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    copy_dir(&base, &a);
    copy_dir(&base, &b);

    let limit = time_limit(Duration::from_secs(3));
    let (store, elapsed, work) = measured(|| Store::open(&a, options(capacity as u64)));
    let store = store.expect("a torn tail opens");
    eprintln!("Store::open: {elapsed:?}, {work:?}");
    assert!(
        work.resync_crc_bytes <= 4 * tail_bytes,
        "tail check checksummed {} bytes for a tail of {tail_bytes}",
        work.resync_crc_bytes
    );
    assert!(elapsed < limit, "Store::open took {elapsed:?}");
    let snap = store.snapshot();
    let j = snap.journal(b"j").expect("the journal survives");
    assert_eq!(j.entry(0).unwrap(), Some(&b"entry 0"[..]));
    drop(snap);
    store.close().unwrap();

    let (ro, elapsed, work) = measured(|| inspect::open_read_only(&b));
    let ro = ro.expect("the read-only open accepts a torn tail");
    eprintln!("open_read_only: {elapsed:?}, {work:?}");
    assert!(ro.torn_tail);
    assert!(work.resync_crc_bytes <= 4 * tail_bytes, "{work:?}");
    assert!(elapsed < limit, "open_read_only took {elapsed:?}");

    let (report, elapsed, work) = measured(|| inspect::verify(&b));
    eprintln!("verify: {elapsed:?}, {work:?}");
    assert!(
        report.problems.is_empty()
            && !report.notes.is_empty()
            && report.notes.iter().all(|p| p.repaired_at_open),
        "verify notes the torn tail only: {:?} {:?}",
        report.problems,
        report.notes
    );
    // The resync of the scan (header CRCs, one claimed payload) plus the
    // read-only open's tail check.
    assert!(work.resync_crc_bytes <= 6 * tail_bytes, "{work:?}");
    assert!(elapsed < limit, "verify took {elapsed:?}");
}

/// A header after the invalid bytes proves, by its own CRC, that they had
/// been synced, whatever its kind and whether or not its payload is
/// intact: open reports Corruption at the end of the data and changes
/// nothing; the read-only open agrees.
#[test]
fn tail_header_of_any_kind_claiming_sync_is_corruption() {
    for (kind, payload_len, what) in [
        (1u16, 40u32, "a batch header whose payload is damaged"),
        (2, 0, "a sync mark"),
        (0x7777, 0, "a header of an unknown kind"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let (path, end, last_lsn) = small_store(&dir, 64 * 1024);
        let mut tail = vec![0xa5u8; RECORD_HEADER_LEN];
        let claim = (end + RECORD_HEADER_LEN) as u32;
        tail.extend(record_header(
            1,
            last_lsn + 1,
            payload_len,
            claim,
            kind,
            u32::from(kind == 1),
        ));
        tail.extend(vec![0x5au8; payload_len as usize]);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all_at(&tail, end as u64)
            .unwrap();
        let before = files(&dir);
        match Store::open(&dir, options(64 * 1024)) {
            Err(Error::Corruption {
                path: p, offset, ..
            }) => {
                assert_eq!((p, offset), (path.clone(), end as u64), "{what}");
            }
            Err(e) => panic!("{what}: open failed with {e:?}"),
            Ok(_) => panic!("{what}: open accepted damage to synced bytes as a torn tail"),
        }
        assert!(
            files(&dir) == before,
            "{what}: the failed open changed files"
        );
        let ro = inspect::open_read_only(&dir);
        assert!(
            ro.as_ref().is_err_and(|e| e.is_corruption()),
            "{what}: read-only open: {:?}",
            ro.map(|r| r.active_end)
        );
    }
}

/// `SegmentFile::scan` with resync over 8 MiB crafted two ways: headers
/// with valid CRCs every 32 bytes each claiming a payload to the end, and
/// the same with a valid empty record between every two such headers (so
/// that the scan keeps finding records, and each next header fails again
/// after checksumming the rest of the file). Both scans do work linear in
/// the file.
#[test]
fn resync_scan_of_valid_headers_is_linear() {
    let len = 8 * MIB;
    let mut dense = segment_header(1, len as u64, 1).to_vec();
    dense.extend(vec![0xa5u8; RECORD_HEADER_LEN]);
    let from = dense.len();
    dense.extend(header_run(from, len, 1, 0));

    let mut mixed = segment_header(1, len as u64, 1).to_vec();
    let mut lsn = 1;
    while mixed.len() + 2 * RECORD_HEADER_LEN <= len {
        let rest = (len - mixed.len() - RECORD_HEADER_LEN) as u32;
        mixed.extend(record_header(1, lsn, rest, 0, 1, 1));
        mixed.extend(record(lsn + 1, 0, 0, &[]));
        lsn += 2;
    }
    for (name, bytes) in [("dense", dense), ("mixed", mixed)] {
        let file_len = bytes.len() as u64;
        let file = inspect::SegmentFile::from_bytes(Path::new(name), bytes);
        let (items, elapsed, work) = measured(|| file.scan(0, None, true));
        eprintln!("{name}: {} items, {elapsed:?}, {work:?}", items.len());
        assert!(
            work.resync_crc_bytes <= 5 * file_len,
            "{name}: resync checksummed {} bytes of a {file_len}-byte file",
            work.resync_crc_bytes
        );
        assert!(
            elapsed < time_limit(Duration::from_secs(3)),
            "{name}: scan took {elapsed:?}"
        );
        assert!(
            matches!(items.last(), Some(inspect::ScanItem::End { .. })),
            "{name}: the scan ends"
        );
    }
}

/// Resync still finds intact records after damage: a record, 40 bytes of
/// garbage, two records.
#[test]
fn resync_finds_records_after_damage() {
    let mut op = Vec::new();
    let append = PlannedOp {
        kind: OpKind::Append,
        id: b"j",
        value: b"v",
        value_crc: crc32fast::hash(b"v"),
        first: 0,
        end: 1,
    };
    encode_op(&mut op, &append);
    let mut bytes = segment_header(1, 0, 1).to_vec();
    bytes.extend(record(1, 64, 1, &op));
    let damaged_at = bytes.len() as u64;
    bytes.extend(vec![0xa5u8; 40]);
    let second = bytes.len() as u64;
    bytes.extend(record(2, 64, 1, &op));
    let third = bytes.len() as u64;
    bytes.extend(record(3, 64, 1, &op));
    bytes.extend(vec![0u8; 64]);
    let file = inspect::SegmentFile::from_bytes(Path::new("seg"), bytes);
    let found: Vec<(u64, bool)> = file
        .scan(0, None, true)
        .iter()
        .filter_map(|item| match item {
            inspect::ScanItem::Record { offset, .. } => Some((*offset, true)),
            inspect::ScanItem::Damaged { offset, .. } => Some((*offset, false)),
            _ => None,
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (64, true),
            (damaged_at, false),
            (second, true),
            (third, true)
        ]
    );
}

// ---------------------------------------------------------------------------
// Defect: manifest decoding checked ids for repeats by a linear search per
// entry, quadratic in the entries.

/// A manifest of `n` entries with distinct ids, in an order that is not
/// sorted (ids need only be unique), the last one active.
fn big_manifest(n: u64) -> Vec<u8> {
    let entries: Vec<(u64, u64)> = (0..n)
        .map(|i| {
            let id = 1 + (i * 7919) % n;
            (id, if i + 1 == n { u64::MAX } else { 64 })
        })
        .collect();
    manifest(n + 1, &entries)
}

fn comparisons_bound(n: u64) -> u64 {
    // A comparison sort: a small multiple of n log2 n (the search per entry
    // made n^2 / 2).
    4 * n * (64 - n.leading_zeros() as u64)
}

#[test]
fn manifest_of_2_17_entries_decodes_in_n_log_n() {
    let n = 1u64 << 17;
    let bytes = big_manifest(n);
    let path = Path::new("MANIFEST");
    let (info, elapsed, work) = measured(|| inspect::decode_manifest(&bytes, path));
    eprintln!("decode 2^17: {elapsed:?}, {work:?}");
    let info = info.expect("distinct ids decode");
    assert_eq!(info.segments.len() as u64, n);
    assert!(
        work.manifest_id_comparisons <= comparisons_bound(n),
        "{work:?}"
    );
    assert!(elapsed < time_limit(Duration::from_secs(2)), "{elapsed:?}");

    // Store::open reads it and refuses the store (no segment file exists),
    // as fast, leaving the directory as it was.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("MANIFEST"), &bytes).unwrap();
    let (result, elapsed, work) = measured(|| Store::open(dir, options(64 * 1024)));
    eprintln!("open 2^17: {elapsed:?}, {work:?}");
    assert!(
        result.as_ref().is_err_and(|e| e.is_corruption()),
        "{:?}",
        result.map(|_| ())
    );
    assert!(
        work.manifest_id_comparisons <= comparisons_bound(n),
        "{work:?}"
    );
    assert!(elapsed < time_limit(Duration::from_secs(2)), "{elapsed:?}");
    assert_eq!(files(dir).keys().collect::<Vec<_>>(), ["MANIFEST"]);
}

/// The most entries a manifest may have (2^20), and a repeat in the last
/// entry of that many: work n log n, and the repeat reported at its entry.
#[test]
fn manifest_of_2_20_entries_and_repeats() {
    let n = 1u64 << 20;
    let bytes = big_manifest(n);
    let path = Path::new("MANIFEST");
    let (info, elapsed, work) = measured(|| inspect::decode_manifest(&bytes, path));
    eprintln!("decode 2^20: {elapsed:?}, {work:?}");
    assert_eq!(info.expect("distinct ids decode").segments.len() as u64, n);
    assert!(
        work.manifest_id_comparisons <= comparisons_bound(n),
        "{work:?}"
    );

    // Entry offsets: 40 + 16 i. The first entry that repeats an earlier id
    // is the one reported, wherever the ids sit.
    let cases: [(&[u64], u64); 4] = [
        (&[5, 7, 5, 7], 2),
        (&[7, 5, 9, 9], 3),
        (&[9, 3, 4, 3, 9], 3),
        (&[2, 2], 1),
    ];
    for (ids, at) in cases {
        let entries: Vec<(u64, u64)> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, if i + 1 == ids.len() { u64::MAX } else { 64 }))
            .collect();
        match inspect::decode_manifest(&manifest(10, &entries), path) {
            Err(Error::Corruption { offset, reason, .. }) => {
                assert_eq!(offset, 40 + 16 * at, "{ids:?}: {reason}");
            }
            other => panic!("{ids:?}: {other:?}"),
        }
    }
    let mut entries: Vec<(u64, u64)> = (1..n).map(|id| (id, 64)).collect();
    entries.push((n / 2, u64::MAX));
    let (result, _, work) = measured(|| inspect::decode_manifest(&manifest(n + 1, &entries), path));
    match result {
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, 40 + 16 * (n - 1)),
        other => panic!("{:?}", other.map(|i| i.segments.len())),
    }
    assert!(
        work.manifest_id_comparisons <= comparisons_bound(n),
        "{work:?}"
    );
}

// ---------------------------------------------------------------------------
// Defect: replay's placeholders were capped per operation but not in total.

/// Eight truncate records (576 bytes, valid CRCs), each claiming a journal
/// end 2^24 entries beyond the last: every way of reading the store
/// refuses or salvages it without its peak heap growing by 64 MiB.
#[test]
fn eight_truncate_records_stay_under_64_mib() {
    const CHILD: &str = "JOURNALSTORE_BUDGETS_CHILD";
    const TEST: &str = "eight_truncate_records_stay_under_64_mib";
    if std::env::var_os(CHILD).is_some() {
        truncate_records_child();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let peak: usize = stdout
        .lines()
        .chain(stderr.lines())
        .find_map(|l| l.split("peak heap growth: ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak reported:\n{stdout}\n{stderr}"));
    assert!(peak < 64 * MIB, "peak heap growth {peak}");
}

fn truncate_records_child() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (path, end, last_lsn) = small_store(&dir, 1 << 20);
    let mut records = Vec::new();
    for k in 1..=8u64 {
        let mut op = Vec::new();
        let truncate = PlannedOp {
            kind: OpKind::Truncate,
            id: b"j",
            value: b"",
            value_crc: 0,
            first: 0,
            end: 1 + (k << 24),
        };
        encode_op(&mut op, &truncate);
        let at = (end + records.len()) as u32;
        records.extend(record(last_lsn + k, at, 1, &op));
    }
    assert_eq!(records.len(), 576);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&records, end as u64)
        .unwrap();
    let before = files(&dir);
    let out = tmp.path().join("salvaged");

    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    LIMIT.store(base + 64 * MIB, Ordering::Relaxed);
    work::take();
    let opened = Store::open(&dir, options(1 << 20));
    let read_only = inspect::open_read_only(&dir).map(|_| ());
    let report = inspect::verify(&dir);
    let salvaged = inspect::salvage(&dir, &out);
    let work = work::take();
    LIMIT.store(usize::MAX, Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed) - base;

    assert!(
        opened.as_ref().is_err_and(|e| e.is_corruption()),
        "open: {:?}",
        opened.map(|_| ())
    );
    assert!(files(&dir) == before, "the failed open changed files");
    assert!(
        read_only.as_ref().is_err_and(|e| e.is_corruption()),
        "{read_only:?}"
    );
    assert!(!report.ok(), "verify accepted the store");
    let salvaged = salvaged.expect("salvage copies what is intact");
    assert_eq!(salvaged.lost, vec![(b"j".to_vec(), 1, 8 << 24)]);
    // Store::open, the read-only open (three attempts) and verify's
    // read-only open replay the eight records; salvage once more.
    assert!((1..=8 * 8).contains(&work.placeholder_items), "{work:?}");
    println!("{work:?}");
    println!("peak heap growth: {peak}");
}
