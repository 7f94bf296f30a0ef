//! journalstore: an embedded storage engine for many append-only journals.
//!
//! A store is one directory holding any number of journals. A journal is
//! identified by 1 to 255 bytes and has an optional metadata value and a run
//! of entries with consecutive indexes `first_index .. end_index`. Writes are
//! atomic [`WriteBatch`]es over any journals: append, set metadata, trim a
//! prefix, truncate a suffix (reset to entry N), delete.
//!
//! Reads go through a [`Snapshot`]: it pins one manifest generation and one
//! LSN, so metadata and entries always come from the same point in time,
//! whatever writers do meanwhile. Entries are borrowed straight from
//! memory-mapped segment files, each value checksum-verified on its first
//! read since the store was opened (README, "What is checked, and when").
//!
//! ```
//! # fn main() -> journalstore::Result<()> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("store");
//! use journalstore::{Options, Store, WriteBatch};
//!
//! let store = Store::open(&dir, Options::default())?;
//! let mut batch = WriteBatch::new();
//! batch.append(b"inv-1", b"entry 0");
//! batch.append_at(b"inv-1", 1, b"entry 1");
//! batch.set_metadata(b"inv-1", b"len=2");
//! let lsn = store.write(&batch)?;
//!
//! let snap = store.snapshot();
//! assert!(snap.lsn() >= lsn);
//! let journal = snap.journal(b"inv-1").expect("written above");
//! assert_eq!(journal.metadata()?, Some(&b"len=2"[..]));
//! assert_eq!(journal.entry(1)?, Some(&b"entry 1"[..]));
//! for item in journal.entries(..) {
//!     let (index, bytes) = item?;
//!     println!("{index}: {}", String::from_utf8_lossy(bytes));
//! }
//!
//! // Reset the journal to entry 1: a snapshot taken before still sees both.
//! let mut reset = WriteBatch::new();
//! reset.truncate(b"inv-1", 1).set_metadata(b"inv-1", b"len=1");
//! store.write(&reset)?;
//! assert_eq!(snap.journal(b"inv-1").unwrap().len(), 2);
//! assert_eq!(store.snapshot().journal(b"inv-1").unwrap().len(), 1);
//! store.close()?;
//! # Ok(()) }
//! ```
//!
//! Module map. Write path: `store` (open, write, snapshot, close) →
//! `commit` (the group-commit queue) → `plan` (validation) → `log_writer`
//! (encode, write, sync, roll, free) with `sync_gate` and `in_flight`
//! (buffered records written outside the writer's lock), → `record` (on-disk
//! encoding) → `segment` (one mapped file) and `manifest` (generations);
//! `progress` holds the acknowledged and durable LSNs that `sync_to` and
//! `wait_for` wait on. With the `tokio` feature, `tokio` runs the
//! blocking calls on tokio's blocking pool.
//! Read path: `snapshot` → `Generation::segment` → `Segment::read_value`,
//! pinning a `version`. In-memory state: `index` with `locs` and `journal_key`, and `live`
//! (space accounting); `recovery` rebuilds it at open; `compaction` and
//! `checkpoint` rewrite and copy segments; `io` is the file-system layer;
//! `status` writes the advisory `STATUS` file; [`inspect`] reads a store
//! without opening it (the `journal-dump` tool's library).
//! The on-disk format is specified in `format-spec/README.md`.
//!
//! Features: `tokio` (async counterparts of the blocking calls), `serde`
//! (`Serialize` on [`Stats`], [`CompactionReport`], [`CheckpointReport`]
//! and the [`inspect`] reports), `tracing` (events, target `journalstore`,
//! for what happens out of the caller's sight: compaction runs and
//! failures, background sync failures, write stalls, files removed at
//! open). All are off by default; without `tracing` no event code is
//! compiled in, and with it and no subscriber installed an event costs one
//! check of tracing's global level filter.
//!
//! Outside the semver API, hidden from these docs: `record` (the encoders
//! and decoders), `io::SimFs` (the fault-injecting file system) and `work`
//! (work counters). They are public for this repository's tests, fuzz
//! targets and tools.

// Unsafe code is denied everywhere but the three places of `io.rs` that map
// files and borrow from the mapping, and the group commit queue's borrow of
// a waiting writer's batch (`commit.rs`, `Waiter`), each allowed on its own
// item with a `// SAFETY:` argument.
#![deny(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

/// Emits a `tracing` event (target `journalstore`) with the `tracing`
/// feature, and compiles to nothing without it. Arguments are those of
/// `tracing::event!` after the level; a value computed only for an event
/// must be computed inside it, so that nothing runs without the feature.
macro_rules! trace_event {
    ($level:ident, $($arg:tt)+) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::event!(target: "journalstore", ::tracing::Level::$level, $($arg)+);
        }
    };
}

mod batch;
mod checkpoint;
mod commit;
mod compaction;
mod error;
mod in_flight;
mod index;
mod index_checkpoint;
pub mod inspect;
pub mod io;
mod journal_key;
mod live;
mod locs;
mod log_writer;
mod manifest;
mod mutex;
mod options;
mod pins;
mod plan;
mod progress;
#[doc(hidden)]
pub mod record;
mod recovery;
mod segment;
mod snapshot;
mod stats;
mod status;
mod store;
mod sync_gate;
#[cfg(feature = "tokio")]
pub mod tokio;
mod version;
#[doc(hidden)]
pub mod work;

pub use batch::WriteBatch;
pub use checkpoint::CheckpointReport;
pub use compaction::CompactionReport;
pub use error::{DisplayChain, DisplayId, Error, Result};
pub use options::{Options, SyncMode, WriteOptions};
pub use snapshot::{Entries, Journal, Snapshot};
pub use stats::Stats;
pub use store::Store;

/// The README's Rust blocks, compiled and run as doc tests so that the
/// quick start stays true (its async block needs the `tokio` feature;
/// `.ci/run` runs them with it).
#[cfg(all(doctest, feature = "tokio"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
