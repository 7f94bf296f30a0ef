//! RocksDB (feature `peer-rocksdb`).

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, Direction, IteratorMode, Options, ReadOptions, SliceTransform,
    WriteBatch, WriteOptions, DB,
};

use super::{consume, entry_key, for_each_kv, journal_prefix, missing, Deletes, Engine, Kv, Op};
use crate::sys::mem_total;
use crate::Res;

/// RocksDB: `WriteBatch` per batch, `WriteOptions::set_sync(true)` when
/// durable (WAL fdatasync per write, RocksDB groups concurrent writers);
/// WAL without sync otherwise (each write reaches the OS: survives a
/// process crash; `manual_wal_flush` would keep it in process memory, so it
/// is not used). A `Snapshot` + prefix iterator per journal read,
/// `get_pinned` per point read; `delete_range` for deletes and resets.
/// Options as documented below.
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
        // `OptimizeLevelStyleCompaction` with its default 512 MiB memtable
        // budget.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        options.increase_parallelism(cores as i32);
        options.optimize_level_style_compaction(512 << 20);
        // Wiki "Setup Options and Basic Tuning", "Other General Options"
        // (suggested for new databases): dynamic level bytes (the default
        // since 8.4), bytes_per_sync 1 MiB, 16 KiB blocks, index and filter
        // blocks in the block cache with L0's pinned.
        options.set_level_compaction_dynamic_level_bytes(true);
        options.set_bytes_per_sync(1 << 20);
        let mut table = BlockBasedOptions::default();
        table.set_block_size(16 << 10);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Same page, "Block Cache Size": "about 1/3 of your total memory
        // budget" (default 32 MiB); the budget here is the machine's RAM.
        table.set_block_cache(&Cache::new_lru_cache((mem_total() / 3) as usize));
        // Wiki "Prefix Seek", "Configure prefix bloom filter": the journal
        // reads scan one journal's prefix (its 8-byte id), so a prefix
        // extractor with a 10 bits/key prefix bloom filter and no whole-key
        // filtering (a point `Get` checks the prefix filter instead; the
        // point reads only look up keys that exist, which a whole-key
        // filter would not skip either). The wiki's example uses a capped
        // transform; every key here is at least 9 bytes, so the fixed 8-byte
        // one extracts the same prefix.
        table.set_bloom_filter(10.0, false);
        table.set_whole_key_filtering(false);
        options.set_block_based_table_factory(&table);
        options.set_prefix_extractor(SliceTransform::create_fixed_prefix(8));
        // Compression: `OptimizeLevelStyleCompaction` leaves L0-L1
        // uncompressed and uses LZ4, else Snappy, below, as the setup page
        // recommends; this build has Snappy only.
        Ok(Rocks {
            db: DB::open(&options, dir)?,
            durable,
        })
    }
}

impl Engine for Rocks {
    fn write(&self, ops: &[Op<'_>]) -> Res<()> {
        let mut b = WriteBatch::default();
        for_each_kv(ops, Deletes::Range, |kv| {
            match kv {
                Kv::Put { key, value } => b.put(key, value),
                Kv::Remove { .. } => unreachable!("RocksDB deletes by range"),
                Kv::RemoveRange { lo, hi } => b.delete_range(lo, hi),
            }
            Ok(())
        })?;
        let mut wo = WriteOptions::default();
        wo.set_sync(self.durable);
        self.db.write_opt(b, &wo)?;
        Ok(())
    }

    fn read_journal(&self, journal: u64) -> Res<u64> {
        let snapshot = self.db.snapshot();
        let mut total = 0;
        let prefix = journal_prefix(journal);
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

    /// `DB::get_pinned` (RocksDB's `Get` into a `PinnableSlice`: the crate
    /// docs point to it over `get` to avoid copying the value).
    fn read_entry(&self, journal: u64, index: u64) -> Res<u64> {
        let value = self
            .db
            .get_pinned(entry_key(journal, index))?
            .ok_or_else(|| missing(journal, index))?;
        Ok(consume(&value))
    }

    fn sync(&self) -> Res<()> {
        Ok(self.db.flush_wal(true)?)
    }
}
