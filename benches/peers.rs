//! Peer comparison: the same journal workloads on journalstore, on the
//! engines a user would pick instead, and on a raw `pwrite` (+ `fdatasync`)
//! baseline with no engine.
//!
//! Run: `cargo bench --bench peers --features peers` (redb, fjall, LMDB via
//! heed); add `--features peer-rocksdb` / `peer-raft-engine` / `peers-all`
//! for the engines with long native builds. See `benches/README.md` for what
//! each workload does, how each engine is configured, and the environment
//! variables (`PEERS_SECS`, `PEERS_ENGINES`, `PEERS_WORKLOADS`,
//! `PEERS_RECOVERY_MIB`, `PEERS_DIR`, `PEERS_OUT`).
//!
//! Every (workload, engine) pair runs in a child process (this binary
//! re-executed with `--child ...`), so peak memory (VmHWM) is per pair, one
//! engine's background threads cannot slow the next, and the recovery
//! workload can SIGKILL a writer. Children print `metric\tvalue\tunit` lines;
//! the parent collects them into a TSV file, a Markdown table and a human
//! table with ratios to the best peer and to the raw baseline, plus
//! `run.tsv` (date, machine, settings) for `benches/update-readme.py`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = std::result::Result<T, BoxError>;

// ---------------------------------------------------------------- data model

/// One operation of a batch. `end` fields carry the journal's current end
/// index so key-value engines without range deletes can delete per key.
enum Op<'a> {
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

/// What a reader does with the bytes it read: touches every cache line
/// (one byte in 64, folded so the compiler keeps the loads) and returns the
/// length. Engines that hand out slices of a memory map (LMDB, redb,
/// journalstore) would otherwise be timed without reading the data at all,
/// next to engines that copy it.
fn consume(bytes: &[u8]) -> u64 {
    let folded = bytes.iter().step_by(64).fold(0u8, |a, &b| a ^ b);
    std::hint::black_box(folded);
    bytes.len() as u64
}

/// The engine interface the workloads drive. Durability is fixed at open
/// (journalstore's sync mode is a store option), so every engine takes it
/// there.
trait Engine: Send + Sync {
    /// Applies `ops` atomically, durable or not as opened.
    fn write(&self, ops: &[Op<'_>]) -> Res<()>;
    /// Reads metadata and every entry of `journal` through a fresh snapshot
    /// (or read transaction); returns the bytes read.
    fn read_journal(&self, journal: u64) -> Res<u64>;
    /// Makes everything written so far durable.
    fn sync(&self) -> Res<()>;
}

const ENGINES: &[&str] = &[
    "journalstore",
    "redb",
    "fjall",
    "lmdb",
    #[cfg(feature = "peer-rocksdb")]
    "rocksdb",
    #[cfg(feature = "peer-raft-engine")]
    "raft-engine",
];

fn open_engine(name: &str, dir: &Path, durable: bool) -> Res<Box<dyn Engine>> {
    Ok(match name {
        "journalstore" => Box::new(js::Js::open(dir, durable)?),
        "raw-group" => Box::new(raw_group::RawGroup::open(dir, durable)?),
        "redb" => Box::new(redb_peer::Redb::open(dir, durable)?),
        "fjall" => Box::new(fjall_peer::Fjall::open(dir, durable)?),
        "lmdb" => Box::new(lmdb_peer::Lmdb::open(dir, durable)?),
        #[cfg(feature = "peer-rocksdb")]
        "rocksdb" => Box::new(rocksdb_peer::Rocks::open(dir, durable)?),
        #[cfg(feature = "peer-raft-engine")]
        "raft-engine" => Box::new(raft_peer::Raft::open(dir, durable)?),
        other => return Err(format!("unknown engine {other}").into()),
    })
}

// ------------------------------------------------------------------ engines

mod raw_group {
    use super::*;
    use std::sync::{Condvar, Mutex};

    const FILE_LEN: u64 = 64 << 20;

    struct State {
        /// Bytes of batches queued since the last write.
        pending: Vec<u8>,
        /// Batches queued so far / written (and synced) so far.
        queued: u64,
        done: u64,
        /// Whether a writer is writing (and syncing) a group now.
        leader: bool,
        offset: u64,
    }

    /// The raw baseline with group commit: the payload bytes only, no
    /// framing, no index, in one preallocated 64 MiB file written round
    /// robin. Concurrent writers queue their bytes; one of them writes the
    /// whole queue with one `pwrite` (+ one `fdatasync` when durable) while
    /// the next group queues up. The physical limit for an engine that
    /// group-commits into one log.
    pub struct RawGroup {
        file: File,
        durable: bool,
        state: Mutex<State>,
        cond: Condvar,
    }

    impl RawGroup {
        pub fn open(dir: &Path, durable: bool) -> Res<RawGroup> {
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .open(dir.join("raw-group"))?;
            let zeros = vec![0u8; 1 << 20];
            for i in 0..FILE_LEN >> 20 {
                file.write_all_at(&zeros, i << 20)?;
            }
            file.sync_all()?;
            Ok(RawGroup {
                file,
                durable,
                state: Mutex::new(State {
                    pending: Vec::new(),
                    queued: 0,
                    done: 0,
                    leader: false,
                    offset: 0,
                }),
                cond: Condvar::new(),
            })
        }
    }

    impl Engine for RawGroup {
        fn write(&self, ops: &[Op<'_>]) -> Res<()> {
            let mut st = self.state.lock().map_err(|_| "poisoned")?;
            for op in ops {
                if let Op::Append { value, .. } = op {
                    st.pending.extend_from_slice(value);
                }
            }
            st.queued += 1;
            let me = st.queued;
            loop {
                if st.done >= me {
                    return Ok(());
                }
                if st.leader {
                    st = self.cond.wait(st).map_err(|_| "poisoned")?;
                    continue;
                }
                st.leader = true;
                let buf = std::mem::take(&mut st.pending);
                let upto = st.queued;
                let mut offset = st.offset;
                if offset + buf.len() as u64 > FILE_LEN {
                    offset = 0;
                }
                st.offset = offset + buf.len() as u64;
                drop(st);
                let result = self.file.write_all_at(&buf, offset).and_then(|()| {
                    if self.durable {
                        self.file.sync_data()
                    } else {
                        Ok(())
                    }
                });
                st = self.state.lock().map_err(|_| "poisoned")?;
                st.leader = false;
                st.done = upto;
                self.cond.notify_all();
                result?;
            }
        }

        fn read_journal(&self, _journal: u64) -> Res<u64> {
            Err("raw-group has no reads".into())
        }

        fn sync(&self) -> Res<()> {
            Ok(self.file.sync_data()?)
        }
    }
}

mod js {
    use super::*;
    use journalstore::{Options, Store, SyncMode, WriteBatch};

    /// journalstore with its defaults; `SyncMode::Always` (group commit) when
    /// durable, `SyncMode::Never` (page cache; survives a process crash)
    /// otherwise.
    pub struct Js(Store);

    impl Js {
        pub fn open(dir: &Path, durable: bool) -> Res<Js> {
            let sync = if durable {
                SyncMode::Always
            } else {
                SyncMode::Never
            };
            Ok(Js(Store::open(
                dir,
                Options {
                    sync,
                    ..Options::default()
                },
            )?))
        }
    }

    impl Engine for Js {
        fn write(&self, ops: &[Op<'_>]) -> Res<()> {
            let mut wb = WriteBatch::new();
            for op in ops {
                match *op {
                    Op::Append {
                        journal,
                        index,
                        value,
                    } => {
                        wb.append_at(&journal.to_be_bytes(), index, value);
                    }
                    Op::Meta { journal, value } => {
                        wb.set_metadata(&journal.to_be_bytes(), value);
                    }
                    Op::Truncate { journal, from, .. } => {
                        wb.truncate(&journal.to_be_bytes(), from);
                    }
                    Op::Delete { journal, .. } => {
                        wb.delete_journal(&journal.to_be_bytes());
                    }
                }
            }
            self.0.write(&wb)?;
            Ok(())
        }

        fn read_journal(&self, journal: u64) -> Res<u64> {
            let snapshot = self.0.snapshot();
            let Some(j) = snapshot.journal(&journal.to_be_bytes()) else {
                return Ok(0);
            };
            let mut total = consume(j.metadata()?);
            for item in j.entries(..) {
                total += consume(item?.1);
            }
            Ok(total)
        }

        fn sync(&self) -> Res<()> {
            Ok(self.0.sync()?)
        }
    }
}

mod redb_peer {
    use super::*;
    use redb::{Database, Durability, ReadableDatabase, TableDefinition};

    const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("journals");

    /// redb: one write transaction per batch, one read transaction per
    /// snapshot read, its defaults otherwise (`Builder::new()`: 1 GiB cache,
    /// 1-phase + checksum commits, no quick-repair; the docs recommend no
    /// other setting).
    ///
    /// Every commit uses `Durability::Immediate` (the default), buffered or
    /// not: redb's only other level, `Durability::None`, is "implemented
    /// with an in-memory flag" and "in the event of a crash, the database will
    /// simply rollback" to the last immediate commit (redb `docs/design.md`,
    /// "Non-durable commits"; `Durability::None` docs), so a process crash
    /// loses those commits and the buffered workloads' rule (survive a
    /// process crash) leaves `Immediate` as redb's fastest setting.
    pub struct Redb {
        db: Database,
    }

    impl Redb {
        pub fn open(dir: &Path, _durable: bool) -> Res<Redb> {
            let db = Database::create(dir.join("data.redb"))?;
            let tx = db.begin_write()?;
            tx.open_table(TABLE)?;
            tx.commit()?;
            Ok(Redb { db })
        }
    }

    impl Engine for Redb {
        fn write(&self, ops: &[Op<'_>]) -> Res<()> {
            let mut tx = self.db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            {
                let mut t = tx.open_table(TABLE)?;
                for op in ops {
                    match *op {
                        Op::Append {
                            journal,
                            index,
                            value,
                        } => {
                            t.insert(&entry_key(journal, index)[..], value)?;
                        }
                        Op::Meta { journal, value } => {
                            t.insert(&meta_key(journal)[..], value)?;
                        }
                        Op::Truncate { journal, from, end } => {
                            for i in from..end {
                                t.remove(&entry_key(journal, i)[..])?;
                            }
                        }
                        Op::Delete { journal, end } => {
                            t.remove(&meta_key(journal)[..])?;
                            for i in 0..end {
                                t.remove(&entry_key(journal, i)[..])?;
                            }
                        }
                    }
                }
            }
            tx.commit()?;
            Ok(())
        }

        fn read_journal(&self, journal: u64) -> Res<u64> {
            let tx = self.db.begin_read()?;
            let t = tx.open_table(TABLE)?;
            let lo = meta_key(journal);
            let hi = (journal + 1).to_be_bytes();
            let mut total = 0;
            for item in t.range::<&[u8]>(&lo[..]..&hi[..])? {
                let (_, v) = item?;
                total += consume(v.value());
            }
            Ok(total)
        }

        fn sync(&self) -> Res<()> {
            // Every commit is already durable; an empty immediate commit is
            // what an application would call to be sure.
            let tx = self.db.begin_write()?;
            tx.commit()?;
            Ok(())
        }
    }
}

mod fjall_peer {
    use super::*;
    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

    /// fjall: one keyspace, one `WriteBatch` per batch committed with
    /// `PersistMode::SyncData` when durable and `PersistMode::Buffer` (to
    /// the OS; survives a process crash) otherwise; `Database::snapshot` for
    /// reads. Block cache sized as its docs recommend; other options at
    /// their defaults, which are within the documented recommendations
    /// (memtable 64 MiB: "recommended size 8 - 64 MiB").
    pub struct Fjall {
        db: Database,
        ks: Keyspace,
        mode: PersistMode,
    }

    impl Fjall {
        pub fn open(dir: &Path, durable: bool) -> Res<Fjall> {
            // fjall README "Memory usage" and `DatabaseBuilder::cache_size`:
            // "It is recommended to configure the block cache capacity to be
            // ~20-25% of the available memory" (default 32 MiB).
            let db = Database::builder(dir).cache_size(mem_total() / 4).open()?;
            let ks = db.keyspace("journals", KeyspaceCreateOptions::default)?;
            let mode = if durable {
                PersistMode::SyncData
            } else {
                PersistMode::Buffer
            };
            Ok(Fjall { db, ks, mode })
        }
    }

    impl Engine for Fjall {
        fn write(&self, ops: &[Op<'_>]) -> Res<()> {
            let mut b = self.db.batch().durability(Some(self.mode));
            for op in ops {
                match *op {
                    Op::Append {
                        journal,
                        index,
                        value,
                    } => b.insert(&self.ks, &entry_key(journal, index)[..], value),
                    Op::Meta { journal, value } => {
                        b.insert(&self.ks, &meta_key(journal)[..], value)
                    }
                    Op::Truncate { journal, from, end } => {
                        for i in from..end {
                            b.remove(&self.ks, &entry_key(journal, i)[..]);
                        }
                    }
                    Op::Delete { journal, end } => {
                        b.remove(&self.ks, &meta_key(journal)[..]);
                        for i in 0..end {
                            b.remove(&self.ks, &entry_key(journal, i)[..]);
                        }
                    }
                }
            }
            b.commit()?;
            Ok(())
        }

        fn read_journal(&self, journal: u64) -> Res<u64> {
            let snapshot = self.db.snapshot();
            let mut total = 0;
            for guard in snapshot.prefix(&self.ks, journal.to_be_bytes()) {
                let (_, v) = guard.into_inner()?;
                total += consume(&v);
            }
            Ok(total)
        }

        fn sync(&self) -> Res<()> {
            Ok(self.db.persist(PersistMode::SyncData)?)
        }
    }
}

mod lmdb_peer {
    use super::*;
    use heed::types::Bytes;
    use heed::{Database, Env, EnvFlags, EnvOpenOptions};
    use std::ops::Bound;

    /// LMDB through heed: one write transaction per batch, a read
    /// transaction per snapshot read. Settings from `lmdb.h`
    /// (`mdb_env_set_mapsize`, `mdb_env_open` flags):
    ///
    /// - map size 64 GiB (virtual): "should be chosen as large as possible,
    ///   to accommodate future growth of the database";
    /// - durable: default flags (data and meta page synced on commit;
    ///   `MDB_NOMETASYNC` would lose the D of ACID, so it is not used);
    /// - buffered: `MDB_WRITEMAP | MDB_MAPASYNC`: a writable map "may be
    ///   slightly faster for DBs that fit entirely in RAM" (all of these
    ///   do), and with it "(MDB_MAPASYNC | MDB_WRITEMAP) may be preferable"
    ///   to `MDB_NOSYNC`. Commits land in the shared file mapping (the page
    ///   cache), so a process crash loses nothing; a system crash may lose
    ///   or corrupt the last transactions; `sync` (`mdb_env_sync(force)`)
    ///   makes them durable.
    pub struct Lmdb {
        env: Env,
        db: Database<Bytes, Bytes>,
    }

    impl Lmdb {
        pub fn open(dir: &Path, durable: bool) -> Res<Lmdb> {
            let mut options = EnvOpenOptions::new();
            // 256 reader slots (default 126): up to 64 threads + the driver.
            options.map_size(64 << 30).max_readers(256);
            // SAFETY: each environment is opened once per process, on a
            // directory this benchmark owns, always with the same flags (a
            // directory is only ever opened durable or only buffered, as
            // `MDB_WRITEMAP` requires).
            let env = unsafe {
                if !durable {
                    options.flags(EnvFlags::WRITE_MAP | EnvFlags::MAP_ASYNC);
                }
                options.open(dir)?
            };
            let mut tx = env.write_txn()?;
            let db = env.create_database(&mut tx, None)?;
            tx.commit()?;
            Ok(Lmdb { env, db })
        }
    }

    impl Engine for Lmdb {
        fn write(&self, ops: &[Op<'_>]) -> Res<()> {
            let mut tx = self.env.write_txn()?;
            for op in ops {
                match *op {
                    Op::Append {
                        journal,
                        index,
                        value,
                    } => self.db.put(&mut tx, &entry_key(journal, index), value)?,
                    Op::Meta { journal, value } => {
                        self.db.put(&mut tx, &meta_key(journal), value)?
                    }
                    Op::Truncate { journal, from, end } => {
                        let (lo, hi) = (entry_key(journal, from), entry_key(journal, end));
                        let range = (Bound::Included(&lo[..]), Bound::Excluded(&hi[..]));
                        self.db.delete_range(&mut tx, &range)?;
                    }
                    Op::Delete { journal, .. } => {
                        let (lo, hi) = (meta_key(journal), (journal + 1).to_be_bytes());
                        let range = (Bound::Included(&lo[..]), Bound::Excluded(&hi[..]));
                        self.db.delete_range(&mut tx, &range)?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        }

        fn read_journal(&self, journal: u64) -> Res<u64> {
            let tx = self.env.read_txn()?;
            let mut total = 0;
            for item in self.db.prefix_iter(&tx, &journal.to_be_bytes())? {
                total += consume(item?.1);
            }
            Ok(total)
        }

        fn sync(&self) -> Res<()> {
            Ok(self.env.force_sync()?)
        }
    }
}

#[cfg(feature = "peer-rocksdb")]
mod rocksdb_peer {
    use super::*;
    use rocksdb::{
        BlockBasedOptions, Cache, Direction, IteratorMode, Options, ReadOptions, SliceTransform,
        WriteBatch, WriteOptions, DB,
    };

    /// RocksDB: `WriteBatch` per batch, `WriteOptions::set_sync(true)` when
    /// durable (WAL fdatasync per write, RocksDB groups concurrent writers);
    /// WAL without sync otherwise (each write reaches the OS: survives a
    /// process crash; `manual_wal_flush` would keep it in process memory, so
    /// it is not used). A `Snapshot` + prefix iterator per read;
    /// `delete_range` for deletes and resets. Options as documented below.
    pub struct Rocks {
        db: DB,
        durable: bool,
    }

    impl Rocks {
        pub fn open(dir: &Path, durable: bool) -> Res<Rocks> {
            let mut options = Options::default();
            options.create_if_missing(true);
            // `include/rocksdb/options.h` and `examples/simple_example.cc`
            // ("Optimize RocksDB. This is the easiest way to get RocksDB to
            // perform well"): `IncreaseParallelism` ("Good value for
            // `total_threads` is the number of cores") and
            // `OptimizeLevelStyleCompaction` with its default 512 MiB
            // memtable budget.
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            options.increase_parallelism(cores as i32);
            options.optimize_level_style_compaction(512 << 20);
            // Wiki "Setup Options and Basic Tuning", "Other General Options"
            // (suggested for new databases): dynamic level bytes (the
            // default since 8.4), bytes_per_sync 1 MiB, 16 KiB blocks, index
            // and filter blocks in the block cache with L0's pinned.
            options.set_level_compaction_dynamic_level_bytes(true);
            options.set_bytes_per_sync(1 << 20);
            let mut table = BlockBasedOptions::default();
            table.set_block_size(16 << 10);
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            // Same page, "Block Cache Size": "about 1/3 of your total memory
            // budget" (default 32 MiB); the budget here is the machine's RAM.
            table.set_block_cache(&Cache::new_lru_cache((mem_total() / 3) as usize));
            // Wiki "Prefix Seek", "Configure prefix bloom filter": every read
            // is a scan of one journal's prefix (its 8-byte id), so a prefix
            // extractor with a 10 bits/key prefix bloom filter and no
            // whole-key filtering (no point `Get`s here). The wiki's example
            // uses a capped transform; every key here is at least 9 bytes,
            // so the fixed 8-byte one extracts the same prefix.
            table.set_bloom_filter(10.0, false);
            table.set_whole_key_filtering(false);
            options.set_block_based_table_factory(&table);
            options.set_prefix_extractor(SliceTransform::create_fixed_prefix(8));
            // Compression: `OptimizeLevelStyleCompaction` leaves L0-L1
            // uncompressed and uses LZ4, else Snappy, below, as the setup
            // page recommends; this build has Snappy only.
            Ok(Rocks {
                db: DB::open(&options, dir)?,
                durable,
            })
        }
    }

    impl Engine for Rocks {
        fn write(&self, ops: &[Op<'_>]) -> Res<()> {
            let mut b = WriteBatch::default();
            for op in ops {
                match *op {
                    Op::Append {
                        journal,
                        index,
                        value,
                    } => b.put(entry_key(journal, index), value),
                    Op::Meta { journal, value } => b.put(meta_key(journal), value),
                    Op::Truncate { journal, from, end } => {
                        b.delete_range(entry_key(journal, from), entry_key(journal, end))
                    }
                    Op::Delete { journal, .. } => {
                        let (lo, hi) = (meta_key(journal), (journal + 1).to_be_bytes());
                        b.delete_range(&lo[..], &hi[..])
                    }
                }
            }
            let mut wo = WriteOptions::default();
            wo.set_sync(self.durable);
            self.db.write_opt(b, &wo)?;
            Ok(())
        }

        fn read_journal(&self, journal: u64) -> Res<u64> {
            let snapshot = self.db.snapshot();
            let mut total = 0;
            let prefix = journal.to_be_bytes();
            // Prefix seek ("Prefix Seek" wiki): stay within the seek key's
            // prefix, which lets the prefix bloom filters skip files.
            let mut ro = ReadOptions::default();
            ro.set_prefix_same_as_start(true);
            let mode = IteratorMode::From(&prefix, Direction::Forward);
            for item in snapshot.iterator_opt(mode, ro) {
                let (k, v) = item?;
                if !k.starts_with(&prefix) {
                    break;
                }
                total += consume(&v);
            }
            Ok(total)
        }

        fn sync(&self) -> Res<()> {
            Ok(self.db.flush_wal(true)?)
        }
    }
}

#[cfg(feature = "peer-raft-engine")]
mod raft_peer {
    use super::*;
    use raft_engine::{Config, Engine as RaftEngine, LogBatch, MessageExt, ReadableSize};
    use std::sync::{mpsc, Arc};

    /// A protobuf 2 message holding one entry: raft-engine stores entries as
    /// `protobuf::Message`s and asks `MessageExt` for their index.
    #[derive(Clone, Default, PartialEq, Debug)]
    pub struct Entry {
        pub index: u64,
        pub data: Vec<u8>,
        cached_size: protobuf::CachedSize,
        unknown_fields: protobuf::UnknownFields,
    }

    impl protobuf::Message for Entry {
        fn is_initialized(&self) -> bool {
            true
        }
        fn merge_from(
            &mut self,
            is: &mut protobuf::CodedInputStream<'_>,
        ) -> protobuf::ProtobufResult<()> {
            while !is.eof()? {
                let (field, wire) = is.read_tag_unpack()?;
                match field {
                    1 => self.index = is.read_uint64()?,
                    2 => self.data = is.read_bytes()?,
                    _ => protobuf::rt::read_unknown_or_skip_group(
                        field,
                        wire,
                        is,
                        &mut self.unknown_fields,
                    )?,
                }
            }
            Ok(())
        }
        fn compute_size(&self) -> u32 {
            let size =
                protobuf::rt::value_size(1, self.index, protobuf::wire_format::WireTypeVarint)
                    + protobuf::rt::bytes_size(2, &self.data);
            self.cached_size.set(size);
            size
        }
        fn write_to_with_cached_sizes(
            &self,
            os: &mut protobuf::CodedOutputStream<'_>,
        ) -> protobuf::ProtobufResult<()> {
            os.write_uint64(1, self.index)?;
            os.write_bytes(2, &self.data)?;
            Ok(())
        }
        fn get_cached_size(&self) -> u32 {
            self.cached_size.get()
        }
        fn get_unknown_fields(&self) -> &protobuf::UnknownFields {
            &self.unknown_fields
        }
        fn mut_unknown_fields(&mut self) -> &mut protobuf::UnknownFields {
            &mut self.unknown_fields
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn descriptor(&self) -> &'static protobuf::reflect::MessageDescriptor {
            unimplemented!("raft-engine does not use descriptors")
        }
        fn new() -> Entry {
            Entry::default()
        }
        fn default_instance() -> &'static Entry {
            static INSTANCE: protobuf::rt::LazyV2<Entry> = protobuf::rt::LazyV2::INIT;
            INSTANCE.get(Entry::default)
        }
    }

    impl protobuf::Clear for Entry {
        fn clear(&mut self) {
            *self = Entry::default();
        }
    }

    #[derive(Clone)]
    pub struct M;

    impl MessageExt for M {
        type Entry = Entry;
        fn index(e: &Entry) -> u64 {
            e.index
        }
    }

    const META: &[u8] = b"meta";

    /// raft-engine: one region (raft group) per journal, a `LogBatch` per
    /// batch written with `sync = durable`, entries as protobuf messages,
    /// metadata as a region key. A delete is `Command::Clean` in the batch
    /// (what TiKV's `RaftLogEngine::clean` does when a region is destroyed);
    /// a reset to an earlier entry is an overwrite (raft-engine appends
    /// replace the tail from their first index). `compact_to` /
    /// `Command::Compact` is raft-engine's prefix trim (TiKV's `gc`); no
    /// workload trims a journal's prefix, so it is never called. No
    /// snapshots: a read is `fetch_entries_to` + `get` (consistent per
    /// region).
    ///
    /// Garbage collection: the README ("Garbage Collection") says log files
    /// are consolidated and removed "only when the user voluntarily calls
    /// the `purge_expired_files()` routine. For reference, TiKV calls it
    /// every 10 seconds by default." A background thread does that here
    /// (and `sync` calls it too). The regions it returns "hold particularly
    /// old log entries" that "should be compacted by the user": here every
    /// entry is live until its journal is reset or deleted, so there is
    /// nothing to compact and raft-engine rewrites those regions itself.
    pub struct Raft {
        engine: Arc<RaftEngine>,
        durable: bool,
        /// Dropping the sender stops the purge thread.
        purger: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
    }

    /// TiKV's default purge interval, cited by raft-engine's README.
    const PURGE_INTERVAL: Duration = Duration::from_secs(10);

    impl Raft {
        pub fn open(dir: &Path, durable: bool) -> Res<Raft> {
            // The defaults of `Config` (documented in `src/config.rs`), which
            // are the values TiKV ships and documents for its raft-engine
            // (`[raft-engine]` in the TiKV configuration file), spelled out:
            // no document recommends other values for this kind of use.
            let config = Config {
                dir: dir.to_string_lossy().into_owned(),
                // "Target file size for rotating log files."
                target_file_size: ReadableSize::mb(128),
                // "Purge append log queue if its size exceeds this value":
                // below it `purge_expired_files` rewrites and deletes
                // nothing, so at these data sizes no file is ever purged.
                purge_threshold: ReadableSize::gb(10),
                // "Compress a log batch if its size exceeds this value"
                // (LZ4); the payloads are incompressible.
                batch_compression_threshold: ReadableSize::kb(8),
                ..Config::default()
            };
            let engine = Arc::new(RaftEngine::open(config)?);
            let (tx, rx) = mpsc::channel::<()>();
            let purging = Arc::clone(&engine);
            let handle = std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(PURGE_INTERVAL) {
                    if let Err(err) = purging.purge_expired_files() {
                        eprintln!("raft-engine purge_expired_files: {err}");
                    }
                }
            });
            Ok(Raft {
                engine,
                durable,
                purger: Some((tx, handle)),
            })
        }
    }

    impl Drop for Raft {
        fn drop(&mut self) {
            if let Some((tx, handle)) = self.purger.take() {
                drop(tx);
                let _ = handle.join();
            }
        }
    }

    impl Engine for Raft {
        fn write(&self, ops: &[Op<'_>]) -> Res<()> {
            let mut b = LogBatch::default();
            let mut pending: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
            for op in ops {
                match *op {
                    Op::Append {
                        journal,
                        index,
                        value,
                    } => pending.entry(journal).or_default().push(Entry {
                        index,
                        data: value.to_vec(),
                        ..Entry::default()
                    }),
                    Op::Meta { journal, value } => b.put(journal, META.to_vec(), value.to_vec())?,
                    // The next append at `from` replaces the tail; nothing to
                    // write now.
                    Op::Truncate { .. } => {}
                    Op::Delete { journal, .. } => {
                        b.add_command(journal, raft_engine::Command::Clean)
                    }
                }
            }
            for (journal, entries) in pending {
                b.add_entries::<M>(journal, &entries)?;
            }
            self.engine.write(&mut b, self.durable)?;
            Ok(())
        }

        fn read_journal(&self, journal: u64) -> Res<u64> {
            let mut total = self.engine.get(journal, META).map_or(0, |m| consume(&m));
            let (Some(first), Some(last)) = (
                self.engine.first_index(journal),
                self.engine.last_index(journal),
            ) else {
                return Ok(total);
            };
            let mut entries = Vec::new();
            self.engine
                .fetch_entries_to::<M>(journal, first, last + 1, None, &mut entries)?;
            total += entries.iter().map(|e| consume(&e.data)).sum::<u64>();
            Ok(total)
        }

        fn sync(&self) -> Res<()> {
            self.engine.sync()?;
            // Also run the periodic GC now, so the churn workload's disk use
            // is measured after one (see `Raft`).
            self.engine.purge_expired_files()?;
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- utilities

/// xorshift64*: deterministic, per-thread.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Incompressible payloads: raft-engine, fjall and RocksDB compress (LZ4 /
/// Snappy) by default and journalstore does not, so constant or repeated
/// payloads would measure the compressor instead of the engine. Every value
/// is a slice at a random offset of a 4 MiB random pool, so values differ
/// from each other (within a batch too) at no per-op cost.
struct Pool(Vec<u8>);

impl Pool {
    fn new() -> Pool {
        let mut rng = Rng::new(0xdead_beef);
        Pool((0..4 << 20).map(|_| rng.next() as u8).collect())
    }

    fn slice(&self, rng: &mut Rng, len: usize) -> &[u8] {
        let start = rng.range(0, (self.0.len() - len) as u64) as usize;
        &self.0[start..start + len]
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("PEERS_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3.0),
    )
}

/// Allocated bytes (st_blocks * 512) of every file under `dir`: what the
/// engine really occupies, preallocation included, holes excluded.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                if m.is_dir() {
                    total += disk_bytes(&e.path());
                } else {
                    total += m.blocks() * 512;
                }
            }
        }
    }
    total
}

/// The `key:  N kB` line of a /proc file, in bytes.
fn proc_kb(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Peak resident set of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    proc_kb("/proc/self/status", "VmHWM").unwrap_or(0)
}

/// The machine's RAM (MemTotal), in bytes (1 GiB if unknown): what the
/// engines whose docs size their cache as a share of memory are given.
fn mem_total() -> u64 {
    proc_kb("/proc/meminfo", "MemTotal").unwrap_or(1 << 30)
}

fn emit(metric: &str, value: f64, unit: &str) {
    println!("{metric}\t{value}\t{unit}");
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64
}

// ---------------------------------------------------------------- workloads

const APPEND_ENTRY: usize = 256;
/// The large-batch durable case: one 64 KiB entry per batch.
const APPEND_ENTRY_LARGE: usize = 64 << 10;
const JOURNALS_PER_THREAD: u64 = 4;

/// Workloads 1 and 2: `threads` writers, each appending one `entry_len`-byte
/// entry per batch to its own journals (round robin over 4) for `secs()`.
fn append_workload(
    engine: &str,
    dir: &Path,
    durable: bool,
    threads: u64,
    entry_len: usize,
) -> Res<()> {
    let deadline_len = secs();
    let pool = Pool::new();
    let raw = engine == "raw";
    let e: Option<Box<dyn Engine>> = if raw {
        None
    } else {
        Some(open_engine(engine, dir, durable)?)
    };
    let barrier = Barrier::new(threads as usize + 1);
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let mut latencies: Vec<u64> = Vec::new();
    let elapsed = std::thread::scope(|s| -> Res<Duration> {
        let mut handles = Vec::new();
        for t in 0..threads {
            let (e, barrier, stop, ops, pool) = (&e, &barrier, &stop, &ops, &pool);
            handles.push(s.spawn(move || -> Res<Vec<u64>> {
                let mut lat = Vec::new();
                let mut ends = [0u64; JOURNALS_PER_THREAD as usize];
                // Raw baseline: one preallocated 16 MiB file per thread,
                // written round-robin (a file that grows needs a metadata
                // update per fdatasync, which an engine with preallocated
                // segments avoids too).
                let raw_file = if raw {
                    let f = OpenOptions::new()
                        .create(true)
                        .truncate(true)
                        .read(true)
                        .write(true)
                        .open(dir.join(format!("raw-{t}")))?;
                    let zeros = vec![0u8; 1 << 20];
                    for i in 0..16u64 {
                        f.write_all_at(&zeros, i << 20)?;
                    }
                    f.sync_all()?;
                    Some(f)
                } else {
                    None
                };
                let mut offset = 0u64;
                let mut rng = Rng::new(t + 7);
                barrier.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let entry = pool.slice(&mut rng, entry_len);
                    let start = Instant::now();
                    if let Some(f) = &raw_file {
                        f.write_all_at(entry, offset)?;
                        if durable {
                            f.sync_data()?;
                        }
                        offset = (offset + entry_len as u64) % (16 << 20);
                    } else if let Some(e) = e {
                        let k = (n % JOURNALS_PER_THREAD) as usize;
                        let journal = t * JOURNALS_PER_THREAD + k as u64;
                        e.write(&[Op::Append {
                            journal,
                            index: ends[k],
                            value: entry,
                        }])?;
                        ends[k] += 1;
                    }
                    lat.push(start.elapsed().as_nanos() as u64);
                    n += 1;
                }
                ops.fetch_add(n, Ordering::Relaxed);
                Ok(lat)
            }));
        }
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(deadline_len);
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            latencies.extend(h.join().map_err(|_| "writer panicked")??);
        }
        Ok(start.elapsed())
    })?;
    latencies.sort_unstable();
    let n = ops.load(Ordering::Relaxed) as f64;
    emit("ops_per_s", n / elapsed.as_secs_f64(), "op/s");
    emit(
        "mib_per_s",
        n * entry_len as f64 / elapsed.as_secs_f64() / (1 << 20) as f64,
        "MiB/s",
    );
    emit("p50_us", percentile(&latencies, 0.5) / 1e3, "us");
    emit("p99_us", percentile(&latencies, 0.99) / 1e3, "us");
    emit("peak_rss_mib", peak_rss() as f64 / (1 << 20) as f64, "MiB");
    Ok(())
}

const READ_JOURNALS: u64 = 10_000;
const READ_ENTRIES: u64 = 20;
const READ_ENTRY: usize = 512;
const META: &[u8] = b"state=running step=20 owner=worker-7";

/// Workload 3: 10,000 journals x 20 entries x 512 B (plus metadata) loaded
/// buffered and synced, then 2 threads read random journals whole (metadata
/// + all entries) through a fresh snapshot each, for `secs()`.
fn read_workload(engine: &str, dir: &Path) -> Res<()> {
    let e = open_engine(engine, dir, false)?;
    let pool = Pool::new();
    let mut rng = Rng::new(2);
    let load = Instant::now();
    let mut ops = Vec::new();
    for j in 0..READ_JOURNALS {
        ops.clear();
        ops.push(Op::Meta {
            journal: j,
            value: META,
        });
        for i in 0..READ_ENTRIES {
            ops.push(Op::Append {
                journal: j,
                index: i,
                value: pool.slice(&mut rng, READ_ENTRY),
            });
        }
        e.write(&ops)?;
    }
    e.sync()?;
    emit("load_s", load.elapsed().as_secs_f64(), "s");
    let expected = META.len() as u64 + READ_ENTRIES * READ_ENTRY as u64;
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> Res<()> {
        let mut handles = Vec::new();
        for t in 0..2u64 {
            let (e, stop, reads) = (&e, &stop, &reads);
            handles.push(s.spawn(move || -> Res<()> {
                let mut rng = Rng::new(t + 1);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let got = e.read_journal(rng.range(0, READ_JOURNALS))?;
                    if got != expected {
                        return Err(format!("read {got} bytes, expected {expected}").into());
                    }
                    n += 1;
                }
                reads.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }));
        }
        std::thread::sleep(secs());
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().map_err(|_| "reader panicked")??;
        }
        Ok(())
    })?;
    let n = reads.load(Ordering::Relaxed) as f64;
    let secs = start.elapsed().as_secs_f64();
    emit("journals_per_s", n / secs, "journal/s");
    emit(
        "mib_per_s",
        n * expected as f64 / secs / (1 << 20) as f64,
        "MiB/s",
    );
    emit("disk_mib", disk_bytes(dir) as f64 / (1 << 20) as f64, "MiB");
    emit("peak_rss_mib", peak_rss() as f64 / (1 << 20) as f64, "MiB");
    Ok(())
}

/// Workload 4: churn, 4 threads, buffered. Each thread keeps 64 journal
/// slots; a step picks a slot: an empty slot starts a journal (metadata);
/// a growing one gets one 100 B-4 KiB entry plus a metadata update in one
/// batch until it reaches its target of 5-50 entries; then 10% are reset
/// (truncated to a random earlier entry, with a new target) and the rest
/// are deleted. Reports batches/s, disk bytes / live bytes at the end, and
/// peak memory.
fn churn_workload(engine: &str, dir: &Path) -> Res<()> {
    const THREADS: u64 = 4;
    const SLOTS: usize = 64;
    let e = open_engine(engine, dir, false)?;
    let pool = Pool::new();
    let stop = AtomicBool::new(false);
    let batches = AtomicU64::new(0);
    let live = AtomicU64::new(0);
    // Live payload bytes at every moment (the threads add and subtract as
    // they go), for the space amplification sampled while running.
    let live_now = std::sync::atomic::AtomicI64::new(0);
    let start = Instant::now();
    let mut worst_running = 0f64;
    std::thread::scope(|s| -> Res<()> {
        let mut handles = Vec::new();
        for t in 0..THREADS {
            let (e, stop, batches, live, pool) = (&e, &stop, &batches, &live, &pool);
            let live_now = &live_now;
            let add = move |bytes: u64| live_now.fetch_add(bytes as i64, Ordering::Relaxed);
            let sub = move |bytes: u64| live_now.fetch_sub(bytes as i64, Ordering::Relaxed);
            handles.push(s.spawn(move || -> Res<()> {
                let mut rng = Rng::new(100 + t);
                // Per slot: journal id, entry sizes, target length, meta len.
                struct Slot {
                    journal: u64,
                    sizes: Vec<u64>,
                    target: u64,
                    meta: u64,
                }
                let mut next_id = t << 40;
                let mut slots: Vec<Option<Slot>> = (0..SLOTS).map(|_| None).collect();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = rng.range(0, SLOTS as u64) as usize;
                    match &mut slots[k] {
                        None => {
                            next_id += 1;
                            let m = rng.range(16, 64);
                            e.write(&[Op::Meta {
                                journal: next_id,
                                value: pool.slice(&mut rng, m as usize),
                            }])?;
                            add(m);
                            slots[k] = Some(Slot {
                                journal: next_id,
                                sizes: Vec::new(),
                                target: rng.range(5, 51),
                                meta: m,
                            });
                        }
                        Some(slot) if (slot.sizes.len() as u64) < slot.target => {
                            let size = rng.range(100, 4097);
                            let m = rng.range(16, 64);
                            e.write(&[
                                Op::Append {
                                    journal: slot.journal,
                                    index: slot.sizes.len() as u64,
                                    value: pool.slice(&mut rng, size as usize),
                                },
                                Op::Meta {
                                    journal: slot.journal,
                                    value: pool.slice(&mut rng, m as usize),
                                },
                            ])?;
                            add(size + m);
                            sub(slot.meta);
                            slot.sizes.push(size);
                            slot.meta = m;
                        }
                        Some(slot) => {
                            let end = slot.sizes.len() as u64;
                            if rng.range(0, 10) == 0 {
                                let from = rng.range(0, end);
                                e.write(&[Op::Truncate {
                                    journal: slot.journal,
                                    from,
                                    end,
                                }])?;
                                sub(slot.sizes[from as usize..].iter().sum());
                                slot.sizes.truncate(from as usize);
                                slot.target = rng.range(from + 1, 51.max(from + 2));
                            } else {
                                e.write(&[Op::Delete {
                                    journal: slot.journal,
                                    end,
                                }])?;
                                sub(slot.meta + slot.sizes.iter().sum::<u64>());
                                slots[k] = None;
                            }
                        }
                    }
                    n += 1;
                }
                batches.fetch_add(n, Ordering::Relaxed);
                let bytes: u64 = slots
                    .iter()
                    .flatten()
                    .map(|s| s.meta + s.sizes.iter().sum::<u64>())
                    .sum();
                live.fetch_add(bytes, Ordering::Relaxed);
                Ok(())
            }));
        }
        // Disk over live every 100 ms after the first second (the store
        // is still filling before that).
        let deadline = start + secs();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let live = live_now.load(Ordering::Relaxed);
            if start.elapsed() >= Duration::from_secs(1) && live > 0 {
                worst_running = worst_running.max(disk_bytes(dir) as f64 / live as f64);
            }
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().map_err(|_| "churn thread panicked")??;
        }
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    e.sync()?;
    // Give background compaction a moment, as a long-running process would.
    std::thread::sleep(Duration::from_millis(500));
    let disk = disk_bytes(dir);
    let live = live.load(Ordering::Relaxed).max(1);
    emit(
        "batches_per_s",
        batches.load(Ordering::Relaxed) as f64 / secs,
        "batch/s",
    );
    emit("live_mib", live as f64 / (1 << 20) as f64, "MiB");
    emit("disk_mib", disk as f64 / (1 << 20) as f64, "MiB");
    emit("disk_over_live", disk as f64 / live as f64, "x");
    emit("disk_over_live_max_running", worst_running, "x");
    emit("peak_rss_mib", peak_rss() as f64 / (1 << 20) as f64, "MiB");
    Ok(())
}

/// Workload 5 writer: fills the store with `PEERS_RECOVERY_MIB` MiB (default
/// 256) of 4 KiB entries over 1,000 journals, buffered, then syncs. With
/// `kill`, it prints `ready` and goes on writing until the parent SIGKILLs
/// it; otherwise it closes cleanly.
fn recovery_fill(engine: &str, dir: &Path, kill: bool) -> Res<()> {
    let mib = env_u64("PEERS_RECOVERY_MIB", 256);
    let e = open_engine(engine, dir, false)?;
    let pool = Pool::new();
    let mut rng = Rng::new(4);
    let journals = 1000u64;
    let mut ends = vec![0u64; journals as usize];
    let mut ops = Vec::new();
    let batches = (mib << 20) / (4096 * 16);
    let mut write_batch = |n: u64| -> Res<()> {
        ops.clear();
        for k in 0..16 {
            let j = (n * 16 + k) % journals;
            ops.push(Op::Append {
                journal: j,
                index: ends[j as usize],
                value: pool.slice(&mut rng, 4096),
            });
            ends[j as usize] += 1;
        }
        e.write(&ops)
    };
    for n in 0..batches {
        write_batch(n)?;
    }
    e.sync()?;
    if kill {
        println!("ready");
        std::io::stdout().flush()?;
        let mut n = batches;
        loop {
            write_batch(n)?;
            n += 1;
        }
    }
    emit("disk_mib", disk_bytes(dir) as f64 / (1 << 20) as f64, "MiB");
    drop(e);
    Ok(())
}

/// Workload 5 reader: times opening the store, then reads one journal so
/// the engine has done whatever it defers to first use.
fn recovery_open(engine: &str, dir: &Path) -> Res<()> {
    let start = Instant::now();
    let e = open_engine(engine, dir, false)?;
    let bytes = e.read_journal(1)?;
    let secs = start.elapsed().as_secs_f64();
    if bytes == 0 {
        return Err("journal 1 empty after recovery".into());
    }
    emit("open_s", secs, "s");
    emit("peak_rss_mib", peak_rss() as f64 / (1 << 20) as f64, "MiB");
    Ok(())
}

// ------------------------------------------------------------------- driver

/// Runs inside a child: `--child WORKLOAD ENGINE DIR [ARG]`.
fn child(args: &[String]) -> Res<()> {
    let (workload, engine, dir) = (&args[0], &args[1], Path::new(&args[2]));
    match workload.as_str() {
        "durable" => append_workload(engine, dir, true, args[3].parse()?, APPEND_ENTRY),
        "durable-64k" => append_workload(engine, dir, true, args[3].parse()?, APPEND_ENTRY_LARGE),
        "buffered" => append_workload(engine, dir, false, args[3].parse()?, APPEND_ENTRY),
        "read" => read_workload(engine, dir),
        "churn" => churn_workload(engine, dir),
        "fill" => recovery_fill(engine, dir, false),
        "fill-kill" => recovery_fill(engine, dir, true),
        "open" => recovery_open(engine, dir),
        other => Err(format!("unknown workload {other}").into()),
    }
}

/// Runs one child and returns its metrics.
fn run_child(args: &[&str]) -> Res<Vec<(String, f64, String)>> {
    let out = Command::new(std::env::current_exe()?)
        .arg("--child")
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("child {args:?} failed: {}", out.status).into());
    }
    Ok(parse_metrics(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_metrics(text: &str) -> Vec<(String, f64, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (m, v, u) = (f.next()?, f.next()?, f.next()?);
            Some((m.to_string(), v.parse().ok()?, u.to_string()))
        })
        .collect()
}

/// Starts a `fill-kill` child, waits for `ready`, lets it write 300 ms more,
/// and SIGKILLs it.
fn fill_and_kill(engine: &str, dir: &str) -> Res<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", "fill-kill", engine, dir])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        return Err(format!("fill-kill child said {line:?}").into());
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill()?; // SIGKILL
    child.wait()?;
    Ok(())
}

/// One row of results: workload label, engine, metrics.
type Row = (String, String, Vec<(String, f64, String)>);

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        return child(&args[pos + 1..]);
    }
    let filter = |var: &str, name: &str| {
        std::env::var(var).map_or(true, |v| v.split(',').any(|x| x.trim() == name))
    };
    let base: PathBuf =
        std::env::var_os("PEERS_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&base)?;
    let mut engines: Vec<&str> = vec!["raw", "raw-group"];
    engines.extend_from_slice(ENGINES);
    engines.retain(|e| filter("PEERS_ENGINES", e));
    let mut info = run_info(&base, &engines);

    // (label, child workload, extra arg, whether raw takes part)
    let mut plan: Vec<(String, &str, Option<&str>, bool)> = Vec::new();
    for t in ["4", "64"] {
        plan.push((format!("1 durable append x{t}"), "durable", Some(t), true));
    }
    plan.push((
        "1 durable append 64 KiB x4".into(),
        "durable-64k",
        Some("4"),
        true,
    ));
    for t in ["4", "64"] {
        plan.push((format!("2 buffered append x{t}"), "buffered", Some(t), true));
    }
    plan.push(("3 snapshot read x2".into(), "read", None, false));
    plan.push(("4 churn x4".into(), "churn", None, false));
    plan.push(("5 open after clean close".into(), "open-clean", None, false));
    plan.push(("5 open after kill".into(), "open-kill", None, false));
    plan.push((
        "5 open after clean close, cold cache".into(),
        "open-cold",
        None,
        false,
    ));
    let workload_key = |w: &str| match w {
        "durable" | "durable-64k" => "1",
        "buffered" => "2",
        "read" => "3",
        "churn" => "4",
        _ => "5",
    };

    let mut rows: Vec<Row> = Vec::new();
    for (label, workload, arg, with_raw) in &plan {
        if !filter("PEERS_WORKLOADS", workload_key(workload)) {
            continue;
        }
        for engine in &engines {
            if engine.starts_with("raw") && !with_raw {
                continue;
            }
            let dir = tempfile::tempdir_in(&base)?;
            let d = dir.path().to_str().ok_or("non-UTF-8 temp dir")?;
            eprintln!("running {label} on {engine}");
            let result = match *workload {
                "open-clean" => {
                    run_child(&["fill", engine, d]).and_then(|_| run_child(&["open", engine, d]))
                }
                "open-kill" => {
                    fill_and_kill(engine, d).and_then(|_| run_child(&["open", engine, d]))
                }
                "open-cold" => run_child(&["fill", engine, d])
                    .and_then(|_| drop_page_cache())
                    .and_then(|()| run_child(&["open", engine, d])),
                w => {
                    let mut a = vec![w, engine, d];
                    a.extend(arg.iter().copied());
                    run_child(&a)
                }
            };
            match result {
                Ok(metrics) => rows.push((label.clone(), engine.to_string(), metrics)),
                Err(err) => eprintln!("  {label} on {engine} failed: {err}"),
            }
        }
    }
    info.push(("loadavg_end".into(), loadavg()));
    report(&rows, &info)
}

/// Writes dirty pages back and drops the page cache, so that the next open
/// reads its files from the disk (needs root; the pair fails otherwise).
fn drop_page_cache() -> Res<()> {
    Command::new("sync").status()?;
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .map_err(|e| format!("cannot drop the page cache (needs root): {e}"))?;
    Ok(())
}

/// `/proc/loadavg`'s 1, 5 and 15 minute averages.
fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the run was and where it ran, written to `run.tsv` next to the
/// results (`benches/update-readme.py` puts it above the README table).
fn run_info(base: &Path, engines: &[&str]) -> Vec<(String, String)> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    // The file system type of the data directory, from `df -PT`.
    let data_fs = Command::new("df")
        .arg("-PT")
        .arg(base)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            Some(text.lines().nth(1)?.split_whitespace().nth(1)?.to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let env = |var: &str, default: &str| std::env::var(var).unwrap_or_else(|_| default.into());
    vec![
        ("unix_time".into(), unix_time.to_string()),
        (
            "nproc".into(),
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
        ("cpu_model".into(), cpu_model),
        ("mem_total_mib".into(), (mem_total() >> 20).to_string()),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().into(),
        ),
        ("data_dir".into(), base.display().to_string()),
        ("data_fs".into(), data_fs),
        ("loadavg_start".into(), loadavg()),
        ("peers_secs".into(), secs().as_secs_f64().to_string()),
        (
            "peers_recovery_mib".into(),
            env_u64("PEERS_RECOVERY_MIB", 256).to_string(),
        ),
        ("engines".into(), engines.join(",")),
        ("workloads".into(), env("PEERS_WORKLOADS", "1,2,3,4,5")),
    ]
}

/// The metric each workload is ranked by, and whether higher is better.
fn headline(label: &str) -> (&'static str, bool) {
    match label.chars().next() {
        Some('1') | Some('2') => ("ops_per_s", true),
        Some('3') => ("journals_per_s", true),
        Some('4') => ("batches_per_s", true),
        _ => ("open_s", false),
    }
}

fn report(rows: &[Row], info: &[(String, String)]) -> Res<()> {
    let out: PathBuf = std::env::var_os("PEERS_OUT").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peers-results"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&out)?;

    let mut run = String::new();
    for (k, v) in info {
        run.push_str(&format!("{k}\t{}\n", v.replace(['\t', '\n'], " ")));
    }
    File::create(out.join("run.tsv"))?.write_all(run.as_bytes())?;

    let mut tsv = String::from("workload\tengine\tmetric\tvalue\tunit\n");
    for (label, engine, metrics) in rows {
        for (m, v, u) in metrics {
            tsv.push_str(&format!("{label}\t{engine}\t{m}\t{v}\t{u}\n"));
        }
    }
    File::create(out.join("results.tsv"))?.write_all(tsv.as_bytes())?;

    // Markdown: one row per (workload, engine) with the headline metric, the
    // ratio to the best peer (not journalstore, not raw) and to raw, plus
    // the other metrics.
    let mut by_label: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        by_label.entry(row.0.as_str()).or_default().push(row);
    }
    let get = |row: &Row, m: &str| row.2.iter().find(|x| x.0 == m).map(|x| x.1);
    let mut md = String::from(
        "| workload | engine | headline | vs best peer | vs raw | other metrics |\n\
         | --- | --- | ---: | ---: | ---: | --- |\n",
    );
    for (label, rows) in &by_label {
        let (metric, higher) = headline(label);
        let better = |a: f64, b: f64| if higher { a > b } else { a < b };
        let best_peer = rows
            .iter()
            .filter(|r| r.1 != "journalstore" && !r.1.starts_with("raw"))
            .filter_map(|r| get(r, metric))
            .fold(None, |acc: Option<f64>, v| match acc {
                Some(a) if !better(v, a) => Some(a),
                _ => Some(v),
            });
        let raw = rows
            .iter()
            .find(|r| r.1 == "raw")
            .and_then(|r| get(r, metric));
        // Ratio > 1 always means "journalstore/this engine is better".
        let ratio = |v: f64, base: Option<f64>| match base {
            Some(b) if b > 0.0 && v > 0.0 => {
                let r = if higher { v / b } else { b / v };
                if r >= 0.1 {
                    format!("{r:.2}x")
                } else {
                    format!("{r:.4}x")
                }
            }
            _ => "-".into(),
        };
        for row in rows {
            let Some(v) = get(row, metric) else { continue };
            let others: Vec<String> = row
                .2
                .iter()
                .filter(|x| x.0 != metric)
                .map(|(m, v, u)| format!("{m}={v:.3}{u}"))
                .collect();
            md.push_str(&format!(
                "| {label} | {} | {v:.4} {metric} | {} | {} | {} |\n",
                row.1,
                ratio(v, best_peer),
                ratio(v, raw),
                others.join(" ")
            ));
        }
    }
    File::create(out.join("results.md"))?.write_all(md.as_bytes())?;
    println!("{md}");
    println!(
        "ratios: >1 = better than the best peer / the raw baseline (throughput \
         ratio, or inverse time ratio for open)"
    );
    println!("written: {}", out.display());
    Ok(())
}
