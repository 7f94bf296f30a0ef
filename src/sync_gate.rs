//! The single gate every sync of the active segment goes through, and the
//! durable half of a roll.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::io::FileSystem;
use crate::manifest::{Manifest, MANIFEST_NEXT_FILE};
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
///
/// A roll leaves its durable steps to the gate ([`PendingSeal`]): the next
/// sync through the gate, or [`SyncGate::finish_seal`], takes them before
/// anything else, so no record of the new segment counts as durable before
/// the sealed segment and the manifest naming the new one are. Lock order:
/// the writer's lock, then `syncing`, then `pending`.
#[derive(Debug, Default)]
pub(crate) struct SyncGate {
    /// Held across each fdatasync: one at a time.
    syncing: Mutex<()>,
    /// The first failure; held only to read or record it.
    failed: Mutex<Option<Arc<Error>>>,
    /// The roll whose durable steps are still to take, if any; read and
    /// cleared only under `syncing`.
    pending: Mutex<Option<PendingSeal>>,
}

/// What a roll left to make durable: the records of the segment it sealed,
/// the new active segment's header, and the manifest that seals the one and
/// names the other (written meanwhile to `MANIFEST.next` only; see
/// `manifest.rs`).
#[derive(Debug, Clone)]
pub(crate) struct PendingSeal {
    pub sealed: Arc<Segment>,
    /// The newest LSN written before the roll: every record up to it is in
    /// `sealed` or in a segment sealed (and made durable) before it.
    pub lsn: u64,
    pub active: Arc<Segment>,
    pub manifest: Manifest,
    pub fs: Arc<dyn FileSystem>,
    pub dir: PathBuf,
}

impl SyncGate {
    /// fdatasyncs `segment` unless a failure is recorded; records its own.
    /// A pending seal is finished first.
    pub fn sync(&self, segment: &Segment) -> Result<()> {
        let syncing = lock(&self.syncing);
        self.check()?;
        self.finish_seal_locked(&syncing, None)?;
        self.sync_file(segment)
    }

    /// Makes every batch up to `lsn`, written to `segment` or to segments
    /// sealed before it, durable: finishes a pending seal, then fdatasyncs
    /// `segment` unless a sync that ran before covered `lsn` already, and
    /// raises `progress`'s durable LSN before it lets the next sync start.
    /// So a caller that comes after a roll sealed (and synced) its segment
    /// finds its LSN durable rather than syncing a sealed segment again.
    pub fn sync_covering(&self, segment: &Segment, lsn: u64, progress: &Progress) -> Result<()> {
        let syncing = lock(&self.syncing);
        self.check()?;
        if progress.durable() >= lsn {
            return Ok(());
        }
        if self.finish_seal_locked(&syncing, Some(progress))? == Some(segment.id) {
            // Its sync ran after every record up to `lsn` was written.
            progress.made_durable(lsn);
            return Ok(());
        }
        if progress.durable() >= lsn {
            return Ok(());
        }
        self.sync_file(segment)?;
        progress.made_durable(lsn);
        Ok(())
    }

    /// Takes the durable steps a roll left ([`PendingSeal`]), if any.
    pub fn finish_seal(&self, progress: &Progress) -> Result<()> {
        if lock(&self.pending).is_none() {
            return Ok(());
        }
        let syncing = lock(&self.syncing);
        self.check()?;
        self.finish_seal_locked(&syncing, Some(progress))
            .map(|_| ())
    }

    /// Notes a roll's durable steps; a roll finishes the previous one's
    /// first (`finish_seal`), so at most one is pending.
    pub fn set_pending(&self, seal: PendingSeal) {
        let mut pending = lock(&self.pending);
        debug_assert!(pending.is_none(), "a roll left a seal pending");
        *pending = Some(seal);
    }

    /// With `syncing` held: fdatasyncs the sealed segment (unless `progress`
    /// shows its records durable already), then the new active segment,
    /// then stores the manifest, and raises `progress` to the seal's LSN.
    /// Returns the id of the active segment it synced, if it had a seal to
    /// finish. On failure the seal stays pending, and the failure recorded.
    fn finish_seal_locked(
        &self,
        _syncing: &MutexGuard<'_, ()>,
        progress: Option<&Progress>,
    ) -> Result<Option<u32>> {
        let Some(seal) = lock(&self.pending).clone() else {
            return Ok(None);
        };
        if progress.is_none_or(|p| p.durable() < seal.lsn) {
            self.sync_file(&seal.sealed)?;
        }
        if let Some(p) = progress {
            p.made_durable(seal.lsn);
        }
        // The header before the manifest that names the segment: a listed
        // segment's header is durable.
        self.sync_file(&seal.active)?;
        seal.manifest
            .store(&*seal.fs, &seal.dir)
            .inspect_err(|e| self.fail(e))?;
        // Stored: `MANIFEST.next` is stale now (open would ignore it, being
        // no newer than `MANIFEST`), so a failure to remove it is harmless.
        let _ = seal.fs.remove_file(&seal.dir.join(MANIFEST_NEXT_FILE));
        // Sealed and durable: its mapping is all it needs.
        seal.sealed.close_file();
        *lock(&self.pending) = None;
        Ok(Some(seal.active.id))
    }

    /// fdatasyncs `segment`; records a failure.
    fn sync_file(&self, segment: &Segment) -> Result<()> {
        segment.file().and_then(|f| f.sync_data()).map_err(|e| {
            let e = Error::io("sync segment", &segment.path, e);
            self.fail(&e);
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
