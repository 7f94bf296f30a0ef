//! `WriteBatch`: operations applied atomically by one `Store::write`.

use crate::error::{Error, Result};
use crate::record::{crc32, op_len, OpKind};

/// A set of operations over any number of journals, applied atomically and
/// in order by [`Store::write`](crate::Store::write).
///
/// Building a batch does no I/O; entry checksums are computed here, in the
/// caller's thread, so the commit path only copies bytes.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub(crate) ops: Vec<BatchOp>,
    // Journal ids and values, back to back; ops refer to ranges of it.
    data: Vec<u8>,
}

/// What one operation asks for, before the store validates it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Request {
    /// Append at the end; `Some(i)` fails unless the end is `i`.
    Append(Option<u64>),
    SetMetadata,
    ClearMetadata,
    TrimPrefix(u64),
    Truncate(u64),
    Delete,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchOp {
    pub request: Request,
    id_start: u32,
    id_len: u32,
    value_len: u32,
    pub value_crc: u32,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `entry` at the end of journal `id`: at its `end_index`, or at
    /// index 0 if the journal does not exist.
    pub fn append(&mut self, id: &[u8], entry: &[u8]) -> &mut Self {
        self.push(Request::Append(None), id, entry)
    }

    /// Appends `entry` at index `index`; the whole batch fails with
    /// [`Error::UnexpectedIndex`] unless that is the journal's end at this
    /// point of the batch (0 for a journal that does not exist).
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// use journalstore::{Error, WriteBatch};
    /// let mut batch = WriteBatch::new();
    /// batch.append_at(b"log", 0, b"first");
    /// store.write(&batch)?;
    /// let mut stale = WriteBatch::new();
    /// stale.append_at(b"log", 0, b"lost the race");
    /// assert!(matches!(store.write(&stale), Err(Error::UnexpectedIndex { actual: 1, .. })));
    /// # Ok(()) }
    /// ```
    pub fn append_at(&mut self, id: &[u8], index: u64, entry: &[u8]) -> &mut Self {
        self.push(Request::Append(Some(index)), id, entry)
    }

    /// Sets the metadata of journal `id` (creating the journal, empty at
    /// index 0, if absent). Empty metadata is metadata:
    /// [`Journal::metadata`](crate::Journal::metadata) returns `Some(b"")`.
    pub fn set_metadata(&mut self, id: &[u8], metadata: &[u8]) -> &mut Self {
        self.push(Request::SetMetadata, id, metadata)
    }

    /// Removes the metadata of journal `id`, so that
    /// [`Journal::metadata`](crate::Journal::metadata) returns `None`; the
    /// journal and its entries stay. Nothing happens if the journal or its
    /// metadata does not exist.
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.set_metadata(b"inv-1", b"").append(b"inv-1", b"e0");
    /// store.write(&batch)?;
    /// assert_eq!(store.snapshot().journal(b"inv-1").unwrap().metadata()?, Some(&b""[..]));
    /// let mut clear = journalstore::WriteBatch::new();
    /// clear.clear_metadata(b"inv-1");
    /// store.write(&clear)?;
    /// let snap = store.snapshot();
    /// let journal = snap.journal(b"inv-1").unwrap();
    /// assert_eq!((journal.metadata()?, journal.len()), (None, 1));
    /// # Ok(()) }
    /// ```
    pub fn clear_metadata(&mut self, id: &[u8]) -> &mut Self {
        self.push(Request::ClearMetadata, id, &[])
    }

    /// Drops the entries of `id` below `index`: afterwards the journal holds
    /// no entry below `index` and `first_index >= index`. Never fails on an
    /// index outside the journal:
    /// - at or below `first_index`: nothing changes;
    /// - up to `end_index`: entries `..index` go (at `end_index`, all);
    /// - past `end_index`: every entry goes and the journal continues at
    ///   `index` (`first_index = end_index = index`), as a Raft log does
    ///   after installing a snapshot, or purging past its last entry;
    /// - on a journal that does not exist: it is created, empty, at `index`.
    ///
    /// The metadata stays. Only an index beyond the format's limit
    /// ([`MAX_INDEX`](crate::record::MAX_INDEX)) fails the batch, with
    /// [`Error::InvalidRange`].
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// // A Raft log starts at index 1.
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.trim_prefix(b"raft-7", 1).append_at(b"raft-7", 1, b"entry 1");
    /// store.write(&batch)?;
    /// let snap = store.snapshot();
    /// let log = snap.journal(b"raft-7").unwrap();
    /// assert_eq!((log.first_index(), log.end_index()), (1, 2));
    /// # Ok(()) }
    /// ```
    pub fn trim_prefix(&mut self, id: &[u8], index: u64) -> &mut Self {
        self.push(Request::TrimPrefix(index), id, &[])
    }

    /// Drops the entries of `id` at and above `index`: afterwards the
    /// journal holds no entry at or above `index` and `end_index <= index`.
    /// Never fails on an index outside the journal:
    /// - at or past `end_index`: nothing changes;
    /// - from `first_index` on: entries `index..` go, and the next append
    ///   gets `index` (reset to entry `index`);
    /// - below `first_index`: every entry goes and the journal continues at
    ///   `index` (`first_index = end_index = index`);
    /// - on a journal that does not exist: nothing happens.
    ///
    /// The metadata stays. Only an index beyond the format's limit fails
    /// the batch, with [`Error::InvalidRange`].
    ///
    /// ```
    /// # fn main() -> journalstore::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let store = journalstore::Store::open(tmp.path(), Default::default())?;
    /// let mut batch = journalstore::WriteBatch::new();
    /// batch.append(b"j", b"a").append(b"j", b"b").append(b"j", b"c");
    /// batch.truncate(b"j", 1).truncate(b"j", 7); // the second changes nothing
    /// store.write(&batch)?;
    /// assert_eq!(store.snapshot().journal(b"j").unwrap().end_index(), 1);
    /// # Ok(()) }
    /// ```
    pub fn truncate(&mut self, id: &[u8], index: u64) -> &mut Self {
        self.push(Request::Truncate(index), id, &[])
    }

    /// Deletes journal `id`: entries and metadata. A later append starts it
    /// again at index 0. Nothing happens if it does not exist.
    pub fn delete_journal(&mut self, id: &[u8]) -> &mut Self {
        self.push(Request::Delete, id, &[])
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Removes every operation, keeping the allocated buffers.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.data.clear();
    }

    fn push(&mut self, request: Request, id: &[u8], value: &[u8]) -> &mut Self {
        // Lengths are checked in `validate`; here they are only recorded.
        // Sizes beyond u32 are clamped so that validation reports them.
        let id_start = self.data.len() as u32;
        self.data.extend_from_slice(id);
        self.data.extend_from_slice(value);
        self.ops.push(BatchOp {
            request,
            id_start,
            id_len: id.len().min(u32::MAX as usize) as u32,
            value_len: value.len().min(u32::MAX as usize) as u32,
            value_crc: if value.is_empty() { 0 } else { crc32(value) },
        });
        self
    }

    /// An upper bound of the payload this batch encodes to (validation only
    /// ever leaves operations out).
    pub(crate) fn payload_bound(&self) -> usize {
        self.data.len() + self.ops.len() * crate::record::OP_HEADER_LEN
    }

    pub(crate) fn id(&self, op: &BatchOp) -> &[u8] {
        let start = op.id_start as usize;
        &self.data[start..start + op.id_len as usize]
    }

    pub(crate) fn value(&self, op: &BatchOp) -> &[u8] {
        let start = op.id_start as usize + op.id_len as usize;
        &self.data[start..start + op.value_len as usize]
    }

    /// Checks the limits that do not depend on the store's state and returns
    /// the largest payload this batch can encode to.
    pub(crate) fn validate(&self, max_entry: u64, max_metadata: u64) -> Result<usize> {
        let mut payload = 0usize;
        for op in &self.ops {
            let id = self.id(op);
            if id.is_empty() || id.len() > 255 {
                return Err(Error::InvalidJournalId { len: id.len() });
            }
            let (what, max) = match op.request {
                Request::SetMetadata => ("metadata", max_metadata),
                _ => ("entry", max_entry),
            };
            let len = op.value_len as u64;
            if len > max || (self.data.len() as u64) > u32::MAX as u64 {
                return Err(Error::ValueTooLarge {
                    journal: id.to_vec(),
                    what,
                    len: self.value(op).len() as u64,
                    max,
                });
            }
            payload += op_len(id.len(), op.value_len as usize);
        }
        Ok(payload)
    }
}

impl Request {
    /// The on-disk kind this request becomes.
    pub(crate) fn kind(self) -> OpKind {
        match self {
            Request::Append(_) => OpKind::Append,
            Request::SetMetadata => OpKind::SetMetadata,
            Request::ClearMetadata => OpKind::ClearMetadata,
            Request::TrimPrefix(_) => OpKind::TrimPrefix,
            Request::Truncate(_) => OpKind::Truncate,
            Request::Delete => OpKind::Delete,
        }
    }
}
