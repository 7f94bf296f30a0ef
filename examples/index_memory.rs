//! Measures what the in-memory index costs per live entry: heap bytes held
//! by a store after loading N journals x M entries, counted by a global
//! allocator that tracks live allocations, minus the bytes held before.
//! Segment data is memory-mapped, not on the heap, so what remains is the
//! index (journal ids, per-journal state, entry locations) plus the
//! store's fixed buffers.
//!
//! ```sh
//! cargo run --release --example index_memory                # 10,000 x 20 and 1,000 x 1,000
//! cargo run --release --example index_memory -- 50000 5    # journals, entries per journal
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use journalstore::{Options, Store, SyncMode, WriteBatch};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which
// upholds `GlobalAlloc`'s contract; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Loads `journals` x `entries` (64 B entries, 16-byte ids, 20 entries a
/// batch) and returns the heap bytes the open store holds per live entry,
/// and per journal beyond 8 bytes per entry.
fn measure(journals: u64, entries: u64) -> (f64, f64) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let options = Options {
        sync: SyncMode::Never,
        background_compaction: false,
        status_interval: None,
        ..Options::default()
    };
    let store = Store::open(tmp.path(), options).expect("open");
    let before = LIVE.load(Ordering::Relaxed);
    let value = [7u8; 64];
    for j in 0..journals {
        let id = format!("journal-{j:08}");
        let mut done = 0;
        while done < entries {
            let mut batch = WriteBatch::new();
            for _ in 0..(entries - done).min(20) {
                batch.append(id.as_bytes(), &value);
                done += 1;
            }
            store.write(&batch).expect("write");
        }
    }
    // A snapshot makes the index a published version, as readers see it.
    let snap = store.snapshot();
    assert_eq!(snap.journal_count() as u64, journals);
    let held = (LIVE.load(Ordering::Relaxed) - before) as f64;
    drop(snap);
    let live = (journals * entries) as f64;
    let per_entry = held / live;
    let per_journal_beyond_8 = (held - 8.0 * live) / journals as f64;
    store.close().expect("close");
    (per_entry, per_journal_beyond_8)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: journals entries"))
        .collect();
    let cases: Vec<(u64, u64)> = match args.as_slice() {
        [j, e] => vec![(*j, *e)],
        _ => vec![(10_000, 20), (1_000, 1_000)],
    };
    println!("journals  entries/journal  heap bytes per live entry  per journal beyond 8 B/entry (16 B ids)");
    for (journals, entries) in cases {
        let (per_entry, per_journal) = measure(journals, entries);
        println!("{journals:>8}  {entries:>15}  {per_entry:>25.1}  {per_journal:>29.0}");
    }
}
