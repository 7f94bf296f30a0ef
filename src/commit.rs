//! The write path: group commit, validation, encoding, segment rolls, sync.
//!
//! Under `SyncMode::Always`, writers queue their batches; the writer at the
//! head of the queue becomes the leader and commits every queued batch as
//! one group (LevelDB style), so that one fdatasync serves them all:
//! it validates each batch against the latest state, encodes it as one record
//! into a buffer, writes the buffer with one `write_at`, syncs once if the
//! mode asks for it, and then publishes a new [`Version`] that snapshots pick
//! up. Followers wait on a condition variable and return the leader's verdict.
//! Under `Never` and `Interval` there is no sync to share, and handing a
//! batch to a leader would cost a sleep and a wake-up per batch: each writer
//! commits its own batch as a group of one under the writer's lock, applies
//! it to the index only once its write succeeded, and does not publish a
//! version: `Committer::current` makes one when a snapshot finds the
//! published version older than the newest acknowledged batch. A published
//! version makes the writer copy the index nodes it touches next, which was
//! most of a small buffered batch's cost.
//!
//! Invariants:
//! - Records are written in LSN order, each wholly inside one segment.
//! - A version is published only after its records are written (and synced
//!   under `SyncMode::Always`): a snapshot never shows what a power loss
//!   could take back from an acknowledged write.
//! - After a failed write or sync the working state is ahead of what is
//!   durable, so writes stop (`Error::WritesStopped`) until reopen; the last
//!   published version stays readable.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use zerocopy::{FromZeros, IntoBytes};

use crate::batch::{Request, WriteBatch};
use crate::error::{Error, Result};
use crate::index::{Index, Loc};
use crate::io::FileSystem;
use crate::live::Accounting;
use crate::manifest::{Generation, Manifest};
use crate::options::SyncMode;
#[cfg(doc)]
use crate::record::RECORD_KIND_SYNC_MARK;
use crate::record::{
    align_up, crc32, encode_op, read_op_header, OpIter, OpKind, RecordHeader, MAX_INDEX,
    OP_HEADER_LEN, RECORD_HEADER_LEN, RECORD_KIND_BATCH, SEGMENT_HEADER_LEN,
};
use crate::segment::Segment;

/// Most batches committed as one group.
const MAX_GROUP_BATCHES: usize = 512;
/// A group stops growing once its records reach this many bytes.
const MAX_GROUP_BYTES: usize = 4 << 20;

/// The active segment's disk space is reserved this far ahead of its data:
/// a segment file is created at its full length but sparse, so a store
/// holding little data does not occupy whole segments on disk, and one
/// `fallocate` per step keeps later writes from failing for lack of space.
pub(crate) const RESERVE_STEP: u64 = 1 << 20;

/// What a snapshot pins: an index version, the generation of segments its
/// locations point into, and the LSN of the last batch it contains.
#[derive(Debug)]
pub(crate) struct Version {
    pub lsn: u64,
    pub index: Index,
    pub generation: Arc<Generation>,
    /// End of the records of this version in the active segment (what a
    /// checkpoint copies of it).
    pub active_end: u64,
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves the
/// data consistent before anything that can panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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
    pub next_lsn: u64,
    /// The latest state, including batches not yet published.
    pub index: Index,
    pub acct: Accounting,
    /// Records encoded but not yet written, starting at `buf_start`.
    buf: Vec<u8>,
    buf_start: u64,
    /// Disk space of the active segment is reserved below this offset.
    reserved: u64,
    /// Whether the index holds acknowledged batches that no published
    /// version shows yet (buffered modes publish lazily, see `Committer`).
    pub dirty: bool,
    /// Bytes of records appended by writes since open.
    pub appended: u64,
    /// Bytes of records compaction copied since open, and its runs.
    pub compacted: u64,
    pub compaction_runs: u64,
    /// Set when a write sealed a segment; taken by the committer, which
    /// tells the store (see `Committer::take_compaction_due`).
    compaction_due: bool,
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

/// Bounds of a journal while validating (None = absent).
type Bounds = Option<(u64, u64)>;

/// The bounds a batch being validated has set so far, by journal.
#[derive(Default)]
struct Overlay<'b> {
    list: Vec<(&'b [u8], Bounds)>,
    map: HashMap<&'b [u8], Bounds>,
}

impl<'b> Overlay<'b> {
    const LIST_MAX: usize = 16;

    fn get(&self, id: &[u8]) -> Option<Bounds> {
        if self.list.len() < Self::LIST_MAX {
            self.list
                .iter()
                .rev()
                .find(|(k, _)| *k == id)
                .map(|(_, b)| *b)
        } else {
            self.map.get(id).copied()
        }
    }

    fn insert(&mut self, id: &'b [u8], bounds: Bounds) {
        if self.list.len() < Self::LIST_MAX {
            self.list.push((id, bounds));
            if self.list.len() == Self::LIST_MAX {
                self.map.extend(self.list.iter().copied());
            }
        } else {
            self.map.insert(id, bounds);
        }
    }
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
            next_lsn,
            index,
            acct,
            buf: Vec::new(),
            buf_start: write_pos,
            // Unknown after a reopen: the first flush reserves.
            reserved: write_pos,
            dirty: false,
            appended: 0,
            compacted: 0,
            compaction_runs: 0,
            compaction_due: false,
        }
    }

    pub fn active(&self) -> &Arc<Segment> {
        // A generation always has its active segment last.
        self.generation
            .segments
            .last()
            .expect("a generation always holds its active segment")
    }

    pub fn version(&self) -> Arc<Version> {
        Arc::new(Version {
            lsn: self.next_lsn - 1,
            index: self.index.clone(),
            generation: self.generation.clone(),
            active_end: self.write_pos,
        })
    }

    /// Commits a group. Returns each batch's result; `Err` when the group hit
    /// an I/O error, after which nothing more may be written.
    pub fn commit_group(&mut self, batches: &[&WriteBatch]) -> (Vec<Result<u64>>, Result<()>) {
        let mut results = Vec::with_capacity(batches.len());
        self.buf.clear();
        self.buf_start = self.write_pos;
        let mut fatal = Ok(());
        for batch in batches {
            if fatal.is_err() {
                results.push(Err(stopped_error(&fatal)));
                continue;
            }
            match self.encode_batch(batch) {
                Ok(lsn) => results.push(Ok(lsn)),
                // The batch that hit the failure (in a roll) gets the I/O
                // error itself; the batches after it, `WritesStopped`.
                Err(e @ Error::Io { .. }) => {
                    results.push(Err(clone_io(&e)));
                    fatal = Err(e);
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if fatal.is_ok() {
            fatal = self.flush().and_then(|()| {
                if self.sync == SyncMode::Always {
                    self.sync_active()?;
                    self.write_sync_mark()
                } else {
                    Ok(())
                }
            });
        }
        if let Err(e) = &fatal {
            for r in results.iter_mut() {
                if r.is_ok() {
                    *r = Err(clone_io(e));
                }
            }
        }
        (results, fatal)
    }

    /// Validates, encodes and applies one batch; returns its LSN.
    fn encode_batch(&mut self, batch: &WriteBatch) -> Result<u64> {
        let plan = self.plan(batch)?;
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
        let payload_len: usize = plan
            .iter()
            .map(|p| OP_HEADER_LEN + p.id.len() + p.value.len())
            .sum();
        let record_len = align_up(RECORD_HEADER_LEN + payload_len);
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
    fn must_roll(&self, record_len: usize) -> bool {
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
        for p in plan {
            encode_op(
                &mut self.buf,
                p.kind,
                p.id,
                p.value,
                p.value_crc,
                p.first,
                p.end,
            );
        }
        let payload = &self.buf[start + RECORD_HEADER_LEN..];
        let payload_len = payload.len();
        let mut header = RecordHeader::new_zeroed();
        header.payload_crc = crc32(payload).into();
        header.lsn = lsn.into();
        header.payload_len = (payload_len as u32).into();
        header.synced_through = (self.synced_pos as u32).into();
        header.kind = RECORD_KIND_BATCH.into();
        header.op_count = (plan.len() as u32).into();
        header.seal();
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
            ..
        } = self;
        let active = generation.segments.last().map_or(0, |s| s.id);
        let pending = (*buf_start, &buf[..]);
        let size_of = |loc: Loc| -> u64 {
            if loc.segment == active && u64::from(loc.offset) >= pending.0 {
                let at = (u64::from(loc.offset) - pending.0) as usize;
                return pending.1.get(at..).and_then(read_op_header).map_or(0, |h| {
                    (OP_HEADER_LEN + h.id_len as usize + h.value_len.get() as usize) as u64
                });
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

    /// Commits one batch on its own (the buffered modes), in the order that
    /// keeps the working index equal to what was acknowledged: validate,
    /// encode, write, and only once the write succeeded apply it. Returns
    /// the batch's verdict and whether an I/O failure stopped writes.
    fn commit_one(&mut self, batch: &WriteBatch) -> (Result<u64>, Result<()>) {
        self.buf.clear();
        self.buf_start = self.write_pos;
        let record = match self.plan(batch).and_then(|plan| self.encode_record(&plan)) {
            Ok(record) => record,
            Err(e @ Error::Io { .. }) => {
                let cause = Err(clone_io(&e));
                return (Err(e), cause);
            }
            Err(e) => return (Err(e), Ok(())),
        };
        if let Err(e) = self.write_buffer() {
            // Nothing of the batch is in the index; the numbers it took are
            // given back, so the state stays exactly what was acknowledged.
            self.write_pos -= record.record_len as u64;
            self.appended -= record.record_len as u64;
            self.next_lsn -= 1;
            let cause = Err(clone_io(&e));
            return (Err(e), cause);
        }
        self.apply_record(&record);
        self.buf_start += self.buf.len() as u64;
        self.buf.clear();
        (Ok(record.lsn), Ok(()))
    }

    /// Checks a batch against the latest state and computes the bounds each
    /// operation leaves its journal with. No-ops are left out: an operation
    /// on disk always changes something, which recovery relies on.
    fn plan<'b>(&self, batch: &'b WriteBatch) -> Result<Vec<PlannedOp<'b>>> {
        // Bounds this batch has already changed. Most batches touch a few
        // journals, so a list searched from its newest end beats hashing;
        // large batches switch to a map.
        let mut overlay = Overlay::default();
        let mut plan = Vec::with_capacity(batch.ops.len());
        for op in &batch.ops {
            let id = batch.id(op);
            let bounds = match overlay.get(id) {
                Some(b) => b,
                None => self.index.get(id).map(|s| (s.first, s.end())),
            };
            let range_err = |op_name, index, (first, end): (u64, u64)| Error::InvalidRange {
                journal: id.to_vec(),
                op: op_name,
                index,
                first,
                end,
            };
            let after: Option<Bounds> = match (op.request, bounds) {
                (Request::Append(expected), b) => {
                    let (first, end) = b.unwrap_or((0, 0));
                    if let Some(want) = expected {
                        if want != end {
                            return Err(Error::UnexpectedIndex {
                                journal: id.to_vec(),
                                expected: want,
                                actual: end,
                            });
                        }
                    }
                    if end >= MAX_INDEX {
                        return Err(range_err("append", end, (first, end)));
                    }
                    Some(Some((first, end + 1)))
                }
                (Request::SetMetadata, b) => Some(Some(b.unwrap_or((0, 0)))),
                (Request::TrimPrefix(_) | Request::Truncate(_) | Request::Delete, None) => None,
                (Request::TrimPrefix(t), Some((first, end))) => {
                    if t > end {
                        return Err(range_err("trim_prefix", t, (first, end)));
                    }
                    (t > first).then_some(Some((t, end)))
                }
                (Request::Truncate(t), Some((first, end))) => {
                    if t < first {
                        return Err(range_err("truncate", t, (first, end)));
                    }
                    (t < end).then_some(Some((first, t)))
                }
                (Request::Delete, Some(_)) => Some(None),
            };
            if let Some(after) = after {
                overlay.insert(id, after);
                let (first, end) = after.unwrap_or((0, 0));
                plan.push(PlannedOp {
                    kind: op.request.kind(),
                    id,
                    value: batch.value(op),
                    value_crc: op.value_crc,
                    first,
                    end,
                });
            }
        }
        Ok(plan)
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
        if end > self.reserved {
            let upto = (end + RESERVE_STEP).min(active.capacity);
            if self.sync == SyncMode::Always {
                // Zeros written ahead of the data, in the same write: an
                // fdatasync of data in blocks that are already written (and
                // whose allocation is committed) needs no metadata commit,
                // while fallocate'd (unwritten) blocks must be converted at
                // every sync. So the group that crosses into a new step
                // writes its records and the next step's zeros at once, and
                // its own sync commits their allocation once; the next
                // groups of the step sync data only. (Zeros are what
                // recovery reads as the end of the log, so a crash at any
                // point of this write leaves a valid tail.)
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

    /// fdatasyncs the active segment up to `write_pos`.
    pub fn sync_active(&mut self) -> Result<()> {
        if self.synced_pos == self.write_pos {
            return self.sync_gate.check();
        }
        self.sync_gate.sync(self.active())?;
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

    /// Syncs the active segment as it is and rolls to a new one (open after
    /// a torn tail: the bytes below `write_pos` may be in the page cache only).
    pub fn seal_and_roll(&mut self) -> Result<()> {
        self.sync_gate.sync(self.active())?;
        self.synced_pos = self.write_pos;
        self.roll()
    }

    /// Seals the active segment and starts a new one: a new generation.
    pub(crate) fn roll(&mut self) -> Result<()> {
        self.flush()?;
        self.sync_active()?;
        let id = self.manifest.next_segment_id;
        let segment = Arc::new(Segment::create(
            &self.fs,
            &self.dir,
            self.active().owner(),
            id,
            self.segment_size,
            RESERVE_STEP,
            self.next_lsn,
            true,
        )?);
        let mut manifest = self.manifest.clone();
        if let Some(last) = manifest.segments.last_mut() {
            last.1 = Some(self.write_pos);
        }
        manifest.segments.push((id, None));
        manifest.next_segment_id = id
            .checked_add(1)
            .ok_or_else(|| Error::InvalidOptions("segment ids exhausted".into()))?;
        let sealed = self.active().clone();
        self.swap_manifest(manifest, |segments| segments.push(segment))?;
        // Sealed: its mapping is all it needs (see `Segment::close_file`).
        sealed.close_file();
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
    fn freeable(&mut self) -> Vec<u32> {
        let active = self.active().id;
        self.acct.freeable(active)
    }

    /// Frees segments `freeable` chose.
    fn free(&mut self, ids: Vec<u32>) -> Result<bool> {
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
        let mut manifest = self.manifest.clone();
        manifest.segments.retain(|(id, _)| !ids.contains(id));
        let mut freed = Vec::new();
        self.swap_manifest(manifest, |segments| {
            segments.retain(|s| {
                let keep = !ids.contains(&s.id);
                if !keep {
                    freed.push(s.clone());
                }
                keep
            })
        })?;
        for s in freed {
            s.mark_obsolete();
        }
        self.acct.remove(&ids);
        Ok(true)
    }

    /// Makes `manifest` (with the next generation number) durable, then
    /// switches to a generation whose segments `edit` derives from the current.
    pub(crate) fn swap_manifest(
        &mut self,
        mut manifest: Manifest,
        edit: impl FnOnce(&mut Vec<Arc<Segment>>),
    ) -> Result<()> {
        // Only a crafted manifest gets near u64::MAX; refuse like an
        // exhausted segment id rather than overflow.
        manifest.generation = self
            .manifest
            .generation
            .checked_add(1)
            .ok_or_else(|| Error::InvalidOptions("manifest generations exhausted".into()))?;
        manifest.lsn_floor = self.next_lsn - 1;
        manifest.store(&*self.fs, &self.dir)?;
        let mut segments = self.generation.segments.clone();
        edit(&mut segments);
        self.generation =
            Arc::new(Generation::new(manifest.generation, segments).with_sealed(&manifest));
        self.manifest = manifest;
        Ok(())
    }
}

/// One operation ready to encode: what it does and the bounds it leaves.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlannedOp<'a> {
    pub kind: OpKind,
    pub id: &'a [u8],
    pub value: &'a [u8],
    pub value_crc: u32,
    pub first: u64,
    pub end: u64,
}

fn clone_io(e: &Error) -> Error {
    match e {
        Error::Io { op, path, source } => Error::Io {
            op,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => Error::WritesStopped {
            cause: other.to_string(),
        },
    }
}

fn stopped_error(fatal: &Result<()>) -> Error {
    Error::WritesStopped {
        cause: match fatal {
            Err(e) => e.to_string(),
            Ok(()) => "unknown".into(),
        },
    }
}

/// Serialises the fdatasyncs of the active segment and remembers the first
/// failure of any write or sync.
///
/// On Linux a failed fdatasync reports its error once and drops the file's
/// unwritten pages; a second fdatasync then succeeds without making them
/// durable. So two syncs of one file must never run at once (the second
/// could succeed over data the first lost), and after a failure no later
/// sync may count as success: every sync runs under this gate's lock and
/// fails once a failure is recorded, and so do writes (`Committer`).
#[derive(Debug, Default)]
pub(crate) struct SyncGate {
    failed: Mutex<Option<String>>,
}

impl SyncGate {
    /// fdatasyncs `segment` unless a failure is recorded; records its own.
    pub fn sync(&self, segment: &Segment) -> Result<()> {
        let mut failed = lock(&self.failed);
        if let Some(cause) = &*failed {
            return Err(Error::WritesStopped {
                cause: cause.clone(),
            });
        }
        segment.file().and_then(|f| f.sync_data()).map_err(|e| {
            let e = Error::io("sync segment", &segment.path, e);
            *failed = Some(e.to_string());
            e
        })
    }

    /// Records a failure (the first one is kept).
    pub fn fail(&self, cause: &Error) {
        lock(&self.failed).get_or_insert_with(|| cause.to_string());
    }

    /// `Err(WritesStopped)` once a failure is recorded.
    pub fn check(&self) -> Result<()> {
        match self.cause() {
            Some(cause) => Err(Error::WritesStopped { cause }),
            None => Ok(()),
        }
    }

    /// The recorded failure.
    pub fn cause(&self) -> Option<String> {
        lock(&self.failed).clone()
    }
}

/// One writer waiting in the queue.
#[derive(Debug)]
struct Waiter {
    batch: WriteBatch,
    result: Mutex<Option<Result<u64>>>,
}

/// Group commit: the queue, the leader's state and the published version.
#[derive(Debug)]
pub(crate) struct Committer {
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    cv: Condvar,
    pub log: Mutex<LogWriter>,
    /// The version snapshots start from. Its lock is held only to swap or
    /// clone the `Arc`, never across I/O.
    pub current: Mutex<Arc<Version>>,
    /// Records why writes stopped (after an I/O failure) and serialises the
    /// active segment's syncs; the same gate as `LogWriter::sync_gate`.
    gate: Arc<SyncGate>,
    /// Held by a compaction from choosing its run to switching over.
    compacting: Mutex<()>,
    /// Whether writers queue for a leader (`SyncMode::Always`). Otherwise
    /// each writer commits its own batch and publishing is lazy: a version
    /// is made when a snapshot asks for one (see `current`), not after every
    /// batch, because each published version makes the writer copy the
    /// index nodes it touches next, which is most of a small batch's cost.
    group_commit: bool,
    /// LSN of the newest acknowledged batch (buffered modes): a published
    /// version older than this is stale.
    acked: AtomicU64,
    /// Whether a write made compaction due since `take_compaction_due`
    /// last looked (see `LogWriter::compaction_due`).
    compaction_due: AtomicBool,
}

impl Committer {
    pub fn new(log: LogWriter) -> Committer {
        let version = log.version();
        let group_commit = log.sync == SyncMode::Always;
        let gate = log.sync_gate.clone();
        Committer {
            acked: AtomicU64::new(version.lsn),
            group_commit,
            queue: Mutex::new(VecDeque::new()),
            cv: Condvar::new(),
            log: Mutex::new(log),
            current: Mutex::new(version),
            gate,
            compacting: Mutex::new(()),
            compaction_due: AtomicBool::new(false),
        }
    }

    /// Whether a write sealed a segment since the last call: the store then
    /// wakes its compaction thread (and may make the writer help it).
    pub fn take_compaction_due(&self) -> bool {
        self.compaction_due.load(Ordering::Relaxed)
            && self.compaction_due.swap(false, Ordering::Relaxed)
    }

    /// Passes on, under the writer's lock, what the last commit noted.
    fn note_compaction_due(&self, log: &mut LogWriter) {
        if std::mem::take(&mut log.compaction_due) {
            self.compaction_due.store(true, Ordering::Relaxed);
        }
    }

    /// Whether the sealed segments hold more than `limit` times their live
    /// bytes, plus some slack (`space_slack`; see
    /// `Options::stall_space_amplification`).
    pub fn over_space_limit(&self, limit: f64) -> bool {
        let log = lock(&self.log);
        let live = log.acct.total_live_bytes();
        log.sealed_data() as f64 > limit * live as f64 + log.space_slack(live)
    }

    /// The latest version: it holds every batch acknowledged before the
    /// call. In the buffered modes it is made here when the published one
    /// is stale, which waits for the writer's lock; the writer publishes
    /// before the slow steps it takes under that lock (rolls, frees,
    /// compaction switches), so the wait is one small batch at most.
    pub fn current(&self) -> Arc<Version> {
        let published = lock(&self.current).clone();
        if published.lsn >= self.acked.load(Ordering::Acquire) {
            return published;
        }
        let mut log = lock(&self.log);
        let replaced = self.publish_dirty(&mut log);
        let version = lock(&self.current).clone();
        drop(log);
        drop(replaced);
        version
    }

    /// Publishes the working state if it holds unpublished batches; returns
    /// the replaced version (to drop outside the locks).
    fn publish_dirty(&self, log: &mut LogWriter) -> Option<Arc<Version>> {
        if !log.dirty {
            return None;
        }
        log.dirty = false;
        Some(self.publish(log.version()))
    }

    /// Stops writes after an I/O failure (see the module comment).
    fn stop(&self, cause: &Error) {
        self.gate.fail(cause);
    }

    fn check_stopped(&self) -> Result<()> {
        self.gate.check()
    }

    /// Why writes stopped, if they did.
    pub fn stopped_cause(&self) -> Option<String> {
        self.gate.cause()
    }

    /// Writes one batch (see the module comment).
    pub fn write(&self, batch: &WriteBatch) -> Result<u64> {
        self.check_stopped()?;
        if !self.group_commit {
            // With no sync to share, a queue would only add a hand-off
            // between threads (a sleep and a wake-up) to every batch: each
            // writer commits its own batch under the writer's lock.
            return self.commit_direct(batch);
        }
        let me = Arc::new(Waiter {
            batch: batch.clone(),
            result: Mutex::new(None),
        });
        let mut queue = lock(&self.queue);
        queue.push_back(me.clone());
        loop {
            if let Some(r) = lock(&me.result).take() {
                return r;
            }
            if queue.front().is_some_and(|w| Arc::ptr_eq(w, &me)) {
                break;
            }
            queue = self.cv.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
        // Leader: take the group (it stays queued so that later arrivals
        // wait for this group to finish).
        let mut group = Vec::new();
        let mut bytes = 0;
        for w in queue.iter() {
            if group.len() == MAX_GROUP_BATCHES || bytes >= MAX_GROUP_BYTES {
                break;
            }
            bytes += w.batch.len() * OP_HEADER_LEN;
            group.push(w.clone());
        }
        drop(queue);

        let batches: Vec<&WriteBatch> = group.iter().map(|w| &w.batch).collect();
        let results = self.commit(&batches);

        let mut queue = lock(&self.queue);
        for (w, r) in group.iter().zip(results) {
            queue.pop_front();
            *lock(&w.result) = Some(r);
        }
        drop(queue);
        self.cv.notify_all();
        let result = lock(&me.result).take();
        result.unwrap_or(Err(Error::Closed))
    }

    /// Commits one batch in a buffered mode, publishing lazily.
    fn commit_direct(&self, batch: &WriteBatch) -> Result<u64> {
        let mut log = lock(&self.log);
        // Under the writer's lock: a failure recorded by a sync that ran
        // meanwhile is seen before anything is written.
        self.check_stopped()?;
        let mut replaced = Vec::new();
        // A roll syncs and swaps the manifest under the lock: publish first,
        // so that snapshots need not wait for it (the bound may be a little
        // early near a segment's end; that costs one publish).
        if log.must_roll(align_up(RECORD_HEADER_LEN + batch.payload_bound())) {
            replaced.extend(self.publish_dirty(&mut log));
        }
        let (result, fatal) = log.commit_one(batch);
        self.note_compaction_due(&mut log);
        let fatal = fatal.and_then(|()| {
            if result.is_ok() {
                log.dirty = true;
                self.acked.store(log.next_lsn - 1, Ordering::Release);
            }
            let ids = log.freeable();
            if !ids.is_empty() {
                replaced.extend(self.publish_dirty(&mut log));
                if log.free(ids)? {
                    replaced.push(self.publish(log.version()));
                }
            }
            Ok(())
        });
        if let Err(e) = fatal {
            self.stop(&e);
        }
        drop(log);
        drop(replaced);
        result
    }

    fn commit(&self, batches: &[&WriteBatch]) -> Vec<Result<u64>> {
        let mut log = lock(&self.log);
        if let Err(e) = self.check_stopped() {
            return batches.iter().map(|_| Err(clone_io(&e))).collect();
        }
        let (results, fatal) = log.commit_group(batches);
        self.note_compaction_due(&mut log);
        // Versions replaced here are dropped once the writer's lock is
        // released: the drop frees the index nodes the writer copied since
        // (a good part of a small batch's cost), which need not hold up the
        // next writer.
        let mut replaced = Vec::new();
        let fatal = fatal.and_then(|()| {
            replaced.push(self.publish(log.version()));
            if log.free_segments()? {
                replaced.push(self.publish(log.version()));
            }
            Ok(())
        });
        if let Err(e) = fatal {
            self.stop(&e);
        }
        drop(log);
        drop(replaced);
        results
    }

    /// Writes one record of trusted operations, bypassing validation and the
    /// queue, and syncs it (salvage builds a store from recovered state).
    pub fn write_trusted(&self, ops: &[PlannedOp<'_>]) -> Result<u64> {
        let mut log = lock(&self.log);
        log.buf.clear();
        log.buf_start = log.write_pos;
        let lsn = log.encode_ops(ops)?;
        log.flush()?;
        log.sync_active()?;
        let replaced = self.publish(log.version());
        drop(log);
        drop(replaced);
        Ok(lsn)
    }

    /// Makes `version` the one new snapshots get, and returns the one it
    /// replaces, to be dropped outside the locks: dropping it may free index
    /// nodes or unlink a segment file, which neither `snapshot()` nor the
    /// next writer should wait for.
    #[must_use = "the replaced version should be dropped outside the locks"]
    fn publish(&self, version: Arc<Version>) -> Arc<Version> {
        std::mem::replace(&mut *lock(&self.current), version)
    }

    /// Runs one compaction step (see `compaction.rs`): `Ok(None)` when no
    /// run of segments is below `threshold`.
    pub fn compact_once(
        &self,
        policy: crate::compaction::Policy,
        rate_limit: Option<u64>,
    ) -> Result<Option<crate::CompactionReport>> {
        let _one_at_a_time = lock(&self.compacting);
        self.check_stopped()?;
        let (plan, fs, dir, segment_size) = {
            let mut log = lock(&self.log);
            if log.should_seal_active(policy) {
                // Publish first: the roll syncs under the lock.
                let mut replaced: Vec<_> = self.publish_dirty(&mut log).into_iter().collect();
                if let Err(e) = log.roll() {
                    self.stop(&e);
                    return Err(e);
                }
                replaced.push(self.publish(log.version()));
                drop(log);
                drop(replaced);
                // The sealed segment is now a candidate like any other.
                return Ok(Some(crate::CompactionReport::default()));
            }
            // Holding the writer's lock, the published version is the
            // working state once a lazy publish is made: every group
            // publishes (or marks the state dirty) before it lets go.
            let replaced = self.publish_dirty(&mut log);
            let version = lock(&self.current).clone();
            drop(replaced);
            match log.plan_compaction(policy, version) {
                Some(plan) => (plan, log.fs.clone(), log.dir.clone(), log.segment_size),
                None => return Ok(None),
            }
        };
        let output = crate::compaction::copy(&plan, &fs, &dir, segment_size, rate_limit)?;
        let mut report = crate::CompactionReport {
            bytes_copied: output.bytes_copied,
            segments_written: u64::from(output.bytes_copied > 0),
            ..Default::default()
        };
        let mut log = lock(&self.log);
        let started = std::time::Instant::now();
        // The switch syncs under the lock: publish first (see `current`).
        let mut replaced: Vec<_> = self.publish_dirty(&mut log).into_iter().collect();
        let switched = log.finish_compaction(&plan, output).and_then(|switched| {
            if switched {
                replaced.push(self.publish(log.version()));
                if log.free_segments()? {
                    replaced.push(self.publish(log.version()));
                }
            }
            Ok(switched)
        });
        report.max_pause = started.elapsed();
        match switched {
            Ok(true) => {
                log.compacted += report.bytes_copied;
                log.compaction_runs += 1;
                drop(log);
                drop(replaced);
                report.runs = 1;
                report.segments_rewritten = plan.victim_count();
                report.bytes_released = plan.victim_bytes();
                Ok(Some(report))
            }
            // The run changed meanwhile (a segment was freed): try again.
            Ok(false) => Ok(Some(crate::CompactionReport::default())),
            Err(e) => {
                self.stop(&e);
                Err(e)
            }
        }
    }

    /// Makes everything written so far durable, then leaves a sync mark.
    /// Runs the fdatasync without holding the writer's lock, so writers go
    /// on meanwhile; it fails, like every later call, once any sync or
    /// write has failed (see [`SyncGate`]).
    pub fn sync(&self) -> Result<()> {
        let (segment, pos) = {
            let log = lock(&self.log);
            self.check_stopped()?;
            (log.active().clone(), log.write_pos)
        };
        self.gate.sync(&segment)?;
        let mut log = lock(&self.log);
        if log.active().id == segment.id && log.synced_pos < pos {
            log.synced_pos = pos;
        }
        if let Err(e) = log.write_sync_mark() {
            self.stop(&e);
            return Err(e);
        }
        Ok(())
    }

    /// The last sync at clean close: everything written is made durable and
    /// so is a sync mark claiming it, so that the next open tells damage to
    /// these records from a torn tail.
    pub fn sync_for_close(&self) -> Result<()> {
        self.sync()?;
        let log = lock(&self.log);
        self.gate.sync(log.active())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overlay answers with the latest bounds set for a journal, before
    /// and after it switches from its list to its map, and nothing for a
    /// journal the batch has not touched.
    #[test]
    fn overlay_returns_the_latest_bounds_across_the_switch() {
        let ids: Vec<Vec<u8>> = (0..40u8).map(|i| vec![b'j', i % 7]).collect();
        let mut overlay = Overlay::default();
        let mut latest: HashMap<&[u8], Bounds> = HashMap::new();
        for (n, id) in ids.iter().enumerate() {
            let bounds = (n % 5 != 0).then_some((n as u64, 2 * n as u64));
            overlay.insert(id, bounds);
            latest.insert(id, bounds);
            for (k, b) in &latest {
                assert_eq!(overlay.get(k), Some(*b), "after {n} inserts");
            }
            assert_eq!(overlay.get(b"other"), None);
        }
    }
}
