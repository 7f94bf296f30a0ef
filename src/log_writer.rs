//! The writer's state: the active segment, the working index, and every
//! step that changes the log: encode, write (with the zero-fill ahead),
//! sync and sync mark, roll, free, manifest swap.
//!
//! One `LogWriter` exists per open store, behind the committer's lock; every
//! method runs with that lock held.
//!
//! Invariants:
//! - Records are written in LSN order, each wholly inside one segment.
//! - `synced_pos <= write_pos`, and every byte of the active segment below
//!   `synced_pos` is durable; a record's `synced_through` is `synced_pos`
//!   when it was encoded, and a sync mark claims it only after the sync.
//! - Every sync of the active segment runs with the records it covers
//!   written (flushed from the buffer), and raises `progress`'s durable LSN
//!   only to the newest of them: `sync_active` to `next_lsn - 1`, a group
//!   synced by the committer outside the lock to the group's last LSN. The
//!   segments before the active one are durable, except the one the last
//!   roll sealed while its seal is pending in the `SyncGate`, which takes
//!   it before any sync of the active segment counts. A sync that finds its
//!   LSN durable already skips the fdatasync.
//! - A segment is named by a durable manifest only once its header is
//!   durable; until then a process crash finds it through `MANIFEST.next`.
//! - A segment is dropped from the manifest only after the records that
//!   made it dead are durable.
//! - After an I/O error the working state is ahead of what is durable: the
//!   caller stops writes (the `SyncGate` records it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use zerocopy::IntoBytes;

use crate::batch::WriteBatch;
use crate::error::{Error, Result};
use crate::in_flight::InFlight;
use crate::index::{Index, Loc};
use crate::io::{FileSystem, StorageFile};
use crate::live::Accounting;
use crate::manifest::{Generation, ListedSegment, Manifest};
use crate::options::SyncMode;
use crate::plan::plan;
use crate::progress::Progress;
#[cfg(doc)]
use crate::record::RECORD_KIND_SYNC_MARK;
use crate::record::{
    encode_op, read_op_header, record_len, OpIter, PlannedOp, RecordHeader, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use crate::segment::Segment;
use crate::sync_gate::{PendingManifest, Seal, SyncGate};
use crate::version::Version;

/// The active segment's disk space is reserved this far ahead of its data:
/// a segment file is created at its full length but sparse, so a store
/// holding little data does not occupy whole segments on disk, and one
/// `fallocate` per step keeps later writes from failing for lack of space.
pub(crate) const RESERVE_STEP: u64 = 1 << 20;

/// Space is reserved again once a write comes within this many bytes of
/// the reserved end (less than `RESERVE_STEP`).
const RESERVE_MARGIN: u64 = 192 << 10;

/// A group's buffer is written once it reaches this many bytes.
pub(crate) const MAX_GROUP_BYTES: usize = 4 << 20;

/// Under `SyncMode::Always`, space ahead of the data is reserved by writing
/// zeros while the groups written average fewer bytes than this, and with
/// `fallocate` once they average more (see `write_buffer`). Groups of one
/// or two 64 KiB batches still sync faster over written zeros than over
/// fallocated blocks (whose conversion commits metadata at every sync);
/// groups of several hundred KiB are bound by the disk's bandwidth, which
/// the zeros would double.
const ZERO_FILL_MAX_GROUP: u64 = 160 << 10;

/// State owned by the leader: the active segment and the working index.
#[derive(Debug)]
pub(crate) struct LogWriter {
    pub dir: PathBuf,
    pub fs: Arc<dyn FileSystem>,
    pub sync: SyncMode,
    pub segment_size: u64,
    pub manifest: Manifest,
    pub generation: Arc<Generation>,
    /// Where the next record goes in the active segment.
    pub write_pos: u64,
    /// Everything of the active segment below this is durable.
    pub synced_pos: u64,
    /// Every sync of the active segment goes through it; shared with the
    /// `Committer`, whose `stop` it also records.
    pub sync_gate: Arc<SyncGate>,
    /// The acknowledged and durable LSNs; shared with the `Committer`.
    pub progress: Arc<Progress>,
    /// Buffered records reserved here and written outside the lock
    /// ([`LogWriter::reserve_one`]); every step that reads or syncs what
    /// was reserved waits for them first.
    pub in_flight: Arc<InFlight>,
    pub next_lsn: u64,
    /// The latest state, including batches not yet published.
    pub index: Index,
    pub acct: Accounting,
    /// Records encoded but not yet written, starting at `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
    /// Disk space of the active segment is reserved below this offset.
    reserved: u64,
    /// Bytes per write of the buffer, a moving average (weight 1/8 for
    /// the newest write); chooses how space is reserved (`write_buffer`).
    avg_write: u64,
    /// Buffered writes left to copy in place since the last one that ran
    /// side by side with another (see [`Reservation::in_place`]).
    in_place_left: u32,
    /// Whether the index holds acknowledged batches that no published
    /// version shows yet (buffered modes publish lazily, see `Committer`).
    pub dirty: bool,
    /// The LSN of the last batch a group commit wrote (`write_group`):
    /// above the acknowledged LSN, a group's sync is still to come, and no
    /// version may show that batch yet (see `Committer::publish_change`).
    pub group_written: u64,
    /// Bytes of records appended by writes since open.
    pub appended: u64,
    /// Bytes of records compaction copied since open, and its runs.
    pub compacted: u64,
    pub compaction_runs: u64,
    /// Set when a write sealed a segment; taken by the committer, which
    /// tells the store (see `Committer::take_compaction_due`).
    pub compaction_due: bool,
    /// Segments writes found freeable, not yet freed (see `defers_frees`).
    pub pending_free: Vec<u32>,
    /// When each segment this process sealed was sealed (see
    /// `plan_compaction`, which waits for young segments to age).
    pub sealed_at: HashMap<u32, Instant>,
    /// Set by `plan_compaction` when it left a young segment that only
    /// time would make old: when that will be.
    pub young_until: Option<Instant>,
}

/// Records are copied in place even by a lone writer while the moving
/// average of their lengths is below this (see [`Reservation::in_place`]):
/// the saved system call then outweighs the page faults, shared by many
/// records per page.
const IN_PLACE_ALONE_MAX: u64 = 512;

/// After a buffered write that ran side by side with another, this many
/// more are copied in place (see [`Reservation::in_place`]): writers that
/// copy side by side come and go between reservations, and switching a
/// file between copies in place and `pwrite` at every change costs more
/// than either.
const IN_PLACE_AFTER_CONTENTION: u32 = 256;

/// A buffered record's place, reserved under the writer's lock and written
/// outside it (see [`LogWriter::reserve_one`]).
pub(crate) struct Reservation {
    pub lsn: u64,
    pub segment: Arc<Segment>,
    pub file: Arc<dyn StorageFile>,
    pub offset: u64,
    /// Whether to copy the record in place
    /// ([`StorageFile::write_in_place`]) rather than with `write_at`: when
    /// buffered writes ran side by side lately (a write begun while
    /// another was under way, `Committer::direct_writers`; see
    /// [`IN_PLACE_AFTER_CONTENTION`]), or records are short
    /// ([`IN_PLACE_ALONE_MAX`]). Copies in place spare writers that copy
    /// side by side the file's inode lock, and short records a system
    /// call each; but a lone writer of longer records pays more for them
    /// in page faults (the pages mapped writable are write-protected again
    /// at every sync, and those populated ahead are dirtied with zeros
    /// first) than a `pwrite` costs.
    pub in_place: bool,
}

/// Where `encode_record` put a record.
struct EncodedRecord {
    lsn: u64,
    /// Offset of the record in the buffer.
    start: usize,
    /// Offset of the record in the active segment.
    offset: u64,
    payload_len: usize,
    record_len: usize,
}

impl LogWriter {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dir: PathBuf,
        fs: Arc<dyn FileSystem>,
        sync: SyncMode,
        segment_size: u64,
        manifest: Manifest,
        generation: Arc<Generation>,
        write_pos: u64,
        next_lsn: u64,
        index: Index,
        acct: Accounting,
    ) -> LogWriter {
        LogWriter {
            dir,
            fs,
            sync,
            segment_size,
            manifest,
            generation,
            write_pos,
            synced_pos: write_pos,
            sync_gate: Arc::new(SyncGate::default()),
            // Open makes what it recovered durable before writing.
            progress: Arc::new(Progress::new(next_lsn - 1)),
            in_flight: Arc::new(InFlight::default()),
            next_lsn,
            index,
            acct,
            buf: Vec::new(),
            buf_start: write_pos,
            // Unknown after a reopen: the first flush reserves.
            reserved: write_pos,
            avg_write: 0,
            in_place_left: 0,
            dirty: false,
            group_written: 0,
            appended: 0,
            compacted: 0,
            compaction_runs: 0,
            compaction_due: false,
            pending_free: Vec::new(),
            sealed_at: HashMap::new(),
            young_until: None,
        }
    }

    pub fn active(&self) -> &Arc<Segment> {
        // A generation always has its active segment last.
        self.generation
            .segments
            .last()
            .expect("a generation always holds its active segment")
    }

    /// The working state as a version, once every reserved record is
    /// written.
    pub fn version(&self) -> Arc<Version> {
        self.in_flight.settle();
        Arc::new(Version {
            lsn: self.next_lsn - 1,
            index: self.index.clone(),
            generation: self.generation.clone(),
            active_end: self.write_pos,
        })
    }

    /// Writes a group's batches (the queue path: batches written with
    /// `sync: true`), without syncing them: the committer syncs the group
    /// after the writer's lock is released (see `Committer`). Pushes each
    /// batch's result to `results`; `Err` when the group hit an I/O error,
    /// after which nothing more may be written.
    pub fn write_group(
        &mut self,
        batches: &[&WriteBatch],
        results: &mut Vec<Result<u64>>,
    ) -> Result<()> {
        self.buf.clear();
        self.buf_start = self.write_pos;
        let first = results.len();
        let mut fatal = Ok(());
        for batch in batches {
            if let Err(e) = &fatal {
                results.push(Err(Error::writes_stopped(e)));
                continue;
            }
            match self.encode_batch(batch) {
                Ok(lsn) => results.push(Ok(lsn)),
                // The batch that hit the failure (in a roll) gets the I/O
                // error itself; the batches after it, `WritesStopped`.
                Err(e @ Error::Io { .. }) => {
                    results.push(Err(e.clone()));
                    fatal = Err(e);
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if fatal.is_ok() {
            fatal = self.flush();
        }
        if fatal.is_ok() && results[first..].iter().any(Result::is_ok) {
            self.group_written = self.next_lsn - 1;
        }
        if let Err(e) = &fatal {
            for r in results[first..].iter_mut() {
                if r.is_ok() {
                    *r = Err(e.clone());
                }
            }
        }
        fatal
    }

    /// Validates, encodes and applies one batch; returns its LSN.
    fn encode_batch(&mut self, batch: &WriteBatch) -> Result<u64> {
        let plan = plan(&self.index, batch)?;
        self.encode_ops(&plan)
    }

    /// Encodes planned operations as one record (rolling first if it does
    /// not fit), applies them to the working index, and returns its LSN.
    /// The operations are trusted: `plan` (or salvage) made them consistent.
    pub fn encode_ops(&mut self, plan: &[PlannedOp<'_>]) -> Result<u64> {
        let record = self.encode_record(plan)?;
        self.apply_record(&record);
        if self.buf.len() >= MAX_GROUP_BYTES {
            self.flush()?;
        }
        Ok(record.lsn)
    }

    /// The length of the record `plan` encodes to; fails for a batch that
    /// cannot fit in a segment.
    fn record_len(&self, plan: &[PlannedOp<'_>]) -> Result<usize> {
        let payload_len: usize = plan.iter().map(PlannedOp::encoded_len).sum();
        let record_len = record_len(payload_len);
        let max = self.segment_size as usize - SEGMENT_HEADER_LEN;
        if record_len > max {
            return Err(Error::BatchTooLarge {
                len: record_len as u64,
                max: max as u64,
            });
        }
        Ok(record_len)
    }

    /// Whether a record of `record_len` bytes starts a new segment.
    pub fn must_roll(&self, record_len: usize) -> bool {
        // The active segment's own capacity, not `segment_size`: a store
        // reopened with a larger `segment_size` would otherwise write past
        // the end of its active segment (unreadable, and the file no longer
        // matches its header, so the store would not open again).
        self.write_pos + record_len as u64 > self.active().capacity
    }

    /// Encodes planned operations as one record at the end of the buffer
    /// (rolling first if it does not fit) and moves the write position and
    /// LSN past it; the index is not touched (see `apply_record`).
    fn encode_record(&mut self, plan: &[PlannedOp<'_>]) -> Result<EncodedRecord> {
        // Only a crafted store gets here (its records claim LSNs near
        // u64::MAX); refuse like an exhausted segment id, before any I/O,
        // rather than overflow `next_lsn` below.
        if self.next_lsn == u64::MAX {
            return Err(Error::InvalidOptions("LSNs exhausted".into()));
        }
        let record_len = self.record_len(plan)?;
        if self.must_roll(record_len) {
            self.roll()?;
            self.compaction_due = true;
        }
        let lsn = self.next_lsn;
        let offset = self.write_pos;
        let start = self.buf.len();
        self.buf.resize(start + RECORD_HEADER_LEN, 0);
        for op in plan {
            encode_op(&mut self.buf, op);
        }
        let payload = &self.buf[start + RECORD_HEADER_LEN..];
        let payload_len = payload.len();
        let header = RecordHeader::batch(lsn, payload, self.synced_pos as u32, plan.len() as u32);
        self.buf[start..start + RECORD_HEADER_LEN].copy_from_slice(header.as_bytes());
        self.buf.resize(start + record_len, 0);
        self.write_pos += record_len as u64;
        self.appended += record_len as u64;
        self.next_lsn += 1;
        Ok(EncodedRecord {
            lsn,
            start,
            offset,
            payload_len,
            record_len,
        })
    }

    /// Applies an encoded record, still in the buffer, to the working index
    /// and the live-space accounting.
    fn apply_record(&mut self, record: &EncodedRecord) {
        // Sizes of killed ops come from the buffer when they are in it, else
        // from the mapped segment.
        let LogWriter {
            buf,
            buf_start,
            index,
            acct,
            generation,
            in_flight,
            ..
        } = self;
        let active = generation.segments.last().map_or(0, |s| s.id);
        let pending = (*buf_start, &buf[..]);
        let size_of = |loc: Loc| -> u64 {
            if loc.segment == active && u64::from(loc.offset) >= pending.0 {
                let at = (u64::from(loc.offset) - pending.0) as usize;
                return pending
                    .1
                    .get(at..)
                    .and_then(read_op_header)
                    .map_or(0, |h| h.encoded_len() as u64);
            }
            if loc.segment == active {
                // The op may be in a record another writer is writing.
                in_flight.settle_through(u64::from(loc.offset));
            }
            generation
                .segment(loc.segment)
                .map_or(0, |s| s.op_len(loc.offset))
        };
        let mut tracker = acct.tracker(&size_of);
        let at = record.start + RECORD_HEADER_LEN;
        let payload = &buf[at..at + record.payload_len];
        let payload_offset = record.offset + RECORD_HEADER_LEN as u64;
        // The payload was encoded from validated operations, so every op
        // decodes; a failure here is a bug, not bad input.
        for op in OpIter::new(payload) {
            let Ok(op) = op else {
                debug_assert!(false, "freshly encoded op does not decode: {op:?}");
                continue;
            };
            let loc = Loc {
                segment: active,
                offset: (payload_offset + op.offset as u64) as u32,
            };
            // Validated operations always fit the index they were planned on.
            let applied = index.apply(&op, loc, &mut tracker);
            debug_assert!(applied.is_ok(), "{applied:?}");
        }
    }

    /// Reserves one batch's record (the buffered modes): validates and
    /// encodes it into `out`, takes its LSN and its place in the active
    /// segment (rolling first if it does not fit), reserves the disk space
    /// ahead of it, applies it to the working index and registers it in
    /// `in_flight`. The caller writes `out` at the reserved place without
    /// the writer's lock, then reports it to `InFlight::finish`, which
    /// tells it whether the batch may be acknowledged. On an I/O error
    /// (from a roll or the space reservation) nothing is reserved and
    /// writes must stop.
    pub fn reserve_one(
        &mut self,
        batch: &WriteBatch,
        out: &mut Vec<u8>,
        side_by_side: bool,
    ) -> Result<Reservation> {
        debug_assert!(self.buf.is_empty(), "the buffer is flushed between batches");
        out.clear();
        std::mem::swap(&mut self.buf, out);
        self.buf_start = self.write_pos;
        let reserved = self.reserve_record(batch, side_by_side);
        std::mem::swap(&mut self.buf, out);
        if reserved.is_ok() {
            self.buf_start = self.write_pos;
        }
        reserved
    }

    /// `reserve_one` with the caller's buffer as `buf`.
    fn reserve_record(&mut self, batch: &WriteBatch, side_by_side: bool) -> Result<Reservation> {
        let plan = plan(&self.index, batch)?;
        let record = self.encode_record(&plan)?;
        let segment = self.active().clone();
        let reserved = segment
            .file()
            .map_err(|e| Error::io("write segment", &segment.path, e))
            .and_then(|file| {
                self.reserve_ahead(&segment, &*file, self.write_pos)?;
                Ok(file)
            });
        let file = match reserved {
            Ok(file) => file,
            Err(e) => {
                // Nothing of the batch is in the index; the numbers it took
                // are given back.
                self.write_pos -= record.record_len as u64;
                self.appended -= record.record_len as u64;
                self.next_lsn -= 1;
                return Err(e);
            }
        };
        self.avg_write = (self.avg_write * 7 + record.record_len as u64) / 8;
        self.apply_record(&record);
        self.in_flight.reserve(record.lsn, record.offset);
        if side_by_side {
            self.in_place_left = IN_PLACE_AFTER_CONTENTION;
        } else {
            self.in_place_left = self.in_place_left.saturating_sub(1);
        }
        Ok(Reservation {
            lsn: record.lsn,
            segment,
            file,
            offset: record.offset,
            in_place: self.in_place_left > 0 || self.avg_write < IN_PLACE_ALONE_MAX,
        })
    }

    /// Makes sure disk space of the active segment is reserved up to `end`
    /// (see `write_buffer`), writing the zeros ahead under
    /// `SyncMode::Always` as a write of their own.
    fn reserve_ahead(&mut self, segment: &Segment, file: &dyn StorageFile, end: u64) -> Result<()> {
        // A margin past `end`, so that writes in place can populate their
        // pages ahead within reserved space (`io/in_place.rs`).
        if end + RESERVE_MARGIN <= self.reserved || self.reserved >= segment.capacity {
            return Ok(());
        }
        let upto = (end + RESERVE_STEP).min(segment.capacity);
        if self.zero_fills_ahead() {
            // Past every reserved record, so no write in flight overlaps it.
            let from = end.max(self.reserved);
            let zeros = vec![0u8; (upto - from) as usize];
            file.write_at(from, &zeros)
                .map_err(|e| Error::io("write segment", &segment.path, e))?;
        } else {
            file.reserve(upto)
                .map_err(|e| Error::io("reserve segment space", &segment.path, e))?;
        }
        self.reserved = upto;
        Ok(())
    }

    /// Whether space ahead of the records is reserved by writing zeros
    /// rather than with `fallocate`: for durable writes of small groups
    /// (see `write_buffer`).
    fn zero_fills_ahead(&self) -> bool {
        self.sync == SyncMode::Always && self.avg_write < ZERO_FILL_MAX_GROUP
    }

    /// Writes the encoded records to the active segment.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.write_buffer()?;
        self.buf_start += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes the buffer at `buf_start` and leaves it in place.
    fn write_buffer(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let active = self.active().clone();
        let file = active
            .file()
            .map_err(|e| Error::io("write segment", &active.path, e))?;
        let len = self.buf.len();
        let end = self.buf_start + len as u64;
        self.avg_write = (self.avg_write * 7 + len as u64) / 8;
        if end > self.reserved {
            let upto = (end + RESERVE_STEP).min(active.capacity);
            if self.zero_fills_ahead() {
                // Zeros written ahead of the data, in the same write: an
                // fdatasync of data in blocks that are already written (and
                // whose allocation is committed) needs no metadata commit,
                // while fallocate'd (unwritten) blocks must be converted at
                // every sync. So the group that crosses into a new step
                // writes its records and the next step's zeros at once, and
                // its own sync commits their allocation once; the next
                // groups of the step sync data only. (Zeros are what
                // recovery reads as the end of the log, so a crash at any
                // point of this write leaves a valid tail.) The zeros cost
                // disk bandwidth, as much as the data that follows them:
                // that pays for small groups, whose syncs would each commit
                // a conversion, but not for large ones, which are bound by
                // the disk's bandwidth and few enough per step that a
                // conversion per sync costs less than writing everything
                // twice.
                self.buf.resize(len + (upto - end) as usize, 0);
                let written = file.write_at(self.buf_start, &self.buf);
                self.buf.truncate(len);
                written.map_err(|e| Error::io("write segment", &active.path, e))?;
                self.reserved = upto;
                return Ok(());
            }
            file.reserve(upto)
                .map_err(|e| Error::io("reserve segment space", &active.path, e))?;
            self.reserved = upto;
        }
        file.write_at(self.buf_start, &self.buf)
            .map_err(|e| Error::io("write segment", &active.path, e))
    }

    /// fdatasyncs the active segment up to `write_pos` (the buffer must be
    /// flushed), unless a sync already covered every record written.
    pub fn sync_active(&mut self) -> Result<()> {
        self.in_flight.settle();
        if self.synced_pos == self.write_pos {
            // Every record is durable already (see the module comment),
            // once a pending seal has made the sealed segment's durable.
            self.sync_gate.check()?;
            self.sync_gate.finish_pending(&self.progress)?;
            self.progress.made_durable(self.next_lsn - 1);
            return Ok(());
        }
        // A group's sync, run outside the lock, may have covered them.
        self.sync_gate
            .sync_covering(self.active(), self.next_lsn - 1, &self.progress)?;
        self.synced_pos = self.write_pos;
        Ok(())
    }

    /// Writes a sync mark at `write_pos` claiming `synced_pos` (see
    /// [`RECORD_KIND_SYNC_MARK`]): the proof, for recovery, that the records
    /// below were durable, which the next record overwrites (its own header
    /// claims as much). Only in disk space already reserved, so that it
    /// cannot fail for lack of space; skipped where a mark would not fit
    /// (the end of a segment, which its roll seals in the manifest).
    pub fn write_sync_mark(&mut self) -> Result<()> {
        self.sync_gate.check()?;
        let end = self.write_pos + RECORD_HEADER_LEN as u64;
        if self.buf_start != self.write_pos || end > self.reserved.min(self.active().capacity) {
            return Ok(());
        }
        let mark = RecordHeader::sync_mark(self.next_lsn - 1, self.synced_pos as u32);
        let active = self.active();
        active
            .file()
            .and_then(|f| f.write_at(self.write_pos, mark.as_bytes()))
            .map_err(|e| Error::io("write sync mark", &active.path, e))
    }

    /// Syncs the active segment as it is and rolls to a new one, durably
    /// (open after a torn tail: the bytes below `write_pos` may be in the
    /// page cache only).
    pub fn seal_and_roll(&mut self) -> Result<()> {
        self.in_flight.settle();
        self.sync_gate.sync(self.active())?;
        self.synced_pos = self.write_pos;
        self.progress.made_durable(self.next_lsn - 1);
        self.roll()?;
        self.sync_gate.finish_pending(&self.progress)
    }

    /// Seals the active segment and starts a new one: a new generation.
    ///
    /// Under the writer's lock it only writes what a process crash must
    /// not lose: the buffer, the new segment's header and `MANIFEST.next`.
    /// The fdatasyncs and the manifest swap are left pending in the
    /// `SyncGate` ([`PendingManifest`]): the next sync takes them first, so
    /// no record of the new segment is acknowledged as durable before the
    /// sealed one and the manifest naming the new one are; the caller may
    /// take them without the lock (`SyncGate::finish_pending`).
    pub(crate) fn roll(&mut self) -> Result<()> {
        self.in_flight.settle();
        self.flush()?;
        // At most one seal pending: a pending swap goes first.
        self.sync_gate.finish_pending(&self.progress)?;
        let id = self.manifest.next_segment_id;
        let segment = Arc::new(Segment::create(
            &self.fs,
            &self.dir,
            self.active().owner(),
            id,
            self.segment_size,
            RESERVE_STEP,
            self.next_lsn,
            false,
        )?);
        let mut manifest = self.manifest.clone();
        if let Some(last) = manifest.segments.last_mut() {
            last.sealed_len = Some(self.write_pos);
        }
        manifest.segments.push(ListedSegment::active(id));
        manifest.next_segment_id = id
            .checked_add(1)
            .ok_or_else(|| Error::InvalidOptions("segment ids exhausted".into()))?;
        let sealed = self.active().clone();
        manifest.generation = self.next_generation()?;
        manifest.lsn_floor = self.next_lsn - 1;
        manifest.store_next(&*self.fs, &self.dir)?;
        self.sync_gate.defer_manifest(PendingManifest {
            manifest: manifest.clone(),
            seal: Some(Seal {
                sealed: sealed.clone(),
                sealed_len: self.write_pos,
                lsn: self.next_lsn - 1,
                active: segment.clone(),
            }),
            obsolete: Vec::new(),
            fs: self.fs.clone(),
            dir: self.dir.clone(),
        });
        self.switch_generation(manifest, |segments| segments.push(segment));
        self.sealed_at.insert(sealed.id, Instant::now());
        self.acct.add_segment(id);
        self.write_pos = SEGMENT_HEADER_LEN as u64;
        self.synced_pos = self.write_pos;
        self.buf_start = self.write_pos;
        self.reserved = if self.sync == SyncMode::Always {
            // Not yet zero-filled (see `write_buffer`).
            self.write_pos
        } else {
            RESERVE_STEP.min(self.segment_size)
        };
        Ok(())
    }

    /// Frees the segments that no longer hold anything live. Their files go
    /// when the last snapshot that can reach them drops.
    pub fn free_segments(&mut self) -> Result<bool> {
        let ids = self.freeable();
        self.free(ids)
    }

    /// The segments `free_segments` would free now.
    pub fn freeable(&mut self) -> Vec<u32> {
        let active = self.active().id;
        self.acct.freeable(active)
    }

    /// Whether writes leave frees to the compaction thread: with background
    /// compaction (whose dead-bytes trigger is armed then, and wakes it),
    /// writes do not free segments themselves (a free syncs the active
    /// segment and swaps the manifest, which would hold the writer's lock
    /// across an fdatasync of every unsynced record): they note them in
    /// `pending_free`, and the thread syncs without the lock and then frees
    /// (`Committer::free_dead`).
    pub fn defers_frees(&self) -> bool {
        self.acct.dead_trigger.is_some()
    }

    /// Notes segments a write found freeable for the compaction thread
    /// (see `defers_frees`) and wakes it, through the dead-bytes flag, which
    /// makes the store wake it after the write.
    pub fn defer_free(&mut self, ids: Vec<u32>) {
        self.pending_free.extend(ids);
        self.pending_free.sort_unstable();
        self.pending_free.dedup();
        if let Some(t) = &self.acct.dead_trigger {
            t.flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Frees segments `freeable` chose.
    pub fn free(&mut self, ids: Vec<u32>) -> Result<bool> {
        if ids.is_empty() {
            return Ok(false);
        }
        // The records that left these segments dead must be durable before
        // a durable manifest forgets the segments: else a power loss keeps
        // the new manifest, loses those records, and whatever they had
        // superseded (metadata, entries) is gone with its segment.
        self.flush()?;
        self.sync_active()?;
        self.write_sync_mark()?;
        self.drop_segments(&ids)?;
        Ok(true)
    }

    /// Frees segments found freeable when the last LSN was `lsn`, which a
    /// sync has made durable since: every record that left them dead is at
    /// or below `lsn` (see `free`), so nothing is synced here. Those of
    /// `ids` that are no longer freeable (a compaction switch may have
    /// rewritten them or given them a dependency) are left. Returns whether
    /// segments were freed.
    pub fn free_durable(&mut self, ids: &[u32], lsn: u64) -> Result<bool> {
        self.pending_free.retain(|id| !ids.contains(id));
        let still = self.acct.still_freeable(self.active().id, ids);
        if still.len() < ids.len() {
            // Left to `freeable`, should they become freeable again.
            self.acct.changed = true;
        }
        let ids = still;
        if ids.is_empty() {
            return Ok(false);
        }
        if self.progress.durable() < lsn {
            return self.free(ids);
        }
        self.drop_segments(&ids)?;
        Ok(true)
    }

    /// Swaps in a manifest and a generation without `ids`, whose files go
    /// when the last snapshot that can reach them drops. With
    /// `defers_frees`, the manifest swap is left to the caller's
    /// `SyncGate::finish_pending`, outside the writer's lock.
    fn drop_segments(&mut self, ids: &[u32]) -> Result<()> {
        let mut manifest = self.manifest.clone();
        manifest.segments.retain(|s| !ids.contains(&s.id));
        self.swap_or_defer(manifest, |segments| {
            let (freed, kept) = std::mem::take(segments)
                .into_iter()
                .partition(|s| ids.contains(&s.id));
            *segments = kept;
            freed
        })?;
        self.acct.remove(ids);
        self.sealed_at.retain(|id, _| !ids.contains(id));
        Ok(())
    }

    /// Switches to `manifest` and a generation `edit` derives, which drops
    /// the segments `edit` returns: with `defers_frees`, in memory only,
    /// leaving the store of the manifest (and the dropped segments' removal
    /// after it) to `SyncGate::finish_pending`, which the caller runs
    /// without the writer's lock; otherwise durably now. The records that
    /// made the dropped segments dead must be durable first.
    pub(crate) fn swap_or_defer(
        &mut self,
        mut manifest: Manifest,
        edit: impl FnOnce(&mut Vec<Arc<Segment>>) -> Vec<Arc<Segment>>,
    ) -> Result<()> {
        let mut dropped = Vec::new();
        let edit = |segments: &mut Vec<Arc<Segment>>| dropped = edit(segments);
        if !self.defers_frees() {
            self.swap_manifest(manifest, edit)?;
            for s in dropped {
                s.mark_obsolete();
            }
            return Ok(());
        }
        manifest.generation = self.next_generation()?;
        manifest.lsn_floor = self.next_lsn - 1;
        let deferred = manifest.clone();
        self.switch_generation(manifest, edit);
        self.sync_gate.defer_manifest(PendingManifest {
            manifest: deferred,
            seal: None,
            obsolete: dropped,
            fs: self.fs.clone(),
            dir: self.dir.clone(),
        });
        Ok(())
    }

    /// Makes `manifest` (with the next generation number) durable, then
    /// switches to a generation whose segments `edit` derives from the
    /// current. A seal still pending is finished first: its manifest is
    /// the older generation.
    pub(crate) fn swap_manifest(
        &mut self,
        mut manifest: Manifest,
        edit: impl FnOnce(&mut Vec<Arc<Segment>>),
    ) -> Result<()> {
        self.sync_gate.finish_pending(&self.progress)?;
        manifest.generation = self.next_generation()?;
        manifest.lsn_floor = self.next_lsn - 1;
        manifest.store(&*self.fs, &self.dir)?;
        self.switch_generation(manifest, edit);
        Ok(())
    }

    /// The generation number after the current one.
    fn next_generation(&self) -> Result<u64> {
        // Only a crafted manifest gets near u64::MAX; refuse like an
        // exhausted segment id rather than overflow.
        self.manifest
            .generation
            .checked_add(1)
            .ok_or_else(|| Error::InvalidOptions("manifest generations exhausted".into()))
    }

    /// Makes `manifest` the writer's, with a generation whose segments
    /// `edit` derives from the current.
    fn switch_generation(&mut self, manifest: Manifest, edit: impl FnOnce(&mut Vec<Arc<Segment>>)) {
        let mut segments = self.generation.segments.clone();
        edit(&mut segments);
        self.generation =
            Arc::new(Generation::new(manifest.generation, segments).with_sealed(&manifest));
        self.manifest = manifest;
    }
}
