//! The durable-execution workload against a real store, with its own checks.
//!
//! Run: `cargo run --release --example demo [seconds] [--keep DIR]`
//! (default 3 s; the store is in a temporary directory removed at exit,
//! unless `--keep DIR` keeps it in DIR; `--help` says so).
//!
//! Writer threads each own a set of invocations (journals). Every batch
//! appends entries with `append_at` and, in the same batch, sets the journal's
//! metadata to its new length and a digest of its contents. Sometimes an
//! invocation is reset (truncate to an earlier entry, append under a new
//! incarnation, metadata update: one batch); finished invocations are kept
//! for a while and then deleted, so old segments empty out and are freed.
//! Reader threads take snapshots and check that metadata, `len()` and the
//! entries they iterate always agree, and that every entry is byte for byte
//! what its writer writes for that index and incarnation: a read that mixes
//! two points in time fails the check. At the end the store is closed,
//! reopened, and compared with what the writers recorded.
//!
//! Exits with status 1 if any check fails. Uses only the public API.

use std::collections::{BTreeMap, VecDeque};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use journalstore::{DisplayChain, Options, Snapshot, Stats, Store, SyncMode, WriteBatch};

const WRITERS: usize = 4;
const READERS: usize = 2;
/// Invocations each writer keeps in progress at a time.
const OPEN_PER_WRITER: usize = 6;
/// Resets one invocation may go through.
const MAX_RESETS: u32 = 3;
/// Finished invocations each writer keeps before deleting the oldest.
const RETAINED_PER_WRITER: usize = 50;
/// Upper bound on batches per writer, so the run ends even on a fast machine.
const MAX_BATCHES_PER_WRITER: u64 = 500_000;
const SEGMENT_SIZE: u64 = 8 << 20;

/// SplitMix64's finalizer: mixes the bits of a 64-bit value (the journal
/// digests).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    })
}

/// The entry a writer writes at `index` of `journal` under `incarnation`:
/// a readable header, then 64..1024 bytes derived from all three.
fn entry_bytes(journal: &str, index: u64, incarnation: u32) -> Vec<u8> {
    let mut out = format!("{journal}#{index}@{incarnation}|").into_bytes();
    let seed = fnv(&out);
    let len = 64 + (seed % 960) as usize;
    let mut rng = fastrand::Rng::with_seed(seed);
    while out.len() < len {
        out.extend_from_slice(&rng.u64(..).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Folds one entry's incarnation into a journal digest.
fn digest_step(digest: u64, incarnation: u32) -> u64 {
    mix(digest ^ u64::from(incarnation).wrapping_add(0x5151))
}

const DIGEST_SEED: u64 = 0x0D16_E575;

fn metadata_text(len: u64, incarnation: u32, digest: u64) -> String {
    format!("len={len} inc={incarnation} digest={digest:016x}")
}

/// One invocation as its writer knows it.
#[derive(Clone, Debug)]
struct Invocation {
    id: String,
    /// Incarnation that wrote each entry, by index.
    incs: Vec<u32>,
    /// `digests[i]` is the digest of entries `0..i`.
    digests: Vec<u64>,
    incarnation: u32,
    target_len: u64,
    resets: u32,
}

impl Invocation {
    fn new(id: String, rng: &mut fastrand::Rng) -> Invocation {
        Invocation {
            id,
            incs: Vec::new(),
            digests: vec![DIGEST_SEED],
            incarnation: 0,
            target_len: 8 + rng.u64(..57),
            resets: 0,
        }
    }
    fn len(&self) -> u64 {
        self.incs.len() as u64
    }
    fn metadata(&self) -> String {
        metadata_text(self.len(), self.incarnation, self.digests[self.incs.len()])
    }
    /// Adds an append of the next entry to `batch`; returns its size.
    fn append(&mut self, batch: &mut WriteBatch) -> u64 {
        let index = self.len();
        let bytes = entry_bytes(&self.id, index, self.incarnation);
        batch.append_at(self.id.as_bytes(), index, &bytes);
        let last = self.digests[self.incs.len()];
        self.incs.push(self.incarnation);
        self.digests.push(digest_step(last, self.incarnation));
        bytes.len() as u64
    }
    /// Drops entries `to..` (the writer's half of `truncate`).
    fn reset_to(&mut self, to: u64) {
        self.incs.truncate(to as usize);
        self.digests.truncate(to as usize + 1);
        self.incarnation += 1;
        self.resets += 1;
    }
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    started: AtomicU64,
    resets: AtomicU64,
    deleted: AtomicU64,
    finished: AtomicU64,
    reads: AtomicU64,
    entries_read: AtomicU64,
    held_rechecks: AtomicU64,
}

/// Shared between threads: the stop flag and the first failures.
struct Run {
    stop: AtomicBool,
    failures: Mutex<Vec<String>>,
    counters: Counters,
}

impl Run {
    fn fail(&self, message: String) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() < 10 {
            failures.push(message);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One writer: returns the journals it leaves behind (id -> entry incarnations).
fn writer(store: &Store, run: &Run, w: usize) -> BTreeMap<String, Invocation> {
    let mut rng = fastrand::Rng::with_seed(0xA11CE + w as u64);
    let mut next_id = 0u64;
    let mut new_invocation = |rng: &mut fastrand::Rng| {
        next_id += 1;
        Invocation::new(format!("w{w}-inv-{next_id:06}"), rng)
    };
    let mut open: Vec<Invocation> = (0..OPEN_PER_WRITER)
        .map(|_| new_invocation(&mut rng))
        .collect();
    let mut retained = VecDeque::new();
    let c = &run.counters;
    c.started.fetch_add(open.len() as u64, Ordering::Relaxed);
    let mut batch = WriteBatch::new();
    for _ in 0..MAX_BATCHES_PER_WRITER {
        if run.stopped() {
            break;
        }
        batch.clear();
        let slot = rng.usize(..open.len());
        let inv = &mut open[slot];
        let mut bytes = 0;
        let mut entries = 0;
        if inv.len() >= inv.target_len {
            // Finished: kept for a while (retention), then deleted.
            let finished = std::mem::replace(inv, new_invocation(&mut rng));
            c.started.fetch_add(1, Ordering::Relaxed);
            c.finished.fetch_add(1, Ordering::Relaxed);
            retained.push_back(finished);
            if retained.len() <= RETAINED_PER_WRITER {
                continue;
            }
            let Some(oldest) = retained.pop_front() else {
                continue;
            };
            batch.delete_journal(oldest.id.as_bytes());
            c.deleted.fetch_add(1, Ordering::Relaxed);
        } else {
            if inv.len() > 2 && inv.resets < MAX_RESETS && rng.u64(..12) == 0 {
                // Reset: drop a suffix and go on under a new incarnation.
                let to = rng.u64(..inv.len());
                batch.truncate(inv.id.as_bytes(), to);
                inv.reset_to(to);
                c.resets.fetch_add(1, Ordering::Relaxed);
            }
            for _ in 0..1 + rng.u64(..3) {
                bytes += inv.append(&mut batch);
                entries += 1;
            }
            let meta = inv.metadata();
            batch.set_metadata(inv.id.as_bytes(), meta.as_bytes());
            bytes += meta.len() as u64;
        }
        if let Err(e) = store.write(&batch) {
            run.fail(format!("writer {w}: write failed: {}", DisplayChain(&e)));
            break;
        }
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.entries.fetch_add(entries, Ordering::Relaxed);
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    // An invocation started but not yet written to does not exist in the store.
    retained
        .into_iter()
        .chain(open.into_iter().filter(|inv| inv.len() > 0))
        .map(|inv| (inv.id.clone(), inv))
        .collect()
}

/// Checks one journal of `snap` on its own terms: metadata, `len()` and the
/// entries must describe the same state, and every entry must be exactly
/// what its writer writes. Returns the number of entries read.
fn verify_journal(snap: &Snapshot, id: &[u8]) -> Result<u64, String> {
    let name = String::from_utf8_lossy(id).into_owned();
    let journal = snap
        .journal(id)
        .ok_or_else(|| format!("{name}: listed by journal_ids but not found"))?;
    let meta = journal
        .metadata()
        .map_err(|e| format!("{name}: metadata: {}", DisplayChain(&e)))?
        .ok_or_else(|| format!("{name}: metadata missing"))?;
    let meta = std::str::from_utf8(meta).map_err(|_| format!("{name}: metadata not UTF-8"))?;
    let (len, digest) = parse_metadata(meta).ok_or_else(|| format!("{name}: metadata {meta:?}"))?;
    if journal.len() != len || journal.first_index() != 0 || journal.end_index() != len {
        return Err(format!(
            "{name}: metadata says len={len} but the journal holds {}..{} (read skew)",
            journal.first_index(),
            journal.end_index()
        ));
    }
    let mut seen = 0u64;
    let mut computed = DIGEST_SEED;
    for item in journal.entries(..) {
        let (index, bytes) = item.map_err(|e| format!("{name}: entry: {}", DisplayChain(&e)))?;
        let incarnation = parse_entry(bytes, &name, index)
            .ok_or_else(|| format!("{name}: entry {index} has a foreign header"))?;
        if bytes != entry_bytes(&name, index, incarnation) {
            return Err(format!("{name}: entry {index} bytes differ"));
        }
        if index != seen {
            return Err(format!("{name}: iteration gave {index}, expected {seen}"));
        }
        computed = digest_step(computed, incarnation);
        seen += 1;
    }
    if seen != len || computed != digest {
        return Err(format!(
            "{name}: {seen} entries with digest {computed:016x}, metadata says {meta} (read skew)"
        ));
    }
    if len > 0 {
        let last = journal
            .entry(len - 1)
            .map_err(|e| format!("{name}: entry: {}", DisplayChain(&e)))?;
        let first_past = journal
            .entry(len)
            .map_err(|e| format!("{name}: entry: {}", DisplayChain(&e)))?;
        if last.is_none() || first_past.is_some() {
            return Err(format!("{name}: entry() disagrees with len {len}"));
        }
    }
    Ok(seen)
}

fn parse_metadata(meta: &str) -> Option<(u64, u64)> {
    let mut parts = meta.split(' ');
    let len = parts.next()?.strip_prefix("len=")?.parse().ok()?;
    parts.next()?.strip_prefix("inc=")?;
    let digest = u64::from_str_radix(parts.next()?.strip_prefix("digest=")?, 16).ok()?;
    Some((len, digest))
}

/// The incarnation in an entry's header, if the header names this journal
/// and index.
fn parse_entry(bytes: &[u8], journal: &str, index: u64) -> Option<u32> {
    let bar = bytes.iter().position(|&b| b == b'|')?;
    let header = std::str::from_utf8(&bytes[..bar]).ok()?;
    let (who, inc) = header.rsplit_once('@')?;
    if who != format!("{journal}#{index}") {
        return None;
    }
    inc.parse().ok()
}

/// One reader: verifies a few journals of fresh snapshots, and now and then
/// re-verifies an older snapshot held across many writes.
fn reader(store: &Store, run: &Run, r: usize) {
    let mut rng = fastrand::Rng::with_seed(0xBEEF + r as u64);
    let c = &run.counters;
    let mut held: Option<(Snapshot, Instant)> = None;
    let mut last_lsn = 0;
    while !run.stopped() {
        let snap = store.snapshot();
        if snap.lsn() < last_lsn {
            run.fail(format!("reader {r}: snapshot LSN went back"));
            return;
        }
        last_lsn = snap.lsn();
        if let Err(e) = verify_sample(&snap, &mut rng, c) {
            run.fail(format!("reader {r}: {e}"));
            return;
        }
        match &held {
            Some((old, since)) if since.elapsed() > Duration::from_millis(200) => {
                if let Err(e) = verify_sample(old, &mut rng, c) {
                    run.fail(format!("reader {r} (held snapshot): {e}"));
                    return;
                }
                c.held_rechecks.fetch_add(1, Ordering::Relaxed);
                if since.elapsed() > Duration::from_secs(1) {
                    held = Some((snap, Instant::now()));
                }
            }
            Some(_) => {}
            None => held = Some((snap, Instant::now())),
        }
    }
}

fn verify_sample(snap: &Snapshot, rng: &mut fastrand::Rng, c: &Counters) -> Result<(), String> {
    let ids: Vec<&[u8]> = snap.journal_ids().collect();
    if ids.len() != snap.journal_count() {
        return Err("journal_ids and journal_count disagree".into());
    }
    for _ in 0..ids.len().min(4) {
        let id = ids[rng.usize(..ids.len())];
        let n = verify_journal(snap, id)?;
        c.reads.fetch_add(1, Ordering::Relaxed);
        c.entries_read.fetch_add(n, Ordering::Relaxed);
    }
    Ok(())
}

/// Compares a snapshot with the writers' final records, journal by journal.
fn verify_final(snap: &Snapshot, expected: &BTreeMap<String, Invocation>) -> Result<(), String> {
    let ids: Vec<String> = snap
        .journal_ids()
        .map(|id| String::from_utf8_lossy(id).into_owned())
        .collect();
    if ids.len() != expected.len() || !ids.iter().eq(expected.keys()) {
        return Err(format!(
            "store holds {} journals, the writers recorded {}",
            ids.len(),
            expected.len()
        ));
    }
    for (id, inv) in expected {
        let journal = snap
            .journal(id.as_bytes())
            .ok_or(format!("{id}: missing"))?;
        let meta = journal
            .metadata()
            .map_err(|e| format!("{id}: {}", DisplayChain(&e)))?;
        if meta != Some(inv.metadata().as_bytes()) || journal.len() != inv.len() {
            return Err(format!(
                "{id}: metadata or length differs from the writer's"
            ));
        }
        for (i, item) in journal.entries(..).enumerate() {
            let (index, bytes) = item.map_err(|e| format!("{id}: {}", DisplayChain(&e)))?;
            if index != i as u64 || bytes != entry_bytes(id, index, inv.incs[i]) {
                return Err(format!("{id}: entry {index} differs from the writer's"));
            }
        }
    }
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn print_stats(label: &str, s: &Stats) {
    println!(
        "{label:<13} generation {}, lsn {}, segments {}, on disk {:.1} MB, written {:.1} MB, live {:.1} MB, journals {}, pinned snapshots {}",
        s.generation,
        s.lsn,
        s.segments,
        mb(s.bytes_on_disk),
        mb(s.bytes_written),
        mb(s.live_bytes),
        s.journals,
        s.pinned_snapshots
    );
}

/// Whether `dir` is a directory the user gave (`--keep`), not one inside
/// the temporary directory.
fn keep_dir_given(dir: &std::path::Path, tmp: &tempfile::TempDir) -> bool {
    !dir.starts_with(tmp.path())
}

const USAGE: &str = "usage: demo [seconds] [--keep DIR]";

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!(
            "{USAGE}\n\n\
             Runs {WRITERS} writers and {READERS} readers against one store for SECONDS \
             (default 3), checking every read,\n\
             then compacts, closes, reopens and checks the final state.\n\n\
             The store lives in a temporary directory that is removed at exit, unless\n\
             --keep DIR is given: then it is written to DIR (which must not hold a store\n\
             yet) and left there, e.g. for `journal-dump summary DIR`."
        );
        return ExitCode::SUCCESS;
    }
    match demo() {
        Ok(()) => {
            println!("OK: every check passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<(), String> {
    let usage = USAGE;
    let mut secs = 3.0;
    let mut keep: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--keep" {
            let dir = args
                .next()
                .ok_or_else(|| format!("{usage}: --keep needs a directory"))?;
            keep = Some(dir.into());
        } else {
            secs = a.parse().map_err(|_| format!("{usage}, got {a:?}"))?;
        }
    }
    // By default the store lives in a temporary directory removed at exit;
    // `--keep DIR` puts it in DIR (which must not hold a store yet) and
    // leaves it there, e.g. for `journal-dump`.
    let tmp =
        tempfile::tempdir().map_err(|e| format!("temporary directory: {}", DisplayChain(&e)))?;
    let dir = match keep {
        Some(dir) if dir.join("MANIFEST").exists() => {
            return Err(format!(
                "--keep {}: already holds a store; give a new directory",
                dir.display()
            ))
        }
        Some(dir) => dir,
        None => tmp.path().join("store"),
    };
    let options = || Options {
        sync: SyncMode::Always,
        segment_size: SEGMENT_SIZE,
        ..Options::default()
    };
    println!(
        "journalstore demo: {WRITERS} writers, {READERS} readers, {secs} s, SyncMode::Always (group commit), {} MiB segments",
        SEGMENT_SIZE >> 20
    );
    if keep_dir_given(&dir, &tmp) {
        println!("store directory: {} (kept after exit)", dir.display());
    } else {
        println!(
            "store directory: {} (temporary: removed at exit; --keep DIR keeps the store)",
            dir.display()
        );
    }
    let store = Store::open(&dir, options()).map_err(|e| format!("open: {}", DisplayChain(&e)))?;
    let run = Run {
        stop: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
        counters: Counters::default(),
    };

    let started = Instant::now();
    let mut peak = (0usize, 0usize);
    let mut oldest_pin = Duration::ZERO;
    let mut peak_pinned_only = 0u64;
    let expected: BTreeMap<String, Invocation> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                s.spawn({
                    let (store, run) = (&store, &run);
                    move || writer(store, run, w)
                })
            })
            .collect();
        for r in 0..READERS {
            let (store, run) = (&store, &run);
            s.spawn(move || reader(store, run, r));
        }
        // Watch the run; stop it after `secs`.
        while started.elapsed().as_secs_f64() < secs && !run.stopped() {
            std::thread::sleep(Duration::from_millis(50));
            let st = store.stats();
            peak = (peak.0.max(st.segments), peak.1.max(st.pinned_snapshots));
            if let Some(age) = st.oldest_pinned_age {
                oldest_pin = oldest_pin.max(age);
            }
            peak_pinned_only = peak_pinned_only.max(st.pinned_only_bytes);
            if writers.iter().all(|h| h.is_finished()) {
                break;
            }
        }
        run.stop.store(true, Ordering::SeqCst);
        let mut all = BTreeMap::new();
        for h in writers {
            match h.join() {
                Ok(journals) => all.extend(journals),
                Err(_) => run.fail("a writer panicked".into()),
            }
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(first) = run
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first()
    {
        return Err(first.clone());
    }

    let c = &run.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (batches, bytes) = (get(&c.batches), get(&c.bytes));
    println!(
        "wrote         {batches} batches, {} entries, {:.1} MB (entry + metadata bytes) in {elapsed:.2} s",
        get(&c.entries),
        mb(bytes)
    );
    println!(
        "throughput    {:.0} batches/s, {:.1} MB/s, every batch fdatasync'ed before write() returned",
        batches as f64 / elapsed,
        mb(bytes) / elapsed
    );
    println!(
        "journals      {} started, {} resets, {} finished, {} deleted after retention, {} left at the end",
        get(&c.started),
        get(&c.resets),
        get(&c.finished),
        get(&c.deleted),
        expected.len()
    );
    println!(
        "reads         {} journals verified ({} entries), {} re-checks of snapshots held >200 ms, 0 mismatches",
        get(&c.reads),
        get(&c.entries_read),
        get(&c.held_rechecks)
    );
    println!(
        "peak          {} segments, {} pinned snapshots, oldest pinned {:.0} ms, {:.1} MB kept only by pins (sampled every 50 ms)",
        peak.0,
        peak.1,
        oldest_pin.as_secs_f64() * 1e3,
        mb(peak_pinned_only)
    );
    // What background compaction did during the run, then one explicit
    // pass: each figure counts what happened, zero included.
    let during = store.stats();
    let compaction = store
        .compact()
        .map_err(|e| format!("compact: {}", DisplayChain(&e)))?;
    println!(
        "compaction    during the run: {} runs, {:.1} MB copied; final compact(): {} runs, {} segments rewritten, {:.1} MB copied, {:.1} MB released, longest writer pause {:.1} ms",
        during.compaction_runs,
        mb(during.compaction_bytes_copied),
        compaction.runs,
        compaction.segments_rewritten,
        mb(compaction.bytes_copied),
        mb(compaction.bytes_released),
        compaction.max_pause.as_secs_f64() * 1e3
    );

    let last = store.snapshot();
    verify_final(&last, &expected).map_err(|e| format!("before close: {e}"))?;
    drop(last);
    print_stats("before close", &store.stats());
    store
        .close()
        .map_err(|e| format!("close: {}", DisplayChain(&e)))?;

    let t = Instant::now();
    let store =
        Store::open(&dir, options()).map_err(|e| format!("reopen: {}", DisplayChain(&e)))?;
    let reopen = t.elapsed();
    let snap = store.snapshot();
    verify_final(&snap, &expected).map_err(|e| format!("after reopen: {e}"))?;
    drop(snap);
    print_stats("after reopen", &store.stats());
    println!(
        "reopen        {:.1} ms; all {} journals match what the writers recorded",
        reopen.as_secs_f64() * 1e3,
        expected.len()
    );
    store
        .close()
        .map_err(|e| format!("close: {}", DisplayChain(&e)))?;
    Ok(())
}
