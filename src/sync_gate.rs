//! The single gate every sync of the active segment goes through.

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::mutex::lock;
use crate::segment::Segment;

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
