//! Criterion benchmarks of journalstore's own paths: append (entry size x
//! batch size x sync mode x writer threads), snapshot creation, a whole
//! journal read through a snapshot (also of journals written side by side,
//! before and after compaction, warm and from a cold page cache), point
//! reads, trim / truncate / delete, compaction, and open (recovery).
//!
//! Run: `cargo bench --bench engine` (all), or with a filter, e.g.
//! `cargo bench --bench engine -- append/1024`. Every group uses
//! `sample_size(10)` and short warm-up/measurement times so the whole file
//! runs in minutes on a 2-core machine; see `benches/README.md`.
//!
//! `JOURNALSTORE_BENCH_OPEN_MIB` sets the size of the store the `open`
//! benchmark recovers (default 1024 MiB: the recovery time of a 1 GiB store
//! is the figure to watch).

use std::cell::OnceCell;
use std::hint::black_box;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use journalstore::{Options, Store, SyncMode, WriteBatch};

fn options(sync: SyncMode) -> Options {
    Options {
        sync,
        ..Options::default()
    }
}

fn journal_id(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Append workload. Each writer thread appends to its own journal; every
/// `TRIM_EVERY` batches it trims its journal to the last `KEEP` entries so
/// old segments become dead and are freed, which keeps the store's disk use
/// bounded however long criterion runs (the trim is a small extra batch,
/// amortised over `TRIM_EVERY` measured batches).
fn bench_append(c: &mut Criterion) {
    const TRIM_EVERY: u64 = 256;
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let syncs = [
        ("always", SyncMode::Always),
        ("never", SyncMode::Never),
        (
            "interval10ms",
            SyncMode::Interval(Duration::from_millis(10)),
        ),
    ];
    for size in [64usize, 1024, 64 << 10] {
        for batch in [1usize, 64] {
            for (sync_name, sync) in syncs {
                for threads in [1usize, 4] {
                    // Opened on first use so a filtered-out benchmark costs
                    // nothing.
                    let fixture = OnceCell::new();
                    let entry = vec![0xa5u8; size];
                    let keep = (TRIM_EVERY * batch as u64).max(256);
                    // Next batch number per thread, kept across samples so
                    // trims keep happening.
                    let counters: Vec<std::sync::atomic::AtomicU64> =
                        (0..threads).map(|_| Default::default()).collect();
                    group.throughput(Throughput::Bytes((size * batch) as u64));
                    let name = format!("{size}/batch{batch}/{sync_name}/threads{threads}");
                    group.bench_function(BenchmarkId::from_parameter(name), |b| {
                        let (_dir, store) = fixture.get_or_init(|| {
                            let dir = tempfile::tempdir().unwrap();
                            let store = Store::open(dir.path(), options(sync)).unwrap();
                            (dir, store)
                        });
                        b.iter_custom(|iters| {
                            let per_thread = iters.div_ceil(threads as u64);
                            let barrier = Barrier::new(threads + 1);
                            std::thread::scope(|s| {
                                for (t, counter) in counters.iter().enumerate() {
                                    let (entry, barrier) = (&entry, &barrier);
                                    s.spawn(move || {
                                        let id = journal_id(t as u64);
                                        let mut wb = WriteBatch::new();
                                        barrier.wait();
                                        for _ in 0..per_thread {
                                            let n = counter
                                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                            wb.clear();
                                            for _ in 0..batch {
                                                wb.append(&id, entry);
                                            }
                                            store.write(&wb).unwrap();
                                            if n % TRIM_EVERY == TRIM_EVERY - 1 {
                                                let end = (n + 1) * batch as u64;
                                                wb.clear();
                                                wb.trim_prefix(&id, end.saturating_sub(keep));
                                                store.write(&wb).unwrap();
                                            }
                                        }
                                        barrier.wait();
                                    });
                                }
                                barrier.wait();
                                let start = Instant::now();
                                barrier.wait();
                                // Wall time of `threads * per_thread` batches,
                                // scaled to the `iters` criterion asked for.
                                start
                                    .elapsed()
                                    .mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
                            })
                        })
                    });
                    drop(fixture);
                }
            }
        }
    }
    group.finish();
}

/// Journals x entries x entry size of the read benchmarks (the peer
/// comparison's snapshot-read workload).
const READ_JOURNALS: u64 = 10_000;
const READ_ENTRIES: u64 = 20;
const READ_ENTRY_SIZE: usize = 512;

fn read_store(dir: &Path) -> Store {
    let store = Store::open(dir, options(SyncMode::Never)).unwrap();
    let entry = vec![0x5au8; READ_ENTRY_SIZE];
    let mut wb = WriteBatch::new();
    for j in 0..READ_JOURNALS {
        let id = journal_id(j);
        wb.clear();
        wb.set_metadata(&id, b"metadata: state=running step=20");
        for _ in 0..READ_ENTRIES {
            wb.append(&id, &entry);
        }
        store.write(&wb).unwrap();
    }
    store.sync().unwrap();
    store
}

/// A store whose journals were written in turns, one entry each per batch,
/// as invocations running side by side write them: `WAVE` journals at a
/// time, each entry of one journal about 100 KiB of log after its previous
/// one; every other journal was then deleted. With `compact`, rewritten by
/// compaction, which lays each journal's entries out next to each other.
fn interleaved_store(dir: &Path, compact: bool) -> Store {
    const WAVE: u64 = 200;
    let store = Store::open(dir, interleaved_options()).unwrap();
    let entry = vec![0x5au8; READ_ENTRY_SIZE];
    let mut wb = WriteBatch::new();
    for wave in (0..2 * INTERLEAVED_JOURNALS).step_by(WAVE as usize) {
        for i in 0..READ_ENTRIES {
            for j in wave..wave + WAVE {
                wb.clear();
                wb.append_at(&journal_id(j), i, &entry);
                store.write(&wb).unwrap();
            }
        }
    }
    // The even journals stay (read as `journal_id(2 * k)`).
    wb.clear();
    for j in (1..2 * INTERLEAVED_JOURNALS).step_by(2) {
        wb.delete_journal(&journal_id(j));
    }
    store.write(&wb).unwrap();
    if compact {
        store.compact().unwrap();
    }
    store.sync().unwrap();
    store
}

/// Journals read whole from [`interleaved_store`] (as many again deleted).
const INTERLEAVED_JOURNALS: u64 = 4_000;

fn interleaved_options() -> Options {
    Options {
        // Every sealed segment (about half live) is rewritten; the active
        // one, which compaction leaves, holds a twentieth of the data.
        compaction_threshold: 0.9,
        segment_size: 4 << 20,
        background_compaction: false,
        ..options(SyncMode::Never)
    }
}

/// Drops the clean pages of the page cache; false where that is not
/// allowed (it needs root).
fn drop_page_cache() -> bool {
    std::fs::write("/proc/sys/vm/drop_caches", "1").is_ok()
}

/// Major page faults of this process so far (`/proc/self/stat`, field 12):
/// each is a read from the disk.
fn major_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; fields resume after ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(9)?.parse().ok())
        .unwrap_or(0)
}

/// Whole-journal reads from a cold page cache: each iteration opens the
/// closed [`interleaved_store`] (from its index checkpoint, so open reads
/// no segment) after dropping the page cache, and reads
/// `COLD_JOURNALS` random journals whole; only the reads are timed. A
/// journal written in turns with others costs a disk read per entry; laid
/// out together by compaction, a few: the disk reads per journal (major
/// page faults) are printed, a figure that does not depend on how fast
/// the disk is. Skipped without root.
fn bench_cold_reads(c: &mut Criterion) {
    const COLD_JOURNALS: u64 = 64;
    if !drop_page_cache() {
        eprintln!("read_cold: skipped (dropping the page cache needs root)");
        return;
    }
    let mut group = c.benchmark_group("read_cold");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(
        COLD_JOURNALS * READ_ENTRIES * READ_ENTRY_SIZE as u64,
    ));
    for compact in [false, true] {
        let fixture = OnceCell::new();
        let name = if compact { "compacted" } else { "interleaved" };
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut fault_counts = Vec::new();
        group.bench_function(format!("journal_whole_{name}"), |b| {
            let dir = fixture.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                interleaved_store(dir.path(), compact).close().unwrap();
                dir
            });
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    assert!(drop_page_cache());
                    let store = Store::open(dir.path(), interleaved_options()).unwrap();
                    let snapshot = store.snapshot();
                    let faults = major_faults();
                    let started = Instant::now();
                    for _ in 0..COLD_JOURNALS {
                        let id = journal_id(2 * rng.u64(..INTERLEAVED_JOURNALS));
                        let journal = snapshot.journal(&id).unwrap();
                        for item in journal.entries(..) {
                            black_box(item.unwrap().1.len());
                        }
                    }
                    spent += started.elapsed();
                    fault_counts.push((major_faults() - faults) as f64 / COLD_JOURNALS as f64);
                    drop(snapshot);
                    store.close().unwrap();
                }
                spent
            })
        });
        fault_counts.sort_by(f64::total_cmp);
        if let Some(median) = fault_counts.get(fault_counts.len() / 2) {
            eprintln!("read_cold/journal_whole_{name}: {median:.1} disk reads (major faults) per journal, median of {}", fault_counts.len());
        }
    }
    group.finish();
}

fn bench_reads(c: &mut Criterion) {
    // Built on first use (a filtered-out group costs nothing).
    let fixture = OnceCell::new();
    let get = || {
        fixture.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = read_store(dir.path());
            let snapshot = store.snapshot();
            (dir, store, snapshot)
        })
    };
    let mut group = c.benchmark_group("read");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    group.throughput(Throughput::Elements(1));
    group.bench_function("snapshot", |b| {
        let store = &get().1;
        b.iter(|| black_box(store.snapshot()))
    });

    // Seeded: every run reads the same journals in the same order.
    let mut rng = fastrand::Rng::with_seed(0x1234_5678);
    group.throughput(Throughput::Bytes(READ_ENTRIES * READ_ENTRY_SIZE as u64));
    group.bench_function("journal_whole", |b| {
        let snapshot = &get().2;
        b.iter(|| {
            let id = journal_id(rng.u64(..READ_JOURNALS));
            let journal = snapshot.journal(&id).unwrap();
            let mut total = journal.metadata().unwrap().map_or(0, <[u8]>::len);
            for item in journal.entries(..) {
                total += item.unwrap().1.len();
            }
            black_box(total)
        })
    });

    // A snapshot per read, as a reader that wants fresh data would do.
    group.bench_function("journal_whole_fresh_snapshot", |b| {
        let store = &get().1;
        b.iter(|| {
            let snapshot = store.snapshot();
            let id = journal_id(rng.u64(..READ_JOURNALS));
            let journal = snapshot.journal(&id).unwrap();
            let mut total = journal.metadata().unwrap().map_or(0, <[u8]>::len);
            for item in journal.entries(..) {
                total += item.unwrap().1.len();
            }
            black_box(total)
        })
    });

    // Readers taking a fresh snapshot per point read, on 1, 2 and 4
    // threads at once: each iteration is one read on every thread, so a
    // flat time per iteration means reads scale with threads (nothing they
    // share serialises them), and a time growing with the threads means
    // they wait for each other.
    for threads in [1usize, 2, 4] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("fresh_snapshot_point_x{threads}"), |b| {
            let store = &get().1;
            b.iter_custom(|iters| {
                let started = std::time::Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        s.spawn(move || {
                            let mut rng = fastrand::Rng::with_seed(t as u64);
                            for _ in 0..iters {
                                let snapshot = store.snapshot();
                                let id = journal_id(rng.u64(..READ_JOURNALS));
                                let journal = snapshot.journal(&id).unwrap();
                                let index = rng.u64(..READ_ENTRIES);
                                black_box(journal.entry(index).unwrap().unwrap().len());
                            }
                        });
                    }
                });
                started.elapsed()
            })
        });
    }

    // Whole-journal reads of journals whose entries were written in turns
    // with other journals', before and after compaction laid each
    // journal's entries out together: the same bytes, read from pages
    // far apart or from consecutive ones.
    for compact in [false, true] {
        let fixture = OnceCell::new();
        let name = if compact { "compacted" } else { "interleaved" };
        group.throughput(Throughput::Bytes(READ_ENTRIES * READ_ENTRY_SIZE as u64));
        group.bench_function(format!("journal_whole_{name}"), |b| {
            let (_dir, _store, snapshot) = fixture.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let store = interleaved_store(dir.path(), compact);
                let snapshot = store.snapshot();
                (dir, store, snapshot)
            });
            b.iter(|| {
                let id = journal_id(2 * rng.u64(..INTERLEAVED_JOURNALS));
                let journal = snapshot.journal(&id).unwrap();
                let mut total = 0;
                for item in journal.entries(..) {
                    total += item.unwrap().1.len();
                }
                black_box(total)
            })
        });
    }

    group.throughput(Throughput::Bytes(READ_ENTRY_SIZE as u64));
    group.bench_function("point", |b| {
        let snapshot = &get().2;
        b.iter(|| {
            let id = journal_id(rng.u64(..READ_JOURNALS));
            let index = rng.u64(..READ_ENTRIES);
            let journal = snapshot.journal(&id).unwrap();
            black_box(journal.entry(index).unwrap().unwrap().len())
        })
    });
    group.finish();
}

/// Trim, truncate and delete, each as its own durable batch (SyncMode::Always,
/// like an application would issue them) and buffered (SyncMode::Never, the
/// engine's own cost). Each iteration acts on a fresh 16-entry journal made
/// in untimed setup.
fn bench_removals(c: &mut Criterion) {
    let mut group = c.benchmark_group("remove");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (sync_name, sync) in [("always", SyncMode::Always), ("never", SyncMode::Never)] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), options(sync)).unwrap();
        let entry = [7u8; 256];
        let mut next = 0u64;
        let mut make = || {
            next += 1;
            let id = journal_id(next);
            let mut wb = WriteBatch::new();
            wb.set_metadata(&id, b"meta");
            for _ in 0..16 {
                wb.append(&id, &entry);
            }
            store.write(&wb).unwrap();
            id
        };
        type Op = fn(&mut WriteBatch, &[u8]);
        let ops: [(&str, Op); 3] = [
            ("trim_prefix", |wb, id| {
                wb.trim_prefix(id, 8);
            }),
            ("truncate", |wb, id| {
                wb.truncate(id, 8);
            }),
            ("delete", |wb, id| {
                wb.delete_journal(id);
            }),
        ];
        for (op_name, op) in ops {
            group.bench_function(format!("{op_name}/{sync_name}"), |b| {
                b.iter_batched(
                    &mut make,
                    |id| {
                        let mut wb = WriteBatch::new();
                        op(&mut wb, &id);
                        store.write(&wb).unwrap()
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();
}

/// `Store::compact` on a store of 4 MiB segments holding 64 MiB of which
/// every other journal was deleted (each sealed segment about half live, so
/// every one is rewritten). Setup (untimed) builds a fresh store each time.
fn bench_compaction(c: &mut Criterion) {
    const SEGMENT: u64 = 4 << 20;
    const TOTAL: u64 = 64 << 20;
    const ENTRY: usize = 4096;
    let mut group = c.benchmark_group("compaction");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(TOTAL / 2));
    group.bench_function("half_live_64mib", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(
                    dir.path(),
                    Options {
                        sync: SyncMode::Never,
                        segment_size: SEGMENT,
                        background_compaction: false,
                        ..Options::default()
                    },
                )
                .unwrap();
                let entry = vec![1u8; ENTRY];
                let journals = 64u64;
                let per_journal = TOTAL / ENTRY as u64 / journals;
                let mut wb = WriteBatch::new();
                for _ in 0..per_journal {
                    wb.clear();
                    for j in 0..journals {
                        wb.append(&journal_id(j), &entry);
                    }
                    store.write(&wb).unwrap();
                }
                wb.clear();
                for j in (0..journals).step_by(2) {
                    wb.delete_journal(&journal_id(j));
                }
                store.write(&wb).unwrap();
                store.sync().unwrap();
                (dir, store)
            },
            |(dir, store)| {
                let report = store.compact().unwrap();
                black_box(report.bytes_copied);
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// `Store::open` of a cleanly closed store holding
/// `JOURNALSTORE_BENCH_OPEN_MIB` MiB (default 1024) in 1,000 journals of 4 KiB
/// entries: with no index checkpoint (full replay), with one covering
/// everything (what a clean close leaves by default), and with one
/// covering all but the last 32 MiB (the replay after a crash half-way
/// between two checkpoints with the default `index_checkpoint_bytes`,
/// without the torn-tail check a crash adds). The files are in the page
/// cache (they were just written), so this measures recovery's CPU work
/// (scanning and checking records, rebuilding the index), not cold-disk
/// reads.
fn bench_open(c: &mut Criterion) {
    const ENTRY: usize = 4096;
    let mib: u64 = std::env::var("JOURNALSTORE_BENCH_OPEN_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let fixture = OnceCell::new();
    let with_checkpoint = OnceCell::new();
    let with_checkpoint_behind = OnceCell::new();
    // `checkpoint_behind`: an explicit index checkpoint this many MiB
    // before the end.
    let build = |index_checkpoint_bytes: Option<u64>, checkpoint_behind: Option<u64>| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            dir.path(),
            Options {
                sync: SyncMode::Never,
                background_compaction: false,
                // Some: an index checkpoint at close (none before: the
                // interval is beyond the data written).
                index_checkpoint_bytes,
                ..Options::default()
            },
        )
        .unwrap();
        let entry = vec![3u8; ENTRY];
        let batches = (mib << 20) / (ENTRY as u64 * 64);
        let checkpoint_at = checkpoint_behind
            .map(|behind| batches.saturating_sub((behind << 20) / (ENTRY as u64 * 64)));
        let mut wb = WriteBatch::new();
        for n in 0..batches {
            if checkpoint_at == Some(n) {
                store.write_index_checkpoint().unwrap();
            }
            wb.clear();
            for k in 0..64 {
                wb.append(&journal_id((n * 64 + k) % 1000), &entry);
            }
            store.write(&wb).unwrap();
        }
        store.close().unwrap();
        dir
    };
    let mut group = c.benchmark_group("open");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Bytes(mib << 20));
    // The same store closed without and with an index checkpoint: from
    // one, open loads it and replays only what follows it. The timed opens
    // write no checkpoint at close (`None`), so every iteration opens the
    // same state.
    let cases = [
        (format!("{mib}mib"), &fixture, None, None),
        (
            format!("{mib}mib_from_index_checkpoint"),
            &with_checkpoint,
            Some(u64::MAX),
            None,
        ),
        (
            format!("{mib}mib_from_index_checkpoint_32mib_behind"),
            &with_checkpoint_behind,
            None,
            Some(32),
        ),
    ];
    for (name, cell, index_checkpoint_bytes, behind) in cases {
        group.bench_function(name, |b| {
            let dir = cell.get_or_init(|| build(index_checkpoint_bytes, behind));
            b.iter(|| {
                let store = Store::open(
                    dir.path(),
                    Options {
                        background_compaction: false,
                        index_checkpoint_bytes: None,
                        ..Options::default()
                    },
                )
                .unwrap();
                black_box(store.stats().journals);
                drop(store);
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_append,
    bench_reads,
    bench_cold_reads,
    bench_removals,
    bench_compaction,
    bench_open
);
criterion_main!(benches);
