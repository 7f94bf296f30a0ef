//! Test vectors of the on-disk format: `format-spec/vectors/`.
//!
//! Each vector is a small store built by a deterministic program below
//! ([`VECTORS`]), checked in byte for byte as `format-spec/vectors/NAME/`,
//! with `format-spec/vectors/NAME.txt` giving its decoded content. The
//! decoding is done here by [`spec`], a reader written from
//! `format-spec/README.md` alone (no engine code), which also checks that
//! every byte of every file is one the spec accounts for: padding and
//! unused space zero, lengths exact, every checksum right.
//!
//! - `vectors_decode_as_documented`: each checked-in vector decodes, by the
//!   spec reader, to exactly its `.txt`; the spec's replay rules (section
//!   9.2) give the same journals as the engine reading the same files; the
//!   engine's own scan (`inspect`) sees the same records.
//! - `vectors_are_what_the_engine_writes`: the generator, run twice, writes
//!   the same bytes both times and the same bytes as checked in. A change to
//!   the format (a constant, a layout, an encoding) fails here until the
//!   vectors are regenerated, which shows up in review with the spec:
//!   `JOURNALSTORE_REGENERATE_VECTORS=1 cargo test --test vectors`.
//! - `format_constants_are_the_specs`: the public format constants have the
//!   values the spec gives (some, like `MAX_INDEX`, never show in a vector).
//!
//! [`FROZEN`] lists stores written by older builds (`format-spec/vectors/v1/`,
//! version-1 segments): no generator writes them, so their bytes never
//! change; the spec reader decodes them like the others (their `.txt` is
//! rewritten on regeneration, their bytes never), and `tests/upgrade.rs`
//! opens them with the engine.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use journalstore::{inspect, Options, Store, SyncMode, WriteBatch};

/// Smallest segment size the engine accepts (`Options::validate`: a 64-byte
/// header, a 32-byte record header and 4096 bytes of payload): the vectors'
/// files stay small.
const SEGMENT_SIZE: u64 = 64 + 32 + 4096;

fn options() -> Options {
    Options {
        sync: SyncMode::Always,
        segment_size: SEGMENT_SIZE,
        // The vectors must change only when the test writes: no thread of
        // the engine may act on its own. No status file either: it holds a
        // pid and a time, and is no part of the format.
        background_compaction: false,
        status_interval: None,
        // Index checkpoints have vectors of their own (format-spec 13).
        index_checkpoint_bytes: None,
        ..Options::default()
    }
}

/// A vector: its name, what it shows, and the program that builds it.
struct Vector {
    name: &'static str,
    about: &'static str,
    build: fn(&Path),
}

const VECTORS: &[Vector] = &[
    Vector {
        name: "empty",
        about: "a store just created: generation 1, one empty active segment",
        build: build_empty,
    },
    Vector {
        name: "all-ops",
        about: "every operation kind in one segment: appends, an empty entry, metadata \
                (also creating a journal), trim_prefix, truncate, delete_journal, \
                clear_metadata (of the journal set_metadata created: it stays, without \
                metadata), a non-UTF-8 journal id, and a batch whose operations all change \
                nothing (a record without operations)",
        build: build_all_ops,
    },
    Vector {
        name: "rolled",
        about: "rolls through three segments; segment 1 held only a journal that was \
                then deleted, so it was freed (its file removed, the manifest no longer \
                lists it, the LSNs it held are gone)",
        build: build_rolled,
    },
    Vector {
        name: "compacted",
        about: "segment 1 kept one live entry among dead ones and was rewritten by \
                `Store::compact` into segment 4, which takes its place in the manifest \
                (replay order, before the active segment 3): a file sized to its \
                records, holding the live operations with their original LSNs; \
                segment 2 held nothing live and was freed",
        build: build_compacted,
    },
    Vector {
        name: "torn-tail",
        about: "the last record of the active segment was cut midway (its second half \
                is zeros, as after a crash during the write); the next open sealed the \
                segment before it and rolled to a new segment; the torn bytes stay past \
                the sealed length",
        build: build_torn_tail,
    },
    Vector {
        name: "sync-mark",
        about: "SyncMode::Never: two batches, `Store::sync`, a third batch, clean close; \
                the third record's synced_through names the end of the second (the sync \
                mark written after the sync was overwritten by it), and the sync mark \
                at the end of the data claims every record (section 4.4)",
        build: build_sync_mark,
    },
    Vector {
        name: "journal-bounds",
        about: "journals at any index (format version 2): a journal created at index 1 by \
                trim_prefix then appended to; a trim past the end (the journal emptied and \
                moved); a truncate below first (bounds move backwards); a trim creating a \
                journal that stays empty; metadata set to empty (present) next to \
                metadata cleared by clear_metadata (absent); a clear of absent metadata \
                (a no-op, not written)",
        build: build_journal_bounds,
    },
];

/// A store written by an older build: checked in once, never regenerated.
struct Frozen {
    /// Its directory under `format-spec/vectors/` (also names its `.txt`).
    name: &'static str,
    about: &'static str,
}

const FROZEN: &[Frozen] = &[Frozen {
    name: "v1/all-ops",
    about: "the all-ops vector as written by the last build of format version 1 (segment \
            version 1, no operation kind 6); kept byte for byte as an old store that \
            newer builds must read (section 8)",
}];

fn write(store: &Store, f: impl FnOnce(&mut WriteBatch)) {
    let mut b = WriteBatch::new();
    f(&mut b);
    store.write(&b).expect("vector write");
}

fn build_empty(dir: &Path) {
    Store::open(dir, options()).unwrap().close().unwrap();
}

fn build_all_ops(dir: &Path) {
    let store = Store::open(dir, options()).unwrap();
    write(&store, |b| {
        b.append(b"a", b"hello")
            .append(b"a", b"world")
            .set_metadata(b"a", b"meta-a");
    });
    write(&store, |b| {
        b.append(&[0xff, 0xfe], &[0x00, 0x01, 0x02])
            .set_metadata(b"m", b"only metadata");
    });
    write(&store, |b| {
        b.append(b"a", b"").trim_prefix(b"a", 1);
    });
    write(&store, |b| {
        b.truncate(b"a", 2).set_metadata(b"a", b"meta-a2");
    });
    write(&store, |b| {
        b.append(b"d", b"doomed");
    });
    write(&store, |b| {
        b.delete_journal(b"d");
    });
    // Truncate, clear and delete of a journal that does not exist: nothing
    // to change, so the record holds no operation.
    write(&store, |b| {
        b.truncate(b"nope", 3)
            .clear_metadata(b"nope")
            .delete_journal(b"d");
    });
    write(&store, |b| {
        b.append(b"a", b"again");
    });
    // The metadata of "m" goes; the journal stays, with no metadata.
    write(&store, |b| {
        b.clear_metadata(b"m");
    });
    store.close().unwrap();
}

/// An entry of `len` bytes: readable start, then filler.
fn filler(tag: &str, i: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{tag}-{i}:").into_bytes();
    v.resize(len, b'.');
    v
}

fn build_rolled(dir: &Path) {
    let store = Store::open(dir, options()).unwrap();
    // 368-byte records: 11 fill the 4,128 bytes after a segment's header.
    for i in 0..11 {
        write(&store, |b| {
            b.append(b"gone", &filler("gone", i, 300));
        });
    }
    for i in 0..14 {
        write(&store, |b| {
            b.append(b"keep", &filler("keep", i, 300));
        });
    }
    // Segment 1 now holds nothing live: freed in the same commit.
    write(&store, |b| {
        b.delete_journal(b"gone");
    });
    write(&store, |b| {
        b.trim_prefix(b"keep", 3)
            .set_metadata(b"keep", b"trimmed to 3");
    });
    store.close().unwrap();
}

fn build_compacted(dir: &Path) {
    let store = Store::open(dir, options()).unwrap();
    write(&store, |b| {
        b.append(b"keep", &filler("keep", 0, 300));
    });
    // 21 more 368-byte records: segment 1 fills, then segment 2.
    for i in 0..21 {
        write(&store, |b| {
            b.append(b"old", &filler("old", i, 300));
        });
    }
    write(&store, |b| {
        b.delete_journal(b"old").set_metadata(b"keep", b"kept");
    });
    store.compact().unwrap();
    store.close().unwrap();
}

fn build_torn_tail(dir: &Path) {
    let store = Store::open(dir, options()).unwrap();
    write(&store, |b| {
        b.append(b"t", b"first").set_metadata(b"t", b"v1");
    });
    write(&store, |b| {
        b.append(b"t", b"second, torn");
    });
    store.close().unwrap();
    // Cut the last record, as a crash during its write leaves it: zero the
    // second half of its payload and the sync mark written after its sync.
    let path = dir.join("seg-00000001.jseg");
    let mut bytes = std::fs::read(&path).unwrap();
    let seg = spec::segment(&bytes, None).unwrap();
    let last = seg.records.last().unwrap();
    let half = last.offset + 32 + last.payload_len / 2;
    bytes[half..last.offset + 32 + last.payload_len].fill(0);
    if seg.mark.is_some() {
        bytes[seg.end..seg.end + 32].fill(0);
    }
    std::fs::write(&path, bytes).unwrap();
    // The next open finds the torn tail, seals segment 1 before it and
    // rolls; writing continues in segment 2.
    let store = Store::open(dir, options()).unwrap();
    write(&store, |b| {
        b.append(b"t", b"after the tear");
    });
    store.close().unwrap();
}

fn build_sync_mark(dir: &Path) {
    let never = Options {
        sync: SyncMode::Never,
        ..options()
    };
    let store = Store::open(dir, never).unwrap();
    write(&store, |b| {
        b.append(b"m", b"one");
    });
    write(&store, |b| {
        b.append(b"m", b"two");
    });
    store.sync().unwrap();
    write(&store, |b| {
        b.append(b"m", b"three, after the sync");
    });
    store.close().unwrap();
}

fn build_journal_bounds(dir: &Path) {
    let store = Store::open(dir, options()).unwrap();
    // A journal created at index 1 (as a Raft log starting at 1), then
    // appended to: entries 1 and 2.
    write(&store, |b| {
        b.trim_prefix(b"raft", 1);
    });
    write(&store, |b| {
        b.append(b"raft", b"one").append(b"raft", b"two");
    });
    // A trim past the end (a follower installing a snapshot): the journal is
    // emptied and moved to 10, and continues there.
    write(&store, |b| {
        b.trim_prefix(b"raft", 10).append(b"raft", b"ten");
    });
    // A truncate below first: emptied at 4, bounds move backwards.
    write(&store, |b| {
        b.truncate(b"raft", 4).append(b"raft", b"four");
    });
    // A trim of a missing journal creates it, empty, at 7.
    write(&store, |b| {
        b.trim_prefix(b"empty-at-7", 7);
    });
    // Metadata set to empty is present; cleared metadata is absent.
    write(&store, |b| {
        b.set_metadata(b"meta-empty", b"")
            .set_metadata(b"meta-cleared", b"soon gone")
            .append(b"meta-cleared", b"entry");
    });
    write(&store, |b| {
        b.clear_metadata(b"meta-cleared");
    });
    // Nothing to clear any more, and nothing on a missing journal: neither
    // is written, so the record holds only the append.
    write(&store, |b| {
        b.clear_metadata(b"meta-cleared")
            .clear_metadata(b"nope")
            .append(b"meta-cleared", b"after the clear");
    });
    store.close().unwrap();
}

// ---------------------------------------------------------------------------
// The spec reader.

/// A reader of the format written from `format-spec/README.md`, sharing no
/// code with the engine. Every function checks the bytes against the spec
/// and returns an error naming the offset of the first disagreement.
mod spec {
    pub type Res<T> = Result<T, String>;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }
    fn crc(b: &[u8]) -> u32 {
        crc32fast::hash(b)
    }

    /// Section 6.
    #[derive(Debug)]
    pub struct Manifest {
        pub len: usize,
        pub generation: u64,
        pub next_segment_id: u64,
        pub lsn_floor: u64,
        /// (segment id, sealed length or `None` for the active one).
        pub segments: Vec<(u64, Option<u64>)>,
        pub crc: u32,
    }

    pub fn manifest(b: &[u8]) -> Res<Manifest> {
        if b.len() < 44 || b[..8] != *b"JSTRMAN\0" || u32_at(b, 8) != 1 {
            return Err("manifest: magic or version".into());
        }
        let n = u32_at(b, 12) as usize;
        if n == 0 || b.len() != 40 + 16 * n + 4 {
            return Err(format!("manifest: length {} for {n} entries", b.len()));
        }
        let crc_stored = u32_at(b, 40 + 16 * n);
        if crc(&b[..40 + 16 * n]) != crc_stored {
            return Err("manifest: crc".into());
        }
        let next_segment_id = u64_at(b, 24);
        let mut segments = Vec::new();
        for i in 0..n {
            let at = 40 + 16 * i;
            let id = u64_at(b, at);
            let sealed = u64_at(b, at + 8);
            if id >= next_segment_id || id > u64::from(u32::MAX) {
                return Err(format!("manifest: entry {i}: id {id}"));
            }
            let last = i + 1 == n;
            if (sealed == u64::MAX) != last {
                return Err(format!("manifest: entry {i}: only the last is active"));
            }
            segments.push((id, (!last).then_some(sealed)));
        }
        Ok(Manifest {
            len: b.len(),
            generation: u64_at(b, 16),
            next_segment_id,
            lsn_floor: u64_at(b, 32),
            segments,
            crc: crc_stored,
        })
    }

    /// Section 4.2.
    #[derive(Debug, Clone)]
    pub struct Op {
        pub offset: usize,
        pub kind: u8,
        pub id: Vec<u8>,
        pub value: Vec<u8>,
        pub value_crc: u32,
        pub first: u64,
        pub end: u64,
    }

    pub fn kind_name(kind: u8) -> &'static str {
        match kind {
            1 => "append",
            2 => "set_metadata",
            3 => "trim_prefix",
            4 => "truncate",
            5 => "delete_journal",
            6 => "clear_metadata",
            _ => "?",
        }
    }

    /// Section 4.1.
    #[derive(Debug)]
    pub struct Record {
        pub offset: usize,
        pub header_crc: u32,
        pub payload_crc: u32,
        pub lsn: u64,
        pub payload_len: usize,
        pub synced_through: u32,
        pub kind: u16,
        pub flags: u16,
        pub ops: Vec<Op>,
    }

    /// Section 3.
    #[derive(Debug)]
    pub struct Segment {
        pub len: usize,
        /// Format version from the header: 1 or 2 (section 3.1).
        pub version: u32,
        pub segment_id: u64,
        pub capacity: u64,
        pub base_lsn: u64,
        pub header_crc: u32,
        pub records: Vec<Record>,
        /// Where the data ends (section 5).
        pub end: usize,
        /// The sync mark at `end` (section 4.4): its LSN and `synced_through`.
        pub mark: Option<(u64, u32)>,
        /// Non-zero bytes after `end`, as (first, last) offsets: only a
        /// sealed segment may have them (a torn tail sealed off, 9.1).
        pub tail: Option<(usize, usize)>,
    }

    /// Decodes a segment file; `sealed` is its sealed length from the
    /// manifest (`None` for the active segment).
    pub fn segment(b: &[u8], sealed: Option<u64>) -> Res<Segment> {
        if b.len() < 64 || b[..8] != *b"JSTRSEG\0" {
            return Err("segment: magic".into());
        }
        let header_crc = u32_at(b, 60);
        if crc(&b[..60]) != header_crc {
            return Err("segment: header crc".into());
        }
        let version = u32_at(b, 8);
        if !(1..=2).contains(&version) || u32_at(b, 12) != 64 || b[40..60].iter().any(|&x| x != 0) {
            return Err("segment: version, header_len or reserved".into());
        }
        let capacity = u64_at(b, 24);
        if capacity != b.len() as u64 {
            return Err("segment: capacity is not the file's length".into());
        }
        let base_lsn = u64_at(b, 32);
        let limit = sealed.map_or(b.len(), |s| s as usize);
        let mut records = Vec::new();
        let mut pos = 64;
        let mut prev_lsn = 0;
        let mut mark = None;
        while pos + 32 <= limit {
            let h = &b[pos..pos + 32];
            if h.iter().all(|&x| x == 0) {
                break;
            }
            if u16_at(b, pos + 24) == 2 {
                mark = Some(sync_mark(b, pos)?);
                break;
            }
            let r = record(b, pos, limit, version)?;
            if r.lsn <= prev_lsn || r.lsn < base_lsn {
                return Err(format!("record @{pos}: lsn {} does not increase", r.lsn));
            }
            prev_lsn = r.lsn;
            let next = (pos + 32 + r.payload_len).next_multiple_of(8);
            if b[pos + 32 + r.payload_len..next.min(b.len())]
                .iter()
                .any(|&x| x != 0)
            {
                return Err(format!("record @{pos}: padding not zero"));
            }
            records.push(r);
            pos = next;
        }
        let end = pos;
        if let Some(s) = sealed {
            if end as u64 != s || mark.is_some() {
                return Err(format!("sealed at {s} but the records end at {end}"));
            }
        }
        // A sync mark ends the data; zeros follow it.
        let zeros_from = if mark.is_some() { end + 32 } else { end };
        let first = b[zeros_from..]
            .iter()
            .position(|&x| x != 0)
            .map(|p| zeros_from + p);
        let last = b[zeros_from..]
            .iter()
            .rposition(|&x| x != 0)
            .map(|p| zeros_from + p);
        let tail = first.zip(last);
        if tail.is_some() && sealed.is_none() {
            return Err(format!(
                "active segment: non-zero bytes after its end {end}"
            ));
        }
        Ok(Segment {
            len: b.len(),
            version,
            segment_id: u64_at(b, 16),
            capacity,
            base_lsn,
            header_crc,
            records,
            end,
            mark,
            tail,
        })
    }

    /// Section 4.4: a header of kind 2 with no payload; returns its LSN and
    /// `synced_through`, which may not claim bytes past the mark.
    fn sync_mark(b: &[u8], pos: usize) -> Res<(u64, u32)> {
        let err = |what: &str| format!("sync mark @{pos}: {what}");
        if crc(&b[pos + 4..pos + 32]) != u32_at(b, pos) {
            return Err(err("header crc"));
        }
        if u32_at(b, pos + 4) != 0 || u32_at(b, pos + 16) != 0 || u32_at(b, pos + 28) != 0 {
            return Err(err("payload_crc, payload_len or op_count not zero"));
        }
        if u16_at(b, pos + 26) != 0 {
            return Err(err("flags"));
        }
        let synced_through = u32_at(b, pos + 20);
        if synced_through as usize > pos {
            return Err(err("synced_through past the mark"));
        }
        Ok((u64_at(b, pos + 8), synced_through))
    }

    /// A batch record (section 4.1) in a segment of format `version`: kind 6
    /// exists from version 2 on. The writer never puts it in a version-1
    /// segment; this reader, which checks what the writer produces, rejects
    /// it there (section 8: readers need not).
    fn record(b: &[u8], pos: usize, limit: usize, version: u32) -> Res<Record> {
        let err = |what: &str| format!("record @{pos}: {what}");
        let header_crc = u32_at(b, pos);
        if crc(&b[pos + 4..pos + 32]) != header_crc {
            return Err(err("header crc"));
        }
        let payload_len = u32_at(b, pos + 16) as usize;
        let start = pos + 32;
        if start + payload_len > limit {
            return Err(err("payload past the limit"));
        }
        let payload = &b[start..start + payload_len];
        let payload_crc = u32_at(b, pos + 4);
        if crc(payload) != payload_crc {
            return Err(err("payload crc"));
        }
        let (kind, flags) = (u16_at(b, pos + 24), u16_at(b, pos + 26));
        if kind != 1 || flags != 0 {
            return Err(err("kind or flags"));
        }
        let op_count = u32_at(b, pos + 28) as usize;
        let mut ops = Vec::new();
        let mut at = 0;
        while at < payload.len() {
            if at + 32 > payload.len() {
                return Err(err("truncated op header"));
            }
            let o = &payload[at..];
            let (kind, id_len) = (o[0], o[1] as usize);
            let value_len = u32_at(o, 4) as usize;
            let value_crc = u32_at(o, 8);
            let max_kind = if version >= 2 { 6 } else { 5 };
            if !(1..=max_kind).contains(&kind)
                || id_len == 0
                || u16_at(o, 2) != 0
                || u32_at(o, 12) != 0
            {
                return Err(err("op kind, id length or reserved"));
            }
            let (first, end) = (u64_at(o, 16), u64_at(o, 24));
            let len = 32 + id_len + value_len;
            if len > o.len() || first > 1 << 62 || end > 1 << 62 {
                return Err(err("op bounds"));
            }
            let value = o[32 + id_len..len].to_vec();
            let ok = match kind {
                1 => end > first && crc(&value) == value_crc,
                2 => first <= end && crc(&value) == value_crc,
                3 | 4 | 6 => first <= end && value_len == 0 && value_crc == 0,
                _ => first == 0 && end == 0 && value_len == 0 && value_crc == 0,
            };
            if !ok {
                return Err(err("op fields"));
            }
            ops.push(Op {
                offset: start + at,
                kind,
                id: o[32..32 + id_len].to_vec(),
                value,
                value_crc,
                first,
                end,
            });
            at += len;
        }
        if ops.len() != op_count {
            return Err(err("op_count"));
        }
        Ok(Record {
            offset: pos,
            header_crc,
            payload_crc,
            lsn: u64_at(b, pos + 8),
            payload_len,
            synced_through: u32_at(b, pos + 20),
            kind,
            flags,
            ops,
        })
    }

    /// A journal after replay: `entries[i]` is index `first + i`, `None` a
    /// placeholder (section 9.2).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Journal {
        pub first: u64,
        pub entries: Vec<Option<Vec<u8>>>,
        /// `None`: never set, or cleared by a `clear_metadata`.
        pub metadata: Option<Vec<u8>>,
    }

    /// Replays operations in order as section 9.2 says, then checks 9.3.
    pub fn replay<'a>(
        ops: impl Iterator<Item = &'a Op>,
    ) -> Res<std::collections::BTreeMap<Vec<u8>, Journal>> {
        let mut js: std::collections::BTreeMap<Vec<u8>, Journal> = Default::default();
        let mut latest: std::collections::BTreeMap<Vec<u8>, (u64, u64)> = Default::default();
        for op in ops {
            if op.kind == 5 {
                js.remove(&op.id);
                latest.remove(&op.id);
                continue;
            }
            latest.insert(op.id.clone(), (op.first, op.end));
            let j = js.entry(op.id.clone()).or_insert(Journal {
                first: op.first,
                entries: Vec::new(),
                metadata: None,
            });
            let end = if op.kind == 1 { op.end - 1 } else { op.end };
            let j_end = |j: &Journal| j.first + j.entries.len() as u64;
            while j_end(j) > end.max(j.first) {
                j.entries.pop();
            }
            while j.first < op.first && !j.entries.is_empty() {
                j.entries.remove(0);
                j.first += 1;
            }
            if j.entries.is_empty() {
                j.first = end;
            }
            while j_end(j) < end {
                j.entries.push(None);
            }
            match op.kind {
                1 => j.entries.push(Some(op.value.clone())),
                2 => j.metadata = Some(op.value.clone()),
                6 => j.metadata = None,
                _ => {}
            }
        }
        for (id, j) in &js {
            let (first, end) = latest[id];
            if j.first != first || j.first + j.entries.len() as u64 != end {
                return Err(format!("journal {id:?}: bounds differ from its latest op"));
            }
            if j.entries.iter().any(Option::is_none) {
                return Err(format!("journal {id:?}: an entry is missing"));
            }
        }
        Ok(js)
    }
}

// ---------------------------------------------------------------------------
// Rendering the decoded content.

fn show_bytes(b: &[u8]) -> String {
    const MAX: usize = 40;
    let shown = &b[..b.len().min(MAX)];
    let mut s = match std::str::from_utf8(shown) {
        Ok(t) if t.chars().all(|c| !c.is_control()) => format!("{t:?}"),
        _ => format!(
            "0x{}",
            shown.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    };
    if b.len() > MAX {
        let _ = write!(s, "... ({} bytes)", b.len());
    }
    s
}

/// Decodes the store in `dir` by the spec and renders it; fails on the
/// first byte the spec does not account for.
fn decode(
    dir: &Path,
    about: &str,
    name: &str,
) -> Result<(String, BTreeMap<Vec<u8>, spec::Journal>), String> {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# format-spec vector \"{name}\": {about}.");
    let _ = writeln!(
        w,
        "# Built by tests/vectors.rs; decoded as format-spec/README.md describes."
    );
    let files = list(dir);
    let _ = writeln!(w, "\nfiles");
    for (f, bytes) in &files {
        let _ = writeln!(w, "  {f:<20} {} bytes", bytes.len());
    }
    for f in files.keys() {
        let known =
            f == "LOCK" || f == "MANIFEST" || inspect::segment_id_from_file_name(f).is_some();
        if !known {
            return Err(format!("{f}: not a file the spec names"));
        }
    }
    if !files["LOCK"].is_empty() {
        return Err("LOCK is not empty".into());
    }
    let mb = &files["MANIFEST"];
    let m = spec::manifest(mb)?;
    let _ = writeln!(w, "\nMANIFEST ({} bytes)", m.len);
    let _ = writeln!(w, "  @0   magic            \"JSTRMAN\\0\"");
    let _ = writeln!(w, "  @8   version          1");
    let _ = writeln!(w, "  @12  segment_count    {}", m.segments.len());
    let _ = writeln!(w, "  @16  generation       {}", m.generation);
    let _ = writeln!(w, "  @24  next_segment_id  {}", m.next_segment_id);
    let _ = writeln!(w, "  @32  lsn_floor        {}", m.lsn_floor);
    for (i, (id, sealed)) in m.segments.iter().enumerate() {
        let state = match sealed {
            Some(len) => format!("sealed_len {len}"),
            None => "sealed_len 0xffffffffffffffff (active)".to_owned(),
        };
        let _ = writeln!(
            w,
            "  @{:<3} entry {i}: segment_id {id}, {state}",
            40 + 16 * i
        );
    }
    let _ = writeln!(w, "  @{:<3} crc              {:#010x}", m.len - 4, m.crc);

    let mut all_ops = Vec::new();
    let listed: Vec<u64> = m.segments.iter().map(|s| s.0).collect();
    for (f, bytes) in &files {
        let Some(id) = inspect::segment_id_from_file_name(f) else {
            continue;
        };
        let Some(&(_, sealed)) = m.segments.iter().find(|s| s.0 == u64::from(id)) else {
            return Err(format!("{f}: not listed in the manifest {listed:?}"));
        };
        let seg = spec::segment(bytes, sealed).map_err(|e| format!("{f}: {e}"))?;
        if seg.segment_id != u64::from(id) {
            return Err(format!("{f}: header names segment {}", seg.segment_id));
        }
        let state = match sealed {
            Some(len) => format!("sealed at {len}"),
            None => "active".to_owned(),
        };
        let _ = writeln!(w, "\n{f} ({} bytes, {state})", seg.len);
        let _ = writeln!(
            w,
            "  @0   header: magic \"JSTRSEG\\0\", version {}, header_len 64, segment_id {}, capacity {}, base_lsn {}, reserved 0, crc {:#010x}",
            seg.version,
            seg.segment_id, seg.capacity, seg.base_lsn, seg.header_crc
        );
        for r in &seg.records {
            let end = r.offset + 32 + r.payload_len;
            let _ = writeln!(
                w,
                "  @{:<4} record: lsn {}, payload_len {}, synced_through {}, kind {}, flags {}, op_count {}, header_crc {:#010x}, payload_crc {:#010x}, padding {}",
                r.offset,
                r.lsn,
                r.payload_len,
                r.synced_through,
                r.kind,
                r.flags,
                r.ops.len(),
                r.header_crc,
                r.payload_crc,
                end.next_multiple_of(8) - end
            );
            for op in &r.ops {
                let value = match op.kind {
                    1 | 2 => format!(
                        ", value_len {}, value_crc {:#010x}, value {}",
                        op.value.len(),
                        op.value_crc,
                        show_bytes(&op.value)
                    ),
                    _ => String::new(),
                };
                let _ = writeln!(
                    w,
                    "    @{:<4} {} {}: first {}, end {}{value}",
                    op.offset,
                    spec::kind_name(op.kind),
                    show_bytes(&op.id),
                    op.first,
                    op.end
                );
            }
        }
        match seg.mark {
            Some((lsn, synced_through)) => {
                let _ = writeln!(
                    w,
                    "  @{:<4} end of data: sync mark: lsn {lsn}, synced_through {synced_through}, kind 2, payload_len 0, op_count 0",
                    seg.end
                );
            }
            None => {
                let _ = writeln!(w, "  @{:<4} end of data", seg.end);
            }
        }
        let zeros_from = seg.end + if seg.mark.is_some() { 32 } else { 0 };
        match seg.tail {
            None => {
                let _ = writeln!(w, "  bytes {zeros_from}..{} are zero", seg.len);
            }
            Some((first, last)) => {
                let _ = writeln!(
                    w,
                    "  bytes {}..{} past the sealed length: non-zero from {first} to {last} (a sync mark or torn bytes, never read again), zero elsewhere",
                    seg.end, seg.len
                );
            }
        }
        all_ops.push((
            m.segments.iter().position(|s| s.0 == u64::from(id)),
            seg.records,
        ));
    }
    for id in &listed {
        if !files.contains_key(&inspect::segment_file_name_of(*id as u32)) {
            return Err(format!("segment {id} is listed but has no file"));
        }
    }
    // Replay in manifest order (section 9.2).
    all_ops.sort_by_key(|(pos, _)| *pos);
    let ops: Vec<&spec::Op> = all_ops
        .iter()
        .flat_map(|(_, records)| records.iter().flat_map(|r| r.ops.iter()))
        .collect();
    let journals = spec::replay(ops.into_iter())?;
    let _ = writeln!(w, "\njournals after replay (section 9.2)");
    if journals.is_empty() {
        let _ = writeln!(w, "  (none)");
    }
    for (id, j) in &journals {
        let _ = writeln!(
            w,
            "  {}: first_index {}, end_index {}, metadata {}",
            show_bytes(id),
            j.first,
            j.first + j.entries.len() as u64,
            j.metadata
                .as_deref()
                .map_or_else(|| "absent".to_owned(), show_bytes)
        );
        for (i, e) in j.entries.iter().enumerate() {
            let _ = writeln!(
                w,
                "    [{}] {}",
                j.first + i as u64,
                show_bytes(e.as_deref().unwrap_or_default())
            );
        }
    }
    Ok((out, journals))
}

/// Every file of a directory, by name.
fn list(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("format-spec/vectors")
}

const REGENERATE: &str = "JOURNALSTORE_REGENERATE_VECTORS";

fn regenerate_hint() -> String {
    format!(
        "format changed: regenerate with `{REGENERATE}=1 cargo test --test vectors` and update format-spec/README.md"
    )
}

/// The engine's view of a store, as (id, first, end, metadata, entries).
fn engine_journals(dir: &Path) -> BTreeMap<Vec<u8>, spec::Journal> {
    let ro = inspect::open_read_only(dir).expect("the engine opens the vector");
    let snap = &ro.snapshot;
    snap.journal_ids()
        .map(|id| {
            let j = snap.journal(id).unwrap();
            (
                id.to_vec(),
                spec::Journal {
                    first: j.first_index(),
                    entries: j.entries(..).map(|e| Some(e.unwrap().1.to_vec())).collect(),
                    metadata: j.metadata().unwrap().map(<[u8]>::to_vec),
                },
            )
        })
        .collect()
}

/// Each checked-in vector, frozen ones included, decodes by the spec to
/// exactly its `.txt`; the spec's replay and the engine agree on its
/// journals; the engine's scan sees the same records at the same offsets.
#[test]
fn vectors_decode_as_documented() {
    if std::env::var_os(REGENERATE).is_some() {
        // The other test is rewriting the files.
        return;
    }
    let all = VECTORS
        .iter()
        .map(|v| (v.name, v.about))
        .chain(FROZEN.iter().map(|f| (f.name, f.about)));
    for (name, about) in all {
        let dir = vectors_dir().join(name);
        let (text, journals) = decode(&dir, about, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = std::fs::read_to_string(vectors_dir().join(format!("{name}.txt")))
            .unwrap_or_else(|e| panic!("{name}.txt: {e}"));
        assert!(
            text == want,
            "vector {name}: decoded content differs from {name}.txt\n--- decoded:\n{text}\n{}",
            regenerate_hint()
        );
        assert_eq!(
            engine_journals(&dir),
            journals,
            "vector {name}: the engine and the spec's replay disagree"
        );
        let m = inspect::read_manifest(&dir.join("MANIFEST")).unwrap();
        for s in &m.segments {
            let bytes = std::fs::read(dir.join(&s.file_name)).unwrap();
            let mine = spec::segment(&bytes, s.sealed_len).unwrap();
            let file = inspect::SegmentFile::from_bytes(Path::new(&s.file_name), bytes);
            let theirs: Vec<(u64, u64, usize)> = file
                .scan(0, s.sealed_len, false)
                .into_iter()
                .filter_map(|i| match i {
                    inspect::ScanItem::Record {
                        offset, lsn, ops, ..
                    } => Some((offset, lsn, ops.len())),
                    _ => None,
                })
                .collect();
            let mine: Vec<(u64, u64, usize)> = mine
                .records
                .iter()
                .map(|r| (r.offset as u64, r.lsn, r.ops.len()))
                .collect();
            assert_eq!(mine, theirs, "vector {name} {}", s.file_name);
        }
    }
}

/// The generator writes the same bytes twice in a row, and the same bytes
/// as the checked-in vectors: a format change cannot go unnoticed. With
/// `JOURNALSTORE_REGENERATE_VECTORS=1` it rewrites the vectors instead, and
/// the `.txt` of each frozen vector from its unchanged bytes.
#[test]
fn vectors_are_what_the_engine_writes() {
    let regenerate = std::env::var_os(REGENERATE).is_some();
    if regenerate {
        for f in FROZEN {
            let (text, _) = decode(&vectors_dir().join(f.name), f.about, f.name)
                .unwrap_or_else(|e| panic!("frozen vector {}: {e}", f.name));
            std::fs::write(vectors_dir().join(format!("{}.txt", f.name)), text).unwrap();
        }
    }
    for v in VECTORS {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        (v.build)(&a);
        (v.build)(&b);
        let built = list(&a);
        assert_eq!(
            built,
            list(&b),
            "vector {}: the generator is not deterministic",
            v.name
        );
        let (text, _) = decode(&a, v.about, v.name).unwrap_or_else(|e| {
            panic!(
                "vector {}: the engine wrote bytes the spec does not describe: {e}",
                v.name
            )
        });
        let dir = vectors_dir().join(v.name);
        let txt = vectors_dir().join(format!("{}.txt", v.name));
        if regenerate {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &built {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
            std::fs::write(&txt, &text).unwrap();
            eprintln!("regenerated {}", dir.display());
            continue;
        }
        let checked_in = if dir.is_dir() {
            list(&dir)
        } else {
            BTreeMap::new()
        };
        let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&built),
            names(&checked_in),
            "vector {}: the files differ; {}",
            v.name,
            regenerate_hint()
        );
        for (name, bytes) in &built {
            let old = &checked_in[name];
            if bytes != old {
                let at = bytes
                    .iter()
                    .zip(old.iter())
                    .position(|(x, y)| x != y)
                    .unwrap_or(bytes.len().min(old.len()));
                panic!(
                    "vector {} file {name}: bytes differ from offset {at} (now {} bytes, checked in {}); {}",
                    v.name,
                    bytes.len(),
                    old.len(),
                    regenerate_hint()
                );
            }
        }
        let old_text = std::fs::read_to_string(&txt).unwrap_or_default();
        assert!(
            text == old_text,
            "vector {}: {}.txt is not the decoding of its bytes; {}",
            v.name,
            v.name,
            regenerate_hint()
        );
    }
}

/// The public format constants are the spec's values. Most show in the
/// vectors' bytes anyway; `MAX_INDEX` and the op kind numbers of kinds a
/// vector lacks would not.
#[test]
fn format_constants_are_the_specs() {
    use journalstore::record::*;
    assert_eq!(FORMAT_VERSION, 2);
    assert_eq!(READABLE_VERSIONS, [1, 2]);
    assert_eq!(SEGMENT_MAGIC, *b"JSTRSEG\0");
    assert_eq!(inspect::MANIFEST_MAGIC, *b"JSTRMAN\0");
    assert_eq!(SEGMENT_HEADER_LEN, 64);
    assert_eq!(RECORD_HEADER_LEN, 32);
    assert_eq!(OP_HEADER_LEN, 32);
    assert_eq!(RECORD_ALIGN, 8);
    assert_eq!(MAX_INDEX, 1 << 62);
    assert_eq!(RECORD_KIND_BATCH, 1);
    let kinds = [
        (OpKind::Append, 1, "append"),
        (OpKind::SetMetadata, 2, "set_metadata"),
        (OpKind::TrimPrefix, 3, "trim_prefix"),
        (OpKind::Truncate, 4, "truncate"),
        (OpKind::Delete, 5, "delete_journal"),
        (OpKind::ClearMetadata, 6, "clear_metadata"),
    ];
    for (kind, byte, name) in kinds {
        assert_eq!(kind as u8, byte);
        assert_eq!(OpKind::from_u8(byte), Some(kind));
        assert_eq!(kind.name(), name);
    }
    assert_eq!(OpKind::from_u8(0), None);
    assert_eq!(OpKind::from_u8(7), None);
    assert_eq!(inspect::MANIFEST_FILE_NAME, "MANIFEST");
    assert_eq!(inspect::MANIFEST_TMP_FILE_NAME, "MANIFEST.tmp");
    assert_eq!(inspect::segment_file_name_of(0x2a), "seg-0000002a.jseg");
    assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    // The smallest segment size the engine accepts (section 3).
    let too_small = Options {
        segment_size: SEGMENT_SIZE - 1,
        ..options()
    };
    let tmp = tempfile::tempdir().unwrap();
    assert!(Store::open(tmp.path().join("s"), too_small).is_err());
    Store::open(tmp.path().join("t"), options())
        .unwrap()
        .close()
        .unwrap();
    // The manifest keeps its own layout version (sections 6 and 8).
    let m = inspect::read_manifest(&tmp.path().join("t/MANIFEST")).unwrap();
    assert_eq!(m.version, 1);
}
