//! Read-only inspection of a store's files, for tools such as `journal-dump`.
//!
//! Nothing here takes the store's lock or writes a byte to the store, so it
//! works on a store that another process has open: segment files are read
//! into memory (or mapped read-only for [`open_read_only`]) and a record that
//! is being written at that moment looks like a torn tail, as after a crash.
//! [`salvage()`] is the one function that writes, and only to a new directory.
//!
//! Nothing here panics on any input: every length and offset read from a
//! file is bounds-checked, as in the engine.
//!
//! This file holds only the public surface; each job has its own file:
//! - `scan.rs`: reading and decoding files without the engine (segment
//!   listing, manifest, segment headers, records with resync past damage);
//! - `read_only.rs`: [`open_read_only`], recovery's checks and replay on
//!   read-only mappings;
//! - `verify.rs`: [`verify()`], every checksum and cross-reference;
//! - `index_checkpoint.rs`: [`decode_index_checkpoint`];
//! - `salvage.rs`: [`Salvaged`] and [`salvage()`], the intact records copied
//!   into a new store, one segment file in memory at a time, with every
//!   unread LSN range and every journal that may differ reported;
//! - the status file's reader ([`read_status`], [`StatusInfo`]) lives with
//!   its writer in the crate's `status` module.

mod index_checkpoint;
mod read_only;
mod salvage;
mod scan;
mod verify;

pub use index_checkpoint::{
    decode_index_checkpoint, index_checkpoint_file_name, IndexCheckpointInfo,
};
pub use read_only::{open_read_only, ReadOnlyStore, SegmentLiveness};
pub use salvage::{
    salvage, salvage_with, LostRange, SalvageOptions, SalvageProgress, SalvageReport, Salvaged,
    SalvagedJournal, SuspectJournal, SuspectPolicy,
};
pub use scan::{
    decode_manifest, manifest_path, read_manifest, segment_file_name_of, segment_files,
    segment_id_from_file_name, ManifestInfo, ManifestSegment, OpInfo, ScanItem, SegmentFile,
    SegmentHeaderInfo, MANIFEST_FILE_NAME, MANIFEST_MAGIC, MANIFEST_TMP_FILE_NAME,
};
pub use verify::{verify, Problem, VerifyReport};

pub use crate::status::{read_status, StatusInfo};

/// File name of the advisory status file in a store directory (see
/// [`read_status`]).
pub const STATUS_FILE_NAME: &str = crate::status::STATUS_FILE;
