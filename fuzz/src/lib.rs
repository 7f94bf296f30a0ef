//! The logic of journalstore's fuzz targets, shared by the `cargo fuzz`
//! binaries in `fuzz_targets/` and by the stable replay test in
//! `tests/replay.rs`.
//!
//! Each public function takes the raw fuzz input and panics only on a real
//! finding: a panic inside the engine, or a broken promise of the engine's
//! documentation. Inputs it cannot use are ignored, never reported.
//!
//! | target | module | attacks |
//! |---|---|---|
//! | [`segment_decode()`] | `segment_decode.rs` | segment and record decoding (`inspect` scans), and recovery of a store whose active segment is the input |
//! | [`manifest_decode()`] | `manifest_decode.rs` | manifest decoding, and recovery of a real store whose `MANIFEST` is the input |
//! | [`ops_model()`] | `ops_model.rs` | the whole engine: batches, snapshots, sync, reopen, against the in-memory model |
//! | [`crash_recovery()`] | `crash_recovery.rs` | power loss at any I/O operation with any tearing (`SimFs`), then recovery |
//! | [`corrupt_open()`] | `corrupt_open.rs` | byte flips, truncations, copies and deletions in a valid store's files, then recovery |
//! | [`index_checkpoint_decode()`] | `index_checkpoint_decode.rs` | index checkpoint decoding, and recovery of a real store whose checkpoint is the input |
//!
//! What more than one target uses lives in `common/`: the stores' options,
//! scratch directories and byte-level helpers (`common/mod.rs`), reading a
//! whole snapshot and opening a store every way there is (`common/check.rs`),
//! the template store the file-level targets start from
//! (`common/template.rs`) and batches decoded from fuzz input with the
//! answer the store must give (`common/batches.rs`). The model is the root
//! crate's `tests/common/mod.rs` ([`model`] here), included, not copied.
//! [`budget`] checks the budgets every input must keep.
//!
//! Every store is opened through a `SimFs`: it performs all operations on
//! the real files and mappings but issues no real `fsync`, which would only
//! make runs slow. Scratch stores live in `/dev/shm` when it exists.

pub mod budget;
mod common;

/// The model and test helpers of the root crate (`tests/common/mod.rs`).
#[path = "../../tests/common/mod.rs"]
mod model;

mod corrupt_open;
mod crash_recovery;
mod index_checkpoint_decode;
mod manifest_decode;
mod ops_model;
mod segment_decode;

pub use common::template::template_files;
pub use common::SEGMENT_SIZE;
pub use corrupt_open::corrupt_open;
pub use crash_recovery::crash_recovery;
pub use index_checkpoint_decode::{index_checkpoint_decode, template_checkpoint};
pub use manifest_decode::manifest_decode;
pub use ops_model::ops_model;
pub use segment_decode::segment_decode;
