//! Churn test: space stays bounded while thousands of journals come and go.
//!
//! Two writer threads create journals, append to them, reset them (truncate
//! to an earlier entry), trim them and delete them in random interleaving,
//! thousands of journals over the run, beside a few long-lived journals that
//! are filled at the start (so they sit in the oldest segments) and then
//! slowly appended to and trimmed. Every batch also sets the journal's
//! metadata to a digest of its new state, and two reader threads verify that
//! every snapshot they take (and some they hold for a while) agrees with it.
//!
//! With 128 KiB segments the store rolls every few dozen batches. After a
//! warm-up, the main thread samples `Store::stats` and asserts that disk
//! usage stays within 1.5 times the live bytes plus two segments, with no
//! `Store::compact` call: the background compaction thread reclaims space,
//! and the write stall (writers that seal a segment help compaction while
//! the store is over `stall_space_amplification`) keeps the bound when the
//! thread falls behind. At the end the store is closed and reopened: it
//! holds exactly what the writers wrote, and the bound holds again.
//!
//! The bound must hold on a machine with slow syncs too: each compaction run
//! syncs several times, so there compaction alone falls behind the writers
//! (with syncs slowed to 5 ms and no write stall, the worst sample reaches
//! 2.01 x live). The second test slows every sync with `SimFs` and checks
//! that the stall keeps the bound.
//!
//! Steady state: the default run is about 3 turnovers of the live data;
//! `.ci/run` also runs `JOURNALSTORE_CHURN_BATCHES=40000` in release (about
//! 13 turnovers, 30 s). With `compaction_threshold` 0.5 alone, segments
//! between half and fully live were never rewritten and such long runs
//! drifted to 1.6-1.9 times the live bytes; `max_space_amplification`
//! (default 1.25) rewrites the oldest, emptiest of them too (worst sample
//! 1.42 over 120,000 batches a writer).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{digest, random_reset, random_trim, Rng, Tracked};
use journalstore::inspect;
use journalstore::io::SimFs;
use journalstore::{Journal, Options, Snapshot, Stats, Store, SyncMode, WriteBatch};

const SEGMENT: u64 = 128 << 10;
/// Writer threads.
const WRITERS: u64 = 2;
/// Short-lived journals each writer keeps around at a time (on average).
const POOL: usize = 200;
/// Long-lived journals per writer, and the entries each holds at most.
const LONG: u64 = 3;
const LONG_CAP: usize = 1500;
/// Largest entry; entries average half of it.
const MAX_ENTRY: usize = 600;
/// Bytes of records each writer aims to write per second: about two
/// segments per writer per 200 ms, a load the background thread (woken by
/// seals and by dead bytes) is meant to keep up with.
const WRITE_RATE: f64 = 1.2e6;
/// The part of the run before sampling starts.
const WARM_UP: Duration = Duration::from_secs(3);

/// Batches each writer writes after its long-lived journals are filled:
/// 9000 (about 10 s in a debug build), or `JOURNALSTORE_CHURN_BATCHES`. A
/// fixed amount of work, not of time, so a faster machine sees the same run.
fn batches() -> u64 {
    std::env::var("JOURNALSTORE_CHURN_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9000)
}

/// A cap on the run's wall time, in case the machine is very slow.
fn max_run(batches: u64) -> Duration {
    Duration::from_secs(30 * batches.div_ceil(9000))
}

/// Checks one journal of a snapshot against its own metadata.
fn verify(j: &Journal<'_>) -> u64 {
    let meta = std::str::from_utf8(j.metadata().unwrap().unwrap_or_default())
        .unwrap()
        .to_owned();
    let entries: Vec<Vec<u8>> = j.entries(..).map(|e| e.unwrap().1.to_vec()).collect();
    assert_eq!(entries.len() as u64, j.len());
    assert_eq!(
        meta,
        digest(j.first_index(), &entries),
        "read skew in {:?}",
        String::from_utf8_lossy(j.id())
    );
    entries.iter().map(|e| e.len() as u64).sum()
}

fn verify_all(snap: &Snapshot) -> u64 {
    snap.journal_ids()
        .map(|id| verify(&snap.journal(id).unwrap()))
        .sum()
}

/// The space bound this test guards, on the current generation's segment
/// files. Files that only pinned snapshots keep (`pinned_only_bytes`) are
/// not counted: they are the readers' to release (a host watches them
/// through `Store::stats`). Here each reader holds up to three snapshots
/// for up to about half a second while the writers append 2.4 MB/s and
/// compaction replaces segments: at the worst sample those files came to
/// about as much again as the live bytes (printed as "with pins": 2.50 x
/// live against 1.35 without, in one 40,000-batch run).
fn within_bound(s: &Stats) -> bool {
    within(s, 2.0)
}

/// `bytes_on_disk <= 1.5 x live_bytes + segments x SEGMENT`.
fn within(s: &Stats, segments: f64) -> bool {
    s.bytes_on_disk as f64 <= 1.5 * s.live_bytes as f64 + segments * SEGMENT as f64
}

fn options() -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: SEGMENT,
        ..Options::default()
    }
}

/// Appends 1 to `max_n` random entries to `id` in `batch` and to its model;
/// returns their bytes.
fn append(
    rng: &mut Rng,
    batch: &mut WriteBatch,
    id: &[u8],
    state: &mut Tracked,
    max_n: u64,
) -> usize {
    let mut bytes = 0;
    for _ in 0..1 + rng.below(max_n) {
        let e = rng.bytes(MAX_ENTRY);
        bytes += e.len();
        batch.append(id, &e);
        state.1.push(e);
    }
    bytes
}

/// One writer: churns its short-lived journals and tends its long-lived
/// ones for `batches` batches (or until `deadline`); returns its final
/// view of its journals and the number of journals it created.
fn writer(
    store: &Store,
    w: u64,
    deadline: Instant,
    rate: Option<f64>,
    batches: u64,
) -> (BTreeMap<Vec<u8>, Tracked>, u64) {
    let mut rng = Rng::new(w);
    let mut journals: BTreeMap<Vec<u8>, Tracked> = BTreeMap::new();
    let long_ids: Vec<Vec<u8>> = (0..LONG)
        .map(|k| format!("w{w}-long{k}").into_bytes())
        .collect();
    // The long-lived journals are filled first: they own the oldest segments.
    for id in &long_ids {
        let state = journals.entry(id.clone()).or_default();
        while state.1.len() < LONG_CAP {
            let mut batch = WriteBatch::new();
            append(&mut rng, &mut batch, id, state, 20);
            batch.set_metadata(id, digest(state.0, &state.1).as_bytes());
            store.write(&batch).unwrap();
        }
    }
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut created = 0u64;
    let started = Instant::now();
    let mut written = 0f64;
    for _ in 0..batches {
        if Instant::now() > deadline {
            break;
        }
        // Pace the writer (see WRITE_RATE); not an assertion.
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(written / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let mut batch = WriteBatch::new();
        let mut bytes = 0;
        let roll = rng.below(100);
        let id = if roll < 4 {
            // A long-lived journal: append, and trim its oldest entries
            // once it is over its cap (they sit in the oldest segments).
            let id = long_ids[rng.below(LONG) as usize].clone();
            let state = journals.get_mut(&id).unwrap();
            bytes += append(&mut rng, &mut batch, &id, state, 4);
            if state.1.len() > LONG_CAP {
                let drop_n = state.1.len() - LONG_CAP + rng.below(50) as usize;
                batch.trim_prefix(&id, state.0 + drop_n as u64);
                state.1.drain(..drop_n);
                state.0 += drop_n as u64;
            }
            id
        } else if pool.len() < POOL / 2 || (roll < 24 && pool.len() < 2 * POOL) {
            let id = format!("w{w}-c{created}").into_bytes();
            created += 1;
            let state = journals.entry(id.clone()).or_default();
            bytes += append(&mut rng, &mut batch, &id, state, 8);
            pool.push(id.clone());
            id
        } else {
            let k = rng.below(pool.len() as u64) as usize;
            let id = pool[k].clone();
            let state = journals.get_mut(&id).unwrap();
            match rng.below(100) {
                0..=44 => bytes += append(&mut rng, &mut batch, &id, state, 4),
                45..=64 => random_reset(&mut rng, &mut batch, &id, state),
                65..=74 => random_trim(&mut rng, &mut batch, &id, state),
                _ => {
                    batch.delete_journal(&id);
                    journals.remove(&id);
                    pool.swap_remove(k);
                    written += 64.0;
                    store.write(&batch).unwrap();
                    continue;
                }
            }
            id
        };
        let state = &journals[&id];
        batch.set_metadata(&id, digest(state.0, &state.1).as_bytes());
        // Rough size on disk (op headers, id, metadata), for pacing only.
        written += (bytes + batch.len() * 100) as f64;
        store.write(&batch).unwrap();
    }
    (journals, created)
}

/// Asserts that `snap` holds exactly the writers' journals.
fn assert_exact(snap: &Snapshot, expected: &BTreeMap<Vec<u8>, Tracked>, ctx: &str) {
    let ids: Vec<Vec<u8>> = snap.journal_ids().map(|i| i.to_vec()).collect();
    let want: Vec<Vec<u8>> = expected.keys().cloned().collect();
    assert_eq!(ids, want, "{ctx}: journal ids differ");
    for (id, (first, entries)) in expected {
        let j = snap.journal(id).unwrap();
        assert_eq!(j.first_index(), *first, "{ctx}: first index of {id:?}");
        let got: Vec<&[u8]> = j.entries(..).map(|e| e.unwrap().1).collect();
        assert_eq!(got.len(), entries.len(), "{ctx}: length of {id:?}");
        for (k, (g, e)) in got.iter().zip(entries).enumerate() {
            assert_eq!(*g, &e[..], "{ctx}: entry {} of {id:?}", *first + k as u64);
        }
        assert_eq!(
            j.metadata().unwrap(),
            Some(digest(*first, entries).as_bytes()),
            "{ctx}: metadata of {id:?}"
        );
    }
}

/// Where the bytes of a closed store's segments go: (written, live,
/// tombstone ops, record headers), summed over the manifest's segments.
fn breakdown(dir: &Path) -> (u64, u64, u64, u64) {
    let ro = inspect::open_read_only(dir).unwrap();
    let (mut tombstones, mut headers) = (0, 0);
    for seg in &ro.segments {
        let path = dir.join(inspect::segment_file_name_of(seg.id));
        let file = inspect::SegmentFile::read(&path).unwrap();
        for item in file.scan(64, Some(seg.written), false) {
            if let inspect::ScanItem::Record { ops, .. } = item {
                headers += 32;
                for op in ops {
                    if matches!(op.kind, "trim_prefix" | "truncate" | "delete_journal") {
                        tombstones += 32 + (op.journal.len() + op.value_len as usize) as u64;
                    }
                }
            }
        }
    }
    let written = ro.segments.iter().map(|s| s.written).sum();
    let live = ro.segments.iter().map(|s| s.live_bytes).sum();
    (written, live, tombstones, headers)
}

/// What one churn run saw.
struct Outcome {
    expected: BTreeMap<Vec<u8>, Tracked>,
    created: u64,
    reads: u64,
    samples: u64,
    worst: f64,
    /// The worst of (bytes_on_disk + pinned_only_bytes) / live_bytes.
    worst_with_pins: f64,
    violations: Vec<(Duration, Stats)>,
    /// The segments of slack the bound allows.
    slack_segments: f64,
}

/// Runs `writers` churning writers (paced at `rate` bytes per second each,
/// or as fast as they can) and two verifying readers on `store`, sampling
/// `Store::stats` against the bound every 25 ms after the warm-up.
/// Runs the workload and samples `Store::stats`; a sample is a violation
/// when it is over 1.5 x live plus `slack_segments` segments.
fn churn(
    store: &Arc<Store>,
    writers: u64,
    rate: Option<f64>,
    batches: u64,
    slack_segments: f64,
) -> Outcome {
    let start = Instant::now();
    let deadline = start + max_run(batches);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));

    let writer_threads: Vec<_> = (0..writers)
        .map(|w| {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let result = writer(&store, w, deadline, rate, batches);
                done.fetch_add(1, Ordering::Relaxed);
                result
            })
        })
        .collect();
    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (store, stop, reads) = (store.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(100 + r);
                let mut held: Vec<Snapshot> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let snap = store.snapshot();
                    verify_all(&snap);
                    reads.fetch_add(1, Ordering::Relaxed);
                    if rng.chance(20) {
                        held.push(snap);
                    }
                    if held.len() > 3 {
                        // An old snapshot, across rolls, frees and
                        // compactions, still shows one consistent moment.
                        let old = held.remove(rng.below(3) as usize);
                        verify_all(&old);
                    }
                }
            })
        })
        .collect();

    // Sample the space figures after the warm-up.
    let mut samples = 0;
    let mut violations: Vec<(Duration, Stats)> = Vec::new();
    let mut worst = 0f64;
    let mut worst_with_pins = 0f64;
    while done.load(Ordering::Relaxed) < writers {
        std::thread::sleep(Duration::from_millis(25));
        if start.elapsed() < WARM_UP {
            continue;
        }
        let s = store.stats();
        samples += 1;
        let live = s.live_bytes.max(1) as f64;
        worst = worst.max(s.bytes_on_disk as f64 / live);
        worst_with_pins =
            worst_with_pins.max((s.bytes_on_disk + s.pinned_only_bytes) as f64 / live);
        if !within(&s, slack_segments) {
            violations.push((start.elapsed(), s));
        }
    }
    let mut expected = BTreeMap::new();
    let mut created = 0;
    for h in writer_threads {
        let (journals, n) = h.join().unwrap();
        expected.extend(journals);
        created += n;
    }
    stop.store(true, Ordering::Relaxed);
    for h in readers {
        h.join().unwrap();
    }
    Outcome {
        expected,
        created,
        reads: reads.load(Ordering::Relaxed),
        samples,
        worst,
        worst_with_pins,
        violations,
        slack_segments,
    }
}

impl Outcome {
    /// Asserts that the run did real work and stayed within the bound.
    fn assert_bounded(&self) {
        let (created, samples) = (self.created, self.samples);
        assert!(created >= 1000, "only {created} journals were created");
        assert!(self.reads > 10, "readers made no progress");
        assert!(samples >= 20, "too few samples: {samples}");
        assert!(
            self.violations.is_empty(),
            "{} of {samples} samples over 1.5 x live + {} segments; first at {:?}: {:?}",
            self.violations.len(),
            self.slack_segments,
            self.violations[0].0,
            self.violations[0].1,
        );
    }
}

/// Guards: disk usage stays within 1.5x live bytes + two segments under
/// churn, with only background compaction reclaiming space; snapshots stay
/// consistent throughout; close and reopen keep every journal exactly, and
/// the bound still holds after the reopen.
#[test]
fn churn_keeps_disk_usage_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Arc::new(Store::open(&dir, options()).unwrap());
    let outcome = churn(&store, WRITERS, Some(WRITE_RATE), batches(), 2.0);
    let expected = &outcome.expected;
    let store = Arc::try_unwrap(store).unwrap();
    let last = store.stats();
    assert_exact(&store.snapshot(), expected, "before close");
    store.close().unwrap();
    let (written, live, tombstones, headers) = breakdown(&dir);
    eprintln!(
        "{} journals created, {} live at the end, {} snapshots verified, \
         {} samples, worst bytes_on_disk / live_bytes {:.2} ({:.2} with pins); at close: \
         {} segments, {written} bytes of records for {live} live \
         ({tombstones} in tombstones, {headers} in record headers); compaction: \
         {} runs copied {} bytes for {} appended",
        outcome.created,
        expected.len(),
        outcome.reads,
        outcome.samples,
        outcome.worst,
        outcome.worst_with_pins,
        last.segments,
        last.compaction_runs,
        last.compaction_bytes_copied,
        last.bytes_appended,
    );
    outcome.assert_bounded();

    let store = Store::open(&dir, options()).unwrap();
    assert_exact(&store.snapshot(), expected, "after reopen");
    let reopened = store.stats();
    eprintln!(
        "after reopen: {} segments, bytes_on_disk / live_bytes {:.2} ({} for {})",
        reopened.segments,
        reopened.bytes_on_disk as f64 / reopened.live_bytes.max(1) as f64,
        reopened.bytes_on_disk,
        reopened.live_bytes,
    );
    assert!(
        within_bound(&reopened),
        "after reopen: {} bytes on disk for {} live",
        reopened.bytes_on_disk,
        reopened.live_bytes
    );
    // Every segment file on disk is one the store lists.
    let files = inspect::segment_files(&dir).unwrap();
    assert_eq!(files.len(), reopened.segments, "leaked segment files");
}

/// Guards the write stall (`Options::stall_space_amplification`): on a disk
/// whose syncs take 10 ms, compaction (several syncs a run) cannot keep up
/// with an unpaced writer on its own; the writers that seal segments then
/// compact before their writes return, and disk usage stays bounded.
///
/// The bound is what the stall guarantees, not the paced test's. The stall
/// holds the sealed and active data within 1.4 x live plus two segments of
/// slack (`space_slack` and the stall's own, each capped at one segment),
/// checked when a write seals a segment or kills enough bytes; between two
/// checks the writer adds up to one segment, one compaction output may be in
/// flight, and deletes since the check lower the live bytes. So each sample
/// must be within 1.5 x live plus four segments. Without the stall (`None`)
/// every sample is far past that (4.7-5.6 x live here).
#[test]
fn write_stall_keeps_disk_usage_bounded_when_syncs_are_slow() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = SimFs::new();
    fs.set_sync_latency(Duration::from_millis(10));
    let options = Options {
        fs: Arc::new(fs),
        ..options()
    };
    let store = Arc::new(Store::open(tmp.path().join("store"), options).unwrap());
    // Enough batches for the run to outlast the warm-up by a few seconds.
    let outcome = churn(&store, 1, None, batches().max(20_000), 4.0);
    let s = store.stats();
    eprintln!(
        "slow syncs: {} journals created, {} samples, worst bytes_on_disk / live_bytes {:.2} \
         ({:.2} with pins); \
         compaction: {} runs copied {} bytes for {} appended",
        outcome.created,
        outcome.samples,
        outcome.worst,
        outcome.worst_with_pins,
        s.compaction_runs,
        s.compaction_bytes_copied,
        s.bytes_appended,
    );
    outcome.assert_bounded();
    assert_exact(&store.snapshot(), &outcome.expected, "slow syncs");
}
