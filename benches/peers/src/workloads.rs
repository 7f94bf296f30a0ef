//! The six workloads, each run inside a child process (`--child WORKLOAD
//! ENGINE DIR [ARG]`, see [`run`]). A workload prints its results on
//! stdout as `metric\tvalue\tunit` lines ([`emit`]); the parent collects
//! them (`report.rs`).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::engines::raw::RawFile;
use crate::engines::{self, Engine, Op};
use crate::sys::{disk_bytes, peak_rss};
use crate::Res;

/// Runs inside a child: `--child WORKLOAD ENGINE DIR [ARG]`.
pub fn run(args: &[String]) -> Res<()> {
    let (workload, engine, dir) = (&args[0], &args[1], Path::new(&args[2]));
    match workload.as_str() {
        "durable" => append_workload(engine, dir, true, args[3].parse()?, APPEND_ENTRY),
        "durable-64k" => append_workload(engine, dir, true, args[3].parse()?, APPEND_ENTRY_LARGE),
        "buffered" => append_workload(engine, dir, false, args[3].parse()?, APPEND_ENTRY),
        "read" => read_workload(engine, dir),
        "point" => point_workload(engine, dir),
        "churn" => churn_workload(engine, dir, CHURN_SLOTS),
        "churn-small" => churn_workload(engine, dir, CHURN_SLOTS_SMALL),
        "fill" => recovery_fill(engine, dir, false),
        "fill-kill" => recovery_fill(engine, dir, true),
        "open" => recovery_open(engine, dir),
        "raft-groups" => raft_groups_workload(engine, dir, args[3].parse()?),
        other => Err(format!("unknown workload {other}").into()),
    }
}

/// A seeded generator: the same workload on every run, one per thread.
struct Rng(fastrand::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.u64(..)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0.u64(lo..hi)
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

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("PEERS_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3.0),
    )
}

pub fn emit(metric: &str, value: f64, unit: &str) {
    println!("{metric}\t{value}\t{unit}");
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64
}

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
        Some(engines::open(engine, dir, durable)?)
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
                // Raw baseline: one preallocated 16 MiB file per thread.
                let mut raw_file = if raw {
                    Some(RawFile::create(dir, t)?)
                } else {
                    None
                };
                let mut rng = Rng::new(t + 7);
                barrier.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let entry = pool.slice(&mut rng, entry_len);
                    let start = Instant::now();
                    if let Some(f) = &mut raw_file {
                        f.write(entry, durable)?;
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

/// Workload 6: the size of one Raft log entry (a small command).
const RAFT_ENTRY: usize = 128;

/// Workload 6: `groups` Raft groups in one store, each with its own writer
/// thread appending one `RAFT_ENTRY`-byte entry at a time to its log and
/// waiting for it to be durable ([`Engine::append_raft`]), for `secs()`.
fn raft_groups_workload(engine: &str, dir: &Path, groups: u64) -> Res<()> {
    let e = engines::open(engine, dir, true)?;
    let pool = Pool::new();
    let barrier = Barrier::new(groups as usize + 1);
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let mut latencies: Vec<u64> = Vec::new();
    let elapsed = std::thread::scope(|s| -> Res<Duration> {
        let mut handles = Vec::new();
        for g in 0..groups {
            let (e, barrier, stop, ops, pool) = (&e, &barrier, &stop, &ops, &pool);
            handles.push(s.spawn(move || -> Res<Vec<u64>> {
                let mut lat = Vec::new();
                let mut rng = Rng::new(g + 11);
                barrier.wait();
                // Raft logs start at index 1.
                let mut index = 1;
                while !stop.load(Ordering::Relaxed) {
                    let entry = pool.slice(&mut rng, RAFT_ENTRY);
                    let start = Instant::now();
                    e.append_raft(g + 1, index, entry)?;
                    lat.push(start.elapsed().as_nanos() as u64);
                    index += 1;
                }
                ops.fetch_add(index - 1, Ordering::Relaxed);
                Ok(lat)
            }));
        }
        barrier.wait();
        let start = Instant::now();
        std::thread::sleep(secs());
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
        n * RAFT_ENTRY as f64 / elapsed.as_secs_f64() / (1 << 20) as f64,
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

/// Workload 3's data: 10,000 journals x 20 entries x 512 B (plus metadata)
/// loaded buffered and synced; emits the load time.
fn read_load(engine: &str, dir: &Path) -> Res<Box<dyn Engine>> {
    let e = engines::open(engine, dir, false)?;
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
    Ok(e)
}

/// Workload 3's readers: 2 threads call `read` (one read, checked) with
/// their own generator for `secs()`; returns the reads done and the
/// seconds taken.
fn read_threads(
    e: &dyn Engine,
    read: impl Fn(&dyn Engine, &mut Rng) -> Res<()> + Sync,
) -> Res<(f64, f64)> {
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> Res<()> {
        let mut handles = Vec::new();
        for t in 0..2u64 {
            let (stop, reads, read) = (&stop, &reads, &read);
            handles.push(s.spawn(move || -> Res<()> {
                let mut rng = Rng::new(t + 1);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    read(e, &mut rng)?;
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
    Ok((
        reads.load(Ordering::Relaxed) as f64,
        start.elapsed().as_secs_f64(),
    ))
}

/// Workload 3, snapshot read: on [`read_load`]'s data, 2 threads read
/// random journals whole (metadata + all entries) through a fresh snapshot
/// each, for `secs()`.
fn read_workload(engine: &str, dir: &Path) -> Res<()> {
    let e = read_load(engine, dir)?;
    let expected = META.len() as u64 + READ_ENTRIES * READ_ENTRY as u64;
    let (n, secs) = read_threads(&*e, |e, rng| {
        let got = e.read_journal(rng.range(0, READ_JOURNALS))?;
        if got != expected {
            return Err(format!("read {got} bytes, expected {expected}").into());
        }
        Ok(())
    })?;
    emit("journals_per_s", n / secs, "journal/s");
    emit_read_figures(dir, n * expected as f64 / secs);
    Ok(())
}

/// The figures both read workloads report besides their rate: bytes read
/// per second, disk use and peak RSS.
fn emit_read_figures(dir: &Path, bytes_per_s: f64) {
    emit("mib_per_s", bytes_per_s / (1 << 20) as f64, "MiB/s");
    emit("disk_mib", disk_bytes(dir) as f64 / (1 << 20) as f64, "MiB");
    emit("peak_rss_mib", peak_rss() as f64 / (1 << 20) as f64, "MiB");
}

/// Workload 3, point read: on [`read_load`]'s data, 2 threads read one
/// entry at a time (a random entry of a random journal, through a fresh
/// snapshot or read transaction where the engine's reads take one), for
/// `secs()`.
fn point_workload(engine: &str, dir: &Path) -> Res<()> {
    let e = read_load(engine, dir)?;
    let expected = READ_ENTRY as u64;
    let (n, secs) = read_threads(&*e, |e, rng| {
        let (journal, index) = (rng.range(0, READ_JOURNALS), rng.range(0, READ_ENTRIES));
        let got = e.read_entry(journal, index)?;
        if got != expected {
            return Err(format!(
                "entry {index} of journal {journal}: read {got} bytes, expected {expected}"
            )
            .into());
        }
        Ok(())
    })?;
    emit("reads_per_s", n / secs, "read/s");
    emit_read_figures(dir, n * expected as f64 / secs);
    Ok(())
}

/// Workload 4: churn, 4 threads, buffered. Each thread keeps 64 journal
/// slots; a step picks a slot: an empty slot starts a journal (metadata);
/// a growing one gets one 100 B-4 KiB entry plus a metadata update in one
/// batch until it reaches its target of 5-50 entries; then 10% are reset
/// (truncated to a random earlier entry, with a new target) and the rest
/// are deleted. Reports batches/s, disk bytes / live bytes at the end, and
/// peak memory.
/// Journal slots per churn thread: about 9 MiB live in all.
const CHURN_SLOTS: usize = 64;
/// Journal slots per thread of the small-live-set churn: about 2 MiB live.
const CHURN_SLOTS_SMALL: usize = 16;

fn churn_workload(engine: &str, dir: &Path, slots: usize) -> Res<()> {
    const THREADS: u64 = 4;
    let e = engines::open(engine, dir, false)?;
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
                let mut slots: Vec<Option<Slot>> = (0..slots).map(|_| None).collect();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let k = rng.range(0, slots.len() as u64) as usize;
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
    // What the store leaves on disk once closed (its close may tidy up).
    drop(e);
    emit(
        "disk_over_live_after_close",
        disk_bytes(dir) as f64 / live as f64,
        "x",
    );
    emit("peak_rss_mib", peak_rss() as f64 / (1 << 20) as f64, "MiB");
    Ok(())
}

/// Workload 5 writer: fills the store with `PEERS_RECOVERY_MIB` MiB (default
/// 256) of 4 KiB entries over 1,000 journals, buffered, then syncs. With
/// `kill`, it prints `ready` and goes on writing until the parent SIGKILLs
/// it; otherwise it closes cleanly.
fn recovery_fill(engine: &str, dir: &Path, kill: bool) -> Res<()> {
    let mib = env_u64("PEERS_RECOVERY_MIB", 256);
    let e = engines::open(engine, dir, false)?;
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
/// the engine has done whatever it defers to first use. The headline
/// `open_s` covers both; `open_only_s` and `open_rss_mib` are the open
/// call's alone (the journal read grows with `PEERS_RECOVERY_MIB`: 1,000
/// journals share the data).
fn recovery_open(engine: &str, dir: &Path) -> Res<()> {
    let start = Instant::now();
    let e = engines::open(engine, dir, false)?;
    let open_secs = start.elapsed().as_secs_f64();
    let open_rss = peak_rss();
    let bytes = e.read_journal(1)?;
    let secs = start.elapsed().as_secs_f64();
    if bytes == 0 {
        return Err("journal 1 empty after recovery".into());
    }
    emit("open_s", secs, "s");
    emit("open_only_s", open_secs, "s");
    emit("open_rss_mib", open_rss as f64 / (1 << 20) as f64, "MiB");
    emit("peak_rss_mib", peak_rss() as f64 / (1 << 20) as f64, "MiB");
    Ok(())
}
