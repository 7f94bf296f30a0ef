//! redb.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use super::{
    consume, entry_key, for_each_kv, journal_prefix, meta_key, missing, Deletes, Engine, Kv, Op,
};
use crate::Res;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("journals");

/// redb: one write transaction per batch, one read transaction per read
/// (a journal range or one `get`), its defaults otherwise
/// (`Builder::new()`: 1 GiB cache, 1-phase + checksum commits, no
/// quick-repair; the docs recommend no other setting). No range delete: resets and deletes remove key by key.
///
/// Every commit uses `Durability::Immediate` (the default), buffered or
/// not: redb's only other level, `Durability::None`, is "implemented with
/// an in-memory flag" and "in the event of a crash, the database will
/// simply rollback" to the last immediate commit (redb `docs/design.md`,
/// "Non-durable commits"; `Durability::None` docs), so a process crash
/// loses those commits and the buffered workloads' rule (survive a process
/// crash) leaves `Immediate` as redb's fastest setting.
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
            for_each_kv(ops, Deletes::PerKey, |kv| {
                match kv {
                    Kv::Put { key, value } => {
                        t.insert(key, value)?;
                    }
                    Kv::Remove { key } => {
                        t.remove(key)?;
                    }
                    Kv::RemoveRange { .. } => unreachable!("redb deletes per key"),
                }
                Ok(())
            })?;
        }
        tx.commit()?;
        Ok(())
    }

    fn read_journal(&self, journal: u64) -> Res<u64> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(TABLE)?;
        let lo = meta_key(journal);
        let hi = journal_prefix(journal + 1);
        let mut total = 0;
        for item in t.range::<&[u8]>(&lo[..]..&hi[..])? {
            let (_, v) = item?;
            total += consume(v.value());
        }
        Ok(total)
    }

    fn read_entry(&self, journal: u64, index: u64) -> Res<u64> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(TABLE)?;
        let value = t
            .get(&entry_key(journal, index)[..])?
            .ok_or_else(|| missing(journal, index))?;
        Ok(consume(value.value()))
    }

    fn sync(&self) -> Res<()> {
        // Every commit is already durable; an empty immediate commit is
        // what an application would call to be sure.
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }
}
