//! Reading an index checkpoint file (`index-<generation>.jidx`) without
//! the engine: what it says, for tools and the fuzz target.

use std::path::Path;

use crate::error::Result;
use crate::index_checkpoint::IndexCheckpoint;
use crate::inspect::ManifestInfo;
use crate::manifest::{ListedSegment, Manifest};

/// What an index checkpoint holds, decoded and checked (format-spec 13).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexCheckpointInfo {
    /// The manifest generation it was taken at (also in its file name).
    pub generation: u64,
    /// The LSN of the last batch it includes.
    pub last_lsn: u64,
    /// Where its records end in its active segment: open replays from here.
    pub active_end: u64,
    /// The generation's segments in manifest order, `(id, sealed_len)`;
    /// the last one, active, has `None`.
    pub segments: Vec<(u32, Option<u64>)>,
    /// Journals it holds.
    pub journals: u64,
    /// Entries it holds, over all journals.
    pub entries: u64,
}

impl IndexCheckpointInfo {
    /// Whether the log `manifest` describes continues this checkpoint, by
    /// the rule open applies (format-spec 13.2 (a) and (c)): its generation
    /// is not above the manifest's, the manifest lists some of its segments
    /// in the same order with the same sealed lengths, its active segment
    /// among them holding at least `active_end` bytes, and after that one
    /// only newer segments. Open may still replay the whole log instead if
    /// the records after `active_end` do not fit the checkpoint (13.2 (d)
    /// and the end-of-replay checks), which only open can tell.
    pub fn continued_by(&self, manifest: &ManifestInfo) -> bool {
        let listed = |segments: &mut dyn Iterator<Item = (u32, Option<u64>)>| {
            segments
                .map(|(id, sealed_len)| ListedSegment { id, sealed_len })
                .collect::<Vec<_>>()
        };
        let checkpoint = IndexCheckpoint {
            generation: self.generation,
            last_lsn: self.last_lsn,
            active_end: self.active_end,
            segments: listed(&mut self.segments.iter().copied()),
            index: Default::default(),
            acct: Default::default(),
            appended: 0,
        };
        let manifest = Manifest {
            generation: manifest.generation,
            next_segment_id: manifest.next_segment_id,
            lsn_floor: manifest.lsn_floor,
            segments: listed(&mut manifest.segments.iter().map(|s| (s.id, s.sealed_len))),
        };
        checkpoint.continued_by(&manifest).is_some()
    }
}

/// Decodes the bytes of an index checkpoint file; `path` names it in
/// errors. Every damage is an error (`Corruption`, or `UnsupportedVersion`
/// for a layout version this build does not read), never a panic.
pub fn decode_index_checkpoint(bytes: &[u8], path: &Path) -> Result<IndexCheckpointInfo> {
    let cp = IndexCheckpoint::decode(bytes, path)?;
    Ok(IndexCheckpointInfo {
        generation: cp.generation,
        last_lsn: cp.last_lsn,
        active_end: cp.active_end,
        segments: cp.segments.iter().map(|s| (s.id, s.sealed_len)).collect(),
        journals: cp.index.len() as u64,
        entries: cp.index.iter().map(|(_, s)| s.entries.len() as u64).sum(),
    })
}

/// The file name of the index checkpoint taken at `generation`.
pub fn index_checkpoint_file_name(generation: u64) -> String {
    crate::index_checkpoint::file_name(generation)
}
