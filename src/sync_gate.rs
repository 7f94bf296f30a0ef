//! The single gate every sync of the active segment goes through.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::mutex::lock;
use crate::progress::Progress;
use crate::segment::Segment;

/// Serialises the fdatasyncs of the active segment and remembers the first
/// failure of any write or sync.
///
/// On Linux a failed fdatasync reports its error once and drops the file's
/// unwritten pages; a second fdatasync then succeeds without making them
/// durable. So two syncs of one file must never run at once (the second
/// could succeed over data the first lost), and after a failure no later
/// sync may count as success: every sync runs under the gate's `syncing`
/// lock and fails once a failure is recorded, and so do writes
/// (`Committer`).
///
/// The failure has a lock of its own, held only to read or record it:
/// writers check it on every write, and must not wait for a sync under way
/// to do so (they would queue behind each fdatasync instead of joining the
/// next group). A write that checks while a sync is about to fail may
/// still be written; it is acknowledged as durable only by a later sync,
/// which runs after the failure is recorded and so fails.
///
/// The failure is kept as the error itself, never a `WritesStopped` (which
/// would only wrap it again), so every later `WritesStopped` has it as its
/// `source()`, with its own chain (the `io::Error`) intact.
#[derive(Debug, Default)]
pub(crate) struct SyncGate {
    /// Held across each fdatasync: one at a time.
    syncing: Mutex<()>,
    /// The first failure; held only to read or record it.
    failed: Mutex<Option<Arc<Error>>>,
}

impl SyncGate {
    /// fdatasyncs `segment` unless a failure is recorded; records its own.
    pub fn sync(&self, segment: &Segment) -> Result<()> {
        let _one_at_a_time = lock(&self.syncing);
        self.check()?;
        segment.file().and_then(|f| f.sync_data()).map_err(|e| {
            let e = Error::io("sync segment", &segment.path, e);
            self.fail(&e);
            e
        })
    }

    /// Makes every batch up to `lsn`, written to `segment` or to segments
    /// sealed before it, durable: fdatasyncs `segment` unless a sync that
    /// ran before covered `lsn` already, and raises
    /// `progress`'s durable LSN before it lets the next sync start. So a
    /// caller that comes after a roll sealed (and synced) its segment finds
    /// its LSN durable rather than syncing a sealed segment again.
    pub fn sync_covering(&self, segment: &Segment, lsn: u64, progress: &Progress) -> Result<()> {
        let _one_at_a_time = lock(&self.syncing);
        self.check()?;
        if progress.durable() >= lsn {
            return Ok(());
        }
        segment.file().and_then(|f| f.sync_data()).map_err(|e| {
            let e = Error::io("sync segment", &segment.path, e);
            self.fail(&e);
            e
        })?;
        progress.made_durable(lsn);
        Ok(())
    }

    /// Records a failure (the first one is kept). A `WritesStopped` is
    /// recorded as its cause.
    pub fn fail(&self, cause: &Error) {
        lock(&self.failed).get_or_insert_with(|| match cause {
            Error::WritesStopped { cause } => Arc::clone(cause),
            other => Arc::new(other.clone()),
        });
    }

    /// `Err(WritesStopped)` once a failure is recorded.
    pub fn check(&self) -> Result<()> {
        match self.cause() {
            Some(cause) => Err(Error::WritesStopped { cause }),
            None => Ok(()),
        }
    }

    /// The recorded failure.
    pub fn cause(&self) -> Option<Arc<Error>> {
        lock(&self.failed).clone()
    }
}
