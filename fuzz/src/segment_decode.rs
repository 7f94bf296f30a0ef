//! Target `segment_decode`: arbitrary bytes as a segment file, scanned,
//! and as the active segment of a store that is then opened every way
//! there is.

use std::collections::BTreeMap;
use std::path::Path;

use journalstore::inspect::{self, ScanItem, SegmentFile};

use crate::common::check::open_checked;
use crate::common::{
    align8, crc32, dir_image, encode_manifest, scratch, segment_header, u32_at, u64_at,
    write_files, MAX_INPUT, OP_HEADER_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, SEGMENT_SIZE,
};

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
