//! On-disk encoding: segment header, record header, operations.
//!
//! Everything is little-endian and described byte by byte in
//! `format-spec/README.md`. The two headers are `zerocopy` structs so that
//! their layout is checked by the compiler; operations are variable-length
//! and read with explicit bounds checks. Nothing here panics on any input.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The on-disk format version this build writes in every new segment.
/// Version 2 adds the `clear_metadata` operation (kind 6); everything else
/// is as in version 1.
pub const FORMAT_VERSION: u32 = 2;

/// The segment versions this build reads. A store opened with version-1
/// segments is upgraded as it is written: the writer never adds records
/// to a segment of an older version (it rolls to a new one at open), so a
/// version-1 file only ever holds what version 1 defines.
pub const READABLE_VERSIONS: [u32; 2] = [1, 2];

/// The manifest's layout version. The manifest has its own number: segment
/// format version 2 (a new operation kind) left its layout unchanged, and a
/// build that reads version-1 segments only must still read the manifest
/// far enough to report a newer segment as `UnsupportedVersion`.
pub const MANIFEST_VERSION: u32 = 1;

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"JSTRSEG\0";

/// Size of the segment file header; the first record starts here.
pub const SEGMENT_HEADER_LEN: usize = 64;

/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 32;

/// Size of an operation's fixed header (before journal id and value).
pub const OP_HEADER_LEN: usize = 32;

/// Records start at multiples of this.
pub const RECORD_ALIGN: usize = 8;

/// Largest journal index (first or end) the format allows. Keeping indexes
/// far below `u64::MAX` means `end + 1` and friends never overflow, whatever
/// a damaged or crafted file says.
pub const MAX_INDEX: u64 = 1 << 62;

/// Record kind: a write batch.
pub const RECORD_KIND_BATCH: u16 = 1;

/// Record kind: a sync mark, a header with no payload written at the end of
/// the data after a sync succeeded (and at clean close), whose
/// `synced_through` states how far the segment is known durable. It ends the
/// data: the next record is written over it.
pub const RECORD_KIND_SYNC_MARK: u16 = 2;

/// The header at offset 0 of every segment file.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct SegmentHeader {
    /// [`SEGMENT_MAGIC`].
    pub magic: [u8; 8],
    /// [`FORMAT_VERSION`].
    pub version: U32,
    /// [`SEGMENT_HEADER_LEN`].
    pub header_len: U32,
    /// The segment's id, also in its file name.
    pub segment_id: U64,
    /// The file's preallocated size.
    pub capacity: U64,
    /// Every record in this segment has an LSN at least this.
    pub base_lsn: U64,
    /// Zero.
    pub reserved: [u8; 20],
    /// CRC-32 of bytes 0..60.
    pub crc: U32,
}

/// The header in front of every record.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RecordHeader {
    /// CRC-32 of header bytes 4..32: a header can be trusted on its own.
    pub header_crc: U32,
    /// CRC-32 of the payload.
    pub payload_crc: U32,
    /// The batch's log sequence number.
    pub lsn: U64,
    /// Payload length in bytes.
    pub payload_len: U32,
    /// Every byte of this segment below this offset was durable (synced)
    /// before this record was written. Recovery uses it to tell a torn tail
    /// from damage to data that had been synced.
    pub synced_through: U32,
    /// [`RECORD_KIND_BATCH`].
    pub kind: U16,
    /// Zero.
    pub flags: U16,
    /// Number of operations in the payload.
    pub op_count: U32,
}

/// The fixed part of one operation inside a batch payload.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct OpHeader {
    /// One of the `OP_*` kinds.
    pub kind: u8,
    /// Length of the journal id that follows this header (1..=255).
    pub id_len: u8,
    /// Zero.
    pub reserved: U16,
    /// Length of the value (entry or metadata) after the id; 0 for others.
    pub value_len: U32,
    /// CRC-32 of the value; checked on the value's first read through a
    /// snapshot of an open store (later reads skip it, `Segment::read_value`).
    pub value_crc: U32,
    /// Zero.
    pub reserved2: U32,
    /// The journal's `first_index` after this operation.
    pub first: U64,
    /// The journal's `end_index` after this operation (for an append, the
    /// entry's index is `end - 1`).
    pub end: U64,
}

/// Operation kinds as stored on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// Append one entry.
    Append = 1,
    /// Replace the metadata.
    SetMetadata = 2,
    /// Drop entries below an index.
    TrimPrefix = 3,
    /// Drop entries at and above an index.
    Truncate = 4,
    /// Delete the journal.
    Delete = 5,
    /// Remove the metadata (format version 2).
    ClearMetadata = 6,
}

impl OpKind {
    /// Decodes a kind byte.
    pub fn from_u8(b: u8) -> Option<OpKind> {
        Some(match b {
            1 => OpKind::Append,
            2 => OpKind::SetMetadata,
            3 => OpKind::TrimPrefix,
            4 => OpKind::Truncate,
            5 => OpKind::Delete,
            6 => OpKind::ClearMetadata,
            _ => return None,
        })
    }

    /// The name used in errors and tools.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Append => "append",
            OpKind::SetMetadata => "set_metadata",
            OpKind::TrimPrefix => "trim_prefix",
            OpKind::Truncate => "truncate",
            OpKind::Delete => "delete_journal",
            OpKind::ClearMetadata => "clear_metadata",
        }
    }
}

/// `x` rounded up to [`RECORD_ALIGN`].
pub fn align_up(x: usize) -> usize {
    (x + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// CRC-32 (IEEE 802.3 polynomial 0x04C11DB7, reflected; crc32fast).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

impl SegmentHeader {
    /// A header for a new segment.
    pub fn new(segment_id: u64, capacity: u64, base_lsn: u64) -> SegmentHeader {
        let mut h = SegmentHeader {
            magic: SEGMENT_MAGIC,
            version: FORMAT_VERSION.into(),
            header_len: (SEGMENT_HEADER_LEN as u32).into(),
            segment_id: segment_id.into(),
            capacity: capacity.into(),
            base_lsn: base_lsn.into(),
            reserved: [0; 20],
            crc: 0.into(),
        };
        h.crc = crc32(&h.as_bytes()[..SEGMENT_HEADER_LEN - 4]).into();
        h
    }

    /// Whether the stored checksum matches.
    pub fn crc_ok(&self) -> bool {
        crc32(&self.as_bytes()[..SEGMENT_HEADER_LEN - 4]) == self.crc.get()
    }
}

impl RecordHeader {
    /// The header of a batch record: its LSN, its payload (for the length
    /// and CRC), the writer's durable watermark and the operation count.
    pub fn batch(lsn: u64, payload: &[u8], synced_through: u32, op_count: u32) -> RecordHeader {
        let mut header = RecordHeader::new_zeroed();
        header.payload_crc = crc32(payload).into();
        header.lsn = lsn.into();
        header.payload_len = (payload.len() as u32).into();
        header.synced_through = synced_through.into();
        header.kind = RECORD_KIND_BATCH.into();
        header.op_count = op_count.into();
        header.seal();
        header
    }

    /// A sync mark (see [`RECORD_KIND_SYNC_MARK`]): `lsn` is the newest batch
    /// written before it, `synced_through` the offset below which every byte
    /// of the segment was durable when it was written.
    pub fn sync_mark(lsn: u64, synced_through: u32) -> RecordHeader {
        let mut header = RecordHeader::new_zeroed();
        header.payload_crc = crc32(&[]).into();
        header.lsn = lsn.into();
        header.synced_through = synced_through.into();
        header.kind = RECORD_KIND_SYNC_MARK.into();
        header.seal();
        header
    }

    /// Computes `header_crc` over the other fields.
    pub fn seal(&mut self) {
        self.header_crc = crc32(&self.as_bytes()[4..]).into();
    }

    /// Whether `header_crc` matches the other fields.
    pub fn crc_ok(&self) -> bool {
        crc32(&self.as_bytes()[4..]) == self.header_crc.get()
    }
}

/// One operation decoded from a payload, borrowing its bytes.
#[derive(Clone, Copy, Debug)]
pub struct OpRef<'a> {
    /// What it does.
    pub kind: OpKind,
    /// The journal.
    pub id: &'a [u8],
    /// The entry or metadata bytes (empty for other kinds).
    pub value: &'a [u8],
    /// Stored CRC-32 of `value`.
    pub value_crc: u32,
    /// The journal's `first_index` after the operation.
    pub first: u64,
    /// The journal's `end_index` after the operation.
    pub end: u64,
    /// Offset of the op header within the payload.
    pub offset: usize,
    /// Encoded length (header + id + value).
    pub len: usize,
}

/// Why an operation failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset within the payload.
    pub offset: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// Iterates over the operations of a batch payload, validating each.
#[derive(Debug)]
pub struct OpIter<'a> {
    payload: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> OpIter<'a> {
    /// Starts decoding `payload`.
    pub fn new(payload: &'a [u8]) -> Self {
        OpIter {
            payload,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for OpIter<'a> {
    type Item = Result<OpRef<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.payload.len() {
            return None;
        }
        let r = decode_op(self.payload, self.pos);
        match &r {
            Ok(op) => self.pos += op.len,
            Err(_) => self.failed = true,
        }
        Some(r)
    }
}

/// Decodes the operation at `offset` of `buf`.
pub fn decode_op(buf: &[u8], offset: usize) -> Result<OpRef<'_>, DecodeError> {
    let err = |reason| DecodeError { offset, reason };
    let rest = buf.get(offset..).ok_or(err("offset past end"))?;
    let (h, _) = OpHeader::read_from_prefix(rest).map_err(|_| err("truncated op header"))?;
    let kind = OpKind::from_u8(h.kind).ok_or(err("unknown op kind"))?;
    if h.id_len == 0 {
        return Err(err("empty journal id"));
    }
    if h.reserved.get() != 0 || h.reserved2.get() != 0 {
        return Err(err("reserved op bytes not zero"));
    }
    let value_len = h.value_len.get() as usize;
    let has_value = matches!(kind, OpKind::Append | OpKind::SetMetadata);
    if !has_value && (value_len != 0 || h.value_crc.get() != 0) {
        return Err(err("value on an op that has none"));
    }
    let id_start = OP_HEADER_LEN;
    let value_start = id_start + h.id_len as usize;
    let len = value_start
        .checked_add(value_len)
        .ok_or(err("value length overflows"))?;
    if rest.len() < len {
        return Err(err("op runs past the payload"));
    }
    let (first, end) = (h.first.get(), h.end.get());
    if first > MAX_INDEX || end > MAX_INDEX {
        return Err(err("journal index beyond the format's limit"));
    }
    match kind {
        OpKind::Append if end == 0 || end <= first => {
            return Err(err("append with an empty range"))
        }
        OpKind::Delete if first != 0 || end != 0 => {
            return Err(err("delete with a range"));
        }
        _ if first > end => return Err(err("first_index above end_index")),
        _ => {}
    }
    Ok(OpRef {
        kind,
        id: &rest[id_start..value_start],
        value: &rest[value_start..len],
        value_crc: h.value_crc.get(),
        first,
        end,
        offset,
        len,
    })
}

/// One operation ready to encode: what it does and the bounds it leaves
/// its journal with (validation, `plan.rs`, or salvage made them
/// consistent).
#[derive(Clone, Copy, Debug)]
pub struct PlannedOp<'a> {
    /// What it does.
    pub kind: OpKind,
    /// The journal (1 to 255 bytes).
    pub id: &'a [u8],
    /// The entry or metadata bytes (empty for other kinds).
    pub value: &'a [u8],
    /// CRC-32 of `value`.
    pub value_crc: u32,
    /// The journal's `first_index` after the operation.
    pub first: u64,
    /// The journal's `end_index` after the operation.
    pub end: u64,
}

impl PlannedOp<'_> {
    /// Its encoded size.
    pub fn encoded_len(&self) -> usize {
        op_len(self.id.len(), self.value.len())
    }
}

/// Appends the encoding of `op` to `out`.
pub fn encode_op(out: &mut Vec<u8>, op: &PlannedOp<'_>) {
    debug_assert!(!op.id.is_empty() && op.id.len() <= 255);
    let h = OpHeader {
        kind: op.kind as u8,
        id_len: op.id.len() as u8,
        reserved: 0.into(),
        value_len: (op.value.len() as u32).into(),
        value_crc: op.value_crc.into(),
        reserved2: 0.into(),
        first: op.first.into(),
        end: op.end.into(),
    };
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(op.id);
    out.extend_from_slice(op.value);
}

/// Encoded size of an operation whose id and value have these lengths.
pub fn op_len(id_len: usize, value_len: usize) -> usize {
    OP_HEADER_LEN + id_len + value_len
}

/// Bytes a record with a payload of `payload_len` takes, padding included.
pub fn record_len(payload_len: usize) -> usize {
    align_up(RECORD_HEADER_LEN + payload_len)
}

impl OpHeader {
    /// Encoded size of the operation this header starts.
    pub fn encoded_len(&self) -> usize {
        op_len(self.id_len as usize, self.value_len.get() as usize)
    }
}

/// Reads an op header at `offset` of a mapped segment (used by the index to
/// find a value's bytes and size).
pub fn read_op_header(segment: &[u8]) -> Option<OpHeader> {
    OpHeader::read_from_prefix(segment).ok().map(|(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sizes_match_the_spec() {
        assert_eq!(std::mem::size_of::<SegmentHeader>(), SEGMENT_HEADER_LEN);
        assert_eq!(std::mem::size_of::<RecordHeader>(), RECORD_HEADER_LEN);
        assert_eq!(std::mem::size_of::<OpHeader>(), OP_HEADER_LEN);
    }

    #[test]
    fn op_roundtrip_and_truncation_is_an_error() {
        let mut buf = Vec::new();
        let append = PlannedOp {
            kind: OpKind::Append,
            id: b"j",
            value: b"hello",
            value_crc: crc32(b"hello"),
            first: 0,
            end: 1,
        };
        let delete = PlannedOp {
            kind: OpKind::Delete,
            id: b"k",
            value: b"",
            value_crc: 0,
            first: 0,
            end: 0,
        };
        encode_op(&mut buf, &append);
        encode_op(&mut buf, &delete);
        assert_eq!(buf.len(), append.encoded_len() + delete.encoded_len());
        let ops: Vec<_> = OpIter::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].kind, OpKind::Append);
        assert_eq!(ops[0].value, b"hello");
        assert_eq!(ops[1].id, b"k");
        for cut in 0..buf.len() {
            let results: Vec<_> = OpIter::new(&buf[..cut]).collect();
            if cut != 0 && cut != ops[0].len {
                assert!(results.iter().any(|r| r.is_err()), "cut at {cut}");
            }
        }
    }

    #[test]
    fn record_header_crc_detects_a_flip() {
        let mut h = RecordHeader::batch(7, &[0; 9], 64, 0);
        assert!(h.crc_ok());
        assert_eq!(h.payload_len.get(), 9);
        h.lsn = 6.into();
        assert!(!h.crc_ok());
    }
}
