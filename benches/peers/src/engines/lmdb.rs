//! LMDB, through heed.

use std::ops::Bound;
use std::path::Path;

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions};

use super::{consume, entry_key, for_each_kv, journal_prefix, missing, Deletes, Engine, Kv, Op};
use crate::Res;

/// LMDB through heed: one write transaction per batch (resets and deletes
/// are range deletes), a read transaction per read (a journal scan or one
/// `get`). Settings from `lmdb.h` (`mdb_env_set_mapsize`, `mdb_env_open`
/// flags):
///
/// - map size 64 GiB (virtual): "should be chosen as large as possible, to
///   accommodate future growth of the database";
/// - durable: default flags (data and meta page synced on commit;
///   `MDB_NOMETASYNC` would lose the D of ACID, so it is not used);
/// - buffered: `MDB_WRITEMAP | MDB_MAPASYNC`: a writable map "may be
///   slightly faster for DBs that fit entirely in RAM" (all of these do),
///   and with it "(MDB_MAPASYNC | MDB_WRITEMAP) may be preferable" to
///   `MDB_NOSYNC`. Commits land in the shared file mapping (the page cache),
///   so a process crash loses nothing; a system crash may lose or corrupt
///   the last transactions; `sync` (`mdb_env_sync(force)`) makes them
///   durable.
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
        for_each_kv(ops, Deletes::Range, |kv| {
            match kv {
                Kv::Put { key, value } => self.db.put(&mut tx, key, value)?,
                Kv::Remove { .. } => unreachable!("LMDB deletes by range"),
                Kv::RemoveRange { lo, hi } => {
                    let range = (Bound::Included(lo), Bound::Excluded(hi));
                    self.db.delete_range(&mut tx, &range)?;
                }
            }
            Ok(())
        })?;
        tx.commit()?;
        Ok(())
    }

    fn read_journal(&self, journal: u64) -> Res<u64> {
        let tx = self.env.read_txn()?;
        let mut total = 0;
        for item in self.db.prefix_iter(&tx, &journal_prefix(journal))? {
            total += consume(item?.1);
        }
        Ok(total)
    }

    fn read_entry(&self, journal: u64, index: u64) -> Res<u64> {
        let tx = self.env.read_txn()?;
        let value = self
            .db
            .get(&tx, &entry_key(journal, index))?
            .ok_or_else(|| missing(journal, index))?;
        Ok(consume(value))
    }

    fn sync(&self) -> Res<()> {
        Ok(self.env.force_sync()?)
    }
}
