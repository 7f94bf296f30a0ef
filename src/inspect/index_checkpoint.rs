//! Reading an index checkpoint file (`index-<generation>.jidx`) without
//! the engine: what it says, for tools and the fuzz target.

use std::path::Path;

use crate::error::Result;
use crate::index_checkpoint::IndexCheckpoint;

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
