//! fjall.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use super::{consume, entry_key, for_each_kv, journal_prefix, missing, Deletes, Engine, Kv, Op};
use crate::sys::mem_total;
use crate::Res;

/// fjall: one keyspace, one `WriteBatch` per batch committed with
/// `PersistMode::SyncData` when durable and `PersistMode::Buffer` (to the
/// OS; survives a process crash) otherwise; `Database::snapshot` for journal
/// reads, `Keyspace::get` for point reads.
/// The batch has no range delete: resets and deletes remove key by key.
/// Block cache sized as its docs recommend; other options at their
/// defaults, which are within the documented recommendations (memtable
/// 64 MiB: "recommended size 8 - 64 MiB").
pub struct Fjall {
    db: Database,
    ks: Keyspace,
    mode: PersistMode,
}

impl Fjall {
    pub fn open(dir: &Path, durable: bool) -> Res<Fjall> {
        // fjall README "Memory usage" and `DatabaseBuilder::cache_size`: "It
        // is recommended to configure the block cache capacity to be ~20-25%
        // of the available memory" (default 32 MiB).
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
        for_each_kv(ops, Deletes::PerKey, |kv| {
            match kv {
                Kv::Put { key, value } => b.insert(&self.ks, key, value),
                Kv::Remove { key } => b.remove(&self.ks, key),
                Kv::RemoveRange { .. } => unreachable!("fjall deletes per key"),
            }
            Ok(())
        })?;
        b.commit()?;
        Ok(())
    }

    fn read_journal(&self, journal: u64) -> Res<u64> {
        let snapshot = self.db.snapshot();
        let mut total = 0;
        for guard in snapshot.prefix(&self.ks, journal_prefix(journal)) {
            let (_, v) = guard.into_inner()?;
            total += consume(&v);
        }
        Ok(total)
    }

    /// `Keyspace::get` (reads the latest state; one key needs no
    /// snapshot).
    fn read_entry(&self, journal: u64, index: u64) -> Res<u64> {
        let value = self
            .ks
            .get(entry_key(journal, index))?
            .ok_or_else(|| missing(journal, index))?;
        Ok(consume(&value))
    }

    fn sync(&self) -> Res<()> {
        Ok(self.db.persist(PersistMode::SyncData)?)
    }
}
