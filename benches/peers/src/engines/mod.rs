//! The engines under comparison, one file each, behind [`Engine`]: a batch
//! of [`Op`]s applied atomically, a whole-journal read through a fresh
//! snapshot, a point read of one entry, and a sync. The raw per-thread
//! baseline (`raw.rs`) has no engine to open and is driven by the append
//! workload directly.
//!
//! The key-value engines (redb, fjall, LMDB, RocksDB) share one key layout
//! and turn a batch into key-level steps with [`for_each_kv`]; each of them
//! only maps those steps onto its own batch type.

use std::path::Path;

use crate::Res;

mod fjall;
mod journalstore;
mod lmdb;
#[cfg(feature = "peer-raft-engine")]
mod raft_engine;
pub mod raw;
mod raw_group;
mod redb;
#[cfg(feature = "peer-rocksdb")]
mod rocksdb;

/// One operation of a batch. `end` fields carry the journal's current end
/// index so key-value engines without range deletes can delete per key.
pub enum Op<'a> {
    Append {
        journal: u64,
        index: u64,
        value: &'a [u8],
    },
    Meta {
        journal: u64,
        value: &'a [u8],
    },
    /// Drop entries `from..end` (reset to an earlier entry).
    Truncate {
        journal: u64,
        from: u64,
        end: u64,
    },
    /// Drop the journal: metadata and entries `0..end`.
    Delete {
        journal: u64,
        end: u64,
    },
}

/// The engine interface the workloads drive. Durability is fixed at open
/// (journalstore's sync mode is a store option), so every engine takes it
/// there.
pub trait Engine: Send + Sync {
    /// Applies `ops` atomically, durable or not as opened.
    fn write(&self, ops: &[Op<'_>]) -> Res<()>;
    /// Reads metadata and every entry of `journal` through a fresh snapshot
    /// (or read transaction); returns the bytes read.
    fn read_journal(&self, journal: u64) -> Res<u64>;
    /// Reads entry `index` of `journal` alone, the way the engine's own API
    /// does a point lookup (through a fresh snapshot or read transaction
    /// where reads need one); returns its length. A missing entry is an
    /// error.
    fn read_entry(&self, journal: u64, index: u64) -> Res<u64>;
    /// Makes everything written so far durable.
    fn sync(&self) -> Res<()>;
    /// Workload 6: appends `entry` at `index` of Raft group `group`'s log
    /// and returns once it is durable, the way a Raft log store on this
    /// engine does. By default one durable `write` (the engine is opened
    /// durable).
    fn append_raft(&self, group: u64, index: u64, entry: &[u8]) -> Res<()> {
        self.write(&[Op::Append {
            journal: group,
            index,
            value: entry,
        }])
    }
}

/// The engines built into this binary (`raw`, `raw-group` and
/// `raw-group-fresh` come on top).
pub const ENGINES: &[&str] = &[
    "journalstore",
    "redb",
    "fjall",
    "lmdb",
    #[cfg(feature = "peer-rocksdb")]
    "rocksdb",
    #[cfg(feature = "peer-raft-engine")]
    "raft-engine",
];

/// Opens engine `name` in `dir`, durable (workload 1) or buffered.
pub fn open(name: &str, dir: &Path, durable: bool) -> Res<Box<dyn Engine>> {
    Ok(match name {
        "journalstore" => Box::new(journalstore::Js::open(dir, durable)?),
        "raw-group" => Box::new(raw_group::RawGroup::open(
            dir,
            durable,
            raw_group::Blocks::Rewritten,
        )?),
        "raw-group-fresh" => Box::new(raw_group::RawGroup::open(
            dir,
            durable,
            raw_group::Blocks::Fresh,
        )?),
        "redb" => Box::new(redb::Redb::open(dir, durable)?),
        "fjall" => Box::new(fjall::Fjall::open(dir, durable)?),
        "lmdb" => Box::new(lmdb::Lmdb::open(dir, durable)?),
        #[cfg(feature = "peer-rocksdb")]
        "rocksdb" => Box::new(rocksdb::Rocks::open(dir, durable)?),
        #[cfg(feature = "peer-raft-engine")]
        "raft-engine" => Box::new(raft_engine::Raft::open(dir, durable)?),
        other => return Err(format!("unknown engine {other}").into()),
    })
}

/// What a reader does with the bytes it read: touches every cache line
/// (one byte in 64, folded so the compiler keeps the loads) and returns the
/// length. Engines that hand out slices of a memory map (LMDB, redb,
/// journalstore) would otherwise be timed without reading the data at all,
/// next to engines that copy it.
pub fn consume(bytes: &[u8]) -> u64 {
    let folded = bytes.iter().step_by(64).fold(0u8, |a, &b| a ^ b);
    std::hint::black_box(folded);
    bytes.len() as u64
}

/// The error of a point read that found nothing.
fn missing(journal: u64, index: u64) -> crate::BoxError {
    format!("entry {index} of journal {journal} not found").into()
}

/// Key layout for key-value engines: journal id (8 bytes, big-endian), then
/// a tag byte (0 = metadata, 1 = entry), then for entries the big-endian
/// index. A prefix scan of the journal id yields metadata first, then the
/// entries in index order.
fn meta_key(journal: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&journal.to_be_bytes());
    k
}

fn entry_key(journal: u64, index: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&journal.to_be_bytes());
    k[8] = 1;
    k[9..].copy_from_slice(&index.to_be_bytes());
    k
}

/// A journal's prefix: every key of `journal` starts with it and sorts
/// below `(journal + 1)`'s.
fn journal_prefix(journal: u64) -> [u8; 8] {
    journal.to_be_bytes()
}

/// One key-level step of a batch on a key-value engine.
enum Kv<'a> {
    Put {
        key: &'a [u8],
        value: &'a [u8],
    },
    Remove {
        key: &'a [u8],
    },
    /// Every key in `lo..hi`.
    RemoveRange {
        lo: &'a [u8],
        hi: &'a [u8],
    },
}

/// How a key-value engine deletes a run of keys.
#[derive(Clone, Copy)]
enum Deletes {
    /// One `Remove` per key (the engine has no range delete).
    PerKey,
    /// One `RemoveRange`.
    Range,
}

/// Turns `ops` into key-level steps in order, under the key layout above:
/// appends and metadata are puts; a truncate removes entries `from..end`;
/// a delete removes the metadata and entries `0..end` (with `Range`: the
/// journal's whole prefix).
fn for_each_kv(
    ops: &[Op<'_>],
    deletes: Deletes,
    mut step: impl FnMut(Kv<'_>) -> Res<()>,
) -> Res<()> {
    for op in ops {
        match *op {
            Op::Append {
                journal,
                index,
                value,
            } => step(Kv::Put {
                key: &entry_key(journal, index),
                value,
            })?,
            Op::Meta { journal, value } => step(Kv::Put {
                key: &meta_key(journal),
                value,
            })?,
            Op::Truncate { journal, from, end } => match deletes {
                Deletes::Range => step(Kv::RemoveRange {
                    lo: &entry_key(journal, from),
                    hi: &entry_key(journal, end),
                })?,
                Deletes::PerKey => {
                    for i in from..end {
                        step(Kv::Remove {
                            key: &entry_key(journal, i),
                        })?;
                    }
                }
            },
            Op::Delete { journal, end } => match deletes {
                Deletes::Range => step(Kv::RemoveRange {
                    lo: &meta_key(journal),
                    hi: &journal_prefix(journal + 1),
                })?,
                Deletes::PerKey => {
                    step(Kv::Remove {
                        key: &meta_key(journal),
                    })?;
                    for i in 0..end {
                        step(Kv::Remove {
                            key: &entry_key(journal, i),
                        })?;
                    }
                }
            },
        }
    }
    Ok(())
}
