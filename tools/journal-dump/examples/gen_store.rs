//! Writes a large store for measuring `salvage` (README, "Memory"):
//! `cargo run --release -p journal-dump --example gen_store DIR MIB`
//! writes about MIB MiB of entries (1 KiB each) over 5,000 journals, with
//! metadata, in batches of 64 entries, synced once at the end.

use journalstore::{Options, Store, SyncMode, WriteBatch, WriteOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: gen_store DIR MIB");
    let mib: u64 = args.next().map_or(1024, |s| s.parse().expect("MIB"));
    let store = Store::open(
        &dir,
        Options {
            sync: SyncMode::Never,
            ..Options::default()
        },
    )
    .expect("open");
    let entries = mib * 1024;
    let mut batch = WriteBatch::new();
    let mut value = vec![0u8; 1024];
    for i in 0..entries {
        let j = format!("journal-{:05}", i % 5000);
        value[..8].copy_from_slice(&i.to_le_bytes());
        batch.append(j.as_bytes(), &value);
        if i % 5000 < 64 {
            batch.set_metadata(j.as_bytes(), format!("len={}", i / 5000 + 1).as_bytes());
        }
        if batch.len() >= 64 {
            store
                .write_with(&batch, WriteOptions { sync: false })
                .expect("write");
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store
            .write_with(&batch, WriteOptions { sync: false })
            .expect("write");
    }
    store.sync().expect("sync");
    store.close().expect("close");
}
