//! raft-engine (feature `peer-raft-engine`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use raft_engine::{Config, Engine as RaftEngine, LogBatch, MessageExt, ReadableSize};

use super::{consume, missing, Engine, Op};
use crate::Res;

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
        let size = protobuf::rt::value_size(1, self.index, protobuf::wire_format::WireTypeVarint)
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
/// snapshots: a journal read is `fetch_entries_to` + `get` (consistent per
/// region), a point read `get_entry`.
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
                Op::Delete { journal, .. } => b.add_command(journal, raft_engine::Command::Clean),
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

    /// `Engine::get_entry` (reads the entry from its log file).
    fn read_entry(&self, journal: u64, index: u64) -> Res<u64> {
        let entry = self
            .engine
            .get_entry::<M>(journal, index)?
            .ok_or_else(|| missing(journal, index))?;
        if entry.index != index {
            return Err(format!("asked for entry {index}, got {}", entry.index).into());
        }
        Ok(consume(&entry.data))
    }

    fn sync(&self) -> Res<()> {
        self.engine.sync()?;
        // Also run the periodic GC now, so the churn workload's disk use
        // is measured after one (see `Raft`).
        self.engine.purge_expired_files()?;
        Ok(())
    }
}
