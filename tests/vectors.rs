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
        name: "compacted-by-journal",
        about: "segment 1 held journals a and b written in turns with x, y and z, which \
                were then deleted; `Store::compact` rewrote it into segment 3, grouped by \
                journal (section 7.4): one record with a's three entries, then one with \
                b's two, taking the last two LSNs of those it kept (10 and 11)",
        build: build_compacted_by_journal,
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
    Vector {
        name: "pending-roll",
        about: "SyncMode::Never: a roll whose seal is still pending (section 7.2), copied \
                as it lies: MANIFEST (generation 1) lists segment 1 as active, \
                MANIFEST.next (generation 2) seals it and lists segment 2, which holds the \
                three batches written since; open adopts MANIFEST.next (section 9.1), so the \
                journals are the replay of both segments",
        build: build_pending_roll,
    },
    Vector {
        name: "index-checkpoint",
        about: "a store closed with an index checkpoint (section 13): a journal rolled \
                into a second segment then trimmed (an anchor, a dependency of segment 2 \
                on segment 1), one holding only metadata, one moved by a trim past its \
                end and appended to there; the checkpoint's journals are the replay's",
        build: build_index_checkpoint,
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

fn build_pending_roll(dir: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("store");
    let options = Options {
        // No sync takes the seal: it stays pending until close.
        sync: SyncMode::Never,
        ..options()
    };
    let store = Store::open(&live, options).unwrap();
    // 368-byte records: 11 fill segment 1, the next two roll into 2.
    for i in 0..13 {
        write(&store, |b| {
            b.append(b"log", &filler("log", i, 300));
        });
    }
    write(&store, |b| {
        b.set_metadata(b"log", b"after the roll");
    });
    assert!(
        live.join("MANIFEST.next").exists(),
        "the roll's seal is not pending"
    );
    // A copy of the directory as a process crash would leave it: what was
    // written is in the files, the seal never ran.
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in list(&live) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    drop(store);
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

fn build_compacted_by_journal(dir: &Path) {
    let store = Store::open(dir, options()).unwrap();
    // 368-byte records: 11 fill segment 1, the 12th rolls into segment 2.
    let turns: [&[u8]; 5] = [b"a", b"x", b"y", b"b", b"z"];
    for i in 0..12u64 {
        let journal = turns[i as usize % turns.len()];
        write(&store, |b| {
            b.append(journal, &filler(&String::from_utf8_lossy(journal), i, 300));
        });
    }
    write(&store, |b| {
        b.delete_journal(b"x")
            .delete_journal(b"y")
            .delete_journal(b"z");
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

fn build_index_checkpoint(dir: &Path) {
    // A checkpoint at clean close only: no amount appended triggers one.
    let with_checkpoint = Options {
        index_checkpoint_bytes: Some(u64::MAX),
        ..options()
    };
    let store = Store::open(dir, with_checkpoint).unwrap();
    // 368-byte records: the twelfth rolls into segment 2.
    for i in 0..12 {
        write(&store, |b| {
            b.append(b"log", &filler("log", i, 300));
        });
    }
    write(&store, |b| {
        b.set_metadata(b"meta", b"only metadata")
            .append(b"moved", b"zero")
            .append(b"moved", b"one");
    });
    // Entries 0..5 of "log" die (in segment 1, killed from segment 2); the
    // trim is its anchor. "moved" is emptied and moved to 10, and continues.
    write(&store, |b| {
        b.trim_prefix(b"log", 5)
            .trim_prefix(b"moved", 10)
            .append(b"moved", b"ten");
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
        /// The id of the segment holding it (from the segment header).
        pub segment: u64,
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
        let segment_id = u64_at(b, 16);
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
            let mut r = r;
            for op in &mut r.ops {
                op.segment = segment_id;
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
            segment_id,
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
                segment: 0,
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

    /// A location (section 13.1): a segment id and the offset of an
    /// operation header in that segment file.
    pub type Loc = (u64, usize);

    /// Where the live items of a journal are after replay (sections 9.2
    /// and 9.5): each entry's `append`, the `set_metadata` of its metadata,
    /// its anchor (its latest operation when that is a `trim_prefix`,
    /// `truncate` or `clear_metadata`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Locations {
        pub entries: Vec<Loc>,
        pub metadata: Option<Loc>,
        pub anchor: Option<Loc>,
    }

    /// Replays operations in order as section 9.2 says, then checks 9.3;
    /// gives each journal with the location of each of its live items.
    pub fn replay_with_locations<'a>(
        ops: impl Iterator<Item = &'a Op>,
    ) -> Res<std::collections::BTreeMap<Vec<u8>, (Journal, Locations)>> {
        let mut js: std::collections::BTreeMap<Vec<u8>, Journal> = Default::default();
        // Parallel to `js`: entry locations (`None` for a placeholder),
        // metadata and anchor locations.
        type Live = (Vec<Option<Loc>>, Option<Loc>, Option<Loc>);
        let mut live: std::collections::BTreeMap<Vec<u8>, Live> = Default::default();
        let mut latest: std::collections::BTreeMap<Vec<u8>, (u64, u64)> = Default::default();
        for op in ops {
            if op.kind == 5 {
                js.remove(&op.id);
                latest.remove(&op.id);
                live.remove(&op.id);
                continue;
            }
            let loc = (op.segment, op.offset);
            let l = live.entry(op.id.clone()).or_default();
            // Any later operation on the journal kills its anchor (9.5).
            l.2 = None;
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
                l.0.pop();
            }
            while j.first < op.first && !j.entries.is_empty() {
                j.entries.remove(0);
                l.0.remove(0);
                j.first += 1;
            }
            if j.entries.is_empty() {
                j.first = end;
            }
            while j_end(j) < end {
                j.entries.push(None);
                l.0.push(None);
            }
            match op.kind {
                1 => {
                    j.entries.push(Some(op.value.clone()));
                    l.0.push(Some(loc));
                }
                2 => {
                    j.metadata = Some(op.value.clone());
                    l.1 = Some(loc);
                }
                6 => {
                    j.metadata = None;
                    l.1 = None;
                    l.2 = Some(loc);
                }
                _ => l.2 = Some(loc),
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
        Ok(js
            .into_iter()
            .map(|(id, j)| {
                let (entries, metadata, anchor) = live.remove(&id).unwrap_or_default();
                let locations = Locations {
                    entries: entries.into_iter().flatten().collect(),
                    metadata,
                    anchor,
                };
                (id, (j, locations))
            })
            .collect())
    }
    /// A segment entry of an index checkpoint (section 13.1).
    #[derive(Debug)]
    pub struct IndexSegment {
        pub offset: usize,
        pub id: u64,
        pub flags: u32,
        pub sealed_len: u64,
        pub live_bytes: u64,
        pub live_items: u64,
        pub deps: Vec<u32>,
        pub hashes: Vec<u64>,
    }

    /// A journal entry of an index checkpoint (section 13.1).
    #[derive(Debug)]
    pub struct IndexJournal {
        pub offset: usize,
        pub id: Vec<u8>,
        pub flags: u8,
        pub first: u64,
        pub entry_bytes: u64,
        pub locations: Locations,
    }

    /// An index checkpoint file (section 13.1).
    #[derive(Debug)]
    pub struct IndexCheckpoint {
        pub len: usize,
        pub generation: u64,
        pub last_lsn: u64,
        pub active_end: u64,
        pub header_crc: u32,
        pub segments: Vec<IndexSegment>,
        pub journals: Vec<IndexJournal>,
        pub body_len: u64,
        pub body_crc: u32,
    }

    /// Reads little-endian fields of a checkpoint body, failing (never
    /// panicking) past its end.
    struct Cursor<'a> {
        b: &'a [u8],
        pos: usize,
    }

    impl Cursor<'_> {
        fn take(&mut self, n: usize) -> Res<&[u8]> {
            let out = self
                .b
                .get(self.pos..self.pos.saturating_add(n))
                .ok_or_else(|| format!("index checkpoint: cut short at {}", self.pos))?;
            self.pos += n;
            Ok(out)
        }
        fn u8(&mut self) -> Res<u8> {
            Ok(self.take(1)?[0])
        }
        fn u32(&mut self) -> Res<u32> {
            Ok(u32_at(self.take(4)?, 0))
        }
        fn u64(&mut self) -> Res<u64> {
            Ok(u64_at(self.take(8)?, 0))
        }
    }

    /// Decodes an index checkpoint file: header, segment entries, journal
    /// entries and trailer, every byte accounted for (section 13.1).
    pub fn index_checkpoint(b: &[u8]) -> Res<IndexCheckpoint> {
        if b.len() < 64 + 12 || b[..8] != *b"JSTRIDX\0" {
            return Err("index checkpoint: length or magic".into());
        }
        if u32_at(b, 8) != 1 || u32_at(b, 12) != 64 {
            return Err("index checkpoint: version or header_len".into());
        }
        if u32_at(b, 44) != 0 || u32_at(b, 56) != 0 {
            return Err("index checkpoint: reserved bytes not zero".into());
        }
        let header_crc = u32_at(b, 60);
        if crc(&b[..60]) != header_crc {
            return Err("index checkpoint: header crc".into());
        }
        let trailer = b.len() - 12;
        let body_len = u64_at(b, trailer);
        let body_crc = u32_at(b, trailer + 8);
        if body_len != (trailer - 64) as u64 {
            return Err(format!("index checkpoint: body length {body_len}"));
        }
        if crc(&b[64..trailer]) != body_crc {
            return Err("index checkpoint: body crc".into());
        }
        let segment_count = u32_at(b, 40) as usize;
        let journal_count = u64_at(b, 48);
        if segment_count == 0 {
            return Err("index checkpoint: no segment".into());
        }
        let mut c = Cursor {
            b: &b[..trailer],
            pos: 64,
        };
        let mut segments = Vec::new();
        for k in 0..segment_count {
            let offset = c.pos;
            let id = u64::from(c.u32()?);
            let flags = c.u32()?;
            let sealed_len = c.u64()?;
            let live_bytes = c.u64()?;
            let live_items = c.u64()?;
            let dep_count = c.u32()?;
            let hash_count = c.u32()?;
            let last = k + 1 == segment_count;
            if flags & !7 != 0 || (flags & 1 == 0) != last || (last && sealed_len != 0) {
                return Err(format!(
                    "index checkpoint @{offset}: segment flags {flags:#x}"
                ));
            }
            let deps = (0..dep_count).map(|_| c.u32()).collect::<Res<Vec<_>>>()?;
            let hashes = (0..hash_count).map(|_| c.u64()).collect::<Res<Vec<_>>>()?;
            if hashes.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("index checkpoint @{offset}: hashes not ascending"));
            }
            if segments.iter().any(|s: &IndexSegment| s.id == id) {
                return Err(format!("index checkpoint @{offset}: segment {id} twice"));
            }
            segments.push(IndexSegment {
                offset,
                id,
                flags,
                sealed_len,
                live_bytes,
                live_items,
                deps,
                hashes,
            });
        }
        let mut journals: Vec<IndexJournal> = Vec::new();
        for _ in 0..journal_count {
            let offset = c.pos;
            let id_len = c.u8()? as usize;
            let id = c.take(id_len)?.to_vec();
            if id.is_empty() || journals.last().is_some_and(|p| p.id >= id) {
                return Err(format!("index checkpoint @{offset}: ids not ascending"));
            }
            let flags = c.u8()?;
            if flags & !3 != 0 {
                return Err(format!(
                    "index checkpoint @{offset}: journal flags {flags:#x}"
                ));
            }
            let first = c.u64()?;
            let count = c.u64()?;
            let entry_bytes = c.u64()?;
            if first.checked_add(count).is_none_or(|e| e > 1 << 62) {
                return Err(format!("index checkpoint @{offset}: entry count"));
            }
            let loc = |c: &mut Cursor<'_>| -> Res<Loc> {
                let at = c.pos;
                let segment = u64::from(c.u32()?);
                let op = c.u32()? as usize;
                if !segments.iter().any(|s| s.id == segment) {
                    return Err(format!(
                        "index checkpoint @{at}: location in segment {segment}, not one of its own"
                    ));
                }
                Ok((segment, op))
            };
            let metadata = if flags & 1 != 0 {
                Some(loc(&mut c)?)
            } else {
                None
            };
            let anchor = if flags & 2 != 0 {
                Some(loc(&mut c)?)
            } else {
                None
            };
            // Each location takes 8 bytes: a count the body cannot hold
            // fails here before anything is allocated for it.
            if count > ((c.b.len() - c.pos) / 8) as u64 {
                return Err(format!("index checkpoint @{offset}: entry count"));
            }
            let entries = (0..count).map(|_| loc(&mut c)).collect::<Res<Vec<_>>>()?;
            journals.push(IndexJournal {
                offset,
                id,
                flags,
                first,
                entry_bytes,
                locations: Locations {
                    entries,
                    metadata,
                    anchor,
                },
            });
        }
        if c.pos != trailer {
            return Err(format!(
                "index checkpoint: bytes {}..{trailer} after the journals",
                c.pos
            ));
        }
        Ok(IndexCheckpoint {
            len: b.len(),
            generation: u64_at(b, 16),
            last_lsn: u64_at(b, 24),
            active_end: u64_at(b, 32),
            header_crc,
            segments,
            journals,
            body_len,
            body_crc,
        })
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
        let known = f == "LOCK"
            || f == "MANIFEST"
            || f == "MANIFEST.next"
            || inspect::segment_id_from_file_name(f).is_some()
            || index_generation(f).is_some();
        if !known {
            return Err(format!("{f}: not a file the spec names"));
        }
    }
    if !files["LOCK"].is_empty() {
        return Err("LOCK is not empty".into());
    }
    let mb = &files["MANIFEST"];
    let mut m = spec::manifest(mb)?;
    render_manifest(w, "MANIFEST", &m);
    if let Some(next) = files.get("MANIFEST.next") {
        let n = spec::manifest(next).map_err(|e| format!("MANIFEST.next: {e}"))?;
        render_manifest(w, "MANIFEST.next", &n);
        match adopts(&m, &n, &files) {
            Ok(()) => {
                let _ = writeln!(
                    w,
                    "  adopted (section 9.1): the generation a roll makes from MANIFEST, and the store opens by it"
                );
                m = n;
            }
            Err(why) => {
                let _ = writeln!(w, "  ignored (section 9.1): {why}");
            }
        }
    }

    let mut all_ops = Vec::new();
    let mut segment_ends: BTreeMap<u64, usize> = BTreeMap::new();
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
        segment_ends.insert(u64::from(id), seg.end);
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
    let replayed = spec::replay_with_locations(ops.iter().copied())?;
    let journals: BTreeMap<Vec<u8>, spec::Journal> = replayed
        .iter()
        .map(|(id, (j, _))| (id.clone(), j.clone()))
        .collect();
    for (f, bytes) in &files {
        if let Some(generation) = index_generation(f) {
            let at: BTreeMap<spec::Loc, &spec::Op> = ops
                .iter()
                .map(|op| ((op.segment, op.offset), *op))
                .collect();
            let last_lsn = all_ops
                .iter()
                .flat_map(|(_, records)| records.iter().map(|r| r.lsn))
                .max()
                .unwrap_or(0);
            let active_end = segment_ends.get(&m.segments.last().map_or(0, |s| s.0));
            let ctx = IndexContext {
                generation,
                manifest: &m,
                last_lsn,
                active_end: active_end.copied(),
                ops: &at,
                replayed: &replayed,
            };
            render_index_checkpoint(w, f, bytes, &ctx).map_err(|e| format!("{f}: {e}"))?;
        }
    }
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

/// A manifest's fields at their offsets (section 6), under `title`.
fn render_manifest(w: &mut String, title: &str, m: &spec::Manifest) {
    let _ = writeln!(w, "\n{title} ({} bytes)", m.len);
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
}

/// Whether open adopts `MANIFEST.next` (`n`) over `MANIFEST` (`m`), as
/// section 9.1 gives it: the generation a roll makes from `m`, and one the
/// store opens by (the sealed segment's records end exactly at its sealed
/// length, the new segment decodes).
fn adopts(
    m: &spec::Manifest,
    n: &spec::Manifest,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), String> {
    if n.generation != m.generation + 1 {
        return Err(format!(
            "generation {} does not follow {}",
            n.generation, m.generation
        ));
    }
    let (Some(&(old_active, None)), Some(&(new_active, None))) =
        (m.segments.last(), n.segments.last())
    else {
        return Err("no active segment".into());
    };
    let kept = m.segments.len() - 1;
    let sealed = match n.segments.get(kept) {
        Some(&(id, Some(len))) if id == old_active && n.segments.len() == kept + 2 => len,
        _ => return Err("does not seal MANIFEST's active segment and add one".into()),
    };
    if n.segments[..kept] != m.segments[..kept] {
        return Err("the sealed segments differ".into());
    }
    if new_active < m.next_segment_id
        || new_active >= n.next_segment_id
        || n.lsn_floor < m.lsn_floor
    {
        return Err("new segment id or lsn_floor out of range".into());
    }
    let file = |id: u64| {
        files
            .get(&inspect::segment_file_name_of(id as u32))
            .ok_or_else(|| format!("segment {id} has no file"))
    };
    spec::segment(file(old_active)?, Some(sealed))?;
    spec::segment(file(new_active)?, None)?;
    Ok(())
}

/// The generation in an index checkpoint's file name (section 13:
/// `index-` and 16 lowercase hexadecimal digits, then `.jidx`).
fn index_generation(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("index-")?.strip_suffix(".jidx")?;
    let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if hex.len() != 16 || !hex.chars().all(lower_hex) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// What an index checkpoint is checked against: the rest of the store as
/// the spec reader decoded it.
struct IndexContext<'a> {
    /// The generation in the file's name.
    generation: u64,
    manifest: &'a spec::Manifest,
    /// The highest LSN of any record in the store.
    last_lsn: u64,
    /// Where the data of the manifest's active segment ends.
    active_end: Option<usize>,
    /// Every operation of the listed segments, by location.
    ops: &'a BTreeMap<spec::Loc, &'a spec::Op>,
    /// The journals the replay of the listed segments gives.
    replayed: &'a BTreeMap<Vec<u8>, (spec::Journal, spec::Locations)>,
}

/// Decodes, checks and renders an index checkpoint (section 13). The
/// vectors hold one taken at clean close, so it must describe the store
/// exactly: the manifest's generation and segments, the end of the data,
/// the last LSN, and the journals (bounds, metadata, anchor, every entry's
/// location) the replay of the segments gives; every location names an
/// operation header of its journal, of the kind its place calls for, and
/// each segment's `live_items` and `live_bytes` are the number of
/// locations into it (section 13.2 (d)) and the length of the operations
/// there.
fn render_index_checkpoint(
    w: &mut String,
    name: &str,
    bytes: &[u8],
    ctx: &IndexContext<'_>,
) -> Result<(), String> {
    let cp = spec::index_checkpoint(bytes)?;
    let m = ctx.manifest;
    if cp.generation != ctx.generation || cp.generation != m.generation {
        return Err(format!(
            "generation {} (name {}, manifest {})",
            cp.generation, ctx.generation, m.generation
        ));
    }
    let listed: Vec<(u64, Option<u64>)> = cp
        .segments
        .iter()
        .map(|s| (s.id, (s.flags & 1 != 0).then_some(s.sealed_len)))
        .collect();
    if listed != m.segments {
        return Err(format!("segments {listed:?}, manifest {:?}", m.segments));
    }
    if Some(cp.active_end as usize) != ctx.active_end {
        return Err(format!(
            "active_end {} but the data ends at {:?}",
            cp.active_end, ctx.active_end
        ));
    }
    if cp.last_lsn != ctx.last_lsn {
        return Err(format!(
            "last_lsn {} but the last record is {}",
            cp.last_lsn, ctx.last_lsn
        ));
    }
    let _ = writeln!(w, "\n{name} ({} bytes, index checkpoint)", cp.len);
    let _ = writeln!(w, "  @0   magic            \"JSTRIDX\\0\"");
    let _ = writeln!(w, "  @8   version          1");
    let _ = writeln!(w, "  @12  header_len       64");
    let _ = writeln!(w, "  @16  generation       {}", cp.generation);
    let _ = writeln!(w, "  @24  last_lsn         {}", cp.last_lsn);
    let _ = writeln!(w, "  @32  active_end       {}", cp.active_end);
    let _ = writeln!(w, "  @40  segment_count    {}", cp.segments.len());
    let _ = writeln!(w, "  @44  reserved         0");
    let _ = writeln!(w, "  @48  journal_count    {}", cp.journals.len());
    let _ = writeln!(w, "  @56  reserved         0");
    let _ = writeln!(w, "  @60  header_crc       {:#010x}", cp.header_crc);
    // Per segment: its live items and the bytes of their operations.
    let mut items: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for j in &cp.journals {
        let l = &j.locations;
        for loc in l
            .metadata
            .iter()
            .chain(l.anchor.iter())
            .chain(l.entries.iter())
        {
            let len = ctx
                .ops
                .get(loc)
                .map_or(0, |op| 32 + op.id.len() + op.value.len());
            let counted = items.entry(loc.0).or_default();
            counted.0 += 1;
            counted.1 += len as u64;
        }
    }
    for s in &cp.segments {
        let mut flags = Vec::new();
        for (bit, what) in [(1, "sealed"), (2, "settled"), (4, "tombstones")] {
            if s.flags & bit != 0 {
                flags.push(what);
            }
        }
        let (count, len) = items.get(&s.id).copied().unwrap_or((0, 0));
        if s.live_items != count || s.live_bytes != len {
            return Err(format!(
                "segment {}: live_items {}, live_bytes {}, but its locations are {count} operations of {len} bytes",
                s.id, s.live_items, s.live_bytes
            ));
        }
        // Section 13.1: the FNV-1a hashes of the journals with any
        // operation in the segment (no compaction or delete here, so
        // exactly those).
        let fnv1a = |id: &[u8]| {
            id.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
        };
        let mut want: Vec<u64> = ctx
            .ops
            .iter()
            .filter(|(loc, _)| loc.0 == s.id)
            .map(|(_, op)| fnv1a(&op.id))
            .collect();
        want.sort_unstable();
        want.dedup();
        if want != s.hashes {
            return Err(format!(
                "segment {}: journal hashes {:x?}, the journals of its operations hash to {want:x?}",
                s.id, s.hashes
            ));
        }
        let hashes: Vec<String> = s.hashes.iter().map(|h| format!("{h:#018x}")).collect();
        let _ = writeln!(
            w,
            "  @{:<4} segment {}: flags {:#x} ({}), sealed_len {}, live_bytes {}, live_items {}, deps {:?}, journal hashes [{}]",
            s.offset,
            s.id,
            s.flags,
            if flags.is_empty() { "active".to_owned() } else { flags.join(", ") },
            s.sealed_len,
            s.live_bytes,
            s.live_items,
            s.deps,
            hashes.join(", ")
        );
    }
    if cp.journals.len() != ctx.replayed.len() {
        return Err(format!(
            "{} journals, the replay {}",
            cp.journals.len(),
            ctx.replayed.len()
        ));
    }
    let show_loc = |loc: &spec::Loc| format!("{}@{}", loc.0, loc.1);
    for j in &cp.journals {
        let Some((replayed, locations)) = ctx.replayed.get(&j.id) else {
            return Err(format!(
                "journal {} is not in the replay",
                show_bytes(&j.id)
            ));
        };
        let count = j.locations.entries.len() as u64;
        if j.first != replayed.first || count != replayed.entries.len() as u64 {
            return Err(format!(
                "journal {}: bounds differ from the replay",
                show_bytes(&j.id)
            ));
        }
        if j.locations.metadata.is_some() != replayed.metadata.is_some() {
            return Err(format!(
                "journal {}: metadata presence differs from the replay",
                show_bytes(&j.id)
            ));
        }
        if j.locations != *locations {
            return Err(format!(
                "journal {}: locations {:?}, replay {locations:?}",
                show_bytes(&j.id),
                j.locations
            ));
        }
        let bytes: u64 = replayed
            .entries
            .iter()
            .flatten()
            .map(|e| e.len() as u64)
            .sum();
        if j.entry_bytes != bytes {
            return Err(format!(
                "journal {}: entry_bytes {} but the entries hold {bytes}",
                show_bytes(&j.id),
                j.entry_bytes
            ));
        }
        // Every location is an operation header of this journal, of the
        // kind its place holds: appends, a set_metadata, an anchor.
        let l = &j.locations;
        let places = l
            .entries
            .iter()
            .map(|loc| (loc, &[1u8][..]))
            .chain(l.metadata.iter().map(|loc| (loc, &[2u8][..])))
            .chain(l.anchor.iter().map(|loc| (loc, &[3u8, 4, 6][..])));
        for (loc, kinds) in places {
            match ctx.ops.get(loc) {
                Some(op) if op.id == j.id && kinds.contains(&op.kind) => {}
                _ => {
                    return Err(format!(
                        "journal {}: location {} is not an operation of it of kind {kinds:?}",
                        show_bytes(&j.id),
                        show_loc(loc)
                    ))
                }
            }
        }
        let mut flags = Vec::new();
        if j.flags & 1 != 0 {
            flags.push("metadata");
        }
        if j.flags & 2 != 0 {
            flags.push("anchor");
        }
        let _ =
            writeln!(
            w,
            "  @{:<4} journal {}: flags {:#x} ({}), first {}, entry_count {count}, entry_bytes {}",
            j.offset,
            show_bytes(&j.id),
            j.flags,
            if flags.is_empty() { "none".to_owned() } else { flags.join(", ") },
            j.first,
            j.entry_bytes
        );
        if let Some(loc) = &l.metadata {
            let _ = writeln!(w, "         metadata at {} (set_metadata)", show_loc(loc));
        }
        if let Some(loc) = &l.anchor {
            let kind = ctx.ops.get(loc).map_or("?", |op| spec::kind_name(op.kind));
            let _ = writeln!(w, "         anchor at {} ({kind})", show_loc(loc));
        }
        if !l.entries.is_empty() {
            let shown: Vec<String> = l.entries.iter().map(show_loc).collect();
            let _ = writeln!(w, "         entries at {}", shown.join(" "));
        }
    }
    let trailer = cp.len - 12;
    let _ = writeln!(
        w,
        "  @{trailer:<4} trailer: body_len {}, body_crc {:#010x}",
        cp.body_len, cp.body_crc
    );
    let _ = writeln!(
        w,
        "  continued by the manifest: same generation and segments; its journals (bounds, metadata, anchors, entry locations) are the replay's"
    );
    Ok(())
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
