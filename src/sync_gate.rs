//! The single gate every sync of the active segment goes through.

use std::sync::{Arc, Mutex};

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
///
/// The failure is kept as the error itself, never a `WritesStopped` (which
/// would only wrap it again), so every later `WritesStopped` has it as its
/// `source()`, with its own chain (the `io::Error`) intact.
#[derive(Debug, Default)]
pub(crate) struct SyncGate {
    failed: Mutex<Option<Arc<Error>>>,
}

impl SyncGate {
    /// fdatasyncs `segment` unless a failure is recorded; records its own.
    pub fn sync(&self, segment: &Segment) -> Result<()> {
        let mut failed = lock(&self.failed);
        if let Some(cause) = &*failed {
            return Err(Error::WritesStopped {
                cause: Arc::clone(cause),
            });
        }
        segment.file().and_then(|f| f.sync_data()).map_err(|e| {
            let e = Error::io("sync segment", &segment.path, e);
            *failed = Some(Arc::new(e.clone()));
            e
        })
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
