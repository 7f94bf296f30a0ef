//! The single gate every sync of the active segment goes through, and the
//! manifest swaps left to do outside the writer's lock.

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
/// A roll, and with background compaction a free or a compaction switch,
/// leave their manifest swap to the gate ([`PendingManifest`]): the next
/// sync through the gate, or [`SyncGate::finish_pending`], takes it before
/// anything else, so no record of a new segment counts as durable before
/// the sealed segment and the manifest naming the new one are. Lock order:
/// the writer's lock, then `syncing`, then `pending`.
#[derive(Debug, Default)]
pub(crate) struct SyncGate {
    /// Held across each fdatasync: one at a time.
    syncing: Mutex<()>,
    /// The first failure; held only to read or record it.
    failed: Mutex<Option<Arc<Error>>>,
    /// The manifest swap still to do, if any; taken only under `syncing`.
    pending: Mutex<Option<PendingManifest>>,
}

/// A generation the writer has switched to in memory and not yet stored:
/// what to make durable before it, and what it frees.
#[derive(Debug, Clone)]
pub(crate) struct PendingManifest {
    /// The newest such generation (a later one holds every earlier change).
    pub manifest: Manifest,
    /// The roll among its changes, if one is.
    pub seal: Option<Seal>,
    /// Segments it drops: marked obsolete once it is stored (their files
    /// go with the last snapshot that reaches them).
    pub obsolete: Vec<Arc<Segment>>,
    pub fs: Arc<dyn FileSystem>,
    pub dir: PathBuf,
}

/// What a roll left to make durable before its manifest: the records of
/// the segment it sealed and the new active segment's header (its
/// generation is meanwhile in `MANIFEST.next` only; see `manifest.rs`).
#[derive(Debug, Clone)]
pub(crate) struct Seal {
    pub sealed: Arc<Segment>,
    /// Where `sealed`'s records end.
    pub sealed_len: u64,
    /// The newest LSN written before the roll: every record up to it is in
    /// `sealed` or in a segment sealed (and made durable) before it.
    pub lsn: u64,
    pub active: Arc<Segment>,
}

impl SyncGate {
    /// fdatasyncs `segment` unless a failure is recorded; records its own.
    /// A pending manifest swap is finished first.
    pub fn sync(&self, segment: &Segment) -> Result<()> {
        let syncing = lock(&self.syncing);
        self.check()?;
        self.finish_pending_locked(&syncing, None)?;
        self.sync_file(segment)
    }

    /// Makes every batch up to `lsn`, written to `segment` or to segments
    /// sealed before it, durable: finishes a pending manifest swap, then fdatasyncs
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
        if self.finish_pending_locked(&syncing, Some(progress))? == Some(segment.id) {
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

    /// Takes the manifest swap left pending ([`PendingManifest`]), if any.
    pub fn finish_pending(&self, progress: &Progress) -> Result<()> {
        if lock(&self.pending).is_none() {
            return Ok(());
        }
        let syncing = lock(&self.syncing);
        self.check()?;
        self.finish_pending_locked(&syncing, Some(progress))
            .map(|_| ())
    }

    /// Leaves `manifest` (with its `seal` and the segments it drops) to
    /// store later. A pending one is replaced: `manifest` is newer and
    /// holds its changes; its seal and segments to drop are kept. A roll
    /// finishes the pending swap first, so at most one seal is pending.
    pub fn defer_manifest(&self, deferred: PendingManifest) {
        let mut pending = lock(&self.pending);
        match pending.as_mut() {
            None => *pending = Some(deferred),
            Some(p) => {
                debug_assert!(deferred.seal.is_none(), "a roll left a seal pending");
                p.manifest = deferred.manifest;
                p.obsolete.extend(deferred.obsolete);
            }
        }
    }

    /// With `syncing` held: for a seal, fdatasyncs the sealed segment
    /// (unless `progress` shows its records durable already) and the new
    /// active segment, and raises `progress` to the seal's LSN; then stores
    /// the manifest and marks the segments it drops obsolete. Returns the id
    /// of the active segment it synced, if it had a seal. On failure the
    /// swap stays pending, and the failure recorded.
    fn finish_pending_locked(
        &self,
        _syncing: &MutexGuard<'_, ()>,
        progress: Option<&Progress>,
    ) -> Result<Option<u32>> {
        let Some(done) = lock(&self.pending).clone() else {
            return Ok(None);
        };
        if let Some(seal) = &done.seal {
            // Nothing is written past its end any more: the space reserved
            // there goes back (past a sync mark that may sit at the end),
            // before the sync, which then does not write back the pages
            // populated ahead there (`io/in_place.rs`).
            seal.sealed.unreserve_after(seal.sealed_len);
            if progress.is_none_or(|p| p.durable() < seal.lsn) {
                self.sync_file(&seal.sealed)?;
            }
            if let Some(p) = progress {
                p.made_durable(seal.lsn);
            }
            // The header before the manifest that names the segment: a
            // listed segment's header is durable.
            self.sync_file(&seal.active)?;
        }
        done.manifest
            .store(&*done.fs, &done.dir)
            .inspect_err(|e| self.fail(e))?;
        for s in &done.obsolete {
            s.mark_obsolete();
        }
        if let Some(seal) = &done.seal {
            // Stored: `MANIFEST.next` is stale now (open would ignore it,
            // being no newer than `MANIFEST`), so a failure to remove it is
            // harmless.
            let _ = done.fs.remove_file(&done.dir.join(MANIFEST_NEXT_FILE));
            // Sealed and durable: its mapping is all it needs.
            seal.sealed.close_file();
        }
        // A newer swap deferred meanwhile stays, less what is done.
        let mut pending = lock(&self.pending);
        if let Some(p) = pending.as_mut() {
            if p.manifest.generation == done.manifest.generation {
                *pending = None;
            } else {
                p.seal = None;
                p.obsolete
                    .retain(|s| !done.obsolete.iter().any(|d| Arc::ptr_eq(d, s)));
            }
        }
        Ok(done.seal.map(|s| s.active.id))
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
